package grpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"frontdoor/metrics"
	"frontdoor/proxy/internal/requestid"
)

// Defaults of Options and Route fields left zero.
const (
	defaultIdleTimeout          = 60 * time.Second
	defaultMaxConcurrentStreams = 1000
	defaultMaxHeaderBytes       = 1 << 20
	defaultUpstreamIdleTimeout  = 90 * time.Second
	defaultUpstreamPing         = 30 * time.Second
	defaultConnectTimeout       = 2 * time.Second
	upstreamPingTimeout         = 15 * time.Second
)

// Options configure a Server. The zero value is usable: every call is then
// answered UNIMPLEMENTED, as no Router resolves it.
type Options struct {
	// Router resolves each call to a Route. It is consulted once per call,
	// so a Router that reads the live config snapshot makes new routes
	// apply to calls on connections opened before a reload. Nil routes
	// nothing.
	Router Router

	// Logger receives connection errors of the HTTP/2 server (debug
	// level) and panics of background goroutines (error level). Nil
	// discards them.
	Logger *slog.Logger

	// Metrics, when set, counts upstream_errors_total, retries_total and
	// hash_key_missing_total, with children bound once per Route.
	// requests_total and request_duration_seconds are left to
	// Route.Observe, which knows the listener's pre-bound children.
	Metrics *metrics.Metrics

	// RequestIDs makes the IDs of calls that bring no usable one (see
	// requestid.Pick). The proxy hands every engine the same Generator, so
	// IDs look alike whichever engine served a request. Nil gives the
	// Server a Generator of its own.
	RequestIDs *requestid.Generator

	// Observe, when set, is called for calls answered before a Route was
	// found: not gRPC (405, 415) or no route (UNIMPLEMENTED). The same
	// rules as Route.Observe apply.
	Observe func(o *Outcome)

	// IdleTimeout closes a client connection (GOAWAY) that had no open
	// stream for this long. Zero means 60s; negative disables it.
	IdleTimeout time.Duration

	// MaxConcurrentStreams caps the streams one client connection may
	// have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). Zero means
	// 1000.
	MaxConcurrentStreams int

	// MaxHeaderBytes caps a request's header block, gRPC metadata
	// included (SETTINGS_MAX_HEADER_LIST_SIZE). Zero means 1 MiB.
	MaxHeaderBytes int

	// UpstreamIdleTimeout closes a pooled backend connection that carried
	// no call for this long. Zero means 90s.
	UpstreamIdleTimeout time.Duration

	// UpstreamPingInterval sends a PING on a backend connection that was
	// silent this long; one unanswered for 15s closes the connection and
	// ends its calls UNAVAILABLE. Zero means 30s; negative disables it.
	UpstreamPingInterval time.Duration
}

// Server serves gRPC calls arriving on client connections handed to
// ServeConn and forwards each to a backend picked for that call. Create it
// once per process with NewServer; it outlives config reloads (routes come
// from the Router per call), and so do its pooled backend connections.
// ServeConn, ServeHTTP and Shutdown are safe for concurrent use.
type Server struct {
	opts      Options
	hs        *http.Server
	ln        *connListener
	transport *http.Transport
	logger    *slog.Logger
	ids       *requestid.Generator

	// dialTargets maps a backend address to its *dialTarget, stored when
	// a Route is first used. The dialer reads it per new connection,
	// never per call.
	dialTargets sync.Map

	serveDone chan struct{}
}

// NewServer returns a Server ready for ServeConn. It starts one goroutine
// that runs until Shutdown.
func NewServer(opts Options) *Server {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ids := opts.RequestIDs
	if ids == nil {
		ids = requestid.New()
	}
	s := &Server{opts: opts, logger: logger, ids: ids, serveDone: make(chan struct{})}
	s.ln = newConnListener()
	s.transport = s.newTransport()

	idle := opts.IdleTimeout
	switch {
	case idle == 0:
		idle = defaultIdleTimeout
	case idle < 0:
		idle = 0
	}
	streams := opts.MaxConcurrentStreams
	if streams <= 0 {
		streams = defaultMaxConcurrentStreams
	}
	headerBytes := opts.MaxHeaderBytes
	if headerBytes <= 0 {
		headerBytes = defaultMaxHeaderBytes
	}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	s.hs = &http.Server{
		Handler:           s,
		Protocols:         &protocols,
		IdleTimeout:       idle,
		ReadHeaderTimeout: 10 * time.Second, // until the preface; the lead has peeked it already
		MaxHeaderBytes:    headerBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: streams,
			// Larger windows than net/http's defaults keep big messages
			// flowing at speed; memory is taken only as data arrives.
			MaxReceiveBufferPerConnection: 4 << 20,
			MaxReceiveBufferPerStream:     1 << 20,
		},
	}
	go s.serve()
	return s
}

