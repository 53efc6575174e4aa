package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"frontdoor/balancer"
	"frontdoor/config"
	"frontdoor/metrics"
	"frontdoor/proxy/internal/requestid"
	"frontdoor/proxy/jwt"
	"frontdoor/proxy/transcode"
)

// Options configure a Proxy. Metrics is required.
type Options struct {
	// Metrics holds the metric families; children are bound per runtime.
	Metrics *metrics.Metrics
	// Logger receives the process log (health transitions, reloads,
	// listener errors); nil discards it.
	Logger *slog.Logger
	// AccessLog receives one line per request; nil turns it off at no cost.
	AccessLog *AccessLog
	// Listen, when set, is called instead of binding for every listener
	// an Apply adds (not for those it keeps), and returns its socket: the
	// daemon hands over listening sockets a previous process passed on
	// (binary upgrade, systemd's file descriptor store) this way. It must
	// return a listener bound to lc.Bind that nothing else accepts on in
	// this process, or an error, which fails the Apply. Called with the
	// Proxy's lock held: it must not call the Proxy. nil binds lc.Bind.
	Listen func(lc *config.Listener) (net.Listener, error)
	// FirstRoundWait bounds how long the first Apply waits, after starting
	// health checks and before its listeners accept, for every pool's first
	// round of checks; later Applies never wait. A process taking over
	// sockets that already have clients queued sets it, so that none of
	// them meets a pool whose backends are still unchecked (503). 0, the
	// default, does not wait.
	FirstRoundWait time.Duration

	// goroutineOnly makes every http listener serve all its connections
	// with the goroutine engine, no event loop: the parity suite runs each
	// case through both engines with it. Tests of this package only.
	goroutineOnly bool
	// beforeRequest, when set, runs at the start of every HTTP/1.1
	// request (httpListener.beforeRequest). Tests of this package only.
	beforeRequest func(*fasthttp.RequestCtx)
}

// Proxy owns every listener and the current runtime. Create it with New,
// then Apply a config; Apply again to reload; Shutdown to drain and stop.
// Its methods are safe for concurrent use (Apply and Shutdown serialise).
type Proxy struct {
	opts Options
	ids  *requestid.Generator

	mu   sync.Mutex
	http map[string]*httpListener // by listenerKey
	tcp  map[string]*tcpListener  // by listenerKey
	// stop ends when Shutdown's context does: sessions of retired tcp
	// servers, which otherwise run until they end, close then.
	stop         context.Context
	stopAll      context.CancelFunc
	backends     map[string]*balancer.Backend
	poolBackends map[string]*poolBackend
	// poolBackendIDs numbers new pool backends (poolBackend.id); Apply holds mu.
	poolBackendIDs int
	// queues are the pools' wait queues by pool name, kept across reloads
	// with the pool backends that feed them (core_queue.go).
	queues map[string]*poolQueue
	gen    atomic.Pointer[generation]
	// discovered holds, by pool name, the backends DNS discovery found
	// last (discovery.go); apply adds them to the file's static backends.
	// resolvers are the running discovery goroutines by pool name.
	discovered map[string][]config.Backend
	resolvers  map[string]*resolver
	// retiring counts the drains of listeners a reload removed; Shutdown
	// waits for them too.
	retiring sync.WaitGroup
	closed   bool
	// tracing is the running OpenTelemetry tracer, nil when off
	// (core_trace.go).
	tracing atomic.Pointer[tracer]
}

// generation is one applied config: its pools and the context of its
// background work (health checks), cancelled when it is replaced.
type generation struct {
	cfg   *config.Config
	pools map[string]*poolRuntime
	names []string // pool names, sorted
	jwts  map[string]*jwt.Policy
	// certs are the certificates the generation serves and presents
	// (tls_front.go, tls_backend.go), for tls_certificate_expiry_seconds.
	certs []certInfo
	// commit holds what Apply does to running objects once nothing can
	// fail any more (backend TLS configs).
	commit []func()
	// transcoders are the transcoding routes' Transcoders, by route.
	transcoders map[*config.Route]*transcode.Transcoder
	cancel      context.CancelFunc
	loaded      time.Time
}

