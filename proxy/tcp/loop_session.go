package tcp

import (
	"net/netip"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"frontdoor/internal/deadlines"
	"frontdoor/internal/splice"
)

// The event loops (loop.go): a session from accept to close.
//
// A session goes through these states: stProxy (reading the PROXY protocol
// header, with Options.AcceptProxy), stHello (reading the ClientHello, with
// SNI routes), stConnect (a non-blocking connect to a backend, retried on
// another member until Upstream.Retries are used, before any byte is sent)
// and stSplice (both directions move, each as on the goroutine path:
// splice(2) from the source socket into a pipe and from the pipe to the
// destination, the pipe taken from the Server's pool when bytes arrive and
// given back once drained). A FIN becomes shutdown(SHUT_WR) towards the
// other side and the session lasts until both directions have ended; a
// reset becomes a reset (linger 0) of the other socket; any other end
// closes both.

// Session states in a loop.
const (
	stNone uint8 = iota
	stProxy
	stHello
	stConnect
	stSplice
)

// Sides of a session, the low bit of its sockets' epoll data.
const (
	sideClient  = 0
	sideBackend = 1
)

// loopState is what a loop keeps of a session besides the fields the
// goroutine path uses too. The zero value is a session no loop serves.
type loopState struct {
	slot     int32
	gen      int32 // the client socket's registration
	bgen     int32 // the backend socket's, new for every connect
	cfd, bfd int32 // -1: none
	state    uint8
	haveDst  bool // dst is known (a PROXY header named it)
	src, dst netip.AddrPort
	// The connect: the upstream, source key, members tried, attempts
	// made and the member being connected.
	up      *boundUpstream
	key     uint64
	tried   uint64
	attempt int
	idx     int
	// dl is the armed deadline (loop_timer.go).
	dl deadlines.Entry[session]
}

// admitLoop counts a new connection of a loop and returns its session, or
// nil when the listener is full (the caller closes the socket).
func (s *Server) admitLoop() *session {
	s.mu.Lock()
	if s.maxConn > 0 && s.count >= s.maxConn {
		s.mu.Unlock()
		s.rejectedMax.Inc()
		return nil
	}
	s.count++
	s.mu.Unlock()
	s.total.Inc()
	s.active.Inc()
	return s.sessions.Get().(*session)
}

// begin starts serving the accepted socket fd from src.
func (lp *loop) begin(ss *session, fd int, src netip.AddrPort) {
	s := lp.s
	ss.start = time.Now()
	ss.idle, ss.refreshEvery = s.idle, s.refresh
	l := &ss.l
	l.cfd, l.bfd, l.src = int32(fd), -1, src
	ss.rec.Client = src
	if n := len(lp.free); n > 0 {
		l.slot = lp.free[n-1]
		lp.free = lp.free[:n-1]
	} else {
		l.slot = int32(len(lp.slots))
		lp.slots = append(lp.slots, nil)
	}
	lp.slots[l.slot] = ss
	lp.gen++
	l.gen = lp.gen
	lp.sessions++
	// An edge-triggered registration reports at once what is ready
	// already: bytes that came with the connection are not missed.
	if !lp.register(ss, sideClient, fd, l.gen) {
		lp.finish(ss)
		return
	}
	switch {
	case s.opts.AcceptProxy:
		l.state = stProxy
		lp.arm(ss, tProxy, s.opts.ProxyHeaderTimeout)
	case s.sni != nil:
		l.state = stHello
		lp.arm(ss, tHello, s.sni.timeout)
	default:
		lp.connect(ss, s.upstream)
	}
}

func (lp *loop) register(ss *session, side, fd int, gen int32) bool {
	lp.ev = unix.EpollEvent{Events: connEvents, Fd: ss.l.slot<<1 | int32(side), Pad: gen}
	return unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, fd, &lp.ev) == nil
}

// event handles the events ev of one of ss's sockets.
func (lp *loop) event(ss *session, backend bool, ev uint32) {
	l := &ss.l
	switch l.state {
	case stProxy:
		if !backend {
			lp.readProxy(ss)
		}
	case stHello:
		if !backend {
			lp.readHello(ss)
		}
	case stConnect:
		if backend && ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			lp.connected(ss)
		}
	case stSplice:
		// in reads this socket, out writes to it.
		in, out := &ss.up, &ss.down
		if backend {
			in, out = &ss.down, &ss.up
		}
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 && out.blocked && !out.done {
			if !lp.pump(out) {
				// It ended, and its struct may be another loop's by
				// now: not read again.
				return
			}
		}
		if ev&(unix.EPOLLIN|hupEvents) != 0 && !in.blocked && !in.done {
			lp.pump(in)
		}
	}
}

