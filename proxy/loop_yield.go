package proxy

import (
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The event loop (loop.go): parking in the runtime now and then, so that
// goroutines waiting on the network run while the loop is saturated.
//
// A busy loop polls with raw epoll_wait calls and never parks, so the
// runtime's network poller, which readies the goroutines of the HTTP/2 and
// goroutine engines (and health checks, the admin server), runs only when
// sysmon gets to it, every 10 ms; runtime.Gosched does not help, as the
// yielded loop is taken again from the run queue before the scheduler
// polls. Once every loopYieldEvery of running without a park, the loop
// parks on its own epoll descriptor through the runtime's poller (the
// descriptor is pollable: readable while events wait in it). A P with
// nothing else to run polls the network before it blocks, which readies
// the goroutines whose sockets are readable as well as the loop; they run,
// and the loop resumes after them. A write to the loop's eventfd before
// the park makes the loop's descriptor report an event even when every
// event in it was there before the park (an edge-triggered registration
// reports only new ones), so the loop cannot sleep on events it has not
// taken.

// loopYieldEvery is how long a loop runs without parking in the runtime
// before it parks once (yieldNetpoll). It bounds what a goroutine woken
// by the network waits for a saturated loop's P: a 1 KiB gRPC round trip
// through the HTTP/2 engine waits for it about twice.
const loopYieldEvery = time.Millisecond

// loopYieldCheck is how many events of a batch a loop handles between two
// looks at the clock for a yield (a power of two): a batch of 128 events
// of a saturated loop may take a few milliseconds.
const loopYieldCheck = 16

// netpollYield is the loop's epoll descriptor as the runtime's poller sees
// it. The zero value (no descriptor) makes yieldNetpoll a no-op.
type netpollYield struct {
	f     *os.File        // owns the loop's epoll descriptor once set
	rc    syscall.RawConn // f's
	step  func(uintptr) bool
	calls int
	// at is when (evLoop.now) the loop last parked in the runtime: a
	// yield or a blocking wait.
	at int64
}

// initYield makes the loop's epoll descriptor pollable by the runtime. On
// failure the loop still works, without yields; the descriptor is then
// still lp.epfd's, closed by closeFDs.
func (lp *evLoop) initYield() {
	if err := unix.SetNonblock(lp.epfd, true); err != nil {
		return
	}
	f := os.NewFile(uintptr(lp.epfd), "epoll")
	if f == nil {
		return
	}
	rc, err := f.SyscallConn()
	if err != nil {
		// The descriptor is f's now: closeFDs closes it through f.
		lp.yield.f = f
		return
	}
	lp.yield = netpollYield{f: f, rc: rc}
	lp.yield.step = lp.yieldStep
}

// yieldNetpoll parks the loop in the runtime's poller until its epoll
// descriptor reports an event, which the eventfd write of yieldStep
// guarantees; see the top of this file.
func (lp *evLoop) yieldNetpoll() {
	lp.yield.at = lp.now
	if lp.yield.rc == nil {
		return
	}
	lp.yield.calls = 0
	if lp.yield.rc.Read(lp.yield.step) != nil {
		// Not pollable (the runtime said so at the first wait): the
		// loop runs on without yields.
		lp.yield.rc = nil
		return
	}
	// The poll that woke the loop may have run it before the goroutines
	// it woke with it: they go first.
	runtime.Gosched()
}

// yieldIfDue yields when the loop ran loopYieldEvery without parking; it
// is for the middle of a batch, where lp.now is the batch's start.
func (lp *evLoop) yieldIfDue() {
	now := int64(time.Since(lp.base))
	if now-lp.yield.at >= int64(loopYieldEvery) {
		lp.now = now
		lp.yieldNetpoll()
	}
}

// yieldStep is the function RawConn.Read calls before and after it waits:
// the first call marks the loop's descriptor readable and asks to wait,
// the second ends the wait.
func (lp *evLoop) yieldStep(uintptr) bool {
	lp.yield.calls++
	if lp.yield.calls > 1 {
		return true
	}
	one := [8]byte{1}
	_, _ = unix.Write(lp.wakefd, one[:])
	return false
}

// closeEpoll closes the loop's epoll descriptor, through the runtime's
// poller when it knows it.
func (lp *evLoop) closeEpoll() {
	if lp.yield.f != nil {
		_ = lp.yield.f.Close()
		lp.yield = netpollYield{}
	} else if lp.epfd >= 0 {
		_ = unix.Close(lp.epfd)
	}
	lp.epfd = -1
}