// New returns a Proxy with nothing bound.
func New(opts Options) *Proxy {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	stop, stopAll := context.WithCancel(context.Background())
	return &Proxy{
		stop:         stop,
		stopAll:      stopAll,
		opts:         opts,
		ids:          requestid.New(),
		http:         map[string]*httpListener{},
		tcp:          map[string]*tcpListener{},
		backends:     map[string]*balancer.Backend{},
		poolBackends: map[string]*poolBackend{},
		queues:       map[string]*poolQueue{},
		discovered:   map[string][]config.Backend{},
		resolvers:    map[string]*resolver{},
	}
}

// Apply makes cfg the running configuration. It builds the whole new runtime
// first (pools, checks, newly bound sockets); if anything fails, it releases
// what it built, changes nothing and returns the error. Otherwise it swaps
// the runtime in: new requests use it, requests in flight finish on the old
// one, listeners whose bind is unchanged keep their sockets and connections,
// and removed listeners drain for drain_timeout.
//
// Pools with a discovery get a resolver goroutine each, restarted by every
// Apply; the backends it found last are kept while the pool's discovery
// settings are unchanged (discovery.go).
func (p *Proxy) Apply(cfg *config.Config) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.applyWithDiscovery(cfg)
}

// apply is Apply with p.mu held and discovery left running (ControlBackend
// and discovery rebuild through it). cfg is the file's config; the pools
// are built with the discovered backends added.
func (p *Proxy) apply(cfg *config.Config) error {
	if p.closed {
		return errors.New("proxy: apply after shutdown")
	}
	old := p.gen.Load()

	gen, newUps, err := p.buildPools(withDiscovered(cfg, p.discovered), old)
	if err != nil {
		return err
	}
	gen.cfg = cfg
	for name, pr := range gen.pools {
		pr.static = len(cfg.Pools[name].Backends)
	}
	if err := p.buildJWT(cfg, gen, old); err != nil {
		for _, pr := range gen.pools {
			pr.pool.Close()
		}
		return err
	}
	if gen.transcoders, err = buildTranscoders(cfg); err != nil {
		for _, pr := range gen.pools {
			pr.pool.Close()
		}
		return err
	}
	// TLS fronts are read before anything is bound: a bad certificate
	// pair fails the reload with nothing changed (tls_front.go).
	fronts, err := p.buildTLSFronts(cfg)
	if err != nil {
		for _, pr := range gen.pools {
			pr.pool.Close()
		}
		return err
	}
	gen.certs = append(gen.certs, frontCerts(fronts)...)
	// Bind new sockets before touching anything that runs.
	bound := map[string]net.Listener{}
	release := func() {
		for _, ln := range bound {
			_ = ln.Close()
		}
		for _, pr := range gen.pools {
			pr.pool.Close()
		}
	}
	wanted := map[string]bool{}
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		key := listenerKey(lc)
		wanted[key] = true
		_, isHTTP := p.http[key]
		_, isTCP := p.tcp[key]
		if isHTTP && lc.Mode != "http" || isTCP && lc.Mode != "tcp" {
			release()
			return fmt.Errorf("listener %s: bind %s changes mode to %q while it is open; remove the listener in one reload and add it back in the next, or restart", lc.Name, lc.Bind, lc.Mode)
		}
		if isHTTP || isTCP {
			continue
		}
		ln, err := p.listen(lc)
		if err != nil {
			release()
			return fmt.Errorf("listener %s: bind %s: %w", lc.Name, lc.Bind, err)
		}
		bound[key] = ln
	}

	// Commit: nothing below fails.
	for _, fn := range gen.commit {
		fn()
	}
	ctx, cancel := context.WithCancel(context.Background())
	gen.cancel = cancel
	for key, u := range newUps {
		p.poolBackends[key] = u
	}
	p.applyTracing(cfg.Tracing) // core_trace.go
	for _, pol := range gen.jwts {
		go pol.Run(ctx)
	}
	for _, name := range gen.names {
		pr := gen.pools[name]
		// Before any listener routes to the pool: with check "none"
		// its backends are up by then (no 503 at start).
		pr.checker.Start(ctx)
		if pr.ejector != nil {
			go pr.ejector.Run(ctx)
		}
	}
	if old == nil && p.opts.FirstRoundWait > 0 {
		waitFirstRound(gen, p.opts.FirstRoundWait)
	}
	drain := cfg.Global.DrainTimeout.Duration
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		if lc.Mode == "tcp" {
			p.applyTCP(lc, gen, bound[listenerKey(lc)])
			continue
		}
		key := listenerKey(lc)
		l := p.http[key]
		switch {
		case l == nil:
			l = p.newHTTPListener(lc, bound[key])
		case l.settings != settingsOf(lc):
			// Timeouts and limits belong to the fasthttp server: hand the
			// socket to a new one and let the old one drain its
			// connections. No connection is refused meanwhile.
			old := l
			old.ln.handOver(old.done)
			l = p.newHTTPListener(lc, old.ln.Listener)
			p.drainRetired(drain, func(ctx context.Context) { old.shutdown(ctx, p.opts.Logger) })
		default:
			l.ln.tls.Store(fronts[key])
			l.rt.Store(p.buildListenerRuntime(lc, gen, l))
			continue
		}
		p.http[key] = l
		l.ln.tls.Store(fronts[key])
		l.rt.Store(p.buildListenerRuntime(lc, gen, l))
		go l.serve(p.opts.Logger)
	}
	p.gen.Store(gen)
	p.opts.Metrics.SetBackendSource(gen)
	p.opts.Metrics.SetCertificateSource(gen)
	dropStaleWeights(gen) // control.go

	for key, l := range p.http {
		if !wanted[key] {
			delete(p.http, key)
			p.drainRetired(drain, func(ctx context.Context) { l.shutdown(ctx, p.opts.Logger) })
		}
	}
	for key, l := range p.tcp {
		if !wanted[key] {
			delete(p.tcp, key)
			p.drainRetired(drain, func(ctx context.Context) { l.retire(ctx, l.srv, l.name, true, p.opts.Logger) })
		}
	}
	if old != nil {
		old.cancel()
		for _, pr := range old.pools {
			pr.pool.Close()
		}
		p.retirePoolBackends(gen, drain)
	}
	return nil
}