// readProxy reads the client's PROXY protocol header as the goroutine path
// does (peek until complete, then consume exactly its bytes).
func (lp *loop) readProxy(ss *session) {
	s, l := lp.s, &ss.l
	ss.buf = &lp.pbuf // lent only for this call: the session may end in it
	done := ss.peek(uintptr(l.cfd))
	ss.buf = nil
	if !done {
		return // wait for more
	}
	for left := ss.hdr.length; ss.hdrErr == nil && left > 0; {
		n, err := unix.Read(int(l.cfd), lp.pbuf[:min(left, len(lp.pbuf))])
		switch {
		case err == unix.EINTR:
		case err != nil || n <= 0:
			ss.hdrErr = errProxyShort
		default:
			left -= n
		}
	}
	if ss.hdrErr != nil {
		s.rejectedProxy.Inc()
		ss.rec.End = "proxy_protocol"
		lp.finish(ss)
		return
	}
	lp.disarm(ss)
	if !ss.hdr.local {
		ss.rec.Peer = l.src
		l.src, l.dst, l.haveDst = ss.hdr.src, ss.hdr.dst, true
		ss.rec.Client = l.src
	}
	if s.sni != nil {
		l.state = stHello
		lp.arm(ss, tHello, s.sni.timeout)
		lp.readHello(ss) // the hello may be here already: no edge will say so
		return
	}
	lp.connect(ss, s.upstream)
}

// readHello routes the session by its ClientHello, peeked into the loop's
// buffer (a peek reads the hello from its start every time, so no session
// keeps one).
func (lp *loop) readHello(ss *session) {
	t := lp.s.sni
	if lp.hello == nil {
		lp.hello = make([]byte, MaxClientHello)
	}
	ss.hello = lp.hello
	done := ss.peekHello(uintptr(ss.l.cfd))
	ss.hello = nil
	if !done {
		return
	}
	if ss.helloErr != nil {
		t.refuse(vUnknown, helloReasonOf(ss.helloErr))
		lp.finish(ss)
		return
	}
	lp.disarm(ss)
	up := ss.pick(t)
	ss.helloMsg = ClientHello{} // it points into lp.hello
	if up == nil {
		lp.finish(ss)
		return
	}
	lp.connect(ss, up)
}

// connect starts connecting ss to a member of up.
func (lp *loop) connect(ss *session, up *boundUpstream) {
	l := &ss.l
	l.up, l.key = up, SourceKey(l.src.Addr())
	lp.dialNext(ss)
}

// dialNext connects to the pool's pick among the members not tried yet, or
// ends the session when no attempt is left or no member is up.
func (lp *loop) dialNext(ss *session) {
	l := &ss.l
	up := l.up
	for l.attempt < up.attempts {
		// PickAcquire counts the session in the pool at once, so bounded
		// loads see it (the pool total and the member's count move together).
		i := up.up.Pool.PickAcquire(l.key, l.tried)
		if i < 0 {
			up.noBackend.Inc()
			ss.rec.End = "no_backend"
			lp.finish(ss)
			return
		}
		if l.attempt > 0 {
			up.retries.Inc()
		}
		l.attempt++
		l.tried |= 1 << (uint(i) % 64)
		l.idx = i
		fd, err := up.members[i].connect()
		if err == nil {
			lp.gen++
			l.bfd, l.bgen = int32(fd), lp.gen
			if lp.register(ss, sideBackend, fd, l.bgen) {
				l.state = stConnect
				lp.arm(ss, tConnect, up.dialer.Timeout)
				return
			}
			_ = unix.Close(fd)
			l.bfd, err = -1, unix.ENOMEM
		}
		lp.dialFailed(ss, err)
	}
	lp.finish(ss)
}

// connect opens a non-blocking socket to m and starts connecting it.
func (m *boundMember) connect() (int, error) {
	fd, err := unix.Socket(m.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	setSockopts(fd)
	_, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&m.sa)), m.saLen)
	// EINTR: the connect goes on asynchronously, as EINPROGRESS.
	if e != 0 && e != unix.EINPROGRESS && e != unix.EINTR {
		_ = unix.Close(fd)
		return -1, e
	}
	return fd, nil
}

// dialFailed accounts a failed connect to member l.idx.
func (lp *loop) dialFailed(ss *session, err error) {
	up, i := ss.l.up, ss.l.idx
	ss.noteAttempt(up.members[i].address, err)
	ss.connectFailed(up, i, err)
}

