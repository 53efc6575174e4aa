package tcp

import (
	"frontdoor/internal/deadlines"
	"frontdoor/internal/rawio"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The event loops: how a Server on a *net.TCPListener serves its sessions.
//
// Serve runs one loop per GOMAXPROCS on the listening socket: a goroutine
// with its own epoll set (edge-triggered, non-blocking sockets, raw
// accept4, connect and splice system calls) that owns the sessions it
// accepted, from the PROXY protocol header and the ClientHello (SNI
// routes) through the non-blocking connect to the backend (retries
// included) to the last byte. A session costs no goroutine: an idle one
// is its session struct, two sockets in the epoll set and, with an idle
// timeout, its place in a deadline list (loop_session.go). Bytes move with
// splice(2) through a pipe of the Server's pool, held only while bytes are
// in flight, as on the goroutine path (session.go, splice.go), which now
// serves only listeners that do not yield *net.TCPConn and upstreams that
// name a backend by host name (the loop connects to IP addresses only).

const (
	// loopAcceptBatch bounds the connections accepted per listener event,
	// so accepting does not starve the sessions already open.
	loopAcceptBatch = 16
	// pumpRounds bounds the pipe loads a direction moves per turn, so one
	// fast session does not starve the others of its loop; a direction
	// with more to move goes on after the loop's other events.
	pumpRounds = 4
	// connEvents are the events of every session socket.
	connEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET
	hupEvents  = unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR
	// Epoll data of the loop's own descriptors; a session socket's is
	// slot<<1 | side, with the session's generation in Pad.
	evWake   = -1
	evListen = -2
	// Pauses of accepting when the process is out of descriptors or
	// memory, as net/http's Server: from 5 ms, doubling, to at most 1 s.
	acceptPauseMin = 5 * time.Millisecond
	acceptPauseMax = time.Second
)

// Control requests from other goroutines to a loop.
const (
	ctlStopAccept = 1 << iota
	ctlClose
)

// loop is one event loop of a Server. Only its goroutine touches it, except
// ctl, the channels and (under wakeMu) wakefd.
type loop struct {
	s         *Server
	lfd, epfd int
	wakefd    int

	events [128]unix.EpollEvent
	ev     unix.EpollEvent
	base   time.Time
	now    int64 // nanoseconds since base, read once per wake-up

	slots     []*session // by slot; nil: free
	free      []int32    // free slots
	gen       int32
	deadlines deadlines.Set[session]
	pending   []pendingHalf     // directions with more to move after this round
	cur       *session          // the session being served, for survive
	hello     []byte            // the ClientHello peek buffer (SNI routes)
	pbuf      [proxyBufLen]byte // the PROXY header buffer sessions borrow
	np        *netpollWaiter    // nil: blocking epoll_wait (loop_wait.go)
	rsa       unix.RawSockaddrAny
	rsaLen    uint32

	sessions    int
	accepting   bool
	acceptAt    int64
	acceptPause time.Duration

	ctl         atomic.Uint32
	wakeMu      sync.Mutex
	notAccepted chan struct{} // closed once the loop stopped accepting
	stopOnce    sync.Once
	done        chan struct{} // closed when run returned
}

// pendingHalf is a direction to go on with: of the session in slot, if
// its generation is still gen; down: backend to client.
type pendingHalf struct {
	slot, gen int32
	down      bool
}

// newLoops makes the event loops of s, or returns nil when s is to be
// served by the goroutine path: the listener is not a *net.TCPListener, or
// an upstream names a backend by host name.
func (s *Server) newLoops() []*loop {
	if s.opts.noLoops || !s.loopable() {
		return nil
	}
	// Keep-alives are the listener's (net.ListenConfig.KeepAlive: the
	// proxy turns them off), which the net package would set on each
	// connection it accepts.
	lfd := rawio.ListenerFD(s.opts.Listener)
	if lfd < 0 {
		return nil
	}
	n := runtime.GOMAXPROCS(0)
	loops := make([]*loop, 0, n)
	for range n {
		lp, err := newLoop(s, lfd)
		if err != nil {
			for _, lp := range loops {
				lp.closeFDs()
			}
			return nil
		}
		loops = append(loops, lp)
	}
	return loops
}

// setSockopts sets on a backend socket what net.Dialer sets by default, as
// the goroutine path dials: TCP_NODELAY and keep-alive probes after 15 s
// idle, every 15 s, 9 times.
func setSockopts(fd int) {
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 15)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 9)
}

