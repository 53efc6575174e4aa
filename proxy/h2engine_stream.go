package proxy

import (
	"bytes"
	"os"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Stream is one client stream: its request on a RequestCtx of its own,
// the core's exchange, and the relay state of both directions, its backend
// side in h2Leg (the rider of its stream on a backend connection). Every
// field is under its connection's lock (h2Conn.mu), but those h2Leg puts
// under the backend connection's. Streams are pooled per connection and
// reused: gen tells a reference to a stream's earlier life from one to the
// current.
type h2Stream struct {
	h2Leg
	c     *h2Conn
	id    uint32
	ctx   fasthttp.RequestCtx
	x     exchange
	idBuf [32]byte

	grpc      bool      // content-type application/grpc*
	buffering bool      // the body is read whole before start (bufferBody)
	bodyBy    time.Time // when a buffered body must have come (read_timeout)
	own       bool      // the answer is frontdoor's own (endOwn)
	headSent  bool      // the response head went to the client
	respDone  bool      // the response's END_STREAM (or a reset) went to the client
	logged    bool      // the core's end ran
	deadline  time.Time // response head (response_timeout) or call (grpc-timeout); zero: none
	callEnd   time.Time // grpc-timeout's deadline; zero: none
	stallFrom time.Time // since when data waits for the client's window

	// Client side flow control.
	sendWindow   int64 // the client's window for our DATA
	recvWindow   int64 // what the client may still send
	recvConsumed int64 // passed on, not yet credited

	bodyIn   int64
	bodyOut  int64
	grpcCode int // grpc-status of the answer; -1: none

	member int // the pool member of the attempt

	// Response bytes waiting for the client's window, then the trailer
	// block (encoded) and the end of the stream.
	respPending    []byte
	trailerFields  []hpack.HeaderField
	respEndPending bool

	// The pool speaks HTTP/1.1 (h2engine_h1.go): h1Running while its
	// goroutine has the RequestCtx, h1Gone when the stream ended then,
	// h1Waiting while it waits on h1Wake for the client's window.
	h1, h1Running, h1Gone, h1Waiting bool
	h1Wake                           chan struct{}
	h1Buf                            []byte
}

func (s *h2Stream) open(id uint32) {
	c := s.c
	s.id = id
	s.grpc, s.te, s.reqEnded, s.headSent, s.respDone, s.logged = false, false, false, false, false, false
	s.buffering, s.bodyBy, s.own = false, time.Time{}, false
	s.deadline, s.callEnd, s.stallFrom = time.Time{}, time.Time{}, time.Time{}
	s.sendWindow = int64(c.peerWindow)
	s.recvWindow = int64(c.e.limits.streamWindow)
	s.recvConsumed, s.bodyIn, s.bodyOut, s.grpcCode = 0, 0, 0, -1
	s.member, s.b, s.up, s.upID, s.upWindow = -1, nil, nil, 0, 0
	s.upConsumed, s.held = 0, 0
	s.reqPending, s.respPending, s.trailerFields = s.reqPending[:0], s.respPending[:0], s.trailerFields[:0]
	clear(s.reqTrailers)
	s.reqTrailers = s.reqTrailers[:0]
	s.sentBody, s.sentEnd, s.respBegan, s.respEnded, s.respEndPending = false, false, false, false, false
	s.h1, s.h1Running, s.h1Gone, s.h1Waiting = false, false, false, false
	s.x = exchange{}
}

var (
	strApplicationGRPC = []byte("application/grpc")
	hdrGRPCTimeout     = []byte("Grpc-Timeout")
)

// request takes the stream's request head from the block just decoded and
// runs the core on it.
func (s *h2Stream) request(h *h2HeaderBlock) {
	c, l := s.c, s.c.l
	ctx := &s.ctx
	ctx.Request.Reset()
	ctx.Response.Reset()
	ctx.Init2(nil, l.server.Logger, false)
	ctx.SetRemoteAddr(&c.addr)
	s.reqEnded = h.endStream
	if h.tooBig {
		l.refuseHead(ctx, false, fasthttp.StatusRequestHeaderFieldsTooLarge, "request header block too large", "header_too_large")
		s.answerOwn()
		return
	}
	if !s.head(h.fields) {
		c.resetStream(s, http2.ErrCodeProtocol, "bad_request")
		return
	}
	req := &ctx.Request
	if ct := req.Header.ContentType(); bytes.HasPrefix(ct, strApplicationGRPC) {
		s.grpc = true
	}
	if v := checkHead(&req.Header, int(l.settings.maxBody)); v.status != 0 {
		l.refuseHead(ctx, true, v.status, v.msg, v.reason)
		s.answerOwn()
		return
	}
	if !s.reqEnded && !s.grpc {
		// A request for an HTTP/1.1 pool (or no route) is read whole
		// before the core sees it, as the HTTP/1.1 engines read a body
		// before their handler: same answers (a 404 after the body, 408
		// when it stops coming within read_timeout, 413 past
		// max_body_bytes), same records.
		// The route chosen here is the one begin uses (x.routed, as the
		// event loop's canServe hands it over): matched once.
		rt := l.rt.Load()
		r := rt.routes.match(req.Header.Host(), ctx.Path())
		s.x.rt, s.x.r, s.x.routed = rt, r, true
		if r == nil || r.pool == nil || !r.pool.h2c { // redirect routes have no pool
			s.buffering = true
			if d := l.settings.read; d > 0 {
				s.bodyBy = c.lastActive.Add(d)
			}
			return
		}
	}
	s.start()
}

// start runs the core on the request: begin (route, stages, headers),
// then the first attempt.
func (s *h2Stream) start() {
	c, l := s.c, s.c.l
	ctx := &s.ctx
	req := &ctx.Request
	s.x.h2, s.x.grpc = true, s.grpc
	s.x.via, s.x.tlsc = c.via, c.tlsc
	if !l.begin(ctx, &s.x, &s.idBuf) {
		s.answerOwn()
		return
	}
	if s.grpc {
		if d, ok := parseGRPCTimeout(req.Header.PeekBytes(hdrGRPCTimeout)); ok {
			s.callEnd = s.x.rec.start.Add(d)
		}
	}
	s.attempt()
}

// head fills the request from the HTTP/2 header fields; false: the request
// is malformed (RFC 9113 8.3).
func (s *h2Stream) head(fields []hpack.HeaderField) bool {
	h := &s.ctx.Request.Header
	var method, path, authority string
	var scheme bool
	regular := false
	for _, f := range fields {
		if len(f.Name) > 0 && f.Name[0] == ':' {
			if regular {
				return false
			}
			switch f.Name {
			case ":method":
				method = f.Value
			case ":path":
				path = f.Value
			case ":authority":
				authority = f.Value
			case ":scheme":
				scheme = true
			default:
				return false
			}
			continue
		}
		regular = true
		for i := 0; i < len(f.Name); i++ {
			if c := f.Name[i]; 'A' <= c && c <= 'Z' {
				return false
			}
		}
		if h2Forbidden(f.Name) {
			return false
		}
		switch f.Name {
		case "te":
			if f.Value != "trailers" {
				return false
			}
			s.te = true
			continue
		case "host":
			if authority == "" {
				authority = f.Value
			}
			continue
		}
		h.Add(f.Name, f.Value)
	}
	if method == "" || path == "" || !scheme || method == "CONNECT" {
		return false
	}
	h.SetMethod(method)
	h.SetRequestURI(path)
	h.SetHost(authority)
	return true
}

// attempt picks the next backend and starts the request on it, or answers
// the stream when none is left.
func (s *h2Stream) attempt() {
	l, ctx, x := s.c.l, &s.ctx, &s.x
	for {
		i := l.pick(ctx, x)
		if i == pickQueue {
			// The HTTP/2 engine does not wait in the pool's queue: a
			// stream that would is refused at once (README).
			l.queueRefused(ctx, x, "every backend is at its connection limit", "queue_full")
			i = -1
		}
		if i < 0 {
			s.endOwn()
			return
		}
		s.member = i
		s.deadline = time.Time{}
		if x.fw.timeout > 0 {
			s.deadline = x.fw.deadline
		}
		if !s.callEnd.IsZero() && (s.deadline.IsZero() || s.callEnd.Before(s.deadline)) {
			s.deadline = s.callEnd
		}
		if !x.p.h2c {
			s.h1Start(i)
			return
		}
		err := s.upstream(i)
		if err == nil {
			return // the answer comes through the backend connection
		}
		if !s.failed(err) {
			return
		}
	}
}

// failed ends the current attempt with err: it returns true when the
// caller is to try the next backend (attempt's loop), and otherwise has
// answered the stream.
func (s *h2Stream) failed(err error) bool {
	l, ctx, x := s.c.l, &s.ctx, &s.x
	x.streamed = s.sentBody
	if l.attempted(ctx, x, s.member, err) {
		s.member = -1
		return true
	}
	s.endOwn()
	return false
}

// retry ends the current attempt with err from outside attempt's loop (a
// backend connection's reader, a dialer, the sweeper) and goes on.
func (s *h2Stream) retry(err error) {
	if s.failed(err) {
		s.attempt()
	}
}

// endOwn finishes an exchange that reached pick with frontdoor's own
// answer in ctx.Response.
func (s *h2Stream) endOwn() {
	s.own = true
	s.finishExchange()
	s.answerOwn()
}

// answerOwn sends the answer in ctx.Response (frontdoor's own) and ends
// the stream. A gRPC call gets it the gRPC way: HTTP 200 and a
// trailers-only response whose grpc-status says what happened.
func (s *h2Stream) answerOwn() {
	c := s.c
	resp := &s.ctx.Response
	addHSTS(&s.ctx, c.l.rt.Load()) // tls_route.go
	e := &c.enc
	if s.grpc {
		code, msg := grpcStatusOf(resp.StatusCode()), bytes.TrimSpace(resp.Body())
		s.grpcCode = code
		e.pseudo(":status", statusValue(200))
		e.field(hdrContentTypeLower, strApplicationGRPC)
		e.field(hdrGRPCStatusLower, grpcCodeBytes(code))
		var pct [256]byte
		e.field(hdrGRPCMessageLower, appendGRPCMessage(pct[:0], msg))
		if id := resp.Header.PeekBytes(hdrXRequestID); len(id) > 0 {
			e.field(hdrXRequestID, id)
		}
		c.writeHead(s.id, true)
	} else {
		e.pseudo(":status", statusValue(resp.StatusCode()))
		for k, v := range resp.Header.All() {
			c.enc.field(k, v)
		}
		body := resp.Body()
		var n [20]byte
		e.field(hdrContentLengthLower, strconv.AppendInt(n[:0], int64(len(body)), 10))
		e.field(hdrDateLower, c.date())
		if s.ctx.Request.Header.IsHead() {
			body = nil // the length is said, the body is not sent
		}
		c.writeHead(s.id, len(body) == 0)
		if len(body) > 0 {
			// Within the client's windows like any body.
			s.headSent = true
			s.respPending = append(s.respPending[:0], body...)
			s.respEndPending = true
			s.push()
			return
		}
	}
	s.headSent = true
	s.respDone = true
	s.closeStream()
}

// finishExchange runs the core's end (metrics, access log) once, for an
// exchange that reached pick; one refused before (refuse) is logged
// already.
func (s *h2Stream) finishExchange() {
	if s.logged {
		return
	}
	s.logged = true
	x := &s.x
	if x.p == nil {
		return // refused before routing: refuse logged it
	}
	x.streamed = true
	x.fw.bodyIn = s.bodyIn
	x.rec.bytesIn = int(s.bodyIn)
	x.bytesOut = int(s.bodyOut)
	if s.own && !s.grpc {
		x.bytesOut = -1 // the body of the answer, sent after this line
	}
	x.rec.grpc = s.grpc
	x.rec.grpcStatus = s.grpcCode
	if s.grpc {
		// A view of the path: the line is formatted before end returns.
		x.rec.grpcMethod = unsafeString(x.rec.path)
	}
	s.c.l.end(&s.ctx, x)
}

// closeStream ends the stream on the client's side once its answer is out:
// a request still being sent is stopped (RFC 9113 8.1), and the stream is
// released.
func (s *h2Stream) closeStream() {
	c := s.c
	s.finishExchange()
	if !s.reqEnded {
		c.rst(s.id, http2.ErrCodeNo)
	}
	s.detach(http2.ErrCodeCancel)
	c.release(s)
}

// clientReset ends a stream the client reset or left: the backend's stream
// is reset too, and the exchange ends as nginx's 499 when no answer began.
func (s *h2Stream) clientReset() {
	if s.h1 {
		s.h1Abandon()
	}
	if !s.logged {
		if s.x.p != nil && !s.respBegan && s.member >= 0 {
			s.c.l.attemptAbandoned(&s.ctx, &s.x)
		} else if s.x.p != nil && s.x.reason == "" {
			s.x.reason = "client_gone"
		}
		s.finishExchange()
	}
	s.reqEnded = true // no RST back
	s.detach(http2.ErrCodeCancel)
	s.c.release(s)
}

// resetStream resets s on the client's side with code, and its backend
// stream, recording why.
func (c *h2Conn) resetStream(s *h2Stream, code http2.ErrCode, reason string) {
	if s.x.p != nil && s.x.reason == "" {
		s.x.reason = reason
	}
	if s.x.p != nil && !s.respBegan && s.member >= 0 && !s.logged {
		c.l.attemptAbandoned(&s.ctx, &s.x)
		s.x.reason = reason
	}
	s.finishExchange()
	c.rst(s.id, code)
	s.reqEnded = true
	s.detach(http2.ErrCodeCancel)
	c.release(s)
}

// requestData takes body bytes from the client.
func (s *h2Stream) requestData(d []byte, end bool) {
	s.bodyIn += int64(len(d))
	if end {
		s.reqEnded = true
	}
	if s.buffering {
		s.bufferBody(d, end)
		return
	}
	if s.respDone {
		s.c.consumed(s, int64(len(d)))
		return
	}
	s.reqPending = append(s.reqPending, d...)
	if s.b != nil {
		s.b.sendBody(&s.h2Leg)
	}
}

// bufferBody takes body bytes of a request read whole before the core
// sees it (request).
func (s *h2Stream) bufferBody(d []byte, end bool) {
	c, l := s.c, s.c.l
	req := &s.ctx.Request
	c.consumed(s, int64(len(d)))
	if limit := l.settings.maxBody; limit > 0 && int64(len(req.Body())+len(d)) > limit {
		s.buffering = false
		l.refuseHead(&s.ctx, true, fasthttp.StatusRequestEntityTooLarge, "request body too large", "body_too_large")
		s.answerOwn()
		return
	}
	req.AppendBody(d)
	if end {
		s.buffering = false
		s.start()
	}
}

// clientTrailers are the request's trailers: passed on to an h2c backend
// (the request ends with them), dropped for HTTP/1.1.
func (s *h2Stream) clientTrailers(fields []hpack.HeaderField) {
	s.reqEnded = true
	if s.buffering {
		s.bufferBody(nil, true)
		return
	}
	// After the body, which may still wait for the backend's window (or
	// for the connection being dialled).
	s.reqTrailers = append(s.reqTrailers[:0], fields...)
	if s.b != nil {
		s.b.sendBody(&s.h2Leg)
	}
}

// push sends what waits for the client's window: DATA, then the trailers
// or the end of the stream.
func (s *h2Stream) push() {
	c := s.c
	end := s.respEndPending && len(s.trailerFields) == 0 // else the trailers end it
	sent, endSent := c.wire.data(s.id, s.respPending, end, &s.sendWindow, &c.sendWindow, c.peerMaxFrame)
	if sent > 0 {
		s.bodyOut += int64(sent)
		s.respPending = s.respPending[:copy(s.respPending, s.respPending[sent:])]
		c.controls.refill()
		c.fl.mark(&c.wire)
		if s.b != nil {
			s.b.consumed(&s.h2Leg, int64(sent))
		}
	}
	if endSent {
		s.respEndPending = false
		s.respDone = true
		s.closeStream()
		return
	}
	if s.h1Waiting && len(s.respPending) < h1Ahead {
		s.h1Wakeup()
	}
	if len(s.respPending) > 0 {
		if s.stallFrom.IsZero() {
			s.stallFrom = time.Now()
		}
		return
	}
	s.stallFrom = time.Time{}
	if !s.respEndPending {
		return
	}
	s.respEndPending = false
	if len(s.trailerFields) > 0 {
		s.writeTrailers()
	} else {
		_ = c.wire.fr.WriteData(s.id, true, nil)
		c.fl.mark(&c.wire)
	}
	s.respDone = true
	s.closeStream()
}

// expire applies the stream's deadlines at now.
func (s *h2Stream) expire(now time.Time) {
	c := s.c
	if s.buffering && !s.bodyBy.IsZero() && now.After(s.bodyBy) {
		// The body stopped coming: 408, as the HTTP/1.1 engines answer
		// it (handleError), with a new request ID and an unrouted record:
		// fasthttp's server has lost the head when its read times out,
		// and the engines answer alike.
		s.buffering = false
		s.ctx.Request.Header.Reset()
		c.l.handleError(&s.ctx, os.ErrDeadlineExceeded)
		s.answerOwn()
		return
	}
	if !s.deadline.IsZero() && now.After(s.deadline) && !s.respBegan && s.member >= 0 && !s.h1 {
		// No answer in time: the backend's stream is cancelled, and the
		// attempt ends as a timeout (504, DEADLINE_EXCEEDED).
		s.detach(http2.ErrCodeCancel)
		s.retry(os.ErrDeadlineExceeded)
		return
	}
	if !s.callEnd.IsZero() && now.After(s.callEnd) && s.respBegan {
		s.x.reason = "timeout"
		c.resetStream(s, http2.ErrCodeCancel, "timeout")
		return
	}
	if lim := c.e.limits.write; lim > 0 && !s.stallFrom.IsZero() && now.Sub(s.stallFrom) > lim {
		// The client let no byte through its window for write_timeout.
		c.resetStream(s, http2.ErrCodeCancel, "client_stalled")
	}
}

// grpcStatusOf maps frontdoor's own HTTP answer to the gRPC status a gRPC
// server would have given (gRPC's HTTP-to-gRPC status mapping, and the
// reasons frontdoor answers for).
func grpcStatusOf(status int) int {
	switch status {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 408, 504:
		return 4 // DEADLINE_EXCEEDED
	case 413, 429, 431:
		return 8 // RESOURCE_EXHAUSTED
	case 499:
		return 1 // CANCELLED
	case 502, 503:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

var (
	hdrContentTypeLower   = []byte("content-type")
	hdrContentLengthLower = []byte("content-length")
	hdrDateLower          = []byte("date")
	hdrGRPCStatusLower    = []byte("grpc-status")
	hdrGRPCMessageLower   = []byte("grpc-message")
	grpcCodes             = func() (t [17][]byte) {
		for i := range t {
			t[i] = []byte(strconv.Itoa(i))
		}
		return t
	}()
)

func grpcCodeBytes(code int) []byte {
	if code < 0 || code >= len(grpcCodes) {
		return grpcCodes[2]
	}
	return grpcCodes[code]
}

// appendGRPCMessage percent-encodes msg as grpc-message asks (the gRPC
// HTTP/2 spec): bytes outside printable ASCII and '%' as %XX.
func appendGRPCMessage(b, msg []byte) []byte {
	const hex = "0123456789ABCDEF"
	for _, c := range msg {
		if c < 0x20 || c > 0x7e || c == '%' {
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return b
}

// parseGRPCTimeout parses a grpc-timeout value: at most 8 digits and a
// unit (H, M, S, m, u, n).
func parseGRPCTimeout(v []byte) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	var n int64
	for _, c := range v[:len(v)-1] {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	return time.Duration(n) * unit, true
}
