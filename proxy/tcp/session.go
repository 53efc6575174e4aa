package tcp

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"

	"frontdoor/balancer"
)

// SourceKey is the consistent_hash key of a client address: xxhash64 of its
// 16-byte form (IPv4 as ::ffff:a.b.c.d), so a client keeps its backend
// whether it arrives over IPv4 or a dual-stack socket.
func SourceKey(a netip.Addr) uint64 {
	b := a.As16()
	return xxhash.Sum64(b[:])
}

// session is one client connection and its backend connection. Sessions are
// pooled per Server and reused; the method values they hand to RawConn are
// bound once, when the struct is created.
type session struct {
	srv *Server
	// client is set by admit and read by closeSessions under srv.mu.
	client net.Conn
	// backend is set once connected; closeSessions reads it concurrently.
	backend atomic.Pointer[net.TCPConn]
	// prev and next link the Server's live sessions; guarded by srv.mu.
	prev, next *session

	start        time.Time
	idle         int64 // Options.IdleTimeout in nanoseconds, 0: none
	refreshEvery int64
	up, down     half // client to backend, backend to client
	member       *boundMember
	pool         *balancer.Pool // the pool member was acquired from
	memberIdx    int
	wg           sync.WaitGroup
	runDownFn    func()
	handleFn     func()

	// rec is the session's access record (sessionlog.go); firstEnd how
	// its first direction ended (noteEnd).
	rec      SessionRecord
	firstEnd atomic.Int32

	// PROXY protocol header in and out. buf is the goroutine path's own
	// (bindGoroutine); an event loop lends its own while it needs one.
	buf    *[proxyBufLen]byte
	hdr    proxyHeader
	hdrErr error
	peekFn func(uintptr) bool

	// The ClientHello with SNI routes (sni.go); hello is allocated by the
	// first session that routes one and kept across reuses.
	hello    []byte
	helloMsg ClientHello
	helloErr error
	helloFn  func(uintptr) bool

	// l is the state of a session an event loop serves (loop_session.go).
	l loopState
}

func newSession(s *Server) *session {
	ss := &session{srv: s}
	ss.up.bind(ss, &ss.down)
	ss.down.bind(ss, &ss.up)
	ss.up.counter, ss.down.counter = s.bytesUp, s.bytesDown
	return ss
}

// bindGoroutine gives a session the goroutine path serves what only that
// path uses: its method values, bound once so that passing them to RawConn
// does not allocate, and its PROXY header buffer. Sessions of an event
// loop go without, which keeps an idle one small.
func (ss *session) bindGoroutine() {
	ss.buf = new([proxyBufLen]byte)
	ss.peekFn = ss.peek
	ss.helloFn = ss.peekHello
	ss.runDownFn = ss.runDown
	ss.handleFn = ss.handle
	ss.up.fillFn, ss.up.drainFn = ss.up.fill, ss.up.drain
	ss.down.fillFn, ss.down.drainFn = ss.down.fill, ss.down.drain
}

func (ss *session) reset() {
	ss.client = nil
	ss.backend.Store(nil)
	ss.member = nil
	ss.pool = nil
	ss.up.reset()
	ss.down.reset()
	ss.hdr, ss.hdrErr = proxyHeader{}, nil
	ss.rec = SessionRecord{}
	ss.firstEnd.Store(0)
	ss.helloMsg, ss.helloErr = ClientHello{}, nil
	ss.l = loopState{}
}

// handle runs a session from accept to close, then returns it to the pool.
func (ss *session) handle() {
	s := ss.srv
	defer s.recoverSession()
	defer s.finish(ss)
	ss.serve()
}

func (s *Server) finish(ss *session) {
	s.logEnd(ss)
	_ = ss.client.Close()
	if b := ss.backend.Load(); b != nil {
		_ = b.Close()
	}
	s.forget(ss)
	ss.reset()
	s.sessions.Put(ss)
}

