package grpc

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"frontdoor/proxy/internal/requestid"
)

// Causes of the call context's cancellation that frontdoor sets itself.
var (
	errCallDeadline    = errors.New("grpc: call deadline exceeded")
	errResponseTimeout = errors.New("grpc: backend response timeout")
)

const copyBufSize = 32 << 10

var (
	copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}
	outcomes = sync.Pool{New: func() any { return new(Outcome) }}
)

// ServeHTTP proxies one call. ServeConn routes every stream here; it is
// exported so the Server can also sit behind another HTTP/2 server, in which
// case that server must not buffer responses or alter trailers.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o := outcomes.Get().(*Outcome)
	*o = Outcome{Request: r, Backend: -1, GRPCStatus: -1, Start: time.Now()}
	o.RequestID = requestID(r.Header, s.ids)
	w.Header()[hdrRequestID] = r.Header[hdrRequestID]

	observe := s.opts.Observe
	var route *Route
	switch {
	case r.Method != http.MethodPost:
		o.HTTPStatus, o.Reason = http.StatusMethodNotAllowed, ReasonNotGRPC
		w.Header()["Allow"] = valAllowPost
		plainError(w, http.StatusMethodNotAllowed, "frontdoor: gRPC calls use POST\n")
	case !isGRPC(r.Header[hdrContentType]):
		o.HTTPStatus, o.Reason = http.StatusUnsupportedMediaType, ReasonNotGRPC
		plainError(w, http.StatusUnsupportedMediaType, "frontdoor: only gRPC is served over HTTP/2 cleartext\n")
	case !s.route(r, &route):
		o.HTTPStatus, o.GRPCStatus, o.Reason = http.StatusOK, int(codes.Unimplemented), ReasonNoRoute
		writeStatus(w, codes.Unimplemented, msgNoRoute)
	default:
		o.Route = route
		observe = route.Observe
		s.call(w, r, route, o)
	}
	if observe != nil {
		o.Duration = time.Since(o.Start)
		observe(o)
	}
	*o = Outcome{}
	outcomes.Put(o)
}

var valAllowPost = []string{http.MethodPost}

// route resolves r through the Router into *rt and reports whether a route
// matched.
func (s *Server) route(r *http.Request, rt **Route) bool {
	if s.opts.Router == nil {
		return false
	}
	var ok bool
	*rt, ok = s.opts.Router.RouteGRPC(r.Host, r.URL.Path)
	return ok && *rt != nil
}

// requestID returns the call's request ID by the rule every engine follows
// (requestid.Pick: the trace-id of its traceparent, else its X-Request-Id if
// safe to log, else a new one from ids) and makes sure h carries it as the
// only X-Request-Id. A call whose own X-Request-Id is kept costs no
// allocation.
func requestID(h http.Header, ids *requestid.Generator) string {
	var traceparent, own string
	if v := h[hdrTraceparent]; len(v) > 0 {
		traceparent = v[0]
	}
	v := h[hdrRequestID]
	if len(v) > 0 {
		own = v[0]
	}
	id, src := requestid.Pick(traceparent, own)
	switch {
	case src == requestid.None:
		var buf [requestid.Len]byte
		id = string(ids.Next(&buf))
	case len(v) == 1 && v[0] == id:
		return id
	}
	h[hdrRequestID] = []string{id}
	return id
}

// call forwards a routed call: authorize, pick, connect (with retries),
// then relay the response.
func (s *Server) call(w http.ResponseWriter, r *http.Request, rt *Route, o *Outcome) {
	st := rt.prepare(s)
	o.HTTPStatus = http.StatusOK

	if rt.Authorize != nil {
		if ok, www := rt.Authorize(r); !ok {
			if www != "" {
				w.Header()[hdrWWWAuth] = []string{www}
			}
			o.GRPCStatus, o.Reason = int(codes.Unauthenticated), ReasonUnauthenticated
			writeStatus(w, codes.Unauthenticated, msgUnauthenticated)
			return
		}
	}
	if rt.Pool == nil {
		s.fail(w, o, st, -1, ReasonNoBackend, codes.Unavailable, msgNoBackend)
		return
	}

	// The call's context: cancelled when the client resets its stream, at
	// its grpc-timeout, and at the route's response timeout until the
	// response headers are in.
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	timeout, hasTimeout := time.Duration(0), false
	if v := r.Header[hdrGRPCTimeout]; len(v) > 0 {
		timeout, hasTimeout = parseTimeout(v[0])
	}
	if hasTimeout {
		var cancelDeadline context.CancelFunc
		ctx, cancelDeadline = context.WithDeadlineCause(ctx, o.Start.Add(timeout), errCallDeadline)
		defer cancelDeadline()
	}
	var headerTimer *time.Timer
	if rt.ResponseTimeout > 0 && (!hasTimeout || rt.ResponseTimeout < timeout) {
		headerTimer = time.AfterFunc(rt.ResponseTimeout, func() { cancel(errResponseTimeout) })
		defer headerTimer.Stop()
	}

	body := &reqBody{rc: r.Body}
	defer body.countIn(o)
	if rt.InFlight != nil {
		rt.InFlight(1)
	}
	resp := s.attempt(ctx, w, r, rt, st, o, body)
	if rt.InFlight != nil {
		rt.InFlight(-1)
	}
	if resp == nil {
		return // answered
	}
	defer rt.Pool.Release(o.Backend)
	if headerTimer != nil {
		headerTimer.Stop()
	}
	s.relay(ctx, w, r, resp, st, o)
	rt.passive(ctx, o.Backend, o.Reason, o)
}

