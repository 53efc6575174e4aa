package proxy

import (
	"bytes"
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"frontdoor/internal/rawio"
	"frontdoor/proxy/tcp"
)

// The event loop (loop.go): the client side: reading requests, writing answers, keep-alive.

// closeClient closes a client connection, ending its request in flight.
func (lp *evLoop) closeClient(c *lconn) {
	if c.fd < 0 {
		return
	}
	if c.x != nil {
		lp.abandon(c)
	}
	_ = unix.Close(c.fd)
	lp.clientClosed()
	lp.forget(c)
}

// clientClosed updates the counts for a client connection that is gone.
func (lp *evLoop) clientClosed() {
	lp.clients--
	lp.l.ln.open.Add(-1)
	lp.l.ln.active.Dec()
}

// abandon ends c's request in flight because the client is gone or its
// connection must close: the backend connection closes too.
func (lp *evLoop) abandon(c *lconn) {
	x := c.x
	b := c.peer
	c.x, c.peer = nil, nil
	ctx := &x.ctx
	if x.parkIdx >= 0 {
		lp.unparkX(x)
		lp.l.parkAbandoned(ctx, &x.x, &x.qw)
	}
	if b != nil {
		b.peer = nil
		headDone := b.headDone
		lp.closeBackend(b)
		if headDone {
			x.x.p.pool.Release(x.x.member)
			if x.x.rec.reason == "" {
				x.x.rec.reason = "client_gone"
			}
		} else {
			x.x.fw.end = lp.at()
			lp.l.attemptAbandoned(ctx, &x.x)
		}
	}
	lp.l.end(ctx, &x.x)
	lp.releaseX(x)
}

// clientEvent handles readiness of a client connection.
func (lp *evLoop) clientEvent(c *lconn, ev uint32) {
	if ev&unix.EPOLLOUT != 0 {
		if c.outOff < len(c.out) {
			if !lp.flushClient(c) {
				return
			}
		} else if b := c.peer; b != nil && b.paused && b.splicing {
			b.paused = false
			lp.pump(b, c)
			if c.fd < 0 {
				return
			}
		}
	}
	if ev&(unix.EPOLLIN|hupEvents) != 0 {
		if c.x != nil && c.x.parkIdx >= 0 && ev&hupEvents != 0 {
			// Gone while its request waits in a pool queue: its place
			// goes to the next (loop_queue.go).
			lp.closeClient(c)
			return
		}
		if c.x != nil || c.closing {
			c.unread = true
			return
		}
		lp.clientRead(c, ev&hupEvents != 0)
	}
}

// flushClient writes what is queued for c. It reports whether c is still
// open.
func (lp *evLoop) flushClient(c *lconn) bool {
	for c.outOff < len(c.out) {
		n, err := rawio.Write(c.fd, c.out[c.outOff:])
		if err == unix.EAGAIN {
			return true // the next EPOLLOUT edge resumes
		}
		if err != nil {
			lp.closeClient(c)
			return false
		}
		c.outOff += n
		lp.arm(c, tClientWrite, lp.l.settings.write)
	}
	c.out, c.outOff = c.out[:0], 0
	if c.dl.Kind == tClientWrite {
		lp.disarm(c)
	}
	if c.closing {
		lp.closeClient(c)
		return false
	}
	if b := c.peer; b != nil && b.paused {
		b.paused = false
		lp.arm(b, tBackendBody, lp.l.settings.idle) // the backend is waited for again
		lp.backendRead(b, true)
		return c.fd >= 0
	}
	if c.x == nil && !c.serving {
		lp.next(c)
		return c.fd >= 0
	}
	return true
}

// writeClient sends head, body and tail, in that order, to c (one writev)
// and queues what the socket does not take. It reports whether c is still
// open.
func (lp *evLoop) writeClient(c *lconn, head, body, tail []byte) bool {
	if c.outOff < len(c.out) {
		c.out = append(append(append(c.out, head...), body...), tail...)
		return true
	}
	parts := [3][]byte{head, body, tail}
	niov, total := 0, 0
	for _, p := range parts {
		if len(p) > 0 {
			lp.iov[niov].Base, lp.iov[niov].Len = &p[0], uint64(len(p))
			niov++
			total += len(p)
		}
	}
	if total == 0 {
		return true
	}
	var n int
	var e unix.Errno
	for {
		r, _, errno := unix.RawSyscall(unix.SYS_WRITEV, uintptr(c.fd), uintptr(unsafe.Pointer(&lp.iov[0])), uintptr(niov))
		n, e = int(r), errno
		if e != unix.EINTR {
			break
		}
	}
	if e == unix.EAGAIN {
		n = 0
	} else if e != 0 {
		lp.closeClient(c)
		return false
	}
	if n == total {
		return true
	}
	c.out, c.outOff = c.out[:0], 0
	for _, p := range parts {
		if n >= len(p) {
			n -= len(p)
			continue
		}
		c.out = append(c.out, p[n:]...)
		n = 0
	}
	if !lp.watch(c) {
		return false
	}
	lp.arm(c, tClientWrite, lp.l.settings.write)
	return true
}

