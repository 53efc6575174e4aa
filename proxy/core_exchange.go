package proxy

import (
	"net/netip"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fasthttp"

	"frontdoor/metrics"
	"frontdoor/proxy/internal/requestid"
	"frontdoor/proxy/jwt"
)

// exchange is one request's state across the phases of handling it: begin
// (route, stages, headers), pick and attempted once per backend tried, and
// end (metrics and the access log). The goroutine engine (handle) keeps it
// on its stack; the event loop (loop.go) keeps one per request in flight.
type exchange struct {
	rt     *listenerRuntime
	r      *route
	routed bool         // rt and r were chosen before begin (the loop's canServe)
	p      *poolRuntime // nil until a route matched
	// via is the connection's peer when a PROXY protocol header named the
	// client (accept_proxy); tlsc is the connection's TLS handshake, nil
	// on a plain one. Engines set them before begin.
	via  netip.AddrPort
	tlsc *tlsConnInfo
	// h2: the request came over HTTP/2 (the HTTP/2 engine), which may go
	// to a pool that speaks h2c; grpc: it is a gRPC call, which only such
	// a pool can answer.
	h2, grpc    bool
	rec         accessRecord
	reqID       []byte
	aff         affinityState
	fw          forwarding
	key         uint64
	tried       uint64 // members tried, by bit (index mod 64)
	attempt     int
	member      int
	reason      string
	clientClose bool
	streamed    bool
	counted     bool // count ran (countHead)
	// wait: the last attempt met the backend's connection limit and the
	// pool has a queue: the next pick answers pickQueue (core_queue.go).
	wait bool
	// slot: x holds a connection slot of member's backend for its next
	// attempt (park, unpark): the engine connects without taking one, or
	// gives it back when it uses an idle connection.
	slot bool
	// bytesOut, when not negative, is the response body's length as sent;
	// otherwise end takes it from ctx.Response (loop.go relays bodies
	// itself).
	bytesOut int
}

