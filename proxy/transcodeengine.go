package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2/hpack"

	"frontdoor/config"
	"frontdoor/proxy/transcode"
)

// The transcoding engine: HTTP/1.1 requests to a route with transcode =
// { ... } become gRPC calls to the route's h2c pool (proxy/transcode builds
// the messages; this file carries them). The goroutine engine hands such a
// request here after the core's begin (route, request ID, JWT, forwarding
// headers); the event loop never serves them (canServe). What it decides
// is the core's, as for any request: the pick with the pool's strategy,
// retries only while no byte reached a backend, passive ejection, metrics
// and the access record (with the gRPC method and status).
//
// The upstream is the HTTP/2 engine's: a call rides a stream on the
// picked backend's pooled connections (h2Call, transcodecall.go), the same
// connections and connection budget that gRPC passed through uses.

// transcodeRoute is a route's transcoding: its Transcoder and settings.
type transcodeRoute struct {
	tc      *transcode.Transcoder
	strip   string
	forward []string // request headers sent as metadata (canonical)
	maxBody int64
}

// transcodeKeys are the request headers always sent on as metadata, when
// present: the request ID and trace context, the token (unless the JWT
// stage stripped it), what frontdoor says about the client, and every
// forward_claims header (added per config).
var transcodeKeys = []string{"X-Request-Id", "Traceparent", "Tracestate", "Authorization",
	"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"}

// buildTranscoders reads the descriptor set of every transcoding route of
// cfg (again on every reload) and builds its Transcoder. Every problem is a
// *config.Error at the route's transcode key.
func buildTranscoders(cfg *config.Config) (map[*config.Route]*transcode.Transcoder, error) {
	out := map[*config.Route]*transcode.Transcoder{}
	var errs []error
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		for j := range lc.Routes {
			rc := &lc.Routes[j]
			tc := rc.Transcode
			if tc == nil {
				continue
			}
			t, err := transcode.Load(tc.DescriptorSet, transcode.Options{
				Services: tc.Services, UseProtoNames: tc.UseProtoNames, EmitDefaults: tc.EmitDefaults,
				EnumsAsInts: tc.EnumsAsInts, DiscardUnknown: tc.DiscardUnknown,
			})
			if err != nil {
				key := fmt.Sprintf("listener[%d].route[%d].transcode", i, j)
				for _, e := range splitJoined(err) {
					errs = append(errs, cfg.ErrorAt(key, e.Error()))
				}
				continue
			}
			out[rc] = t
		}
	}
	return out, errors.Join(errs...)
}

func splitJoined(err error) []error {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		return joined.Unwrap()
	}
	return []error{err}
}

// Check verifies what Load cannot see in cfg: for every transcoding route,
// that its descriptor set reads, lists the services named, and that their
// bindings' templates parse, name existing fields and do not conflict. It
// returns every problem as a *config.Error (config.Errors lists them).
// frontdoor -check runs it; Apply does the same work.
func Check(cfg *config.Config) error {
	_, err := buildTranscoders(cfg)
	return err
}

// transcodeRoute builds the transcoding of route r from its config, or
// returns nil for a route that does not transcode.
func (p *Proxy) transcodeRoute(gen *generation, rc *config.Route, lc *config.Listener) *transcodeRoute {
	tc := gen.transcoders[rc]
	if tc == nil {
		return nil
	}
	tr := &transcodeRoute{tc: tc, strip: rc.Transcode.StripPrefix, maxBody: lc.MaxBodyBytes}
	seen := map[string]bool{}
	add := func(h string) {
		if k := textproto.CanonicalMIMEHeaderKey(h); !seen[k] {
			seen[k] = true
			tr.forward = append(tr.forward, k)
		}
	}
	for _, h := range transcodeKeys {
		add(h)
	}
	for _, h := range claimHeaders(gen.cfg) {
		add(string(h))
	}
	for _, h := range rc.Transcode.ForwardHeaders {
		add(h)
	}
	return tr
}

