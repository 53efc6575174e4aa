package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"frontdoor/balancer"
)

// Streaming: how a request is carried to a backend and its answer back.
//
// Small bodies are buffered whole, which is the zero-allocation fast path. A
// response body of known length from spliceThreshold (64 KiB) up is spliced
// from socket to socket (goengine_splice.go); one longer than streamThreshold that
// cannot be spliced, a chunked one, or one delimited by the connection's
// close is relayed as it arrives through a buffer. Both are an upstreamBody
// on ctx.Response, so memory stays bounded and server-sent events reach the
// client one by one. A request body the client is still sending (longer than
// requestPrefetch, or chunked) is sent on to the backend as it arrives (a
// clientBody). Both refresh the connections' deadlines as bytes move, so
// read_timeout, write_timeout and idle_timeout bound a stall, not the length
// of a transfer.
//
// forward replaces HostClient.Do for the proxy: it borrows HostClient's
// connection pool (AcquireConn, ReleaseConn, CloseConn, pooled bufio) but
// reads the response head itself, to choose between buffering and streaming
// once the head says how long the body is; HostClient.StreamResponseBody
// would stream every response and allocate for each.

// streamThreshold is the largest response body, by Content-Length, that is
// read whole before the answer starts when it cannot be spliced (a client
// connection that is not a plain socket); longer bodies are streamed.
// 256 KiB: a body this small costs fewer syscalls read whole (one writev to
// the client) than relayed in chunks, and bounds memory per response all
// the same.
const streamThreshold = 256 << 10

// maxBufferedRequest is the largest max_body_bytes for which a listener
// buffers request bodies whole instead of streaming them. fasthttp's server
// allocates once per request with a streamed body (it drains the rest of it
// through io.CopyN), so a listener whose bodies are small keeps the
// zero-allocation path by buffering them.
const maxBufferedRequest = 1 << 20

// streamRequests reports whether a listener with max_body_bytes maxBody
// streams request bodies (Server.StreamRequestBody).
func streamRequests(maxBody int64) bool { return maxBody > maxBufferedRequest }

// expect answers "Expect: 100-continue": 413 at once for a declared body
// above max_body_bytes, so the client does not send it, else 100 Continue
// and the body is read (streamed) as usual. The 413 goes through the core
// like any answer of frontdoor's own (refuseHead): metrics, access record,
// the client's request ID.
//
// A head the core refused (checkHead) comes here too: headerReceived marks
// it so that fasthttp reads none of its body and asks expect, which
// answers the core's verdict at once.
func (l *httpListener) expect(ctx *fasthttp.RequestCtx) int {
	if vd, ok := refusedHead(&ctx.Request.Header); ok {
		l.refuseHead(ctx, true, vd.status, vd.msg, vd.reason)
		return vd.status
	}
	return fasthttp.StatusContinue
}

// refusedHead returns the verdict headerReceived marked h with, and
// removes the mark.
func refusedHead(h *fasthttp.RequestHeader) (headVerdict, bool) {
	v := h.PeekBytes(hdrRefused)
	if len(v) != 3 {
		return verdictOK, false
	}
	vd := verdictOf(int(v[0]-'0')*100 + int(v[1]-'0')*10 + int(v[2]-'0'))
	h.DelBytes(hdrRefused)
	return vd, true
}

// headerReceived is fasthttp's HeaderReceived: it runs once a head is
// parsed, before its body is read, and has no way to answer. A head the
// core refuses (checkHead) gets Expect: 100-continue, which makes fasthttp
// skip the body and call expect (the one hook between the head and the
// body that has the request's context), and the marker hdrRefused with the
// verdict's status. fasthttp asks expect only for HTTP/1.1, so the version
// becomes 1.1 (the verdict was made already). It changes no setting of the
// request.
func (l *httpListener) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if v := checkHead(h, l.server.MaxRequestBodySize); v.status != 0 {
		var st [3]byte
		st[0], st[1], st[2] = byte('0'+v.status/100), byte('0'+v.status/10%10), byte('0'+v.status%10)
		h.SetBytesKV(hdrRefused, st[:])
		h.SetProtocolBytes(strHTTP11)
		h.SetBytesKV(hdrExpect, val100Continue)
	}
	return fasthttp.RequestConfig{}
}

// hdrRefused marks a head the core refused. Its name has a space, so a
// client cannot send it on a head that checkHead lets through.
var hdrRefused = []byte("Frontdoor Refused")