func (ss *session) serve() {
	s := ss.srv
	ss.start = time.Now()
	ss.idle, ss.refreshEvery = s.idle, s.refresh
	client, isTCP := ss.client.(*net.TCPConn)
	src, dst := addrPort(ss.client.RemoteAddr()), addrPort(ss.client.LocalAddr())
	ss.rec.Client = src
	if s.opts.AcceptProxy {
		if !isTCP || !ss.readProxyHeader(client) {
			s.rejectedProxy.Inc()
			ss.rec.End = "proxy_protocol"
			return
		}
		if !ss.hdr.local {
			ss.rec.Peer = src
			src, dst = ss.hdr.src, ss.hdr.dst
			ss.rec.Client = src
		}
	}
	up := s.upstream
	var replay []byte // a ClientHello read (not peeked) from a non-TCP client
	if s.sni != nil {
		if isTCP {
			up = ss.routeHello(client) // sni.go: the hello stays in the socket
		} else {
			up, replay = ss.readHello(ss.client)
		}
		if up == nil {
			return
		}
	}
	ss.l.up = up // the pool of the session's log line (logEnd)
	backend := ss.connect(up, SourceKey(src.Addr()))
	if backend == nil {
		return
	}
	defer ss.pool.Release(ss.memberIdx)
	if up.sendProxy != 0 {
		hdr := appendProxyHeader(ss.buf[:0], up.sendProxy, src, dst)
		if _, err := backend.Write(hdr); err != nil {
			ss.member.errs[reasonReset].Inc()
			ss.rec.End = "backend_reset"
			return
		}
	}
	if len(replay) > 0 {
		if _, err := backend.Write(replay); err != nil {
			ss.member.errs[reasonReset].Inc()
			return
		}
	}
	if !isTCP {
		ss.copyGeneric(backend)
		return
	}
	ss.splice(client, backend)
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	return netip.AddrPort{}
}

// connect dials the pool's pick for key, retrying connect failures on
// members not tried yet. It returns nil when every attempt failed or no
// member is up.
func (ss *session) connect(up *boundUpstream, key uint64) *net.TCPConn {
	s := ss.srv
	var tried uint64
	for attempt := range up.attempts {
		// PickAcquire counts the session in the pool at once, so bounded
		// loads see it (the pool total and the member's count move together).
		i := up.up.Pool.PickAcquire(key, tried)
		if i < 0 {
			up.noBackend.Inc()
			ss.rec.End = "no_backend"
			return nil
		}
		if attempt > 0 {
			up.retries.Inc()
		}
		tried |= 1 << (uint(i) % 64)
		m := &up.members[i]
		c, err := up.dial(s.ctx, i)
		ss.noteAttempt(m.address, err)
		if err == nil {
			ss.rec.End = ""
			ss.member = m
			ss.pool, ss.memberIdx = up.up.Pool, i
			ss.backend.Store(c)
			if s.forced.Load() {
				_ = c.Close() // closeSessions may have missed it
			}
			if up.up.Passive != nil {
				up.up.Passive.Success(i)
			}
			return c
		}
		if s.ctx.Err() != nil {
			up.up.Pool.Release(i)
			ss.rec.End = "closed"
			return nil // Close, not the backend's fault
		}
		ss.connectFailed(up, i, err)
	}
	return nil
}

// connectFailed accounts a failed connect to member i of up (both paths):
// the member's slot, the session's end, the error metric, passive
// ejection and a debug line.
func (ss *session) connectFailed(up *boundUpstream, i int, err error) {
	s, m := ss.srv, &up.members[i]
	up.up.Pool.Release(i)
	ss.rec.End = "connect"
	m.errs[reasonConnect].Inc()
	if up.up.Passive != nil {
		up.up.Passive.Failure(i)
	}
	if s.log.Enabled(s.ctx, slog.LevelDebug) {
		s.log.LogAttrs(s.ctx, slog.LevelDebug, "tcp connect",
			slog.String("listener", s.opts.Name), slog.String("pool", up.up.PoolName),
			slog.String("backend", m.address), slog.Any("err", err))
	}
}