// listen binds the socket of a listener an Apply adds, or takes it from
// Options.Listen.
func (p *Proxy) listen(lc *config.Listener) (net.Listener, error) {
	if p.opts.Listen != nil {
		return p.opts.Listen(lc)
	}
	// No TCP keepalive on client connections (HAProxy's default too):
	// idle_timeout ends idle ones, and Go's default would cost four
	// setsockopt calls per accepted connection.
	return (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", lc.Bind)
}

// waitFirstRound waits until every pool of gen finished its first round of
// health checks, or d passed.
func waitFirstRound(gen *generation, d time.Duration) {
	deadline := time.Now().Add(d)
	for _, name := range gen.names {
		for !gen.pools[name].checker.FirstRoundDone() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// listenerSettings are the settings of an http listener that its fasthttp
// server and connection wrapper hold; a reload that changes any of them
// replaces both.
type listenerSettings struct {
	name                string
	read, write, idle   time.Duration
	maxConns, maxHeader int
	maxBody             int64
	acceptProxy         bool
	tls                 bool // [listener.tls]: no event loop (tls_front.go)
}

func settingsOf(lc *config.Listener) listenerSettings {
	return listenerSettings{
		name: lc.Name, read: lc.ReadTimeout.Duration, write: lc.WriteTimeout.Duration, idle: lc.IdleTimeout.Duration,
		maxConns: lc.MaxConnections, maxHeader: lc.MaxHeaderBytes, maxBody: lc.MaxBodyBytes,
		acceptProxy: lc.AcceptProxy, tls: lc.TLS != nil,
	}
}

// listenerKey identifies a listener across reloads: its bind, so that a
// kept bind keeps its socket. Binds on port 0 (tests) are told apart by name
// too, since each such listener gets its own port.
func listenerKey(lc *config.Listener) string {
	if strings.HasSuffix(lc.Bind, ":0") {
		return lc.Bind + "|" + lc.Name
	}
	return lc.Bind
}

// drainRetired runs drain, the drain of a listener a reload replaced or
// removed, in the background with a context that ends after d or when
// Shutdown's does; Shutdown waits for it.
func (p *Proxy) drainRetired(d time.Duration, drain func(context.Context)) {
	ctx := p.drainContext(d)
	p.retiring.Add(1)
	go func() {
		defer p.retiring.Done()
		drain(ctx)
	}()
}

// drainContext bounds a drain by d, and by the end of Shutdown's context.
func (p *Proxy) drainContext(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(p.stop, d)
	context.AfterFunc(ctx, cancel)
	return ctx
}

func (p *Proxy) newHTTPListener(lc *config.Listener, ln net.Listener) *httpListener {
	m := p.opts.Metrics
	deferAccept(ln)
	cl := &connListener{
		Listener: ln,
		maxConns: int64(lc.MaxConnections),
		active:   m.ConnsActive.WithLabelValues(lc.Name),
		total:    m.ConnsTotal.WithLabelValues(lc.Name),
		rejected: m.ConnsRejected.WithLabelValues(lc.Name, "max_connections"),
	}
	if lc.AcceptProxy {
		cl.acceptProxy = true
		cl.proxyRejected = m.ConnsRejected.WithLabelValues(lc.Name, "proxy_protocol")
	}
	if lc.TLS != nil {
		cl.terminates = true
		cl.tlsStats = newTLSStats(m, lc.Name)
		cl.readTimeout = lc.ReadTimeout.Duration
	}
	l := &httpListener{
		settings: settingsOf(lc),
		name:     lc.Name,
		bind:     lc.Bind,
		ln:       cl,
		ids:      p.ids,
		log:      p.opts.AccessLog,
		tracing:  &p.tracing,
		done:     make(chan struct{}),
	}
	l.server = &fasthttp.Server{
		Handler:                      l.handle,
		ErrorHandler:                 l.handleError,
		NoDefaultServerHeader:        true,
		NoDefaultDate:                true,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		CloseOnShutdown:              true,
		StreamRequestBody:            streamRequests(lc.MaxBodyBytes), // goengine_stream.go
		ExpectHandler:                l.expect,
		HeaderReceived:               l.headerReceived,
		ReadTimeout:                  lc.ReadTimeout.Duration,
		WriteTimeout:                 lc.WriteTimeout.Duration,
		IdleTimeout:                  lc.IdleTimeout.Duration,
		MaxRequestBodySize:           int(lc.MaxBodyBytes),
		ReadBufferSize:               lc.MaxHeaderBytes,
		Concurrency:                  lc.MaxConnections + 1,
		Logger:                       fasthttpLogger{p.opts.Logger},
	}
	l.live.tunnels = m.UpgradedActive.WithLabelValues(lc.Name)
	l.h2 = newH2Engine(l, h2LimitsOf(lc))
	cl.h2 = l.h2.serve
	l.logger = p.opts.Logger
	l.panics = m.Panics.WithLabelValues(lc.Name)
	l.goAways = m.HTTP2GoAways.MustCurryWith(prometheus.Labels{"listener": lc.Name})
	l.beforeRequest = p.opts.beforeRequest
	if p.opts.goroutineOnly || lc.TLS != nil {
		return l
	}
	if loops := newLoops(l, ln); loops != nil {
		cl.loops = loops
		cl.serve = l.server.ServeConn
		cl.quit = make(chan struct{})
	}
	return l
}

func (l *httpListener) serve(logger *slog.Logger) {
	defer close(l.done)
	for _, lp := range l.ln.loops {
		go lp.run()
	}
	if err := l.server.Serve(l.ln); err != nil {
		logger.Error("listener stopped", "listener", l.name, "bind", l.bind, "err", err)
	}
}

func (l *httpListener) shutdown(ctx context.Context, logger *slog.Logger) {
	if err := l.shutdownServers(ctx); err != nil {
		logger.Warn("listener drain ended with connections open", "listener", l.name, "err", err)
	}
}

// shutdownServers drains the HTTP/1.1 and the HTTP/2 engines of the
// listener together.
func (l *httpListener) shutdownServers(ctx context.Context) error {
	// The event loops leave the listening socket before the server closes
	// it: when another process shares the socket (a binary upgrade), it
	// stays in their epoll sets after the close, and a loop woken for a
	// connection meant for the other process would accept on a closed
	// descriptor number.
	for _, lp := range l.ln.loops {
		lp.stopAccepting()
	}
	h2 := make(chan error, 1)
	go func() { h2 <- l.h2.shutdown(ctx) }()
	loops := make(chan error, 1)
	go func() { loops <- l.drainLoops(ctx) }()
	err := l.server.ShutdownWithContext(ctx)
	// Streams and tunnels get what is left of ctx, then are closed.
	return errors.Join(err, <-h2, <-loops, l.live.drain(ctx))
}

// Shutdown stops accepting on every listener, lets in-flight requests finish
// until ctx ends, stops health checks and returns. It returns ctx's error if
// connections were still open when ctx ended.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.stopResolvers()
	context.AfterFunc(ctx, p.stopAll)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, l := range p.http {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.shutdownServers(ctx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("drain listener %s: %w", l.name, err))
				mu.Unlock()
			}
		}()
	}
	for _, l := range p.tcp {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.srv.Shutdown(ctx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("drain listener %s: %w", l.name, err))
				mu.Unlock()
			}
			_ = l.ln.Close()
		}()
	}
	wg.Wait()
	// Listeners a reload removed drain until drain_timeout, or until ctx
	// ends (p.stop, through drainContext).
	retired := make(chan struct{})
	go func() { p.retiring.Wait(); close(retired) }()
	select {
	case <-retired:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("drain listeners removed by a reload: %w", ctx.Err()))
	}
	if g := p.gen.Load(); g != nil {
		g.cancel()
	}
	if t := p.tracing.Swap(nil); t != nil {
		_ = t.shutdown(ctx) // export what is queued
	}
	for _, u := range p.poolBackends {
		u.closeIdle()
	}
	return errors.Join(errs...)
}