// connected goes on once the backend socket reports its connect's end.
func (lp *loop) connected(ss *session) {
	l := &ss.l
	soerr, err := unix.GetsockoptInt(int(l.bfd), unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && soerr != 0 {
		err = unix.Errno(soerr)
	}
	lp.disarm(ss)
	if err != nil {
		lp.dropBackend(ss)
		lp.dialFailed(ss, err)
		lp.dialNext(ss)
		return
	}
	up, i := l.up, l.idx
	m := &up.members[i]
	ss.noteAttempt(m.address, nil)
	ss.rec.End = ""
	ss.member = m
	ss.pool, ss.memberIdx = up.up.Pool, i
	if up.up.Passive != nil {
		up.up.Passive.Success(i)
	}
	if up.sendProxy != 0 {
		if !l.haveDst {
			l.dst = localAddrPort(int(l.cfd))
		}
		// A new socket's send buffer is empty: the header goes at once.
		hdr := appendProxyHeader(lp.pbuf[:0], up.sendProxy, l.src, l.dst)
		if n, err := unix.Write(int(l.bfd), hdr); err != nil || n != len(hdr) {
			m.errs[reasonReset].Inc()
			ss.rec.End = "backend_reset"
			lp.finish(ss)
			return
		}
	}
	lp.splice(ss)
}

// dropBackend closes the backend socket of a failed connect.
func (lp *loop) dropBackend(ss *session) {
	_ = unix.Close(int(ss.l.bfd))
	ss.l.bfd, ss.l.bgen = -1, 0
}

// splice starts moving bytes both ways. Each direction is tried at once:
// bytes that arrived before (the client's first bytes, a banner of the
// backend) raised no edge since.
func (lp *loop) splice(ss *session) {
	l := &ss.l
	l.state = stSplice
	ss.up.srcFd, ss.up.dstFd = l.cfd, l.bfd
	ss.down.srcFd, ss.down.dstFd = l.bfd, l.cfd
	ss.down.fromBackend = true
	ss.up.refreshed, ss.down.refreshed = lp.now, lp.now
	if ss.idle > 0 {
		lp.arm(ss, tIdle, time.Duration(ss.idle))
	}
	if lp.pump(&ss.up) { // else it ended: its struct is not read again
		lp.pump(&ss.down)
	}
}

// pump moves h's bytes until its source is empty (the pipe goes back to
// the pool), its destination full (blocked: the destination's EPOLLOUT
// goes on) or pumpRounds pipe loads moved (pending: it goes on after the
// loop's other events). It reports whether the session lives on: once it
// ended, its struct may be another loop's, so the caller reads it no more.
func (lp *loop) pump(h *half) (live bool) {
	moved := false
	for round := 0; ; round++ {
		if h.t.InPipe == 0 {
			if round == pumpRounds {
				lp.pending = append(lp.pending, pendingHalf{slot: h.s.l.slot, gen: h.s.l.gen, down: h.fromBackend})
				break
			}
			n, again, err := h.t.Fill(int(h.srcFd), splice.MaxMove)
			if again {
				break
			}
			if err != nil {
				return !lp.ended(h, h.readEnd(err), moved)
			}
			if n == 0 {
				return !lp.ended(h, endEOF, moved)
			}
		}
		n, again, err := h.t.Drain(int(h.dstFd))
		h.moved += n
		moved = moved || n > 0
		if err != nil {
			return !lp.ended(h, h.writeEnd(err), moved)
		}
		h.blocked = again
		if again {
			break
		}
	}
	lp.active(h, moved)
	return true
}

// active notes that h moved bytes: the idle deadline moves out, and at
// most every refreshEvery the bytes go to the metrics.
func (lp *loop) active(h *half, moved bool) {
	if !moved {
		return
	}
	ss := h.s
	if ss.idle > 0 && ss.l.dl.At != lp.now+ss.idle {
		lp.arm(ss, tIdle, time.Duration(ss.idle))
	}
	if lp.now-h.refreshed >= ss.refreshEvery {
		h.refreshed = lp.now
		h.flush()
	}
}

// ended acts on how direction h ended, as half.finish does on the
// goroutine path: a FIN becomes a shutdown(SHUT_WR) towards the
// destination (the session ends when both directions have), a reset
// becomes a reset of the other socket, and anything else closes both. It
// reports whether the session finished.
func (lp *loop) ended(h *half, end int, moved bool) (finished bool) {
	lp.active(h, moved)
	ss := h.s
	ss.noteEnd(end, h.fromBackend)
	h.done, h.blocked = true, false
	h.t.Release()
	h.flush()
	switch end {
	case endEOF:
		_ = unix.Shutdown(int(h.dstFd), unix.SHUT_WR)
		if h.other.done {
			lp.finish(ss)
			return true
		}
		return false
	case endReadReset:
		lp.resetSocket(int(h.dstFd))
		if h.fromBackend {
			ss.member.errs[reasonReset].Inc()
		}
	case endWriteReset:
		lp.resetSocket(int(h.srcFd))
		if !h.fromBackend {
			ss.member.errs[reasonReset].Inc()
		}
	}
	lp.finish(ss)
	return true
}

// resetSocket makes the close of fd send a reset (SO_LINGER 0).
func (lp *loop) resetSocket(fd int) {
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
}

// runPending goes on with the directions that used their turn.
func (lp *loop) runPending() {
	n := len(lp.pending)
	if n == 0 {
		return
	}
	for i := 0; i < n; {
		i = lp.pendingFrom(i, n)
	}
	m := copy(lp.pending, lp.pending[n:])
	lp.pending = lp.pending[:m]
}

// pendingFrom pumps the pending directions from i to n; a panic closes
// that session (survive) and returns the index of the next one.
func (lp *loop) pendingFrom(i, n int) (next int) {
	next = i
	defer func() {
		if r := recover(); r != nil {
			lp.survive(r)
			next++
		}
	}()
	for ; next < n; next++ {
		// The session may have ended since, and its struct gone to another
		// loop: it is found through this loop's table, never touched first.
		p := lp.pending[next]
		ss := lp.slots[p.slot]
		if ss == nil || ss.l.gen != p.gen || ss.l.state != stSplice {
			continue
		}
		h := &ss.up
		if p.down {
			h = &ss.down
		}
		if h.done || h.blocked {
			continue
		}
		lp.cur = ss
		lp.pump(h)
		lp.cur = nil
	}
	return next
}

// timeout acts on ss's deadline of kind.
func (lp *loop) timeout(ss *session, kind uint8) {
	switch kind {
	case tProxy:
		lp.s.rejectedProxy.Inc()
		ss.rec.End = "proxy_protocol"
	case tHello:
		lp.s.sni.refuse(vUnknown, helloTimeout)
	case tConnect:
		lp.dropBackend(ss)
		lp.dialFailed(ss, os.ErrDeadlineExceeded)
		lp.dialNext(ss)
		return
	case tIdle:
		ss.noteEnd(endIdle, false)
	}
	lp.finish(ss)
}

// closeForced ends ss for a forced Close or Shutdown.
func (lp *loop) closeForced(ss *session) {
	if ss.l.state == stSplice {
		ss.noteEnd(endClosed, false)
	} else {
		ss.rec.End = "closed"
	}
	lp.finish(ss)
}

// finish closes ss, logs it and gives its struct back to the Server.
func (lp *loop) finish(ss *session) {
	s, l := lp.s, &ss.l
	lp.disarm(ss)
	ss.up.t.Release()
	ss.down.t.Release()
	ss.up.flush()
	ss.down.flush()
	if ss.pool != nil {
		ss.pool.Release(ss.memberIdx)
		ss.pool = nil // once, should logEnd panic and discard finish again
	}
	s.logEnd(ss)
	lp.closeFDs2(ss)
	lp.slots[l.slot] = nil
	lp.free = append(lp.free, l.slot)
	lp.sessions--
	s.forget(ss)
	ss.reset()
	s.sessions.Put(ss)
}

// closeFDs2 closes ss's sockets (which leaves the epoll set).
func (lp *loop) closeFDs2(ss *session) {
	l := &ss.l
	for _, fd := range [2]int32{l.cfd, l.bfd} {
		if fd >= 0 {
			_ = unix.Close(int(fd))
		}
	}
	l.cfd, l.bfd = -1, -1
	l.state = stNone
}

// discard closes ss after a panic: with the usual bookkeeping when that
// works, else just its sockets and its slot.
func (lp *loop) discard(ss *session) {
	defer func() {
		if recover() != nil {
			lp.closeFDs2(ss)
			if int(ss.l.slot) < len(lp.slots) && lp.slots[ss.l.slot] == ss {
				lp.slots[ss.l.slot] = nil
				lp.free = append(lp.free, ss.l.slot)
				lp.sessions--
				lp.s.forget(ss)
			}
		}
	}()
	if ss.l.state == stNone {
		return // finished already
	}
	ss.rec.End = "error"
	lp.finish(ss)
}

// sockaddrAddrPort converts an accept4 or getsockname result.
func sockaddrAddrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), sa.Port>>8|sa.Port<<8)
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), sa.Port>>8|sa.Port<<8)
	}
	return netip.AddrPort{}
}

// localAddrPort is the address the client connected to (getsockname).
func localAddrPort(fd int) netip.AddrPort {
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	_, _, e := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&n)))
	if e != 0 {
		return netip.AddrPort{}
	}
	return sockaddrAddrPort(&rsa)
}