// clientRead reads what c sent and serves the requests in it.
// hup as for backendRead.
func (lp *evLoop) clientRead(c *lconn, hup bool) {
	buf := lp.rbuf
	n := copy(buf, c.in)
	c.in = c.in[:0]
	for n < len(buf) {
		m, err := rawio.Read(c.fd, buf[n:])
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			lp.closeClient(c)
			return
		}
		if m == 0 {
			c.eof = true
			break
		}
		n += m
		if n < len(buf) && !hup {
			break // a short read emptied the socket; the next arrival is a new edge
		}
	}
	lp.serveBuffered(c, buf[:n], n == len(buf))
}

// serveBuffered serves the complete requests at the start of data, one at a
// time, and keeps the rest for later. The next request waits while an
// answer is in flight or not yet taken by the client: answers stay in order,
// a hand-off never overtakes bytes still queued, and a client that does not
// read cannot make the loop queue more for it. full: data filled the read
// buffer, so the socket may hold more.
func (lp *evLoop) serveBuffered(c *lconn, data []byte, full bool) {
	c.serving = true
	for len(data) > 0 && c.x == nil && !c.closing && c.outOff == len(c.out) {
		used := lp.request(c, data)
		if c.fd < 0 {
			return // closed or handed off
		}
		if used == 0 {
			break
		}
		data = data[used:]
	}
	c.serving = false
	if len(data) > 0 {
		c.in = append(c.in[:0], data...)
	}
	// full: the read stopped at the end of the buffer, not of the bytes
	// waiting, and no new edge will tell of them. eof: no edge will tell
	// of the end again.
	if c.x != nil || c.closing || c.outOff < len(c.out) {
		if full || c.eof {
			c.unread = true // next or flushClient reads on
		}
		return
	}
	if full && len(c.in) < len(lp.rbuf) {
		lp.rearm(c)
	}
	if c.eof {
		lp.closeClient(c) // what is left is not a whole request
		return
	}
	if len(c.in) > 0 {
		if lp.watch(c) && c.dl.Kind != tClientRead {
			lp.arm(c, tClientRead, lp.l.settings.read)
		}
		return
	}
	lp.idleClient(c)
}

// idleClient arms the wait for c's next request: idle_timeout, or
// read_timeout when it is not set (as fasthttp).
func (lp *evLoop) idleClient(c *lconn) {
	if !lp.watch(c) {
		return
	}
	d := lp.l.settings.idle
	if d <= 0 || c.requests == 0 {
		// The first request must come within read_timeout (fasthttp).
		lp.arm(c, tClientRead, lp.l.settings.read)
		return
	}
	lp.arm(c, tClientIdle, d)
}

// request serves the request at the start of data, or hands the connection
// to the goroutine engine. It returns the bytes the request took, or 0 when
// it is not complete yet.
func (lp *evLoop) request(c *lconn, data []byte) int {
	l := lp.l
	if l.settings.acceptProxy && !c.proxied {
		return lp.proxyHeader(c, data)
	}
	if c.requests == 0 && data[0] == 'P' && (bytes.HasPrefix(data, h2Preface[:min(len(data), len(h2Preface))])) {
		lp.handoff(c, data)
		return 0
	}
	end := bytes.Index(data, crlfCRLF)
	if end < 0 {
		// A head that fills the read buffer may still be within
		// max_header_bytes: fasthttp's buffer is that large.
		if len(data) >= l.settings.maxHeader || len(data) == len(lp.rbuf) || bytes.Contains(data, lfLF) {
			lp.handoff(c, data)
		}
		return 0
	}
	headLen := end + 4
	if headLen > l.settings.maxHeader {
		lp.handoff(c, data)
		return 0
	}
	x := lp.acquireX()
	req := &x.ctx.Request
	lp.rd.Reset(data[:headLen])
	lp.br.Reset(&lp.rd)
	// A head that fasthttp finds ending before the CRLFCRLF (a bare LF
	// line end) is handed off with the requests behind it, not served
	// with them taken for part of its head.
	if err := req.Header.Read(lp.br); err != nil || lp.rd.Len()+lp.br.Buffered() > 0 {
		lp.releaseX(x)
		lp.handoff(c, data)
		return 0
	}
	// The core's verdict on the head comes before anything else, the
	// body included: a declared Content-Length above max_body_bytes gets
	// its 413 at once.
	if v := checkHead(&req.Header, int(l.settings.maxBody)); v.status != 0 {
		lp.refuseHead(c, x, v)
		return headLen
	}
	if !lp.canServe(x, headLen) {
		lp.releaseX(x)
		lp.handoff(c, data)
		return 0
	}
	total := headLen + max(req.Header.ContentLength(), 0)
	if total > len(data) {
		lp.releaseX(x)
		if c.eof {
			lp.closeClient(c)
		}
		return 0 // the rest of the body is on its way
	}
	x.ctx.Init2(nil, l.server.Logger, false)
	x.ctx.SetRemoteAddr(&c.addr)
	x.x.via = c.via
	if total > headLen {
		req.SetBody(data[headLen:total])
	}
	x.head = req.Header.IsHead()
	x.client = c
	c.x = x
	c.requests++
	lp.disarm(c)
	lp.start(x)
	return total
}