// transcodeBufs are the buffers requests and answers are built in.
var transcodeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// serveTranscode answers a request routed to a transcoding route, after
// begin: it matches a binding, builds the gRPC call, sends it to a backend
// of the pool (trying another while no byte reached one) and writes the
// answer as JSON, or a stream of them. The caller runs end.
func (l *httpListener) serveTranscode(ctx *fasthttp.RequestCtx, x *exchange) {
	tr := x.r.transcode
	x.rec.grpc, x.rec.grpcStatus = true, -1
	uri := ctx.Request.URI()
	path := string(uri.PathOriginal())
	if tr.strip != "" {
		rest, ok := strings.CutPrefix(path, tr.strip)
		if !ok || rest != "" && rest[0] != '/' {
			l.transcodeAnswer(ctx, x, tr, transcode.ErrNotFound, "no_binding")
			return
		}
		if rest == "" {
			rest = "/"
		}
		path = rest
	}
	m, err := tr.tc.Match(string(ctx.Method()), path)
	if err != nil {
		reason := "no_binding"
		if !errors.Is(err, transcode.ErrNotFound) && !errors.Is(err, transcode.ErrMethodNotAllowed) {
			reason = "bad_request"
		}
		l.transcodeAnswer(ctx, x, tr, err, reason)
		return
	}
	b := m.Binding
	x.rec.grpcMethod = b.GRPCMethod
	body, tooLarge, err := readTranscodeBody(ctx, tr.maxBody)
	switch {
	case tooLarge:
		x.rec.bytesIn = 0
		l.transcodeAnswer(ctx, x, tr, &transcode.Error{HTTPStatus: 413, Code: transcode.CodeInvalidArgument, Message: "request body too large"}, "body_too_large")
		ctx.SetConnectionClose()
		return
	case err != nil:
		l.transcodeAnswer(ctx, x, tr, &transcode.Error{HTTPStatus: 400, Code: transcode.CodeInvalidArgument, Message: "request body not read"}, "client_gone")
		ctx.SetConnectionClose()
		return
	}
	x.rec.bytesIn = len(body)
	call, err := tr.tc.NewCall(m, string(uri.QueryString()), body)
	if err != nil {
		l.transcodeAnswer(ctx, x, tr, err, "bad_request")
		return
	}
	bufp := transcodeBufs.Get().(*[]byte)
	defer transcodeBufs.Put(bufp)
	frame, err := call.AppendFrame((*bufp)[:0])
	*bufp = frame[:0]
	if err != nil {
		l.transcodeAnswer(ctx, x, tr, err, "bad_request")
		return
	}
	p := x.p
	timeout := p.responseTimeout
	hc := getH2Call()
	defer func() {
		if hc != nil {
			hc.release()
		}
	}()
	if b.ServerStreaming {
		hc.prepare(b.GRPCMethod, 0)
	} else {
		hc.prepare(b.GRPCMethod, timeout)
	}
	for _, k := range tr.forward {
		if v := ctx.Request.Header.Peek(k); len(v) > 0 {
			hc.req.Header.SetBytesV(k, v)
		}
	}
	for {
		i := p.pool.PickAcquire(x.key, x.tried)
		if i < 0 {
			if x.attempt > 0 {
				p.retrying.Add(-1)
			}
			p.noBackend.Inc()
			x.member = -1
			l.transcodeAnswer(ctx, x, tr, errNoBackendJSON, "no_backend")
			ctx.Response.Header.SetBytesKV(hdrRetryAfter, retryAfterValue)
			return
		}
		x.member = i
		// Unary: the whole call; a stream: until its head.
		hc.arm(timeout)
		err := hc.send(p.ups[i], p.cfg.ConnectTimeout.Duration, frame)
		if err == nil {
			err = hc.awaitHead()
		}
		if x.attempt > 0 {
			p.retrying.Add(-1)
		}
		if err != nil {
			hc.end()
			p.pool.Release(i)
			_, why, retryable := classifyUpstreamError(err, &hc.req)
			p.errs[i][why].Inc()
			if why == reasonConnect || why == reasonReset || why == reasonTimeout && p.cfg.Passive.CountTimeouts {
				p.ejector.Failure(i)
			}
			if retryable && x.attempt < p.retries && p.retryAllowed() {
				x.tried |= 1 << (uint(i) % 64)
				x.attempt++
				p.retrying.Add(1)
				p.retriesTotal.Inc()
				continue
			}
			answer := errBackendJSON
			switch why {
			case reasonTimeout:
				answer = errTimeoutJSON
			case reasonLimit:
				answer = errLimitJSON
			}
			x.rec.grpcStatus = answer.Code
			l.transcodeAnswer(ctx, x, tr, answer, reasonNames[why])
			if why == reasonLimit {
				ctx.Response.Header.SetBytesKV(hdrRetryAfter, retryAfterValue)
			}
			return
		}
		if b.ServerStreaming {
			hc.disarm() // the head is in: a stream may run as long as it likes
			if l.transcodeStream(ctx, x, tr, call, hc, i) {
				hc = nil // the answer's body has it now
			}
			return
		}
		l.transcodeUnary(ctx, x, tr, call, hc, i)
		p.pool.Release(i)
		return
	}
}