// attempt picks a backend and sends the call to it, trying another one
// while the failure allows a retry (a connect failure or a full connection
// budget, before any byte of the body was read, within Retries and
// RetryAllowed). It returns the backend's
// response, with o.Backend acquired in the pool (the caller releases it), or
// nil when it answered the client itself.
func (s *Server) attempt(ctx context.Context, w http.ResponseWriter, r *http.Request, rt *Route, st *routeState, o *Outcome, body *reqBody) *http.Response {
	var outBody io.ReadCloser = body
	if r.Body == nil || r.Body == http.NoBody {
		outBody = nil
	}
	key := st.key(r)
	members := rt.Pool.Members()
	var tried uint64
	lastReason, lastMsg := ReasonConnect, msgConnect // of the last member tried
	for {
		idx := rt.Pool.PickAcquire(key, tried)
		if idx >= 0 && tried&(1<<(uint(idx)%64)) != 0 {
			rt.Pool.Release(idx) // only tried members are up: give up
			idx = -1
		}
		if idx < 0 {
			reason, msg := ReasonNoBackend, msgNoBackend
			if tried != 0 {
				reason, msg = lastReason, lastMsg // that error was already counted
			}
			if o.Retries > 0 && rt.Retrying != nil {
				rt.Retrying(-1) // the retry ends without an attempt
			}
			s.fail(w, o, st, -1, reason, codes.Unavailable, msg)
			return nil
		}
		o.Backend = idx
		b := members[idx].Backend
		out := r.WithContext(ctx)
		out.URL = &url.URL{Scheme: "http", Host: b.Address(), Path: r.URL.Path, RawPath: r.URL.RawPath}
		out.RequestURI = ""
		out.Body = outBody
		out.Close = false

		// PickAcquire counted the call on idx (bounded loads see it).
		resp, err := s.transport.RoundTrip(out)
		if o.Retries > 0 && rt.Retrying != nil {
			rt.Retrying(-1)
		}
		if err == nil {
			return resp
		}
		rt.Pool.Release(idx)
		reason, code, msg := classify(ctx, r, err)
		if reason == ReasonClientGone {
			o.HTTPStatus, o.GRPCStatus, o.Reason = 499, int(codes.Canceled), reason
			return nil
		}
		st.countErr(idx, errIndex(reason))
		rt.passive(ctx, idx, reason, o)
		if (reason == ReasonConnect || reason == ReasonLimit) && !body.started.Load() && o.Retries < rt.Retries &&
			ctx.Err() == nil && (rt.RetryAllowed == nil || rt.RetryAllowed()) {
			tried |= 1 << (uint(idx) % 64)
			lastReason, lastMsg = reason, msg
			o.Retries++
			if rt.Retrying != nil {
				rt.Retrying(1)
			}
			if st.retries != nil {
				st.retries.Inc()
			}
			continue
		}
		s.fail(w, o, st, idx, reason, code, msg)
		return nil
	}
}

// passive tells rt.Passive how the call's attempt on member ended: reason
// is "" for an answer the backend finished (o then holds its statuses),
// else why frontdoor ended the attempt.
func (rt *Route) passive(ctx context.Context, member int, reason string, o *Outcome) {
	if rt.Passive == nil {
		return
	}
	switch reason {
	case "":
		failStatus := o.HTTPStatus >= 500 && (rt.FailureStatuses == nil || rt.FailureStatuses.Has(o.HTTPStatus))
		rt.Passive(member, o.GRPCStatus == int(codes.Unavailable) || failStatus)
	case ReasonConnect, ReasonReset:
		rt.Passive(member, true)
	case ReasonTimeout:
		// The route's response_timeout, not the client's own deadline.
		if !rt.PassiveSkipsTimeouts && errors.Is(context.Cause(ctx), errResponseTimeout) {
			rt.Passive(member, true)
		}
	}
}

