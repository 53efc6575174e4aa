package grpc

import (
	"net/http"
	"net/textproto"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"

	"frontdoor/balancer"
	"frontdoor/config"
	"frontdoor/metrics"
)

// Router resolves a gRPC call to its Route. The proxy runtime implements it
// over the live config snapshot. RouteGRPC is called once per call, from many
// goroutines at once; it must be safe for concurrent use and should neither
// allocate nor block.
type Router interface {
	// RouteGRPC returns the route for a call to authority host (the
	// :authority pseudo-header exactly as the client sent it, port
	// included when present) and path ("/package.Service/Method"), or
	// false when no route matches.
	RouteGRPC(host, path string) (*Route, bool)
}

// Route is what one call resolves to: a pool and the upstream settings for
// it. The proxy runtime builds Routes once per config snapshot; after a Route
// is first returned by a Router it must be neither modified nor copied (it
// caches state built from its fields on first use, such as pre-bound metric
// children). A Route is safe for concurrent use by any number of calls.
//
// A zero Route is usable but has no pool: every call gets UNAVAILABLE.
type Route struct {
	// Listener and PoolName label metrics and the access log.
	Listener, PoolName string

	// Pool picks a backend for each call. Nil answers every call
	// UNAVAILABLE.
	Pool *balancer.Pool

	// HashOn is the pool's hash_on key, used when the pool's strategy
	// hashes: Source "header" hashes that gRPC metadata header's first
	// value, "path" hashes the method path ("/pkg.Service/Method"), and
	// "source_ip" (the default) hashes the client's IP address. gRPC has
	// no cookies or query strings, so "cookie" and "query" hash the
	// client's IP as well. A call missing its header falls back to the
	// client's IP and counts hash_key_missing_total.
	HashOn config.HashKey

	// ConnectTimeout bounds dialing a backend. Zero means 2s. Connections
	// are pooled per backend address for every route, so when two pools
	// list one address with different timeouts, the route used most
	// recently for the first time sets it (and the same goes for
	// TakeConn and GiveConn).
	ConnectTimeout time.Duration

	// ResponseTimeout bounds the wait for the backend's response headers,
	// counted from the start of the call and across retries; when it
	// passes, the call ends DEADLINE_EXCEEDED. A client's smaller
	// grpc-timeout wins. It does not cut streams that have started to
	// answer: a server stream may run as long as its grpc-timeout allows
	// (or forever without one). Zero means no limit.
	ResponseTimeout time.Duration

	// Retries is how many more backends a call may try when connecting
	// to the picked one failed, or its connection budget (TakeConn) was
	// full, before any byte of the call was sent.
	// Calls that reached a backend are never retried. Zero disables.
	// RetryAllowed may refuse a retry that Retries allows.
	Retries int

	// Authorize, when set, runs before a backend is picked (the JWT
	// stage). It may change r.Header (forwarded claims, a stripped
	// Authorization); the call is forwarded with it. ok false ends the
	// call UNAUTHENTICATED, with wwwAuthenticate (when not empty) as the
	// WWW-Authenticate header of the trailers-only answer. It is called
	// from many goroutines at once and must not keep r.
	Authorize func(r *http.Request) (ok bool, wwwAuthenticate string)

	// Observe, when set, is called once per call routed here, after its
	// last byte, on the call's goroutine (requests_total and the access
	// log). It must not keep o or o.Request after it returns.
	Observe func(o *Outcome)

	// The hooks below let the proxy runtime apply the pool's shared
	// state (passive ejection, retry budget) to gRPC calls exactly as to
	// HTTP/1.1 requests, without this package knowing that state. The
	// runtime sets them once when it builds the Route; each is called on
	// a call's goroutine, from many calls at once, so each must be safe
	// for concurrent use, quick, and must not block. Nil hooks do nothing.

	// Passive hears how each call that reached member (an index into
	// Pool.Members()) ended, for passive ejection: failed true for a
	// connect failure, a reset, ResponseTimeout passing, or an answer
	// UNAVAILABLE (grpc-status 14, or an HTTP status of 500 or more from
	// the backend); failed false for any other answer the backend
	// finished, whatever its grpc-status. Calls the client abandoned,
	// calls ended by the client's own grpc-timeout (the backend is told
	// that deadline too, so missing it proves nothing about the backend),
	// and calls refused by TakeConn are reported neither way.
	Passive func(member int, failed bool)

	// PassiveSkipsTimeouts, when true, reports a call ended by
	// ResponseTimeout to Passive neither way (the pool's count_timeouts =
	// false). false, the zero value, reports it as failed.
	PassiveSkipsTimeouts bool

	// FailureStatuses, when set, narrows which backend HTTP statuses of 500
	// or more Passive hears as failed (the pool's failure_statuses); a
	// status outside the set is a success. nil: every status of 500 or
	// more fails. It is only read.
	FailureStatuses *config.StatusSet

	// InFlight is called with +1 when a call passed Authorize and is
	// about to pick a backend, and with -1 once the answer's headers are
	// in or the call failed: the pool's requests in flight, against which
	// RetryAllowed weighs retries.
	InFlight func(delta int)

	// RetryAllowed is asked before each retry that Retries allows; false
	// ends the call with its last error. It is the pool's retry budget.
	RetryAllowed func() bool

	// Retrying is called with +1 when a retry starts and with -1 when
	// that attempt's headers are in or it failed: the pool's retries in
	// flight, for RetryAllowed.
	Retrying func(delta int)

	// TakeConn reserves one connection of member's connection budget
	// (max_connections_per_backend, shared with the other engines) before
	// a new connection to its backend is dialed. False refuses the dial:
	// the call that needed it fails UNAVAILABLE with reason "limit" (and
	// may be retried on another member, as no byte was sent). Calls that
	// find a pooled connection with room for another stream never ask.
	// GiveConn returns the reservation when the connection closes, or at
	// once when the dial fails. Set both or neither. They are called from
	// the transport's goroutines, per connection, never per call.
	TakeConn func(member int) bool
	GiveConn func(member int)

	state atomic.Pointer[routeState]
}