// readTranscodeBody returns the request body whole, read up to max bytes.
func readTranscodeBody(ctx *fasthttp.RequestCtx, max int64) (body []byte, tooLarge bool, err error) {
	if !ctx.Request.IsBodyStream() {
		b := ctx.Request.Body()
		return b, int64(len(b)) > max, nil
	}
	if n := ctx.Request.Header.ContentLength(); n > 0 && int64(n) > max {
		return nil, true, nil
	}
	b, err := io.ReadAll(io.LimitReader(ctx.RequestBodyStream(), max+1))
	if err != nil {
		return nil, false, err
	}
	if int64(len(b)) > max {
		return nil, true, nil
	}
	return b, false, nil
}

// Answers the engine makes itself, as JSON errors.
var (
	errNoBackendJSON = &transcode.Error{HTTPStatus: 503, Code: transcode.CodeUnavailable, Message: "no healthy backend"}
	errLimitJSON     = &transcode.Error{HTTPStatus: 503, Code: transcode.CodeUnavailable, Message: "every backend is at its connection limit"}
	errBackendJSON   = &transcode.Error{HTTPStatus: 502, Code: transcode.CodeUnavailable, Message: "backend unavailable"}
	errTimeoutJSON   = &transcode.Error{HTTPStatus: 504, Code: transcode.CodeDeadlineExceeded, Message: "backend timed out"}
	errStreamJSON    = transcode.Status{Code: transcode.CodeUnavailable, Message: "backend stream broken"}
)

var (
	valTranscodeUA = []byte("frontdoor-transcode")
	valJSON        = []byte("application/json")
)

// transcodeAnswer answers with a JSON error body made of err (an
// *transcode.Error, else INTERNAL), with reason in the access record.
func (l *httpListener) transcodeAnswer(ctx *fasthttp.RequestCtx, x *exchange, tr *transcodeRoute, err error, reason string) {
	status := 500
	var e *transcode.Error
	if errors.As(err, &e) {
		status = e.HTTPStatus
	}
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(status)
	resp.Header.SetContentTypeBytes(valJSON)
	resp.Header.SetBytesKV(hdrXRequestID, x.reqID)
	bufp := transcodeBufs.Get().(*[]byte)
	out := tr.tc.AppendErrorOf((*bufp)[:0], err)
	resp.SetBody(out)
	*bufp = out[:0]
	transcodeBufs.Put(bufp)
	x.reason = reason
}

// transcodeStatus reads a call's end from its trailers (or its head,
// trailers-only).
func transcodeStatus(fields []hpack.HeaderField) (transcode.Status, bool) {
	var code, msg, details string
	found := false
	for _, f := range fields {
		switch f.Name {
		case "grpc-status":
			code, found = f.Value, true
		case "grpc-message":
			msg = f.Value
		case "grpc-status-details-bin":
			details = f.Value
		}
	}
	if !found {
		return transcode.Status{}, false
	}
	return transcode.ParseStatus(code, msg, details)
}

// reservedMetadata are response metadata keys (lower case) that are not
// passed to the client as Grpc-Metadata-* headers.
func reservedMetadata(k string) bool {
	switch k {
	case "content-type", "date", "trailer", "content-length":
		return true
	}
	return strings.HasPrefix(k, "grpc-")
}