// begin runs everything before a backend is chosen: request ID, route, the
// JWT stage, hop-by-hop and forwarding headers, affinity. It returns false
// when it answered the request itself (404, 401, 413); the access log and
// metrics are then done. idBuf backs a new request ID until the request
// ends.
func (l *httpListener) begin(ctx *fasthttp.RequestCtx, x *exchange, idBuf *[32]byte) bool {
	rt := x.rt
	if !x.routed {
		rt = l.rt.Load()
	}
	if l.beforeRequest != nil {
		l.beforeRequest(ctx)
	}
	req := &ctx.Request
	start := ctx.Time()
	x.rt, x.member, x.bytesOut, x.aff.pin = rt, -1, -1, -1

	x.reqID = l.requestID(req, idBuf)
	if t := l.tracer(); t != nil {
		t.sample(&req.Header, x.reqID, &x.rec.trace)
		if x.rec.trace.sampled {
			x.reqID = req.Header.PeekBytes(hdrXRequestID) // the header storage may have moved
		}
	}

	bodyLen, streamed := requestBody(req)
	x.streamed = streamed
	trace := x.rec.trace
	x.rec = accessRecord{
		trace:     trace,
		start:     start,
		listener:  rt.name,
		method:    req.Header.Method(),
		host:      req.Header.Host(),
		path:      ctx.Path(),
		userAgent: req.Header.UserAgent(),
		bytesIn:   bodyLen,
	}
	// The client's wish to close travels on our side of the hop only:
	// upstream connections stay keep-alive. Read before the hop-by-hop
	// headers go, so that every answer, frontdoor's own included, honours
	// it.
	x.clientClose = req.Header.ConnectionClose()

	r := x.r
	if !x.routed {
		r = rt.routes.match(req.Header.Host(), ctx.Path())
	}
	if r == nil {
		l.refuse(ctx, x, nil, fasthttp.StatusNotFound, "no route for this host and path", "no_route")
		return false
	}
	x.r = r
	x.rec.route = r.name
	if r.redirect {
		l.redirectHTTPS(ctx, x) // tls_route.go
		return false
	}
	p := r.pool
	x.rec.pool = p.name
	if streamed && l.server.MaxRequestBodySize > 0 && bodyLen > l.server.MaxRequestBodySize {
		x.rec.bytesIn = 0 // declared, never read
		l.refuse(ctx, x, nil, fasthttp.StatusRequestEntityTooLarge, "request body too large", "body_too_large")
		ctx.SetConnectionClose() // the body was not read
		return false
	}
	if p.h2c && !x.h2 && r.transcode == nil {
		// The pool speaks HTTP/2 only (gRPC): an HTTP/1.1 request would
		// fail on every backend and be counted against each. Refused
		// here, counted against none.
		l.refuse(ctx, x, nil, fasthttp.StatusUpgradeRequired, "this route's backends speak HTTP/2 (gRPC) only; send HTTP/2", "h2c_route")
		ctx.Response.Header.SetBytesKV(hdrUpgrade, valH2C)
		return false
	}
	if x.grpc && !p.h2c {
		// gRPC needs trailers, which an HTTP/1.1 backend cannot send:
		// UNIMPLEMENTED, as a gRPC server without the method answers.
		l.refuse(ctx, x, nil, fasthttp.StatusNotFound, `gRPC calls need a route whose pool has protocol = "h2c"`, "grpc_route")
		return false
	}
	// Routes without a JWT policy still drop the claim headers that any
	// policy sets, so a client can never hand a backend a forged identity.
	for _, h := range r.stripClaims {
		req.Header.DelBytes(h)
	}
	if rt.stripIdent != nil || x.tlsc != nil {
		setClientCertHeaders(&req.Header, rt, x.tlsc) // tls_route.go
	}
	if r.jwt != nil {
		why, sub := r.jwt.ApplySubject(req, start)
		x.rec.jwtSub = sub
		if why != jwt.Valid {
			l.refuse(ctx, x, nil, fasthttp.StatusUnauthorized, why.Description(), why.String())
			ctx.Response.Header.Set("WWW-Authenticate", why.WWWAuthenticate())
			ctx.Response.Header.Set("Cache-Control", "no-store")
			return false
		}
	}

	var upBuf [32]byte
	proto := upgradeProtocol(req, upBuf[:0])
	removeRequestHopHeaders(&req.Header)
	ownVersion(&req.Header)
	if proto != nil {
		restoreUpgrade(req, proto)
	}
	// The connection's client: the peer, or the source a PROXY protocol
	// header named (accept_proxy), whose peer the engine left in x.via.
	src := peerOf(ctx)
	x.rec.client = setForwardedHeaders(ctx, rt, src)
	x.rec.peer = src
	if x.via.IsValid() {
		x.rec.peer = x.via
	}

	if p.aff != nil {
		if why := p.aff.route(req, &x.aff); why != "" {
			l.refuse(ctx, x, p, fasthttp.StatusNotFound, "unknown or expired session", why)
			return false
		}
	}
	x.fw = forwarding{timeout: p.responseTimeout, streamed: streamed, upgrade: proto != nil, maxBody: int64(l.server.MaxRequestBodySize),
		timed: l.log.enabled() || x.rec.trace.sampled}
	x.key = p.key(ctx, x.rec.client)
	x.p = p
	p.active.Add(1)
	return true
}

// refuse ends a request that frontdoor answers itself, before any backend
// is tried: the one-line answer (fail, naming pool p when not nil), the
// client's Connection: close, requests_total on the route (or pool=""
// when none matched), request_duration_seconds and the access record with
// whatever of the request is known. Every engine's own answers come here.
func (l *httpListener) refuse(ctx *fasthttp.RequestCtx, x *exchange, p *poolRuntime, status int, msg, reason string) {
	l.fail(ctx, status, msg, x.reqID, p)
	if x.clientClose {
		ctx.SetConnectionClose()
	}
	class := metrics.CodeClass(status)
	if x.r == nil {
		x.rt.notFound[class].Inc()
		l.finish(ctx, &x.rec, x.reqID, reason, -1)
		return
	}
	x.r.stats.noBackend[class].Inc()
	end := l.finish(ctx, &x.rec, x.reqID, reason, -1)
	x.r.stats.observe(-1, end.Sub(x.rec.start), x.reqID, end)
}