// Ready reports whether a config is applied and every pool finished its
// first round of health checks.
func (p *Proxy) Ready() bool {
	g := p.gen.Load()
	if g == nil {
		return false
	}
	for _, pr := range g.pools {
		if !pr.checker.FirstRoundDone() {
			return false
		}
	}
	return true
}

// Addr returns the bound address of the http listener named name, or nil.
// Tests bind port 0 and ask here.
func (p *Proxy) Addr(name string) net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.http {
		if l.name == name {
			return l.ln.Addr()
		}
	}
	for _, l := range p.tcp {
		if l.name == name {
			return l.ln.Addr()
		}
	}
	return nil
}

// Listeners returns the listening socket of every listener by name. The
// daemon passes them to the next process (binary upgrade) or to systemd's
// file descriptor store; the caller must not close them or accept on them.
// Safe for concurrent use.
func (p *Proxy) Listeners() map[string]net.Listener {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]net.Listener, len(p.http)+len(p.tcp))
	for _, l := range p.http {
		out[l.name] = l.ln.Listener
	}
	for _, l := range p.tcp {
		out[l.name] = l.ln
	}
	return out
}

// EachBackend reports every backend of the generation (metrics.BackendSource).
func (g *generation) EachBackend(fn func(pool, backend string, up bool, inFlight int64, ejectedUntil time.Time)) {
	for _, name := range g.names {
		pr := g.pools[name]
		for i, u := range pr.ups {
			until, _ := pr.ejector.EjectedUntil(i)
			fn(name, u.be.Address(), u.be.Up(), u.be.InFlight(), until)
		}
	}
}

