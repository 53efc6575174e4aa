package tcp

import (
	"errors"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The event loops (loop.go): waiting for events through the Go netpoller.
//
// A loop with nothing to do parks its goroutine on its epoll descriptor,
// which the runtime's own epoll set watches (an epoll set is readable
// while it has events): the wait is a goroutine park, as for any socket of
// the net package, not a system call that blocks its thread. A blocking
// epoll_wait through the runtime made sysmon take the P from the waiting
// thread after 20 µs and start another thread for it, then the woken loop
// wait for a P again: futex calls and thread switches on every wait (3,231
// futex calls for 2 GB of iperf3 against 77 on the goroutine path, whose
// waits are parks), and 1.07-1.18 times the goroutine path's CPU per GB at
// 1 stream, 1.3-1.7 times at 8 (TestIperf, a loaded machine).

// netpollWaiter is a loop's epoll descriptor as a file of the netpoller.
type netpollWaiter struct {
	f      *os.File
	rc     syscall.RawConn
	waitFn func(uintptr) bool // lp.pollOnce, bound once
	// dl is the read deadline set on f (loop-clock nanoseconds), 0: none;
	// it may be earlier than the loop's next deadline, never later.
	dl int64
	n  int
	e  unix.Errno
}

// initNetpoll makes epfd a netpoller file; on failure the loop waits with
// a blocking epoll_wait.
func (lp *loop) initNetpoll() {
	if err := unix.SetNonblock(lp.epfd, true); err != nil {
		return
	}
	f := os.NewFile(uintptr(lp.epfd), "tcp-loop-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		lp.epfd = -1
		return
	}
	lp.np = &netpollWaiter{f: f, rc: rc, waitFn: lp.pollOnce}
}

// pollOnce is the netpoller callback: a non-blocking poll that reports
// whether there was anything (else the goroutine parks until epfd is
// readable). Its first call must poll, though the loop has just polled:
// RawConn.Read forgets the readiness the netpoller recorded before it
// (pollReset), so an event queued between the two polls would be lost.
func (lp *loop) pollOnce(uintptr) bool {
	np := lp.np
	np.n, np.e = lp.pollRaw()
	return np.n != 0 || (np.e != 0 && np.e != unix.EINTR)
}

// wait waits for events until the next deadline.
func (lp *loop) wait() (int, error) {
	np := lp.np
	if np == nil {
		n, err := unix.EpollWait(lp.epfd, lp.events[:], lp.waitMillis())
		if errors.Is(err, unix.EINTR) {
			err = nil
		}
		return n, err
	}
	// The deadline set is moved only when the next one is earlier: the
	// idle deadline of a busy session moves out on every turn, and a
	// runtime timer moved per wait would cost more than the rare wake-up
	// at a deadline that has moved since (expire then finds nothing).
	if next := lp.nextDeadline(); next != 0 && (np.dl == 0 || next < np.dl) {
		np.dl = next
		_ = np.f.SetReadDeadline(lp.base.Add(time.Duration(next)))
	}
	err := np.rc.Read(np.waitFn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		np.dl = 0
		_ = np.f.SetReadDeadline(time.Time{})
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if np.n < 0 || np.e != 0 {
		return 0, np.e
	}
	return np.n, nil
}

// closeNetpoll closes the netpoller file, which closes epfd.
func (lp *loop) closeNetpoll() {
	if lp.np != nil {
		_ = lp.np.f.Close()
		lp.np = nil
		lp.epfd = -1
	}
}