// pick chooses and acquires the member for x's next attempt and sets the
// attempt's deadline. It returns -1 when no member is left; the 503 is then
// in ctx.Response.
func (l *httpListener) pick(ctx *fasthttp.RequestCtx, x *exchange) int {
	p := x.p
	if p.queue != nil && (x.wait || p.queue.waiting()) && !x.aff.strict {
		return pickQueue // behind the requests already waiting (core_queue.go)
	}
	i := x.aff.pin
	if i >= 0 && x.attempt == 0 {
		p.pool.Acquire(i)
	} else {
		i = p.pool.PickAcquire(x.key, x.tried)
	}
	if i < 0 {
		if x.attempt > 0 {
			p.retrying.Add(-1) // the retry attempted counted ends here
		}
		p.noBackend.Inc()
		l.fail(ctx, fasthttp.StatusServiceUnavailable, "no healthy backend", x.reqID, p)
		x.reason = "no_backend"
		return -1
	}
	x.member = i
	// The first attempt's deadline counts from the request's start, which
	// fasthttp read just before calling us: one clock read per request is
	// enough. Retries read the clock again.
	if x.attempt == 0 {
		x.fw.startAttempt(x.rec.start)
	} else {
		x.fw.startAttempt(time.Now())
	}
	return i
}

// attempted records how the attempt on member i ended (err nil: the answer
// is in ctx.Response, at least its head) and releases the member. It
// returns true when the request is to be tried again on another member; on
// false, ctx.Response holds what the client gets.
func (l *httpListener) attempted(ctx *fasthttp.RequestCtx, x *exchange, i int, err error) bool {
	p := x.p
	p.pool.Release(i)
	if x.attempt > 0 {
		p.retrying.Add(-1)
	}
	if err == nil {
		// The metric counts every 5xx; passive ejection only the statuses
		// of failure_statuses (any other answer shows the backend alive).
		code := ctx.Response.StatusCode()
		x.noteAttempt(i, outcomeAnswered, code, x.fw.head)
		if code >= 500 {
			p.errs[i][reasonStatus5xx].Inc()
		}
		if p.ejector != nil {
			if p.cfg.Passive.FailureStatuses.Has(code) {
				p.ejector.Failure(i)
			} else {
				p.ejector.Success(i)
			}
		}
		if x.fw.tunnel {
			removeTunnelHopHeaders(&ctx.Response.Header)
		} else {
			removeResponseHopHeaders(&ctx.Response.Header)
		}
		ctx.Response.Header.SetBytesKV(hdrXRequestID, x.reqID)
		if p.aff != nil {
			p.aff.respond(&ctx.Response, i, &x.aff)
		}
		return false
	}
	st, why, retryable := classifyUpstreamError(err, &ctx.Request)
	x.noteAttempt(i, attemptOutcome(err, st, why), 0, x.fw.failedAt())
	if why == reasonLimit && p.queue != nil && !x.aff.strict {
		// Not a failure: the request waits in the pool's queue (pick
		// answers pickQueue), as the same retry if it is one.
		if x.attempt > 0 {
			p.retrying.Add(1)
		}
		x.wait = true
		return true
	}
	clientFault := st == fasthttp.StatusRequestEntityTooLarge || st == statusClientClosed || st == fasthttp.StatusBadRequest
	if !clientFault {
		p.errs[i][why].Inc()
	}
	if p.ejector != nil && (why == reasonConnect || why == reasonReset || why == reasonTimeout && p.cfg.Passive.CountTimeouts) {
		p.ejector.Failure(i)
	}
	// A streamed body cannot be sent twice: retry only when no byte of it
	// was read. A session lives on its member alone.
	if (x.streamed && why != reasonConnect && why != reasonLimit) || x.aff.strict {
		retryable = false
	}
	if retryable && x.attempt < p.retries && p.retryAllowed() {
		x.tried |= 1 << (uint(i) % 64)
		x.attempt++
		p.retrying.Add(1)
		p.retriesTotal.Inc()
		clearForRetry(&ctx.Response)
		return true
	}
	x.reason = reasonNames[why]
	if clientFault {
		x.reason = clientFaultReason(st)
		ctx.SetConnectionClose() // the rest of the body is not read
	}
	l.fail(ctx, st, upstreamMessage(st), x.reqID, p)
	return false
}

// grpcStatus takes the grpc-status a backend's gRPC answer ended with on
// member i: UNAVAILABLE (14) counts against the member's passive ejection,
// as an HTTP status in failure_statuses does (the answer's HTTP status,
// 200, counted as a success in attempted).
func (l *httpListener) grpcStatus(x *exchange, i, code int) {
	if code == grpcUnavailable && x.p.ejector != nil && i >= 0 {
		x.p.ejector.Failure(i)
	}
}

// grpcUnavailable is gRPC's UNAVAILABLE status code.
const grpcUnavailable = 14

