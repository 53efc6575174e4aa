package proxy

import (
	"net/http"
	"time"
	"unsafe"

	"frontdoor/metrics"
	"frontdoor/proxy/grpc"
	"frontdoor/proxy/jwt"
)

// RouteGRPC resolves a gRPC call on this listener through the same route
// table as HTTP/1.1 requests (grpc.Router). Only routes whose pool speaks h2c
// serve gRPC; a call matching another route is answered UNIMPLEMENTED.
func (l *httpListener) RouteGRPC(host, path string) (*grpc.Route, bool) {
	rt := l.rt.Load()
	r := rt.routes.match(stringBytes(host), stringBytes(path))
	if r == nil || r.grpc == nil {
		return nil, false
	}
	return r.grpc, true
}

// stringBytes views s as bytes without copying, for read-only matching. The
// caller must not modify or keep the result.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// newGRPCServer makes the h2c server of an http listener and arms the
// listener's HTTP/2 preface detection with it.
func (p *Proxy) newGRPCServer(l *httpListener, idle time.Duration, maxHeader int) {
	l.grpc = grpc.NewServer(grpc.Options{
		Router:         l,
		Logger:         p.opts.Logger,
		Metrics:        p.opts.Metrics,
		RequestIDs:     p.ids,
		Observe:        l.observeUnrouted,
		IdleTimeout:    idle,
		MaxHeaderBytes: maxHeader,
	})
	serve := l.grpc.ServeConn
	l.ln.h2.Store(&serve)
}

// grpcRoute builds the gRPC side of a route, or nil when its pool does not
// speak h2c.
func (l *httpListener) grpcRoute(r *route) *grpc.Route {
	p := r.pool
	if p == nil || p.cfg.Protocol != "h2c" {
		return nil
	}
	gr := &grpc.Route{
		Listener:        l.name,
		PoolName:        p.name,
		Pool:            p.pool,
		HashOn:          p.cfg.HashOn,
		ConnectTimeout:  p.cfg.ConnectTimeout.Duration,
		ResponseTimeout: p.responseTimeout,
		Retries:         p.retries,
	}
	if p.cfg.Strategy != "consistent_hash" {
		gr.HashOn.Source = ""
	}
	// The pool's shared state, as HTTP/1.1 requests use it (core_exchange.go):
	// passive ejection and the retry budget.
	ej := p.ejector
	gr.Passive = func(member int, failed bool) {
		if failed {
			ej.Failure(member)
		} else {
			ej.Success(member)
		}
	}
	gr.PassiveSkipsTimeouts = !p.cfg.Passive.CountTimeouts
	gr.FailureStatuses = &p.cfg.Passive.FailureStatuses
	gr.InFlight = func(delta int) { p.active.Add(int64(delta)) }
	gr.RetryAllowed = p.retryAllowed
	gr.Retrying = func(delta int) { p.retrying.Add(int64(delta)) }
	// One connection budget per backend for every engine: the h2c
	// transport takes from the pool backend's before it dials.
	ups := p.ups
	gr.TakeConn = func(member int) bool { return ups[member].takeConn() }
	gr.GiveConn = func(member int) { ups[member].giveConn() }
	if pol := r.jwt; pol != nil {
		gr.Authorize = func(req *http.Request) (bool, string) {
			why := pol.ApplyHTTP(req, time.Now())
			return why == jwt.Valid, why.WWWAuthenticate()
		}
	}
	stats := r.stats
	name := r.name
	gr.Observe = func(o *grpc.Outcome) {
		class := metrics.CodeClass(o.HTTPStatus)
		backend := ""
		if o.Backend >= 0 && o.Backend < len(p.ups) {
			backend = p.ups[o.Backend].be.Address()
			if o.Reason == "" || o.Reason == "reset" || o.Reason == "client_gone" {
				stats.requests[o.Backend][class].Inc()
			} else {
				stats.noBackend[class].Inc()
			}
		} else {
			stats.noBackend[class].Inc()
		}
		stats.duration.Observe(o.Duration.Seconds())
		l.logGRPC(o, name, backend)
	}
	return gr
}

// observeUnrouted counts and logs gRPC calls answered before routing.
func (l *httpListener) observeUnrouted(o *grpc.Outcome) {
	l.rt.Load().notFound[metrics.CodeClass(o.HTTPStatus)].Inc()
	l.logGRPC(o, "", "")
}

func (l *httpListener) logGRPC(o *grpc.Outcome, route, backend string) {
	if l.log == nil {
		return
	}
	req := o.Request
	rec := accessRecord{
		start:      o.Start,
		duration:   o.Duration,
		requestID:  stringBytes(o.RequestID),
		listener:   l.name,
		route:      route,
		method:     stringBytes(req.Method),
		host:       stringBytes(req.Host),
		path:       stringBytes(req.URL.Path),
		status:     o.HTTPStatus,
		bytesIn:    int(o.BytesIn),
		bytesOut:   int(o.BytesOut),
		grpc:       true,
		grpcStatus: o.GRPCStatus,
		backend:    backend,
		reason:     o.Reason,
	}
	l.log.log(&rec)
}