// next goes on with c after an answer: close it, or serve what it sent
// meanwhile. Inside serveBuffered, which goes on by itself, it only closes.
func (lp *evLoop) next(c *lconn) {
	if c.closeAfter {
		if c.outOff < len(c.out) {
			c.closing = true
			return
		}
		lp.closeClient(c)
		return
	}
	if c.serving || c.outOff < len(c.out) {
		// The next request waits until the client took this answer
		// (flushClient goes on): answers are not fetched and queued for a
		// client that does not read them, write_timeout stays armed, and
		// a hand-off finds nothing queued. Inside serveBuffered, its own
		// loop goes on.
		return
	}
	if c.unread || len(c.in) > 0 || c.eof {
		// Pipelined or sent meanwhile, or the client's end to read.
		c.unread = false
		lp.clientRead(c, true)
		return
	}
	lp.idleClient(c)
}

// respond sends the answer the phases left in x.ctx.Response (an error, a
// 404, a 401) and ends the exchange in the loop.
func (lp *evLoop) respond(x *lexch) {
	c := x.client
	ctx := &x.ctx
	if ctx.Request.Header.ConnectionClose() || ctx.Response.ConnectionClose() || lp.draining {
		c.closeAfter = true
		ctx.Response.SetConnectionClose()
	}
	if x.head {
		ctx.Response.SkipBody = true
	}
	lp.out = lp.out[:0]
	lp.bw.Reset(appendWriter{&lp.out})
	_ = ctx.Response.Write(lp.bw)
	_ = lp.bw.Flush()
	c.x, c.peer = nil, nil
	lp.releaseX(x)
	if lp.writeClient(c, lp.out, nil, nil) {
		lp.next(c)
	}
}

// proxyHeader reads the PROXY protocol header that opens c on a listener
// with accept_proxy and returns its length, after which requests follow;
// its source address is the client's from then on (c.addr), and the peer
// it came through is kept as c.via. It returns 0 while the header is
// incomplete, and closes c (counted in connections_rejected_total) when
// the bytes are not a header or the client stopped short of one.
func (lp *evLoop) proxyHeader(c *lconn, data []byte) int {
	h, err := tcp.ParseProxyHeader(data)
	if err == nil && h.Length <= len(data) {
		c.proxied = true
		if !h.Local {
			c.via = c.addrPort()
			c.setAddrPort(h.Source)
		}
		return h.Length
	}
	if (err != nil && !errors.Is(err, tcp.ErrProxyShort)) || c.eof || len(data) >= len(lp.rbuf) {
		lp.l.ln.proxyRejected.Inc()
		lp.closeClient(c)
	}
	return 0
}

// refuseHead answers a head the core refused (checkHead) and closes the
// connection after the answer: what follows the head is not read.
func (lp *evLoop) refuseHead(c *lconn, x *lexch, v headVerdict) {
	x.ctx.Init2(nil, lp.l.server.Logger, false)
	x.ctx.SetRemoteAddr(&c.addr)
	x.client = c
	x.head = x.ctx.Request.Header.IsHead()
	lp.l.refuseHead(&x.ctx, true, v.status, v.msg, v.reason)
	c.closeAfter = true
	c.in = c.in[:0]
	lp.disarm(c)
	lp.respond(x)
}

// readTimedOut answers 408 to a client whose request did not arrive within
// read_timeout, as fasthttp's server does (handleError).
func (lp *evLoop) readTimedOut(c *lconn) {
	x := lp.acquireX()
	x.ctx.Init2(nil, lp.l.server.Logger, false)
	x.ctx.SetRemoteAddr(&c.addr)
	x.client = c
	lp.l.handleError(&x.ctx, os.ErrDeadlineExceeded)
	c.closeAfter = true
	c.in = c.in[:0]
	lp.respond(x)
}