var val100Continue = []byte("100-continue")

// forward sends ctx.Request to member of p through u's connection pool and
// reads the answer into ctx.Response: the body whole when it is short, else
// as a stream that fasthttp relays after the handler returns and that gives
// the connection back when it ends. A 101 answer to an upgrade request hands
// the connection to a tunnel (fw.tunnel). The error is as HostClient.Do
// would return it, or one of the err* values above.
func (l *httpListener) forward(ctx *fasthttp.RequestCtx, u *poolBackend, p *poolRuntime, member int, fw *forwarding) error {
	req, resp := &ctx.Request, &ctx.Response
	hc := u.hc
	req.URI().DisablePathNormalizing = true
	if fw.slot {
		u.reserve() // a Dial in AcquireConn uses the slot the queue gave
	}
	cc, err := hc.AcquireConn(fw.timeout, false)
	if fw.slot {
		// Given back at once when no Dial took it (an idle connection
		// was found, or the attempt failed first). Not later: once this
		// connection closes, its slot goes to the next waiter, whose own
		// reservation a late give-back would take.
		fw.slot = false
		u.unreserve()
	}
	if err != nil {
		return err
	}
	conn := cc.Conn()
	if dc, ok := conn.(*deferConn); ok {
		// The request goes out from the read of its response
		// (goengine_deferconn.go); set first, so the deadlines wait for it too.
		dc.deferNext = true
		if dc.fresh {
			// response_timeout runs from the connect, as in the event
			// loop: the dial had connect_timeout of its own.
			dc.fresh = false
			fw.connected = time.Now()
			fw.deadline = fw.connected.Add(fw.timeout)
		}
	}
	if err = conn.SetDeadline(fw.deadline); err != nil {
		hc.CloseConn(cc)
		return err
	}
	var body *clientBody
	if fw.streamed {
		body = acquireClientBody(req.BodyStream(), ctx.Conn(), conn, l.server.ReadTimeout, fw.timeout, fw.maxBody)
		n := req.Header.ContentLength()
		body.fixed = n >= 0
		req.SetBodyStream(body, n)
	}
	bw := hc.AcquireWriter(conn)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if body != nil {
		fw.bodyIn = body.n
		if body.err != nil {
			err = body.err
		}
		releaseClientBody(body)
		if err == nil {
			// The response deadline runs from the end of the upload.
			err = conn.SetReadDeadline(time.Now().Add(fw.timeout))
		}
	}
	if err != nil {
		hc.CloseConn(cc)
		return err
	}

	if dc, ok := conn.(*deferConn); ok {
		// Wait for the answer before taking a read buffer (goengine_deferconn.go).
		if err = dc.awaitAnswer(); err != nil {
			hc.CloseConn(cc)
			return err
		}
	}
	br := hc.AcquireReader(conn)
	if req.Header.IsHead() {
		resp.SkipBody = true
	}
	if err = readResponseHead(resp, br); err != nil {
		hc.ReleaseReader(br)
		hc.CloseConn(cc)
		return err
	}
	if fw.timed {
		fw.head = time.Now() // the access line's ttfb
	}
	ensureDate(&resp.Header)
	status := resp.StatusCode()
	if status == fasthttp.StatusSwitchingProtocols {
		if !fw.upgrade {
			hc.ReleaseReader(br)
			hc.CloseConn(cc)
			return errUnexpectedUpgrade
		}
		fw.tunnel = true
		startTunnel(ctx, l, hc, cc, (*fasthttp.HostClient).CloseConn, br, p.pool, member)
		return nil
	}
	n := resp.Header.ContentLength()
	spliced := n >= spliceThreshold && canSplice(ctx.Conn(), conn) // splice.go
	if resp.SkipBody || status < 200 || status == fasthttp.StatusNoContent || status == fasthttp.StatusNotModified ||
		(n >= 0 && n <= streamThreshold && !spliced) {
		if !resp.SkipBody && status >= 200 && status != fasthttp.StatusNoContent && status != fasthttp.StatusNotModified {
			if n < 0 || br.Buffered() < n {
				// response_timeout ended with the head; the body may
				// pause for idle_timeout between reads, as in the event
				// loop and a stream.
				err = conn.SetReadDeadline(deadline(time.Now(), l.server.IdleTimeout))
			}
			if err == nil {
				err = resp.ReadBody(br, 0)
			}
		}
		hc.ReleaseReader(br)
		// While requests wait in the pool's queue, the connection's slot
		// goes to the first of them (core_queue.go), not to the idle pool.
		if err != nil || resp.ConnectionClose() || u.queued() {
			hc.CloseConn(cc)
		} else {
			hc.ReleaseConn(cc)
		}
		return err
	}
	release := (*fasthttp.HostClient).ReleaseConn
	if u.queued() {
		release = (*fasthttp.HostClient).CloseConn
	}
	startStream(ctx, l, hc, cc, release, (*fasthttp.HostClient).CloseConn, br, p.pool, member, n, spliced)
	return nil
}