// fasthttpLogger sends fasthttp's own messages to slog at debug level: they
// are per-connection noise (clients hanging up) that metrics already count.
type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	if f.l.Enabled(context.Background(), slog.LevelDebug) {
		f.l.Debug(fmt.Sprintf(format, args...))
	}
}

// handleError answers requests fasthttp could not read: 431 for a header
// block above max_header_bytes, 413 for a body above max_body_bytes, 408 for
// a read timeout, else 400. The connection is closed afterwards.
func (l *httpListener) handleError(ctx *fasthttp.RequestCtx, err error) {
	status, msg, reason := fasthttp.StatusBadRequest, "malformed request", "bad_request"
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.As(err, &small):
		status, msg, reason = fasthttp.StatusRequestHeaderFieldsTooLarge, "request header block too large", "header_too_large"
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, msg, reason = fasthttp.StatusRequestEntityTooLarge, "request body too large", "body_too_large"
	case errors.As(err, &netErr) && netErr.Timeout():
		status, msg, reason = fasthttp.StatusRequestTimeout, "request read timed out", "read_timeout"
	}
	// A head fasthttp parsed and then refused (a target or Host its URI
	// parser rejects, after headerReceived) is the core's to judge, with
	// the request's fields in the record, as the event loop does.
	headRead := status == fasthttp.StatusRequestEntityTooLarge
	if h := &ctx.Request.Header; status == fasthttp.StatusBadRequest && len(h.RawHeaders()) > 0 {
		v, ok := refusedHead(h)
		if !ok {
			v = checkHead(h, l.server.MaxRequestBodySize)
		}
		if v.status != 0 {
			status, msg, reason, headRead = v.status, v.msg, v.reason, true
		}
	}
	l.refuseHead(ctx, headRead, status, msg, reason)
}