// Outcome describes one finished call for metrics and the access log. It is
// reused: the hook receiving it must not keep it.
type Outcome struct {
	// Route is the call's route; nil for calls answered before routing
	// (see Options.Observe).
	Route *Route
	// Request is the client's request (method path in Request.URL.Path,
	// peer in Request.RemoteAddr, metadata in Request.Header).
	Request *http.Request
	// RequestID is the call's ID: the trace-id of the client's
	// traceparent, else its X-Request-ID when that is safe to log, else a
	// new one (requestid.Pick, the rule of every engine). It was sent to
	// the backend and back to the client as x-request-id.
	RequestID string
	// Backend is the index into Route.Pool.Members() of the backend that
	// handled the call (the last one tried), or -1 when none was reached.
	Backend int
	// HTTPStatus is the HTTP status sent to the client: 200 for every gRPC
	// answer whatever its grpc-status, 405/415 for non-gRPC requests, the
	// backend's own status when it was not 200, and 499 when the client
	// went away before the end.
	HTTPStatus int
	// GRPCStatus is the grpc-status sent to the client (1, CANCELLED, when
	// the client went away), or -1 when there was none: a non-gRPC
	// request, or a backend that ended its stream without one.
	GRPCStatus int
	// Reason is "" when the call ran its course (whatever its grpc-status),
	// else why frontdoor ended it: "no_route", "unauthenticated",
	// "no_backend", "connect", "limit" (the backend's connection budget
	// was full), "timeout", "reset" (backend failed after connecting),
	// "client_gone", "not_grpc".
	Reason string
	// Retries is the number of extra backends tried.
	Retries int
	// BytesIn is how many bytes of the client's request body (gRPC
	// messages with their 5-byte prefixes) were read to send to a
	// backend; BytesOut is how many bytes of response body were written
	// to the client. Headers and trailers are not counted.
	BytesIn, BytesOut int64
	// Start is when the call's headers were read; Duration runs from then
	// to the call's last byte.
	Start    time.Time
	Duration time.Duration
}