// loopable reports whether every upstream of s names its backends by IP
// address.
func (s *Server) loopable() bool {
	if s.upstream != nil && !s.upstream.literal {
		return false
	}
	if s.sni != nil {
		for _, m := range [2]map[string]*boundUpstream{s.sni.exact, s.sni.wild} {
			for _, up := range m {
				if !up.literal {
					return false
				}
			}
		}
	}
	return true
}

func newLoop(s *Server, lfd int) (*loop, error) {
	lp := &loop{
		s: s, lfd: lfd, epfd: -1, wakefd: -1,
		base:        time.Now(),
		notAccepted: make(chan struct{}),
		done:        make(chan struct{}),
		accepting:   true,
	}
	var err error
	if lp.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, err
	}
	if lp.wakefd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		lp.closeFDs()
		return nil, err
	}
	lp.ev = unix.EpollEvent{Events: unix.EPOLLIN, Fd: evWake}
	if err = unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, lp.wakefd, &lp.ev); err != nil {
		lp.closeFDs()
		return nil, err
	}
	// EPOLLEXCLUSIVE: one loop wakes per new connection, not all.
	lp.ev = unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: evListen}
	if err = unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, lfd, &lp.ev); err != nil {
		lp.closeFDs()
		return nil, err
	}
	lp.initNetpoll()
	return lp, nil
}

func (lp *loop) closeFDs() {
	lp.wakeMu.Lock()
	defer lp.wakeMu.Unlock()
	lp.closeNetpoll()
	for _, fd := range [2]int{lp.wakefd, lp.epfd} {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
	}
	lp.wakefd, lp.epfd = -1, -1
}

// control asks the loop for req (ctl* bits) from another goroutine.
func (lp *loop) control(req uint32) {
	lp.ctl.Or(req)
	lp.wakeMu.Lock()
	defer lp.wakeMu.Unlock()
	if lp.wakefd >= 0 {
		one := [8]byte{1}
		_, _ = unix.Write(lp.wakefd, one[:])
	}
}

func (lp *loop) markNotAccepting() {
	lp.stopOnce.Do(func() { close(lp.notAccepted) })
}

// run is the loop. It returns once it no longer accepts and its last
// session has ended, or after a close.
func (lp *loop) run() {
	defer close(lp.done)
	defer lp.closeFDs()
	defer lp.markNotAccepting()
	lp.now = int64(time.Since(lp.base))
	for {
		// Under load events are usually ready: a raw, non-blocking
		// epoll_wait keeps the runtime out of it. An empty poll is
		// followed by a park in the netpoller (loop_wait.go), which frees
		// the P at once: unlike the HTTP loop, no short raw wait holding
		// it (in iperf3 runs it saved nothing here). Directions with more
		// to move (pending) allow no wait at all.
		wait := len(lp.pending) == 0
		n, e := lp.pollRaw()
		if e != 0 && e != unix.EINTR {
			lp.fail("epoll_wait", e)
			return
		}
		if n <= 0 && wait {
			var err error
			if n, err = lp.wait(); err != nil {
				lp.fail("epoll_wait", err)
				return
			}
		}
		lp.now = int64(time.Since(lp.base))
		if lp.dispatch(n) {
			return
		}
		busy := n > 0 || len(lp.pending) > 0
		lp.runPending()
		if busy {
			// The raw polls above never enter the scheduler: a busy loop
			// would hold its P until the runtime preempts it, and every
			// goroutine behind it would wait that long.
			runtime.Gosched()
		}
		lp.expire()
		if lp.acceptAt != 0 && lp.now >= lp.acceptAt {
			lp.resumeAccept()
		}
		if !lp.accepting && lp.sessions == 0 {
			return
		}
	}
}

// fail ends the loop after its epoll set failed: it closes its sessions.
func (lp *loop) fail(what string, err error) {
	lp.s.log.Error("tcp loop: "+what, "listener", lp.s.opts.Name, "err", err)
	lp.stopAccept()
	lp.closeAll()
}

func (lp *loop) pollRaw() (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(lp.epfd), uintptr(unsafe.Pointer(&lp.events[0])),
		uintptr(len(lp.events)), 0, 0, 0)
	return int(r), e
}

// nextDeadline is when (loop clock) the next deadline is due; 0: none.
func (lp *loop) nextDeadline() int64 {
	next := lp.acceptAt
	if at, ok := lp.deadlines.Next(); ok && (next == 0 || at < next) {
		next = at
	}
	return next // armed deadlines are after the loop's start: never 0
}

// waitMillis is the epoll_wait timeout: until the next deadline.
func (lp *loop) waitMillis() int {
	next := lp.nextDeadline()
	if next == 0 {
		return -1
	}
	d := next - int64(time.Since(lp.base))
	if d <= 0 {
		return 0
	}
	return int((d + int64(time.Millisecond) - 1) / int64(time.Millisecond))
}