// copyMetadata passes the backend's metadata to the client as headers
// named prefix + key (grpc-gateway's Grpc-Metadata- and Grpc-Trailer-);
// scratch is where the names are built.
func copyMetadata(resp *fasthttp.Response, fields []hpack.HeaderField, prefix string, scratch *[]byte) {
	for _, f := range fields {
		if reservedMetadata(f.Name) {
			continue
		}
		k := append(append((*scratch)[:0], prefix...), f.Name...)
		resp.Header.AddBytesKV(k, unsafeBytes(f.Value))
		*scratch = k[:0]
	}
}

// passiveAnswer tells passive ejection how an answer the backend finished
// went: a failure for UNAVAILABLE or an HTTP status in failure_statuses.
func passiveAnswer(p *poolRuntime, i, httpStatus, grpcStatus int) {
	if httpStatus >= 500 {
		p.errs[i][reasonStatus5xx].Inc()
	}
	if grpcStatus == transcode.CodeUnavailable || p.cfg.Passive.FailureStatuses.Has(httpStatus) {
		p.ejector.Failure(i)
	} else {
		p.ejector.Success(i)
	}
}

// transcodeUnary reads a unary call's answer and writes it as JSON.
func (l *httpListener) transcodeUnary(ctx *fasthttp.RequestCtx, x *exchange, tr *transcodeRoute, call *transcode.Call, hc *h2Call, i int) {
	p := x.p
	if hc.status != fasthttp.StatusOK {
		passiveAnswer(p, i, hc.status, -1)
		x.rec.grpcStatus = transcode.CodeUnavailable
		l.transcodeAnswer(ctx, x, tr, errBackendJSON, "bad_gateway")
		return
	}
	st, ok := transcodeStatus(hc.head()) // trailers-only
	var msg []byte
	if !ok {
		bufp := transcodeBufs.Get().(*[]byte)
		defer transcodeBufs.Put(bufp)
		var err error
		msg, err = transcode.ReadFrame(hc, (*bufp)[:0], int(tr.maxBody))
		if err == nil {
			*bufp = msg[:0]
			// The rest: nothing but the end of the stream, then trailers.
			err = hc.rest()
		} else if errors.Is(err, io.EOF) {
			msg, err = nil, nil
		}
		if err != nil {
			why, answer := reasonReset, errBackendJSON
			if errors.Is(err, os.ErrDeadlineExceeded) {
				why, answer = reasonTimeout, errTimeoutJSON
			}
			p.errs[i][why].Inc()
			if why == reasonReset || p.cfg.Passive.CountTimeouts {
				p.ejector.Failure(i)
			}
			x.rec.grpcStatus = answer.Code
			l.transcodeAnswer(ctx, x, tr, answer, reasonNames[why])
			return
		}
		st, ok = transcodeStatus(hc.trailers())
		if !ok {
			st = transcode.Status{Code: transcode.CodeUnknown, Message: "backend sent no grpc-status"}
		}
	}
	x.rec.grpcStatus = st.Code
	passiveAnswer(p, i, 200, st.Code)
	out := &ctx.Response
	out.Reset()
	out.Header.SetContentTypeBytes(valJSON)
	out.Header.SetBytesKV(hdrXRequestID, x.reqID)
	copyMetadata(out, hc.head(), "Grpc-Metadata-", &hc.scrap)
	copyMetadata(out, hc.trailers(), "Grpc-Trailer-", &hc.scrap)
	bufp := transcodeBufs.Get().(*[]byte)
	defer transcodeBufs.Put(bufp)
	body := (*bufp)[:0]
	if st.Code != transcode.CodeOK || msg == nil {
		if st.Code == transcode.CodeOK {
			st = transcode.Status{Code: transcode.CodeInternal, Message: "backend sent no message"}
		}
		out.SetStatusCode(transcode.HTTPStatus(st.Code))
		body = tr.tc.AppendError(body, st)
	} else {
		var err error
		body, err = call.AppendResponse(body, msg)
		if err != nil {
			out.SetStatusCode(502)
			x.rec.grpcStatus = transcode.CodeInternal
			x.reason = "bad_gateway"
			body = tr.tc.AppendError(body[:0], transcode.Status{Code: transcode.CodeInternal, Message: "backend's answer does not decode"})
		} else {
			out.SetStatusCode(200)
		}
	}
	out.SetBody(body)
	*bufp = body[:0]
}