// readResponseHead reads the status line and headers of the final answer,
// skipping interim 1xx answers (100 Continue, 103 Early Hints) but not 101.
func readResponseHead(resp *fasthttp.Response, br *bufio.Reader) error {
	for range maxInterim {
		if err := resp.Header.Read(br); err != nil {
			return err
		}
		if s := resp.StatusCode(); s < 100 || s >= 200 || s == fasthttp.StatusSwitchingProtocols {
			return nil
		}
	}
	return errTooManyInterim
}

// deadlineEvery returns how often a stream refreshes a deadline of d: often
// enough that at least 3/4 of d is always left, rarely enough that a fast
// transfer does not pay for a timer update on every read.
func deadlineEvery(ds ...time.Duration) time.Duration {
	every := time.Second
	for _, d := range ds {
		if d > 0 && d/4 < every {
			every = d / 4
		}
	}
	return every
}

// deadline returns now+d, or no deadline for d <= 0.
func deadline(now time.Time, d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return now.Add(d)
}

// clientBody relays a request body the client is still sending. Each read
// from the client extends the client's read deadline (read_timeout) and the
// backend connection's write deadline (response_timeout), so an upload may
// take as long as it keeps moving. It counts the bytes, enforces
// max_body_bytes on bodies without a Content-Length, and reports a client
// failure as errClientRead.
type clientBody struct {
	r        io.Reader
	client   net.Conn
	upstream net.Conn
	readTO   time.Duration
	writeTO  time.Duration
	every    time.Duration
	last     time.Time
	max      int64
	n        int64
	err      error
	fixed    bool
}

var clientBodies sync.Pool

func acquireClientBody(r io.Reader, client, upstream net.Conn, readTO, writeTO time.Duration, max int64) *clientBody {
	b, _ := clientBodies.Get().(*clientBody)
	if b == nil {
		b = &clientBody{}
	}
	*b = clientBody{r: r, client: client, upstream: upstream, readTO: readTO, writeTO: writeTO,
		every: deadlineEvery(readTO, writeTO), max: max}
	b.refresh(time.Now())
	return b
}

func releaseClientBody(b *clientBody) {
	*b = clientBody{}
	clientBodies.Put(b)
}

func (b *clientBody) refresh(now time.Time) {
	b.last = now
	_ = b.client.SetReadDeadline(deadline(now, b.readTO))
	_ = b.upstream.SetWriteDeadline(deadline(now, b.writeTO))
}

// WriteTo sends a body of known length on through a pooled 32 KiB buffer;
// fasthttp's own copy would allocate one per request (net.TCPConn.ReadFrom
// from a reader that is not a socket).
func (b *clientBody) WriteTo(w io.Writer) (int64, error) { return copyPooled(w, b) }

// SupportsBodyWriteTo allows WriteTo for a body of known length; a chunked
// one is read in fasthttp's 4 KiB steps, each sent as a chunk, as WriteTo
// would make fasthttp allocate its chunk writer.
func (b *clientBody) SupportsBodyWriteTo() bool { return b.fixed }

func (b *clientBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.max > 0 && b.n > b.max {
		b.err = errBodyTooLarge
		return 0, b.err
	}
	if err != nil && err != io.EOF {
		// A body whose framing is broken (a bad chunk) is the client's
		// fault, answered 400; one cut short or timed out is the client
		// gone (499). Either way the error sticks: fasthttp's chunked
		// writer sends on the bytes of a read that also failed and reads
		// again, and the next read must not find the body whole.
		b.err = errBadBody
		if clientGone(err) {
			b.err = errClientRead
		}
		return n, b.err
	}
	if now := time.Now(); now.Sub(b.last) >= b.every {
		b.refresh(now)
	}
	return n, err
}