// dispatch handles the n events of one wake-up. It reports whether the
// loop ends.
func (lp *loop) dispatch(n int) bool {
	for i := 0; i < n; {
		var stop bool
		if i, stop = lp.dispatchFrom(i, n); stop {
			return true
		}
	}
	return false
}

// dispatchFrom handles the events from the one at from on. A panic while
// it serves a session closes that session (survive) and returns the index
// of the next event, so the loop goes on with the others: with edge
// triggering, an event skipped would be lost for good.
func (lp *loop) dispatchFrom(from, n int) (next int, stop bool) {
	next = from
	defer func() {
		if r := recover(); r != nil {
			lp.survive(r)
			next++
		}
	}()
	for ; next < n; next++ {
		e := &lp.events[next]
		switch e.Fd {
		case evWake:
			if lp.controlled() {
				return next, true
			}
		case evListen:
			if lp.accepting {
				lp.accept()
			}
		default:
			slot := int(e.Fd >> 1)
			if slot >= len(lp.slots) {
				continue
			}
			ss := lp.slots[slot]
			if ss == nil {
				continue
			}
			backend := e.Fd&1 == sideBackend
			if gen := ss.l.gen; backend && ss.l.bgen != e.Pad || !backend && gen != e.Pad {
				continue // a socket closed since
			}
			lp.cur = ss
			lp.event(ss, backend, e.Events)
			lp.cur = nil
		}
	}
	return next, false
}

// survive handles a panic raised while the loop served lp.cur (a bug): it
// logs it with its stack, as recoverSession does for the goroutine path,
// and closes that session. The loop's other sessions are untouched.
func (lp *loop) survive(r any) {
	ss := lp.cur
	lp.cur = nil
	lp.s.logPanic(r)
	if ss != nil {
		lp.discard(ss)
	}
}

// controlled handles the control requests; it reports whether the loop
// ends.
func (lp *loop) controlled() bool {
	var buf [8]byte
	_, _ = unix.Read(lp.wakefd, buf[:])
	req := lp.ctl.Swap(0)
	if req&(ctlStopAccept|ctlClose) != 0 {
		lp.stopAccept()
	}
	if req&ctlClose != 0 {
		lp.closeAll()
		return true
	}
	return false
}

func (lp *loop) stopAccept() {
	if lp.accepting {
		lp.accepting = false
		_ = unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, lp.lfd, nil)
	}
	lp.markNotAccepting()
}

// closeAll closes every session of the loop (a forced Close or Shutdown).
func (lp *loop) closeAll() {
	for _, ss := range lp.slots {
		if ss != nil {
			lp.cur = ss
			lp.closeForced(ss)
		}
	}
	lp.cur = nil
}

// accept takes up to loopAcceptBatch connections; the listener is level-
// triggered, so more waiting raise the next poll again.
func (lp *loop) accept() {
	s := lp.s
	for range loopAcceptBatch {
		fd, e := rawio.Accept(lp.lfd, &lp.rsa, &lp.rsaLen)
		if rawio.OutOfResources(e) {
			lp.pauseAccept(e)
			return
		}
		if e != 0 {
			return // EAGAIN
		}
		lp.acceptPause = 0
		ss := s.admitLoop()
		if ss == nil {
			_ = unix.Close(fd)
			continue
		}
		lp.cur = ss
		lp.begin(ss, fd, sockaddrAddrPort(&lp.rsa))
		lp.cur = nil
	}
}

// pauseAccept stops accepting for a while after accept4 failed for want of
// descriptors or memory. The listening socket stays readable while
// connections wait in its backlog: without the pause the loop would spin.
func (lp *loop) pauseAccept(e unix.Errno) {
	if lp.acceptPause == 0 {
		lp.acceptPause = acceptPauseMin
		lp.s.log.Warn("tcp accept paused: out of file descriptors or memory; raise LimitNOFILE or lower max_connections",
			"listener", lp.s.opts.Name, "err", e)
	} else {
		lp.acceptPause = min(2*lp.acceptPause, acceptPauseMax)
	}
	_ = unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, lp.lfd, nil)
	lp.acceptAt = lp.now + int64(lp.acceptPause)
}

// resumeAccept watches the listening socket again after a pause.
func (lp *loop) resumeAccept() {
	lp.acceptAt = 0
	if !lp.accepting {
		return
	}
	lp.ev = unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: evListen}
	_ = unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, lp.lfd, &lp.ev)
}