// transcodeStream starts writing a server stream's messages to the client
// as they come (transcodeStreamBody.Read), in the format the client's Accept
// asks for. A stream that ends before its first message with an error
// (trailers-only) is answered as a unary error. It reports whether the
// answer's body took hc (and the pool member), to end them when it ends;
// otherwise the caller ends the call.
func (l *httpListener) transcodeStream(ctx *fasthttp.RequestCtx, x *exchange, tr *transcodeRoute, call *transcode.Call, hc *h2Call, i int) bool {
	p := x.p
	if hc.status != fasthttp.StatusOK {
		passiveAnswer(p, i, hc.status, -1)
		p.pool.Release(i)
		x.rec.grpcStatus = transcode.CodeUnavailable
		l.transcodeAnswer(ctx, x, tr, errBackendJSON, "bad_gateway")
		return false
	}
	if st, ok := transcodeStatus(hc.head()); ok {
		p.pool.Release(i)
		passiveAnswer(p, i, 200, st.Code)
		x.rec.grpcStatus = st.Code
		out := &ctx.Response
		out.Reset()
		out.Header.SetBytesKV(hdrXRequestID, x.reqID)
		copyMetadata(out, hc.head(), "Grpc-Metadata-", &hc.scrap)
		if st.Code == transcode.CodeOK { // an empty stream
			out.SetStatusCode(200)
			out.Header.SetContentType(transcode.FormatFor(string(ctx.Request.Header.Peek("Accept"))).ContentType())
			return false
		}
		out.SetStatusCode(transcode.HTTPStatus(st.Code))
		out.Header.SetContentTypeBytes(valJSON)
		out.SetBody(tr.tc.AppendError(nil, st))
		return false
	}
	format := transcode.FormatFor(string(ctx.Request.Header.Peek("Accept")))
	s := &transcodeStreamBody{
		call: call, tc: tr.tc, format: format, hc: hc,
		p: p, member: i, max: int(tr.maxBody), live: &l.live, status: -1,
	}
	// The head waits for the first message (as grpc-gateway's does), so
	// that a stream failing before it gets its error's status.
	s.fill()
	out := &ctx.Response
	out.Reset()
	out.Header.SetBytesKV(hdrXRequestID, x.reqID)
	copyMetadata(out, hc.head(), "Grpc-Metadata-", &hc.scrap)
	if s.done && s.msgs == 0 {
		x.rec.grpcStatus = s.status
		s.hc = nil // the caller ends the call
		_ = s.CloseWithError(nil)
		switch {
		case s.readErr:
			l.transcodeAnswer(ctx, x, tr, errBackendJSON, "reset")
		case s.status != transcode.CodeOK:
			out.SetStatusCode(transcode.HTTPStatus(s.st.Code))
			out.Header.SetContentTypeBytes(valJSON)
			out.SetBody(tr.tc.AppendError(nil, s.st))
		default:
			out.SetStatusCode(200)
			out.Header.SetContentType(format.ContentType())
		}
		return false
	}
	out.SetStatusCode(200)
	out.Header.SetContentType(format.ContentType())
	out.Header.Set("Cache-Control", "no-cache")
	if !l.live.add(s) {
		s.abort()
	}
	out.SetBodyStream(s, -1)
	return true
}

// transcodeStreamBody is a server stream's answer body: each gRPC message read
// from the backend becomes one NDJSON line or server-sent event; the
// stream's end adds an error line or event when its status is not OK. It
// writes the access log line when it ends.
type transcodeStreamBody struct {
	call   *transcode.Call
	tc     *transcode.Transcoder
	format transcode.Format
	p      *poolRuntime
	member int
	max    int
	live   *liveSet

	// mu guards hc, which abort (a drain) may use while the body ends.
	mu sync.Mutex
	hc *h2Call

	frame   []byte
	out     []byte
	off     int
	done    bool
	msgs    int
	st      transcode.Status
	status  int
	readErr bool
	n       int64
	closed  bool

	log    *AccessLog
	rec    accessRecord
	logBuf []byte
}