// clearForRetry empties a response for the next attempt. Not
// Response.Reset: that also clears the header's NoDefaultDate and
// NoDefaultContentType, which fasthttp's server sets once per request, so
// the answer of a retried request would lose the backend's Date and gain a
// Content-Type nobody sent. The next attempt's head read resets the rest of
// the header.
func clearForRetry(resp *fasthttp.Response) {
	resp.ResetBody()
	resp.SkipBody = false
	resp.Header.ResetConnectionClose()
}

// end finishes a request that reached the pick phase: metrics and the
// access log line.
func (l *httpListener) end(ctx *fasthttp.RequestCtx, x *exchange) {
	counted := x.counted
	if !counted {
		l.count(ctx, x)
	}
	x.rec.retries = x.attempt
	// A stream that broke after its head counts as the answer it began
	// as; only the log line says why it ended early.
	reason := x.reason
	if reason == "" {
		reason = x.rec.reason
	}
	end := l.finish(ctx, &x.rec, x.reqID, reason, x.bytesOut)
	if !counted {
		x.r.stats.observe(x.member, end.Sub(x.rec.start), x.reqID, end)
	}
}

// countHead counts a request whose answer's head is out and whose body is
// still coming (the event loop): its metrics, with request_duration_seconds
// up to the head, as the goroutine engine's handler returns once the head is
// read. end then only writes the access log line.
func (l *httpListener) countHead(ctx *fasthttp.RequestCtx, x *exchange) {
	l.count(ctx, x)
	now := time.Now()
	x.r.stats.observe(x.member, now.Sub(x.rec.start), x.reqID, now)
}

// count updates a request's metrics, all but its duration, once.
func (l *httpListener) count(ctx *fasthttp.RequestCtx, x *exchange) {
	x.counted = true
	p, r := x.p, x.r
	p.active.Add(-1)
	if x.streamed {
		x.rec.bytesIn = int(x.fw.bodyIn)
	}
	if x.clientClose {
		ctx.SetConnectionClose()
	}
	class := metrics.CodeClass(ctx.Response.StatusCode())
	if x.member >= 0 && x.reason == "" {
		r.stats.requests[x.member][class].Inc()
		x.rec.backend = p.ups[x.member].be.Address()
	} else {
		r.stats.noBackend[class].Inc()
		if x.member >= 0 {
			x.rec.backend = p.ups[x.member].be.Address()
		}
	}
}

// attemptAbandoned ends the attempt on x.member when the client left
// before the answer came (the event loop): nginx's 499, not the backend's
// fault.
func (l *httpListener) attemptAbandoned(ctx *fasthttp.RequestCtx, x *exchange) {
	x.noteAttempt(x.member, outcomeClientGone, 0, x.fw.failedAt())
	x.p.pool.Release(x.member)
	if x.attempt > 0 {
		x.p.retrying.Add(-1)
	}
	ctx.Response.Reset()
	ctx.Response.SetStatusCode(statusClientClosed)
	x.reason = clientFaultReason(statusClientClosed)
}

// finish writes the access log line and returns the time it took as end.
// bytesOut, when not negative, is the body length sent (the event loop
// relays bodies outside ctx.Response).
func (l *httpListener) finish(ctx *fasthttp.RequestCtx, rec *accessRecord, reqID []byte, reason string, bytesOut int) time.Time {
	end := time.Now()
	traced := rec.trace.sampled
	if !traced && !l.log.enabled() {
		return end
	}
	rec.duration = end.Sub(rec.start)
	rec.requestID = reqID
	rec.status = ctx.Response.StatusCode()
	rec.reason = reason
	if traced {
		if t := l.tracer(); t != nil {
			t.export(rec, &rec.trace) // a stream's span ends with its head
		}
	}
	if s, ok := ctx.Response.BodyStream().(streamLogger); ok {
		// Never Body() on a stream: it would read it all into memory.
		s.logAtEnd(l.log, *rec)
		return end
	}
	rec.bytesOut = bytesOut
	if bytesOut < 0 && !ctx.Request.Header.IsHead() {
		rec.bytesOut = len(ctx.Response.Body())
	} else if bytesOut < 0 {
		rec.bytesOut = 0 // the answer to HEAD has no body
	}
	l.log.log(rec)
	return end
}