func (s *Server) serve() {
	defer close(s.serveDone)
	defer func() {
		if p := recover(); p != nil {
			s.logger.Error("grpc server panicked", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	if err := s.hs.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		s.logger.Error("grpc server stopped", "err", err)
	}
}

// ServeConn serves HTTP/2 calls on c, which must start with the client's
// HTTP/2 connection preface (peeked bytes replayed are fine), and blocks
// until the connection is closed. It takes ownership of c and closes it. A
// connection that does not start with the preface is closed at once. After
// Shutdown, ServeConn closes c and returns.
func (s *Server) ServeConn(c net.Conn) {
	tc := &trackedConn{Conn: c, closed: make(chan struct{})}
	select {
	case s.ln.conns <- tc:
	case <-s.ln.done:
		_ = c.Close()
		return
	}
	<-tc.closed
}

// Shutdown stops taking connections, sends GOAWAY on every open one and
// waits until their calls have finished or ctx ends; then it closes what is
// left, and the pooled backend connections. It returns ctx's error when
// calls were still running at the deadline.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.hs.Shutdown(ctx) // closes s.ln once Serve has taken it
	s.ln.Close()
	if err != nil {
		_ = s.hs.Close()
		err = fmt.Errorf("grpc shutdown: %w", err)
	}
	<-s.serveDone
	s.transport.CloseIdleConnections()
	return err
}

// newTransport builds the one upstream transport: HTTP/2 with prior
// knowledge over plain TCP, connections pooled per backend address.
func (s *Server) newTransport() *http.Transport {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	idle := s.opts.UpstreamIdleTimeout
	if idle <= 0 {
		idle = defaultUpstreamIdleTimeout
	}
	ping := s.opts.UpstreamPingInterval
	switch {
	case ping == 0:
		ping = defaultUpstreamPing
	case ping < 0:
		ping = 0
	}
	return &http.Transport{
		Protocols:          &protocols,
		DialContext:        s.dial,
		DisableCompression: true, // gRPC compresses messages itself; never add Accept-Encoding
		IdleConnTimeout:    idle,
		// Proxy is nil: environment proxies never apply to backends.
		HTTP2: &http.HTTP2Config{
			SendPingTimeout:               ping,
			PingTimeout:                   upstreamPingTimeout,
			MaxReceiveBufferPerConnection: 4 << 20,
			MaxReceiveBufferPerStream:     4 << 20,
		},
	}
}

// Errors of a dial, before any byte of a call was sent, so the call may be
// retried elsewhere: errDial when connecting failed, errConnLimit when the
// backend's connection budget was full.
var (
	errDial      = errors.New("grpc: backend connect failed")
	errConnLimit = errors.New("grpc: backend connection limit reached")
)

// dialTarget is how the dialer connects to one backend address: the
// route's connect timeout and, when rt is set, member's connection budget
// through rt.TakeConn and rt.GiveConn.
type dialTarget struct {
	timeout time.Duration
	rt      *Route
	member  int
}

var defaultDialTarget = &dialTarget{timeout: defaultConnectTimeout}

func (s *Server) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	dt := defaultDialTarget
	if v, ok := s.dialTargets.Load(addr); ok {
		dt = v.(*dialTarget)
	}
	if dt.rt != nil && !dt.rt.TakeConn(dt.member) {
		return nil, fmt.Errorf("dial backend %s: %w", addr, errConnLimit)
	}
	d := net.Dialer{Timeout: dt.timeout, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		if dt.rt != nil {
			dt.rt.GiveConn(dt.member)
		}
		return nil, fmt.Errorf("dial backend %s: %w: %w", addr, errDial, err)
	}
	if dt.rt != nil {
		return &budgetConn{Conn: c, dt: dt}, nil
	}
	return c, nil
}

// budgetConn gives its reservation of a connection budget back when it is
// first closed.
type budgetConn struct {
	net.Conn
	dt     *dialTarget
	closed atomic.Bool
}

func (c *budgetConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.dt.rt.GiveConn(c.dt.member)
	}
	return c.Conn.Close()
}

// connListener is the net.Listener the http.Server serves: ServeConn pushes
// connections into it.
type connListener struct {
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newConnListener() *connListener {
	return &connListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return listenerAddr{} }

type listenerAddr struct{}

func (listenerAddr) Network() string { return "grpc" }
func (listenerAddr) String() string  { return "frontdoor-grpc" }

// trackedConn tells ServeConn when the HTTP/2 server has closed the
// connection.
type trackedConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}
