package health

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// pollerEvents is how many readiness events one wait takes at most; more
// are taken by the next wait, which follows at once.
const pollerEvents = 128

// poller is an epoll instance of the health checker's own, for sockets it
// reads and writes with plain system calls. Waiting for it does not block a
// thread: the epoll descriptor is itself registered with Go's netpoller
// (through os.NewFile), and a wait parks the goroutine until it turns
// readable, a deadline passes, or wake is called.
//
// Only the goroutine that owns the poller calls add, mod, wait and close;
// wake may be called from any goroutine, also after close.
type poller struct {
	fd     int
	file   *os.File        // fd, as the netpoller knows it
	rc     syscall.RawConn // file's
	events []unix.EpollEvent
	n      int   // events taken by the last epoll_wait
	err    error // epoll_wait's error, if it failed
	// take is pl.take bound once, so that a wait does not allocate it.
	take func(uintptr) bool
	// ev is epoll_ctl's argument, kept so that it is not allocated.
	ev unix.EpollEvent
	// woken makes waits return at once; set by wake.
	woken atomic.Bool
}

// newPoller makes an epoll instance and registers it with the netpoller.
func newPoller() (*poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("health: epoll_create1: %w", err)
	}
	// Non-blocking, so that os.NewFile hands it to the netpoller; it
	// changes nothing else for an epoll descriptor.
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("health: set epoll non-blocking: %w", err)
	}
	pl := &poller{fd: fd, file: os.NewFile(uintptr(fd), "health-epoll"), events: make([]unix.EpollEvent, pollerEvents)}
	// SetReadDeadline fails when the netpoller did not take the
	// descriptor, in which case waits could not be bounded.
	if err := pl.file.SetReadDeadline(time.Time{}); err != nil {
		_ = pl.file.Close()
		return nil, fmt.Errorf("health: epoll descriptor not pollable: %w", err)
	}
	if pl.rc, err = pl.file.SyscallConn(); err != nil {
		_ = pl.file.Close()
		return nil, fmt.Errorf("health: epoll descriptor: %w", err)
	}
	pl.take = pl.takeEvents
	return pl, nil
}

// add registers fd for events (EPOLLIN, EPOLLOUT...; level-triggered
// unless EPOLLET or EPOLLONESHOT is among them), tagged with tag, which wait
// returns in EpollEvent.Fd.
func (pl *poller) add(fd int, events uint32, tag int32) error {
	return pl.ctl(unix.EPOLL_CTL_ADD, fd, events, tag)
}

// mod changes the events fd is registered for.
func (pl *poller) mod(fd int, events uint32, tag int32) error {
	return pl.ctl(unix.EPOLL_CTL_MOD, fd, events, tag)
}

// ctl is epoll_ctl with op EPOLL_CTL_ADD or EPOLL_CTL_MOD.
func (pl *poller) ctl(op, fd int, events uint32, tag int32) error {
	pl.ev = unix.EpollEvent{Events: events, Fd: tag}
	return rawEpollCtl(pl.fd, op, fd, &pl.ev)
}

// A descriptor leaves the epoll set when it is closed: no del.

// wait returns the sockets that are ready, waiting until there is one, the
// deadline passes or wake is called (then it returns none). The events are
// valid until the next wait.
func (pl *poller) wait(deadline time.Time) ([]unix.EpollEvent, error) {
	if err := pl.file.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	// After the deadline is set: a wake between the two either is seen
	// here or set its past deadline after ours (see wake).
	if pl.woken.Load() {
		return nil, nil
	}
	pl.n, pl.err = 0, nil
	// RawConn.Read resets the descriptor's readiness, then calls take,
	// which collects what is ready without blocking; only if nothing is
	// does it park until the netpoller sees the epoll descriptor turn
	// readable. Events that come after the reset wake the park, so none
	// is missed.
	if err := pl.rc.Read(pl.take); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, nil
		}
		return nil, err
	}
	if pl.err != nil {
		return nil, fmt.Errorf("health: epoll_wait: %w", pl.err)
	}
	return pl.events[:pl.n], nil
}

// takeEvents is RawConn.Read's callback: epoll_wait without blocking.
func (pl *poller) takeEvents(fd uintptr) bool {
	for {
		n, err := rawEpollWaitNow(int(fd), pl.events)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			pl.err = err
			return true
		}
		pl.n = n
		return n > 0
	}
}

// wake makes the current or next wait return at once, and every wait after
// it. Safe from any goroutine, also after close.
func (pl *poller) wake() {
	pl.woken.Store(true)
	_ = pl.file.SetReadDeadline(time.Unix(1, 0))
}

// close closes the epoll instance. The sockets in it stay open.
func (pl *poller) close() {
	_ = pl.file.Close()
}
