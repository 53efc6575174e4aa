package proxy

import (
	"io"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"

	"frontdoor/internal/rawio"
)

// The event loop (loop.go): the backend side: connections, sending, reading answers, failures.

// start runs a parsed request through the phases of core_exchange.go.
func (lp *evLoop) start(x *lexch) {
	if !lp.l.begin(&x.ctx, &x.x, &x.idBuf) {
		lp.respond(x)
		return
	}
	lp.attempt(x)
}

// attempt sends x to the next member, or answers it when none is left.
func (lp *evLoop) attempt(x *lexch) {
	for {
		i := lp.l.pick(&x.ctx, &x.x)
		if i == pickQueue {
			if i = lp.park(x); i == pickQueue {
				return // resumeGranted or queueTimedOut goes on
			}
		}
		if !lp.sendTo(x, i) {
			return
		}
	}
}

// sendTo sends x to member i, or answers it when i < 0. It reports
// whether x is to be tried again (attempt picks the next member).
func (lp *evLoop) sendTo(x *lexch, i int) bool {
	l := lp.l
	ctx := &x.ctx
	if i < 0 {
		l.end(ctx, &x.x)
		lp.respond(x)
		return false
	}
	err := lp.send(x, i)
	if err == nil {
		return false // the answer comes to backendRead
	}
	x.x.fw.end = lp.at()
	if !l.attempted(ctx, &x.x, i, err) {
		l.end(ctx, &x.x)
		lp.respond(x)
		return false
	}
	return true
}

// send writes x's request to a connection to member i.
func (lp *evLoop) send(x *lexch, i int) error {
	if len(x.req) == 0 {
		req := &x.ctx.Request
		req.URI().DisablePathNormalizing = true
		lp.bw.Reset(appendWriter{&x.req})
		err := req.Write(lp.bw)
		if err == nil {
			err = lp.bw.Flush()
		}
		if err != nil {
			return err
		}
	}
	lu := lp.backendOf(x.x.p.ups[i])
	slot := x.x.slot
	x.x.slot = false
	b, err := lp.backendConn(lu, slot)
	if err != nil {
		return err
	}
	c := x.client
	b.peer, c.peer = c, b
	if !b.reused && !b.connecting {
		x.x.fw.connected = lp.at()
	}
	if b.connecting {
		lp.arm(b, tBackendConnect, lu.connect)
		return nil
	}
	lp.arm(b, tBackendResponse, x.x.fw.timeout)
	lp.flushBackend(b)
	return nil
}

// backendOf returns the loop's view of u.
func (lp *evLoop) backendOf(u *poolBackend) *loopBackend {
	if u.id < len(lp.ups) && lp.ups[u.id] != nil {
		return lp.ups[u.id]
	}
	lp.dropRetired()
	lu := &loopBackend{u: u, idleFor: u.hc.MaxIdleConnDuration, connect: u.connectTimeout}
	if lu.idleFor <= 0 {
		lu.idleFor = backendIdleDefault
	}
	ap := u.addrPort
	if ap.Addr().Is4() || ap.Addr().Is4In6() {
		lu.family = unix.AF_INET
		lu.sa4.Addr = ap.Addr().Unmap().As4()
		lu.sa4.Port = int(ap.Port())
	} else {
		lu.family = unix.AF_INET6
		lu.sa6.Addr = ap.Addr().As16()
		lu.sa6.Port = int(ap.Port())
	}
	if u.id >= len(lp.ups) {
		lp.ups = append(lp.ups, make([]*loopBackend, u.id+1-len(lp.ups))...)
	}
	lp.ups[u.id] = lu
	return lu
}

// dropRetired closes the idle connections to pool backends a reload retired and
// forgets those once no connection is left (busy ones close when
// their answer ends). It runs when a new pool backend is first used, which is
// after a reload.
func (lp *evLoop) dropRetired() {
	for i, lu := range lp.ups {
		if lu == nil || !lu.u.retired.Load() {
			continue
		}
		for len(lu.idle) > 0 {
			lp.closeBackend(lu.idle[len(lu.idle)-1])
		}
		if lu.conns == 0 {
			lp.ups[i] = nil
		}
	}
}