// requestID finds the request's ID (traceparent trace-id, else a safe
// X-Request-ID, else a new one), makes sure X-Request-ID carries it to the
// backend, and returns it. The result stays valid until the handler returns.
func (l *httpListener) requestID(req *fasthttp.Request, buf *[32]byte) []byte {
	h := &req.Header
	id, src := requestid.Pick(h.PeekBytes(hdrTraceparent), h.PeekBytes(hdrXRequestID))
	switch src {
	case requestid.Traceparent:
		if cur := h.PeekBytes(hdrXRequestID); string(cur) != string(id) {
			// Copy first: setting a header may move the header storage
			// the trace-id points into.
			n := copy(buf[:], id)
			h.SetBytesKV(hdrXRequestID, buf[:n])
		}
		return h.PeekBytes(hdrXRequestID)
	case requestid.Header:
		return id
	}
	// Not into id: buf must not flow to the result (it would escape).
	h.SetBytesKV(hdrXRequestID, l.ids.Next(buf))
	return h.PeekBytes(hdrXRequestID)
}

// fail answers the client with status and a one-line body naming the
// request ID. It never includes an error's text (which may carry internal
// addresses).
func (l *httpListener) fail(ctx *fasthttp.RequestCtx, status int, msg string, reqID []byte, p *poolRuntime) {
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(status)
	resp.Header.SetContentType("text/plain; charset=utf-8")
	resp.Header.SetBytesKV(hdrXRequestID, reqID)
	if status == fasthttp.StatusServiceUnavailable {
		resp.Header.SetBytesKV(hdrRetryAfter, retryAfterValue)
	}
	var buf [192]byte
	b := append(buf[:0], "frontdoor: "...)
	b = append(b, msg...)
	if p != nil {
		b = append(b, " in pool "...)
		b = append(b, p.name...)
	}
	b = append(b, " (request "...)
	b = append(b, reqID...)
	b = append(b, ")\n"...)
	resp.SetBody(b)
}

var retryAfterValue = []byte("1")

// retryAllowed applies the retry budget: retries in flight may be at most
// retry_budget of the requests in flight, with a floor of 3, so a failing
// pool cannot double its own load.
func (p *poolRuntime) retryAllowed() bool {
	r := p.retrying.Load()
	return r < 3 || float64(r) < p.retryBudget*float64(p.active.Load())
}

// key returns the consistent-hash key of a request, or 0 for strategies that
// ignore it. A request that lacks its hash_on key falls back to the client
// address and counts in hash_key_missing_total.
func (p *poolRuntime) key(ctx *fasthttp.RequestCtx, client netip.Addr) uint64 {
	var v []byte
	switch p.hashSource {
	case "":
		return 0
	case "source_ip":
		return sourceIPKey(client)
	case "header":
		v = ctx.Request.Header.PeekBytes(p.hashName)
	case "cookie":
		v = ctx.Request.Header.CookieBytes(p.hashName)
	case "query":
		v = ctx.QueryArgs().PeekBytes(p.hashName)
	case "path":
		v = ctx.Path()
	}
	if len(v) == 0 {
		p.keyMissing.Inc()
		return sourceIPKey(client)
	}
	return xxhash.Sum64(v)
}

// sourceIPKey is the hash key of the client's address (the one frontdoor
// believes: setForwardedHeaders).
func sourceIPKey(client netip.Addr) uint64 {
	if !client.IsValid() {
		return 0
	}
	b := client.Unmap().As16()
	return xxhash.Sum64(b[:])
}

// Limits and statuses every engine shares.
const (
	// requestPrefetch is how much of a request body fasthttp reads before
	// calling the handler when Server.StreamRequestBody is set (8 KiB in
	// v1.78), and the largest body the event loop serves. A body of at most
	// this length is buffered and may be retried.
	requestPrefetch = 8 << 10
	// maxInterim bounds the 1xx answers skipped before the final one.
	maxInterim = 16
	// spliceThreshold: a response body of known length with at least this
	// much left moves by splice(2), socket to pipe to socket, in both
	// engines (goengine_splice.go, loop_relay.go).
	spliceThreshold = 64 << 10
	// statusClientClosed is the status recorded when the client went away
	// mid-request (nginx's 499); the client never sees it.
	statusClientClosed = 499
)

// requestBody readies the request body for forwarding. It returns the body's
// length (-1 when it is chunked and not yet read) and whether it stays a
// stream. A body fasthttp already holds whole is turned into a plain body, so
// it can be sent again on a retry.
func requestBody(req *fasthttp.Request) (int, bool) {
	if !req.IsBodyStream() {
		return len(req.Body()), false
	}
	if n := req.Header.ContentLength(); n < 0 || n > requestPrefetch {
		return n, true
	}
	return len(req.Body()), false
}