// Failure reasons, used as Outcome.Reason and as the reason label of
// upstream_errors_total.
const (
	ReasonNoRoute         = "no_route"
	ReasonUnauthenticated = "unauthenticated"
	ReasonNoBackend       = "no_backend"
	ReasonConnect         = "connect"
	ReasonLimit           = "limit"
	ReasonTimeout         = "timeout"
	ReasonReset           = "reset"
	ReasonClientGone      = "client_gone"
	ReasonNotGRPC         = "not_grpc"
)

// upstream error reasons counted per backend.
const (
	errConnect = iota
	errTimeout
	errReset
	errLimit
	numErrReasons
)

var errReasonNames = [numErrReasons]string{ReasonConnect, ReasonTimeout, ReasonReset, ReasonLimit}

// Hash sources.
const (
	hashSourceIP = iota
	hashHeader
	hashPath
)

// routeState is what a Route caches on first use: the hash source resolved
// once, and metric children bound once so that no call does a label lookup.
type routeState struct {
	hashSource  int
	hashHeader  string // canonical header name for hashHeader
	retries     prometheus.Counter
	hashMissing prometheus.Counter
	noBackend   prometheus.Counter
	errs        [][numErrReasons]prometheus.Counter // per member
}

// prepare returns the route's cached state, building it on first use.
func (rt *Route) prepare(s *Server) *routeState {
	if st := rt.state.Load(); st != nil {
		return st
	}
	st := newRouteState(rt, s.opts.Metrics)
	if rt.Pool != nil {
		timeout := rt.ConnectTimeout
		if timeout <= 0 {
			timeout = defaultConnectTimeout
		}
		for i, m := range rt.Pool.Members() {
			dt := &dialTarget{timeout: timeout}
			if rt.TakeConn != nil && rt.GiveConn != nil {
				dt.rt, dt.member = rt, i
			}
			s.dialTargets.Store(m.Backend.Address(), dt)
		}
	}
	if rt.state.CompareAndSwap(nil, st) {
		return st
	}
	return rt.state.Load()
}

func newRouteState(rt *Route, m *metrics.Metrics) *routeState {
	st := &routeState{hashSource: hashSourceIP}
	switch rt.HashOn.Source {
	case "header":
		if rt.HashOn.Name != "" {
			st.hashSource = hashHeader
			st.hashHeader = textproto.CanonicalMIMEHeaderKey(rt.HashOn.Name)
		}
	case "path":
		st.hashSource = hashPath
	}
	if m == nil {
		return st
	}
	st.retries = m.RetriesTotal.WithLabelValues(rt.PoolName)
	st.hashMissing = m.HashKeyMissing.WithLabelValues(rt.PoolName)
	st.noBackend = m.UpstreamErrors.WithLabelValues(rt.PoolName, "", ReasonNoBackend)
	if rt.Pool != nil {
		members := rt.Pool.Members()
		st.errs = make([][numErrReasons]prometheus.Counter, len(members))
		for i, mb := range members {
			for j, reason := range errReasonNames {
				st.errs[i][j] = m.UpstreamErrors.WithLabelValues(rt.PoolName, mb.Backend.Address(), reason)
			}
		}
	}
	return st
}

// key returns the balancing key of a call. It does not allocate.
func (st *routeState) key(r *http.Request) uint64 {
	switch st.hashSource {
	case hashHeader:
		if v := r.Header[st.hashHeader]; len(v) > 0 && v[0] != "" {
			return xxhash.Sum64String(v[0])
		}
		if st.hashMissing != nil {
			st.hashMissing.Inc()
		}
	case hashPath:
		return xxhash.Sum64String(r.URL.Path)
	}
	return xxhash.Sum64String(hostOnly(r.RemoteAddr))
}

// hostOnly strips the port from "host:port" or "[v6]:port".
func hostOnly(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return addr
	}
	h := addr[:i]
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	return h
}

func (st *routeState) countErr(member, reason int) {
	if st.errs != nil && member >= 0 && member < len(st.errs) {
		st.errs[member][reason].Inc()
	}
}