// backendConn returns an idle keep-alive connection to lu or starts a new
// one. slot: the caller holds a connection slot of lu's backend (from the
// pool queue), which a new connection uses and an idle one gives back.
func (lp *evLoop) backendConn(lu *loopBackend, slot bool) (*lconn, error) {
	if n := len(lu.idle); n > 0 {
		if slot {
			lu.u.giveConn()
		}
		b := lu.idle[n-1]
		lu.idle = lu.idle[:n-1]
		b.idx = -1
		lp.disarm(b)
		lp.resetBackend(b)
		b.reused = true
		return b, nil
	}
	// max_connections_per_backend counts the connections of every loop.
	if !slot && !lu.u.takeConn() {
		return nil, fasthttp.ErrNoFreeConns
	}
	fd, err := unix.Socket(lu.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		lu.u.giveConn()
		return nil, errLoopDial
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if lu.family == unix.AF_INET {
		err = unix.Connect(fd, &lu.sa4)
	} else {
		err = unix.Connect(fd, &lu.sa6)
	}
	if err != nil && err != unix.EINPROGRESS {
		_ = unix.Close(fd)
		lu.u.giveConn()
		return nil, errLoopDial
	}
	b := lp.newConn(fd, true)
	b.up = lu
	lu.conns++
	b.connecting = err != nil
	if !lp.register(b) {
		lp.closeBackend(b)
		return nil, errLoopDial
	}
	return b, nil
}

func (lp *evLoop) resetBackend(b *lconn) {
	b.sent, b.gotBytes, b.headDone, b.paused, b.keep, b.reused = 0, false, false, false, false, false
	b.framing, b.interim, b.bodyLeft, b.chunks = bodyNone, 0, 0, chunkScanner{}
	b.in = b.in[:0]
}

// idleBackend keeps b for the next request to its pool backend.
func (lp *evLoop) idleBackend(b *lconn) {
	lu := b.up
	b.peer = nil
	lp.resetBackend(b)
	b.idx = len(lu.idle)
	lu.idle = append(lu.idle, b)
	lp.arm(b, tBackendIdle, lu.idleFor)
}

func (lp *evLoop) closeBackend(b *lconn) {
	if b.fd < 0 {
		return
	}
	if lu := b.up; lu != nil {
		if b.idx >= 0 {
			last := len(lu.idle) - 1
			lu.idle[b.idx] = lu.idle[last]
			lu.idle[b.idx].idx = b.idx
			lu.idle = lu.idle[:last]
		}
		lu.u.giveConn()
		if lu.conns--; lu.conns == 0 && lu.u.retired.Load() {
			lp.ups[lu.u.id] = nil // a reload dropped it: nothing will use it again
		}
	}
	_ = unix.Close(b.fd)
	lp.forget(b)
}

// flushBackend writes what is left of the request. It reports whether b is
// still usable.
func (lp *evLoop) flushBackend(b *lconn) bool {
	x := b.peer.x
	for b.sent < len(x.req) {
		n, err := rawio.Write(b.fd, x.req[b.sent:])
		if err == unix.EAGAIN {
			return true
		}
		if err != nil {
			lp.backendFailed(b, errConnReset)
			return false
		}
		b.sent += n
	}
	return true
}

func (lp *evLoop) backendEvent(b *lconn, ev uint32) {
	if b.connecting {
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		if soerr, err := unix.GetsockoptInt(b.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soerr != 0 {
			lp.backendFailed(b, errLoopDial)
			return
		}
		b.connecting = false
		if b.peer != nil {
			b.peer.x.x.fw.connected = lp.at()
			lp.arm(b, tBackendResponse, b.peer.x.x.fw.timeout)
			if !lp.flushBackend(b) {
				return
			}
		}
	} else if ev&unix.EPOLLOUT != 0 && b.peer != nil && b.sent < len(b.peer.x.req) {
		if !lp.flushBackend(b) {
			return
		}
	}
	if ev&(unix.EPOLLIN|hupEvents) != 0 {
		lp.backendRead(b, ev&hupEvents != 0)
	}
}

// backendRead reads b's answer and relays it.
// hup: the event reported a hang-up (or the caller does not know): read on
// to EAGAIN, since no new edge will come for the end of the stream.
func (lp *evLoop) backendRead(b *lconn, hup bool) {
	for {
		c := b.peer
		if c == nil {
			// Idle: a late edge finds EAGAIN; a close or stray bytes end
			// the connection.
			if _, err := rawio.Read(b.fd, lp.rbuf); err != unix.EAGAIN {
				lp.closeBackend(b)
			}
			return
		}
		if c.outOff < len(c.out) {
			b.paused = true // flushClient reads on once the client took it
			if b.dl.Kind == tBackendBody {
				lp.disarm(b) // the client is waited for, not the backend
			}
			return
		}
		if b.splicing {
			lp.pump(b, c)
			return
		}
		n := copy(lp.rbuf, b.in)
		b.in = b.in[:0]
		end := len(lp.rbuf)
		if !b.headDone && n == 0 {
			end = loopHeadRead
		}
		m, err := rawio.Read(b.fd, lp.rbuf[n:end])
		if err == unix.EAGAIN {
			b.in = append(b.in, lp.rbuf[:n]...)
			return
		}
		if err != nil {
			lp.backendFailed(b, errConnReset)
			return
		}
		if m == 0 {
			if b.headDone && b.framing == bodyClose {
				lp.finishExchange(b, c)
				if lp.writeClient(c, lastChunk, nil, nil) {
					lp.next(c)
				}
				return
			}
			lp.backendFailed(b, io.EOF)
			return
		}
		b.gotBytes = true
		short := n+m < end
		if !lp.backendData(b, c, lp.rbuf[:n+m]) || (short && !hup) {
			return
		}
	}
}

// finishExchange ends c's exchange with b once the whole answer is read.
func (lp *evLoop) finishExchange(b, c *lconn) {
	x := c.x
	x.x.p.pool.Release(x.x.member)
	b.peer, c.peer, c.x = nil, nil, nil
	// At max_connections_per_backend an idle connection would be one no
	// other loop can use while it refuses requests for the limit: close
	// it, so the next request connects from whichever loop serves it.
	lu := b.up
	// While requests wait in the pool's queue, the slot goes to the first
	// of them, whichever engine or loop holds it (core_queue.go).
	full := len(lp.l.ln.loops) > 1 && lu.u.connsFull() || lu.u.queued()
	if b.keep && !lp.draining && !full && !lu.u.retired.Load() {
		lp.idleBackend(b)
	} else {
		lp.closeBackend(b)
	}
	lp.l.end(&x.ctx, &x.x)
	lp.releaseX(x)
}

// backendFailed handles a backend connection that failed or closed.
func (lp *evLoop) backendFailed(b *lconn, err error) {
	c := b.peer
	if c == nil {
		lp.closeBackend(b)
		return
	}
	x := c.x
	if b.headDone {
		// The answer was under way: the client must see it cut short.
		// abandon closes b and frees the member.
		x.x.rec.reason = "upstream_stream_error"
		lp.closeClient(c)
		return
	}
	reused, gotBytes := b.reused, b.gotBytes
	b.peer, c.peer = nil, nil
	lp.closeBackend(b)
	if reused && !gotBytes && !x.freshRetry && (err == errConnReset || err == io.EOF) && isIdempotent(x.ctx.Request.Header.Method()) {
		// A pooled connection the backend had closed: once more on a
		// fresh one to the same member, as the request may never have
		// arrived. Not a POST, which it may have (RFC 9110 9.2.2: a
		// proxy does not retry a non-idempotent request; nor does the
		// goroutine engine). Not after response_timeout: the backend
		// was silent, not gone, and the client has waited its time.
		x.freshRetry = true
		x.ctx.Response.Reset()
		if lp.send(x, x.x.member) == nil {
			return
		}
	}
	l := lp.l
	ctx := &x.ctx
	x.x.fw.end = lp.at()
	if l.attempted(ctx, &x.x, x.x.member, err) {
		x.freshRetry = false
		lp.attempt(x)
		return
	}
	l.end(ctx, &x.x)
	lp.respond(x)
}