// streamLogger is a response body that writes the access log line itself
// when it ends (upstreamBody).
type streamLogger interface {
	logAtEnd(log *AccessLog, rec accessRecord)
}

// forwarding is one attempt's settings and results, kept on the handler's
// stack.
type forwarding struct {
	timeout  time.Duration // response_timeout: to the response head
	deadline time.Time     // when this attempt's timeout ends
	streamed bool          // the request body is still arriving (clientBody)
	upgrade  bool          // the request asks for a protocol upgrade
	maxBody  int64         // max_body_bytes, enforced on streamed bodies
	// slot: the attempt holds a connection slot the queue handed it
	// (x.slot); the goroutine engine's connect uses it (forward).
	slot bool

	bodyIn int64 // bytes of a streamed request body sent on
	tunnel bool  // a 101 answer: a tunnel now owns the backend connection

	// Timing points of the attempt for the access log and traces: when it
	// started, when its new connection was open (zero: a pooled one was
	// used), when the answer's head came, and when it failed. The event
	// loop takes them from its wake-up clock, free; the goroutine engine
	// reads the clock for head only when timed (someone wants the line).
	timed     bool
	start     time.Time
	connected time.Time
	head      time.Time
	end       time.Time
}

// startAttempt begins an attempt at now: its deadline and timing points.
func (fw *forwarding) startAttempt(now time.Time) {
	fw.deadline = now.Add(fw.timeout)
	fw.start, fw.connected, fw.head, fw.end = now, time.Time{}, time.Time{}, time.Time{}
}

// failedAt is when the attempt failed: what the engine noted, else now
// when somebody wants the line (a failure is no hot path).
func (fw *forwarding) failedAt() time.Time {
	if fw.end.IsZero() && fw.timed {
		return time.Now()
	}
	return fw.end
}

// noteAttempt adds the attempt on member i, which ended with outcome at
// end (zero: not measured), to x's access record.
func (x *exchange) noteAttempt(i int, outcome uint8, status int, end time.Time) {
	rec, fw := &x.rec, &x.fw
	n := rec.nTried
	rec.nTried++
	if n == 0 && !fw.start.IsZero() {
		rec.attemptsFrom = max(fw.start.Sub(rec.start), 0)
	}
	var a attemptRecord
	a.outcome, a.status = outcome, status
	if i >= 0 && i < len(x.p.ups) {
		a.backend = x.p.ups[i].be.Address()
	}
	if !end.IsZero() && !fw.start.IsZero() {
		a.took = max(end.Sub(fw.start), 1)
	}
	if !fw.start.IsZero() {
		a.from = max(fw.start.Sub(rec.start), 0)
	}
	switch {
	case !fw.connected.IsZero():
		a.newConn, a.connect = true, max(fw.connected.Sub(fw.start), 0)
	case outcome == outcomeConnectError || outcome == outcomeConnectTimeout:
		a.newConn, a.connect = true, a.took
	}
	rec.newConn, rec.connect, rec.ttfb = a.newConn, a.connect, 0
	if outcome == outcomeAnswered && !end.IsZero() {
		rec.ttfb = max(end.Sub(rec.start), 1)
	}
	if n < maxTried {
		rec.tried[n] = a
	}
}

// refuseHead answers a request fasthttp's server refused before the
// handler (handleError, expect) through the core's refuse, with the
// request's own ID when its head was read (headRead: then the record also
// says method, host, path and route), and closes the connection. The
// record's time is now: fasthttp did not start a request (ctx.Time is
// zero, or the previous request's on a keep-alive connection).
func (l *httpListener) refuseHead(ctx *fasthttp.RequestCtx, headRead bool, status int, msg, reason string) {
	var idBuf [32]byte
	x := exchange{rt: l.rt.Load(), member: -1, bytesOut: -1}
	x.reqID = l.requestID(&ctx.Request, &idBuf)
	x.rec = accessRecord{start: time.Now(), listener: x.rt.name}
	if headRead {
		h := &ctx.Request.Header
		x.rec.method, x.rec.host, x.rec.path = h.Method(), h.Host(), ctx.Path()
		x.clientClose = h.ConnectionClose()
		if r := x.rt.routes.match(x.rec.host, x.rec.path); r != nil {
			x.r, x.rec.route = r, r.name
		}
	}
	l.refuse(ctx, &x, nil, status, msg, reason)
	ctx.SetConnectionClose()
}