// relay streams the backend's response to the client: headers at once, each
// chunk of body as soon as it is read, then the trailers.
func (s *Server) relay(ctx context.Context, w http.ResponseWriter, r *http.Request, resp *http.Response, st *routeState, o *Outcome) {
	defer resp.Body.Close()
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	if _, ok := resp.Header[hdrDate]; !ok {
		h[hdrDate] = nil // faithful: add no Date the backend did not send
	}
	o.HTTPStatus = resp.StatusCode

	// Trailers-only: the backend answered with grpc-status in its only
	// HEADERS frame. Forward it the same way, one HEADERS frame with
	// END_STREAM, by writing no body and flushing nothing.
	if v := resp.Header[hdrGRPCStatus]; len(v) > 0 {
		o.GRPCStatus = parseStatus(v)
		w.WriteHeader(resp.StatusCode)
		return
	}

	flusher, _ := w.(http.Flusher)
	w.WriteHeader(resp.StatusCode)
	if flusher != nil {
		flusher.Flush() // a client may wait for headers before sending
	}
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	buf := *bufp
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			wn, werr := w.Write(buf[:n])
			o.BytesOut += int64(wn)
			if werr != nil {
				o.HTTPStatus, o.GRPCStatus, o.Reason = 499, int(codes.Canceled), ReasonClientGone
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			reason, code, msg := classify(ctx, r, err)
			if reason == ReasonClientGone {
				o.HTTPStatus, o.GRPCStatus, o.Reason = 499, int(codes.Canceled), reason
				return
			}
			if reason == ReasonConnect {
				reason, msg = ReasonReset, msgStreamBroken
			}
			if code == codes.Unavailable {
				msg = msgStreamBroken
			}
			st.countErr(o.Backend, errIndex(reason))
			o.GRPCStatus, o.Reason = int(code), reason
			writeTrailerStatus(h, code, msg)
			return
		}
	}
	for k, v := range resp.Trailer {
		h[trailerKey(k)] = v
	}
	o.GRPCStatus = parseStatus(resp.Trailer[hdrGRPCStatus])
}

// fail ends a call that frontdoor could not complete, trailers-only.
func (s *Server) fail(w http.ResponseWriter, o *Outcome, st *routeState, member int, reason string, code codes.Code, msg []string) {
	if reason == ReasonNoBackend && st.noBackend != nil {
		st.noBackend.Inc()
	}
	o.Backend, o.GRPCStatus, o.Reason = member, int(code), reason
	writeStatus(w, code, msg)
}

// classify maps an upstream error to a failure reason and the status the
// client gets.
func classify(ctx context.Context, r *http.Request, err error) (reason string, code codes.Code, msg []string) {
	if ctx.Err() != nil {
		switch cause := context.Cause(ctx); {
		case errors.Is(cause, errCallDeadline):
			return ReasonTimeout, codes.DeadlineExceeded, msgDeadline
		case errors.Is(cause, errResponseTimeout):
			return ReasonTimeout, codes.DeadlineExceeded, msgResponseTimeout
		case r.Context().Err() != nil:
			return ReasonClientGone, codes.Canceled, nil
		}
	}
	if errors.Is(err, errConnLimit) {
		return ReasonLimit, codes.Unavailable, msgLimit
	}
	if errors.Is(err, errDial) {
		return ReasonConnect, codes.Unavailable, msgConnect
	}
	// The backend got the same grpc-timeout and may give up (resetting the
	// stream) a moment before our own timer fires: that is the deadline, not
	// a broken backend.
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < deadlineSlack {
		return ReasonTimeout, codes.DeadlineExceeded, msgDeadline
	}
	return ReasonReset, codes.Unavailable, msgUnavailable
}

// deadlineSlack is how close to the call's deadline a backend failure counts
// as the deadline passing.
const deadlineSlack = 20 * time.Millisecond

func errIndex(reason string) int {
	switch reason {
	case ReasonConnect:
		return errConnect
	case ReasonTimeout:
		return errTimeout
	case ReasonLimit:
		return errLimit
	}
	return errReset
}

// reqBody is the upstream request's body: the client's request body, read
// directly (no copy, no buffering). It records whether the transport has
// started to read it, and ignores Close until then, because net/http closes
// a request's body when RoundTrip fails and a call whose connect failed must
// keep its body for the next backend. The HTTP/2 server closes the client's
// body itself when the call ends.
type reqBody struct {
	rc      io.ReadCloser
	started atomic.Bool
	// n counts the bytes read; the transport reads on a goroutine of its
	// own, which may still run when the call's handler returns.
	n atomic.Int64
}

func (b *reqBody) Read(p []byte) (int, error) {
	if !b.started.Load() {
		b.started.Store(true)
	}
	n, err := b.rc.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// countIn records in o how many bytes of the body were read so far.
func (b *reqBody) countIn(o *Outcome) { o.BytesIn = b.n.Load() }

func (b *reqBody) Close() error {
	if b.started.Load() {
		return b.rc.Close()
	}
	return nil
}