// splice runs both directions, this one in the calling goroutine.
func (ss *session) splice(client, backend *net.TCPConn) {
	crc, err1 := client.SyscallConn()
	brc, err2 := backend.SyscallConn()
	if err1 != nil || err2 != nil {
		return
	}
	ss.up.src, ss.up.dst, ss.up.srcRC, ss.up.dstRC = client, backend, crc, brc
	ss.down.src, ss.down.dst, ss.down.srcRC, ss.down.dstRC = backend, client, brc, crc
	ss.down.fromBackend = true
	if ss.idle > 0 {
		dl := ss.start.Add(time.Duration(ss.idle))
		_ = client.SetDeadline(dl)
		_ = backend.SetDeadline(dl)
	}
	ss.wg.Add(1)
	go ss.runDownFn()
	ss.up.finish(ss.up.run())
	ss.wg.Wait()
}

func (ss *session) runDown() {
	defer ss.wg.Done()
	defer ss.srv.recoverSession()
	ss.down.finish(ss.down.run())
}

// finish acts on how a direction ended: a FIN becomes a shutdown(SHUT_WR)
// towards the destination, a reset becomes a reset of the other socket, and
// anything else closes both.
func (h *half) finish(end int) {
	h.s.noteEnd(end, h.fromBackend)
	h.t.Release()
	h.flush()
	switch end {
	case endEOF:
		_ = h.dst.CloseWrite()
		return
	case endReadReset:
		_ = h.dst.SetLinger(0)
		if h.fromBackend {
			h.s.member.errs[reasonReset].Inc()
		}
	case endWriteReset:
		_ = h.src.SetLinger(0)
		if !h.fromBackend {
			h.s.member.errs[reasonReset].Inc()
		}
	}
	_ = h.src.Close()
	_ = h.dst.Close()
}

// flush adds the bytes moved since the last flush to the metrics.
func (h *half) flush() {
	d := h.moved - h.flushed
	if d == 0 {
		return
	}
	h.flushed = h.moved
	h.counter.Add(float64(d))
	h.s.srv.spliced.Add(d)
}

// copyGeneric serves a client connection that is not a *net.TCPConn with
// io.Copy (no splice, no idle timeout).
func (ss *session) copyGeneric(backend *net.TCPConn) {
	client := ss.client
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		n, _ := io.Copy(client, backend)
		ss.down.moved = n
		ss.srv.bytesDown.Add(float64(n))
		ss.srv.copied.Add(n)
		if cw, ok := client.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = client.Close()
		}
	}()
	n, _ := io.Copy(backend, client)
	ss.up.moved = n
	ss.srv.bytesUp.Add(float64(n))
	ss.srv.copied.Add(n)
	_ = backend.CloseWrite()
	ss.wg.Wait()
}

// readProxyHeader reads the client's PROXY protocol header into ss.hdr. It
// peeks until the header is complete and then consumes exactly its bytes,
// so nothing after it is buffered in user space and splice starts at the
// first payload byte.
func (ss *session) readProxyHeader(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	_ = c.SetReadDeadline(ss.start.Add(ss.srv.opts.ProxyHeaderTimeout))
	if err := rc.Read(ss.peekFn); err != nil || ss.hdrErr != nil {
		return false
	}
	for left := ss.hdr.length; left > 0; {
		n, err := c.Read(ss.buf[:min(left, len(ss.buf))])
		left -= n
		if err != nil {
			return false
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	return true
}

func (ss *session) peek(fd uintptr) bool {
	for {
		n, err := recvPeek(int(fd), ss.buf[:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			ss.hdrErr = err
			return true
		case n == 0:
			ss.hdrErr = io.ErrUnexpectedEOF
			return true
		}
		ss.hdr, ss.hdrErr = parseProxyHeader(ss.buf[:n])
		// A valid prefix: wait for more bytes (parse rejects a prefix that
		// has outgrown the longest header, so the buffer cannot fill up).
		return ss.hdrErr != errProxyShort
	}
}

// recvPeek is recv(fd, b, MSG_PEEK|MSG_DONTWAIT) without the allocations
// of unix.Recvfrom.
func recvPeek(fd int, b []byte) (int, error) {
	n, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
