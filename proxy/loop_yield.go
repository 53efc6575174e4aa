package proxy

import (
	"math"
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
// polls. Once every loopYieldEvery of running without a park (more often
// while other goroutines have work: loopYieldSoon), the loop
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
// before it parks once (yieldNetpoll), while the last park ran nothing
// else. It bounds what a goroutine woken by the network waits for a
// saturated loop's P.
const loopYieldEvery = time.Millisecond

// loopYieldSoon is the interval instead while the last park let other
// goroutines run (it lasted loopYieldWorked or more). Their work comes in
// chains: the HTTP/2 engine's reader writes a message to a backend, whose
// answer is back a few tens of microseconds later, when the loop holds
// the P again; at loopYieldEvery each link of the chain would wait about
// a whole interval (a 1 KiB gRPC round trip, two links: p50 2.7 ms).
const loopYieldSoon = 200 * time.Microsecond

// loopYieldWorked is how long a park lasts when the goroutines it woke
// had work: a park that ran nothing else takes a few microseconds.
const loopYieldWorked = 25 * time.Microsecond

// loopYieldCheck is how many events of a batch a loop handles between two
// looks at the clock for a yield (a power of two): a batch of 128 events
// of a saturated loop may take a few milliseconds.
const loopYieldCheck = 16

// netpollYield is the loop's epoll descriptor as the runtime's poller sees
// it. Until initYield succeeds the loop never yields.
type netpollYield struct {
	f     *os.File        // owns the loop's epoll descriptor once set
	rc    syscall.RawConn // f's
	step  func(uintptr) bool
	calls int
	// at is when (evLoop.now) the loop last parked in the runtime: a
	// yield or a blocking wait; every is how long after that it yields
	// (loopYieldEvery or loopYieldSoon).
	at, every int64
}

// initYield makes the loop's epoll descriptor pollable by the runtime. On
// failure the loop still works, without yields; the descriptor is then
// still lp.epfd's, closed by closeFDs.
func (lp *evLoop) initYield() {
	lp.yield.every = math.MaxInt64
	if err := unix.SetNonblock(lp.epfd, true); err != nil {
		return
	}
	f := os.NewFile(uintptr(lp.epfd), "epoll")
	if f == nil {
		return
	}
	lp.yield.f = f // the descriptor is f's now: closeEpoll closes it
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	lp.yield.rc = rc
	lp.yield.step = lp.yieldStep
	lp.yield.every = int64(loopYieldEvery)
}

// yieldDue reports whether the loop is to yield at now.
func (lp *evLoop) yieldDue(now int64) bool {
	return now-lp.yield.at >= lp.yield.every
}

// yieldNetpoll parks the loop in the runtime's poller until its epoll
// descriptor reports an event, which the eventfd write of yieldStep
// guarantees; see the top of this file.
func (lp *evLoop) yieldNetpoll() {
	start := int64(time.Since(lp.base))
	lp.yield.calls = 0
	if lp.yield.rc.Read(lp.yield.step) != nil {
		// Not pollable (the runtime said so at the first wait): the
		// loop runs on without yields.
		lp.yield.rc, lp.yield.every = nil, math.MaxInt64
		return
	}
	// The poll that woke the loop may have run it before the goroutines
	// it woke with it: they go first.
	runtime.Gosched()
	lp.now = int64(time.Since(lp.base))
	lp.yield.at = lp.now
	if lp.now-start >= int64(loopYieldWorked) {
		lp.yield.every = int64(loopYieldSoon)
	} else {
		lp.yield.every = int64(loopYieldEvery)
	}
}

// yieldIfDue yields when due; it is for the middle of a batch, where
// lp.now is the batch's start.
func (lp *evLoop) yieldIfDue() {
	if now := int64(time.Since(lp.base)); lp.yieldDue(now) {
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
		lp.yield = netpollYield{every: math.MaxInt64}
	} else if lp.epfd >= 0 {
		_ = unix.Close(lp.epfd)
	}
	lp.epfd = -1
}