// upstreamBody is a response body relayed from a backend as it arrives. It
// is ctx.Response's body stream: fasthttp reads it while writing the answer
// after the handler returns, then calls CloseWithError exactly once, which
// gives the backend connection back to its pool (when the body ended cleanly)
// or closes it, and releases the member's in-flight count. Each read extends
// the backend connection's read deadline (idle_timeout) and the client's
// write deadline (write_timeout), so an endless event stream lives as long as
// both sides keep up, and a stall on either side ends it.
//
// C is fasthttp's unexported connection type; release and discard are
// HostClient methods taken as method expressions, so holding the connection
// costs no closure.
type upstreamBody[C interface{ Conn() net.Conn }] struct {
	hc      *fasthttp.HostClient
	cc      C
	release func(*fasthttp.HostClient, C)
	discard func(*fasthttp.HostClient, C)
	br      *bufio.Reader
	conn    net.Conn
	client  net.Conn
	idle    time.Duration
	writeTO time.Duration
	every   time.Duration
	last    time.Time
	pool    *balancer.Pool
	member  int
	live    *liveSet
	// keepConn: the body is framed (Content-Length or chunked) and the
	// backend did not ask to close, so the connection may be reused once the
	// body ended cleanly.
	keepConn bool
	fixed    bool // the body has a Content-Length
	// spliced: the body moves by splice(2) (goengine_splice.go); left is how much
	// of it is still to come, sp the transfer's state.
	spliced bool
	left    int64
	sp      bodySplice

	// framing holds a response whose header carries only the body's framing;
	// fasthttp's stream reader over it decodes Content-Length, chunked or
	// read-to-close bodies.
	framing fasthttp.Response
	rs      io.Reader
	// resp is the client's answer while fasthttp writes it: trailers go
	// there (relayTrailers).
	resp *fasthttp.ResponseHeader

	n       int64
	eof     bool
	readErr error
	closed  bool

	// The access log line is written when the body ends, with the bytes
	// relayed and the whole duration; rec's byte slices point into logBuf.
	log    *AccessLog
	rec    accessRecord
	logBuf []byte
}

// upstreamBodies holds *upstreamBody[C] for fasthttp's one connection type.
var upstreamBodies sync.Pool

func startStream[C interface{ Conn() net.Conn }](ctx *fasthttp.RequestCtx, l *httpListener, hc *fasthttp.HostClient, cc C,
	release, discard func(*fasthttp.HostClient, C), br *bufio.Reader, pool *balancer.Pool, member, length int, spliced bool) {
	b, _ := upstreamBodies.Get().(*upstreamBody[C])
	if b == nil {
		b = &upstreamBody[C]{}
		b.sp.bind()
	}
	b.hc, b.cc, b.release, b.discard, b.br = hc, cc, release, discard, br
	b.resp = &ctx.Response.Header
	b.conn, b.client = cc.Conn(), ctx.Conn()
	b.idle, b.writeTO = l.server.IdleTimeout, l.server.WriteTimeout
	b.every = deadlineEvery(b.idle, b.writeTO)
	b.pool, b.member, b.live = pool, member, &l.live
	resp := &ctx.Response
	b.keepConn = length != -2 && !resp.ConnectionClose()
	b.fixed = length >= 0
	b.n, b.eof, b.readErr, b.closed, b.log = 0, false, nil, false, nil
	pool.Acquire(member) // the backend is busy until the body ends

	b.spliced = spliced
	if spliced {
		// The body is read by length, from br and then the socket
		// (goengine_splice.go); the framing reader is not needed.
		b.left = int64(length)
		b.sp.t.Pool = &l.pipes
	} else {
		b.framing.Header.SetContentLength(length)
		b.framing.StreamBody = true
		_ = b.framing.ReadBody(br, 0) // with StreamBody it only sets up the stream
		b.rs = b.framing.BodyStream()
	}
	now := time.Now()
	b.last = now
	_ = b.conn.SetReadDeadline(deadline(now, b.idle))

	if length < 0 {
		length = -1 // chunked to the client whatever the backend used
	}
	resp.SetBodyStream(b, length)
	// Send the head at once: an event stream's client waits for it. A
	// spliced body's head goes out with its first bytes, in one write.
	resp.ImmediateHeaderFlush = !spliced
	if !l.live.add(b) {
		b.abort() // shutting down: the write fails and the stream closes
	}
}