func (s *transcodeStreamBody) Read(b []byte) (int, error) {
	for s.off == len(s.out) {
		if s.done {
			return 0, io.EOF
		}
		s.fill()
	}
	n := copy(b, s.out[s.off:])
	s.off += n
	s.n += int64(n)
	return n, nil
}

// fill reads the stream's next event from the backend into s.out: a
// message, or the end (with an error line or event when it is not OK).
func (s *transcodeStreamBody) fill() {
	s.out, s.off = s.out[:0], 0
	msg, err := transcode.ReadFrame(s.hc, s.frame, s.max)
	switch {
	case err == nil:
		s.frame = msg[:0]
		out, cerr := s.call.AppendStreamMessage(s.out, s.format, msg)
		if cerr != nil {
			s.st = transcode.Status{Code: transcode.CodeInternal, Message: "backend's answer does not decode"}
			s.out = s.tc.AppendStreamError(out, s.format, s.st)
			s.status, s.done = s.st.Code, true
			return
		}
		s.out = out
		s.msgs++
	case errors.Is(err, io.EOF):
		st, ok := transcodeStatus(s.hc.trailers())
		if !ok {
			st = transcode.Status{Code: transcode.CodeUnknown, Message: "backend sent no grpc-status"}
		}
		s.st, s.status, s.done = st, st.Code, true
		if st.Code != transcode.CodeOK {
			s.out = s.tc.AppendStreamError(s.out, s.format, st)
		}
	default:
		s.st, s.status, s.done, s.readErr = errStreamJSON, errStreamJSON.Code, true, true
		s.out = s.tc.AppendStreamError(s.out, s.format, errStreamJSON)
	}
}

// CloseWithError implements fasthttp.ReadCloserWithError: fasthttp calls
// it once the answer is written (err nil) or failed (err set).
func (s *transcodeStreamBody) CloseWithError(err error) error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.live.remove(s)
	s.mu.Lock()
	hc := s.hc
	s.hc = nil
	s.mu.Unlock()
	if hc != nil {
		hc.release()
	}
	s.p.pool.Release(s.member)
	switch {
	case s.readErr:
		s.p.errs[s.member][reasonReset].Inc()
		s.p.ejector.Failure(s.member)
	case s.done:
		passiveAnswer(s.p, s.member, 200, s.status)
	}
	if s.log != nil {
		s.rec.bytesOut = int(s.n)
		s.rec.duration = time.Since(s.rec.start)
		s.rec.grpcStatus = s.status
		switch {
		case s.readErr:
			s.rec.reason = "upstream_stream_error"
		case err != nil || !s.done:
			s.rec.reason = "client_gone"
		}
		s.log.log(&s.rec)
	}
	return nil
}

// Close is CloseWithError(nil).
func (s *transcodeStreamBody) Close() error { return s.CloseWithError(nil) }

// abort ends the stream at a drain's deadline: the backend call fails, so
// the pending read returns.
func (s *transcodeStreamBody) abort() {
	s.mu.Lock()
	if s.hc != nil {
		s.hc.abort()
	}
	s.mu.Unlock()
}

// logAtEnd takes over the access log line (streamLogger), copying the
// record's byte slices, which point into the request.
func (s *transcodeStreamBody) logAtEnd(log *AccessLog, rec accessRecord) {
	s.log = log
	s.rec = rec
	buf := append(s.logBuf[:0], rec.requestID...)
	buf = append(buf, rec.method...)
	buf = append(buf, rec.host...)
	buf = append(buf, rec.path...)
	s.logBuf = buf
	i := 0
	take := func(n int) []byte { b := buf[i : i+n : i+n]; i += n; return b }
	s.rec.requestID = take(len(rec.requestID))
	s.rec.method = take(len(rec.method))
	s.rec.host = take(len(rec.host))
	s.rec.path = take(len(rec.path))
}