// Read implements io.Reader for fasthttp's response writer.
func (b *upstreamBody[C]) Read(p []byte) (int, error) {
	var (
		n   int
		err error
	)
	if b.spliced {
		n, err = b.readSpliced(p)
	} else {
		n, err = b.rs.Read(p)
	}
	b.n += int64(n)
	switch {
	case err == io.EOF:
		b.eof = true
		if !b.spliced {
			b.relayTrailers()
		}
	case err != nil:
		b.readErr = err
	}
	b.refresh()
	return n, err
}

// relayTrailers hands the trailer fields of a chunked body to the client's
// answer, which fasthttp writes after the last chunk; the event loop relays
// them as they came, and so does this. Only a body that has trailers pays
// for it.
func (b *upstreamBody[C]) relayTrailers() {
	for key := range b.framing.Header.Trailers() {
		v := b.framing.Header.PeekBytes(key)
		if b.resp.AddTrailerBytes(key) == nil {
			b.resp.SetBytesKV(key, v)
		}
	}
}

// refresh pushes the deadlines out, at most every b.every.
func (b *upstreamBody[C]) refresh() {
	if now := time.Now(); now.Sub(b.last) >= b.every {
		b.last = now
		_ = b.conn.SetReadDeadline(deadline(now, b.idle))
		_ = b.client.SetWriteDeadline(deadline(now, b.writeTO))
	}
}

// readSpliced reads the start of a spliced body, before the splice takes
// over: what the head's read took along, then no more from the socket than
// p asks, so the rest stays there for splice(2).
func (b *upstreamBody[C]) readSpliced(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), b.left)]
	var (
		n   int
		err error
	)
	if b.br.Buffered() > 0 {
		n, err = b.br.Read(p)
	} else {
		n, err = b.conn.Read(p)
	}
	b.left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// spliceTo writes the rest of a spliced body, at most n bytes, to client:
// bytes still buffered from the backend first, then splice(2) from the
// backend's socket (goengine_splice.go).
func (b *upstreamBody[C]) spliceTo(client *deferConn, n int64) (int64, error) {
	total, err := b.spliceRest(client, min(n, b.left))
	b.n += total
	b.left -= total
	if b.left == 0 && err == nil {
		b.eof = true
	}
	return total, err
}

func (b *upstreamBody[C]) spliceRest(client *deferConn, n int64) (int64, error) {
	var total int64
	if k := min(int64(b.br.Buffered()), n); k > 0 {
		head, _ := b.br.Peek(int(k))
		m, err := client.Write(head)
		_, _ = b.br.Discard(m)
		total += int64(m)
		if err != nil {
			return total, err
		}
	}
	src, dst := rawConnOf(b.conn.(*deferConn)), rawConnOf(client) // canSplice checked the type
	if src == nil || dst == nil {
		return total, errNoRawConn
	}
	s := &b.sp
	s.want = n - total
	defer s.release()
	for s.want > 0 || s.t.InPipe > 0 {
		m, err := s.step(src, dst)
		total += m
		if err != nil {
			if s.readErr != nil {
				b.readErr = s.readErr
			}
			return total, err
		}
		b.refresh()
	}
	return total, nil
}

// WriteTo copies a body of known length to w (fasthttp's fixed-length body
// writer) through a 32 KiB buffer: fasthttp's own copy would go through its
// 4 KiB write buffer, at several times the system calls. A spliced body goes
// through w's ReadFrom instead (goengine_splice.go).
func (b *upstreamBody[C]) WriteTo(w io.Writer) (int64, error) {
	if rf, ok := w.(io.ReaderFrom); ok && b.spliced {
		return rf.ReadFrom(b)
	}
	return copyPooled(w, b)
}

// copyPooled copies r to w through a pooled 32 KiB buffer.
func copyPooled(w io.Writer, r io.Reader) (int64, error) {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// SupportsBodyWriteTo tells fasthttp that WriteTo may replace Read, for a
// body of known length only: for a chunked one fasthttp would allocate its
// chunk writer on every answer, so it reads in 4 KiB steps instead (and
// still flushes every chunk).
func (b *upstreamBody[C]) SupportsBodyWriteTo() bool { return b.fixed }

// copyBuffers are the 32 KiB buffers of streams and tunnels.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// CloseWithError implements fasthttp.ReadCloserWithError: fasthttp calls it
// once the answer is written (err nil) or failed (err set).
func (b *upstreamBody[C]) CloseWithError(err error) error {
	if b.closed {
		return nil
	}
	b.closed = true
	b.live.remove(b) // before the connection can be reused: abort must not reach it then
	reuse := b.keepConn && b.eof && b.readErr == nil && err == nil
	_ = b.framing.CloseBodyStream()
	b.framing.Reset()
	b.hc.ReleaseReader(b.br)
	if reuse {
		b.release(b.hc, b.cc)
	} else {
		b.discard(b.hc, b.cc)
	}
	b.pool.Release(b.member)
	if b.log != nil {
		b.rec.bytesOut = int(b.n)
		b.rec.duration = time.Since(b.rec.start)
		switch {
		case b.readErr != nil:
			b.rec.reason = "upstream_stream_error"
		case err != nil:
			b.rec.reason = "client_gone"
		}
		b.log.log(&b.rec)
	}
	var zero C
	b.hc, b.cc, b.br, b.conn, b.client, b.pool, b.live, b.rs, b.log, b.resp = nil, zero, nil, nil, nil, nil, nil, nil, nil, nil
	b.rec = accessRecord{}
	upstreamBodies.Put(b)
	return nil
}

// abort interrupts the stream (drain timeout at shutdown): the next or
// current read fails and fasthttp closes the stream and the client
// connection.
func (b *upstreamBody[C]) abort() { _ = b.conn.Close() }

// logAtEnd takes over the access log line of the request: it is written when
// the body ends, with the bytes relayed and the full duration. rec is passed
// by value so the caller's record stays on its stack; its byte slices are
// copied, since they point into the request.
func (b *upstreamBody[C]) logAtEnd(log *AccessLog, rec accessRecord) {
	b.log = log
	b.rec = rec
	buf := b.logBuf[:0]
	buf = append(buf, rec.requestID...)
	buf = append(buf, rec.method...)
	buf = append(buf, rec.host...)
	buf = append(buf, rec.path...)
	buf = append(buf, rec.userAgent...)
	b.logBuf = buf
	i := 0
	take := func(n int) []byte { s := buf[i : i+n : i+n]; i += n; return s }
	b.rec.requestID = take(len(rec.requestID))
	b.rec.method = take(len(rec.method))
	b.rec.host = take(len(rec.host))
	b.rec.path = take(len(rec.path))
	b.rec.userAgent = take(len(rec.userAgent))
}

// liveSet tracks a listener's exchanges that outlive their handler: streamed
// bodies and upgraded connections. A reload leaves them alone; a shutdown
// (drain) gives them until its deadline, then aborts them. The zero value is
// ready; it is safe for concurrent use.
type liveSet struct {
	mu       sync.Mutex
	m        map[liveConn]struct{}
	draining bool
	upgraded int64 // tunnels in m
	// tunnels mirrors upgraded in frontdoor_upgraded_connections_active;
	// nil counts nothing.
	tunnels prometheus.Gauge
}

// liveConn is an exchange that drain can interrupt. abort only closes
// sockets (so blocked reads return); the exchange's own goroutine cleans up.
type liveConn interface{ abort() }

// add registers c. It returns false after drain gave up waiting: the caller
// must abort c.
func (s *liveSet) add(c liveConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	if s.m == nil {
		s.m = map[liveConn]struct{}{}
	}
	s.m[c] = struct{}{}
	if _, ok := c.(tunneler); ok {
		s.upgraded++
		if s.tunnels != nil {
			s.tunnels.Inc()
		}
	}
	return true
}

func (s *liveSet) remove(c liveConn) {
	s.mu.Lock()
	if _, ok := s.m[c]; ok {
		delete(s.m, c)
		if _, ok := c.(tunneler); ok {
			s.upgraded--
			if s.tunnels != nil {
				s.tunnels.Dec()
			}
		}
	}
	s.mu.Unlock()
}

// counts returns how many exchanges are live, and how many are tunnels.
func (s *liveSet) counts() (all, upgraded int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m), int(s.upgraded)
}

// drain waits until every live exchange ended or ctx is done, then aborts
// the rest and refuses new ones. It returns ctx's error if it aborted any.
func (s *liveSet) drain(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if n, _ := s.counts(); n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			s.mu.Lock()
			s.draining = true
			n := len(s.m)
			for c := range s.m {
				c.abort()
			}
			s.mu.Unlock()
			if n == 0 {
				return nil
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}
