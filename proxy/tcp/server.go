package tcp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"frontdoor/config"
	"frontdoor/internal/splice"
	"frontdoor/metrics"
)

// ErrServerClosed is returned by Serve after StopAccepting, Shutdown or Close.
var ErrServerClosed = errors.New("tcp: server closed")

// Defaults for zero Options fields.
const (
	// DefaultProxyHeaderTimeout bounds reading a PROXY protocol header.
	DefaultProxyHeaderTimeout = 5 * time.Second
	// DefaultConnectTimeout bounds dialing a backend.
	DefaultConnectTimeout = 2 * time.Second
)

// Options configure a Server. Only Listener is required.
type Options struct {
	// Name is the listener's name, the listener label of the metrics.
	Name string
	// Listener is the bound socket the Server accepts on. It should yield
	// *net.TCPConn (net.Listen("tcp", ...) does); other connection types are
	// served with a user-space copy. The Server never closes it: it belongs
	// to the caller, who may hand it to another Server after StopAccepting.
	// On the event loops (a *net.TCPListener, doc.go) StopAccepting takes
	// the socket out of the loops' epoll sets; on the goroutine path it
	// interrupts Accept with a deadline when the listener has SetDeadline
	// and closes it otherwise.
	Listener net.Listener
	// MaxConnections caps concurrent client connections of this Server;
	// excess connections are closed at once and counted in
	// connections_rejected_total{reason="max_connections"}. Zero or less
	// means no cap.
	MaxConnections int
	// IdleTimeout closes a session after this long without a byte in either
	// direction. Zero or less disables it.
	IdleTimeout time.Duration
	// AcceptProxy makes every client connection start with a PROXY protocol
	// v1 or v2 header, whose source address stands for the client (for
	// source_ip hashing and for Upstream.SendProxy). A connection without a
	// valid header within ProxyHeaderTimeout is closed and counted in
	// connections_rejected_total{reason="proxy_protocol"}. Only enable it
	// behind a load balancer that always sends the header: anyone who can
	// connect can claim any address.
	AcceptProxy bool
	// ProxyHeaderTimeout bounds reading the PROXY protocol header; default
	// DefaultProxyHeaderTimeout.
	ProxyHeaderTimeout time.Duration
	// Metrics receives the listener's metrics; nil keeps them in a private
	// registry nobody scrapes.
	Metrics *metrics.Metrics
	// Logger receives errors of the Server; nil discards them.
	Logger *slog.Logger
	// SessionLog, if set, receives a record of every session when it
	// closes (the access log's tcp lines).
	SessionLog SessionLogger
	// SNIRoutes, when set, route each connection by the server name of
	// its TLS ClientHello, read without consuming it (sni.go); the
	// Upstream given to NewServer is then the default for names no route
	// matches (nil: such connections are closed). Connections that do
	// not open with a ClientHello are closed. Each is counted in the TLS
	// metrics.
	SNIRoutes []SNIRoute
	// HelloTimeout bounds reading the ClientHello with SNIRoutes; default
	// DefaultHelloTimeout.
	HelloTimeout time.Duration

	// noLoops serves every connection on the goroutine path, which
	// otherwise serves only what the event loops do not (loop.go): the
	// tests run their cases through both.
	noLoops bool
}

// OptionsFor returns the Options of a tcp listener from its config.
func OptionsFor(lc *config.Listener, ln net.Listener, m *metrics.Metrics, log *slog.Logger) Options {
	return Options{
		Name:           lc.Name,
		Listener:       ln,
		MaxConnections: lc.MaxConnections,
		IdleTimeout:    lc.IdleTimeout.Duration,
		AcceptProxy:    lc.AcceptProxy,
		Metrics:        m,
		Logger:         log,
		HelloTimeout:   lc.ReadTimeout.Duration,
	}
}

// Server is the TCP engine of one listener. Create it with NewServer; all
// methods are safe for concurrent use. A Server serves once: after
// StopAccepting, Shutdown or Close, create a new one for the same listener
// (and let it TakeOver the old one on a reload).
type Server struct {
	opts    Options
	log     *slog.Logger
	idle    int64 // IdleTimeout in nanoseconds
	refresh int64 // how often a busy direction pushes its deadlines out
	maxConn int

	upstream *boundUpstream // set by NewServer, read-only after; nil: SNI routes only
	sni      *sniTable      // nil: no SNIRoutes
	metrics  *metrics.Metrics
	pipes    splice.Pool
	sessions sync.Pool

	// Pre-bound metric children of this listener.
	active        prometheus.Gauge
	total         prometheus.Counter
	rejectedMax   prometheus.Counter
	rejectedProxy prometheus.Counter
	bytesUp       prometheus.Counter
	bytesDown     prometheus.Counter

	// spliced counts bytes moved by splice(2), copied bytes moved through a
	// user-space buffer (connections that are not *net.TCPConn).
	spliced, copied atomic.Int64

	// ctx is cancelled by a forced close; it aborts backend dials.
	ctx    context.Context
	cancel context.CancelFunc
	forced atomic.Bool

	// mu guards the fields below: the live sessions (an intrusive list,
	// touched twice per connection) and the serve state.
	mu        sync.Mutex
	head      *session
	count     int
	drained   chan struct{} // closed when count reaches 0 after stopping
	stopping  bool
	serving   bool
	serveDone chan struct{}
	// loops are the event loops serving the listener (loop.go), set by
	// Serve before it is marked serving; nil: the goroutine path.
	loops []*loop
	// retired are the Servers this one took over (TakeOver) that still
	// had sessions then; they accept nothing, so their count only falls.
	retired []*Server
}

// NewServer returns a Server for opts that forwards to up (with
// opts.SNIRoutes: the default upstream, which may be nil). It panics if
// opts.Listener is nil, if up is nil without SNIRoutes, or if an
// Upstream has no Pool (programmer errors). Call Serve to start
// accepting.
func NewServer(opts Options, up *Upstream) *Server {
	if opts.Listener == nil {
		panic("tcp: NewServer without a listener")
	}
	if opts.ProxyHeaderTimeout <= 0 {
		opts.ProxyHeaderTimeout = DefaultProxyHeaderTimeout
	}
	s := &Server{opts: opts, log: opts.Logger, maxConn: opts.MaxConnections}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.metrics = opts.Metrics
	if s.metrics == nil {
		s.metrics = metrics.New(prometheus.NewRegistry(), "")
	}
	// A busy direction pushes its idle deadlines out and flushes its byte
	// counts at most this often.
	s.refresh = int64(time.Second)
	if opts.IdleTimeout > 0 {
		s.idle = int64(opts.IdleTimeout)
		s.refresh = min(s.refresh, s.idle/4)
	}
	s.active = s.metrics.ConnsActive.WithLabelValues(opts.Name)
	s.total = s.metrics.ConnsTotal.WithLabelValues(opts.Name)
	s.rejectedMax = s.metrics.ConnsRejected.WithLabelValues(opts.Name, "max_connections")
	s.rejectedProxy = s.metrics.ConnsRejected.WithLabelValues(opts.Name, "proxy_protocol")
	s.bytesUp = s.metrics.TCPBytes.WithLabelValues(opts.Name, "upstream")
	s.bytesDown = s.metrics.TCPBytes.WithLabelValues(opts.Name, "downstream")
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.sessions.New = func() any { return newSession(s) }
	if up != nil || len(opts.SNIRoutes) == 0 {
		s.upstream = up.bind(s.metrics)
	}
	if len(opts.SNIRoutes) > 0 {
		s.sni = newSNITable(&s.opts, s.metrics)
	}
	return s
}

// Serve accepts connections until StopAccepting, Shutdown or Close, then
// returns ErrServerClosed. On the event loops (doc.go, Engines) it starts
// them and returns once they stopped accepting; they serve their sessions
// until the last one ends. On the goroutine path it returns another error
// when the listener fails for good (for instance when the caller closed
// it); the loops do not notice a listener closed under them, so the caller
// must call StopAccepting before it closes the listener. Call it once.
func (s *Server) Serve() error {
	s.mu.Lock()
	if s.stopping || s.serving {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.serving = true
	s.serveDone = make(chan struct{})
	s.loops = s.newLoops()
	loops := s.loops
	s.mu.Unlock()
	defer close(s.serveDone)

	if loops != nil {
		// The loops accept until StopAccepting and serve their sessions
		// until the last one ends.
		for _, lp := range loops {
			go lp.run()
		}
		for _, lp := range loops {
			<-lp.notAccepted
		}
		return ErrServerClosed
	}

	var backoff time.Duration
	for {
		c, err := s.opts.Listener.Accept()
		if err != nil {
			if s.isStopping() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors, aborted handshakes and the like:
			// back off as net/http does, up to a second.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			if s.log.Enabled(s.ctx, slog.LevelWarn) {
				s.log.LogAttrs(s.ctx, slog.LevelWarn, "tcp accept", slog.String("listener", s.opts.Name), slog.Any("err", err))
			}
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		ss := s.admit(c)
		if ss == nil {
			continue
		}
		if ss.handleFn == nil {
			ss.bindGoroutine()
		}
		go ss.handleFn()
	}
}

func (s *Server) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// admit counts and tracks a new connection, or closes it at once when the
// listener is full.
func (s *Server) admit(c net.Conn) *session {
	s.mu.Lock()
	if s.maxConn > 0 && s.count >= s.maxConn {
		s.mu.Unlock()
		s.rejectedMax.Inc()
		_ = c.Close()
		return nil
	}
	ss := s.sessions.Get().(*session)
	ss.client = c
	ss.next = s.head
	if s.head != nil {
		s.head.prev = ss
	}
	s.head = ss
	s.count++
	s.mu.Unlock()
	s.total.Inc()
	s.active.Inc()
	return ss
}

// forget removes an ended session from the count and, when it is on the
// goroutine path (a loop's session has no client conn), the live list.
func (s *Server) forget(ss *session) {
	s.mu.Lock()
	if ss.client != nil {
		if ss.prev != nil {
			ss.prev.next = ss.next
		} else {
			s.head = ss.next
		}
		if ss.next != nil {
			ss.next.prev = ss.prev
		}
		ss.prev, ss.next = nil, nil
	}
	s.count--
	if s.count == 0 && s.drained != nil {
		close(s.drained)
		s.drained = nil
	}
	s.mu.Unlock()
	s.active.Dec()
}

// StopAccepting makes Serve return ErrServerClosed and waits until it has;
// open sessions go on. The listener stays open (see Options.Listener) and
// usable by another Server once StopAccepting returns. It is idempotent.
func (s *Server) StopAccepting() {
	s.mu.Lock()
	first := !s.stopping
	s.stopping = true
	serving, done, loops := s.serving, s.serveDone, s.loops
	s.mu.Unlock()
	if !first || !serving {
		if serving {
			<-done
		}
		return
	}
	if loops != nil {
		for _, lp := range loops {
			lp.control(ctlStopAccept)
		}
		<-done
		return
	}
	ln := s.opts.Listener
	dl, canDeadline := ln.(interface{ SetDeadline(time.Time) error })
	if !canDeadline {
		_ = ln.Close()
		<-done
		return
	}
	_ = dl.SetDeadline(time.Unix(1, 0))
	<-done
	_ = dl.SetDeadline(time.Time{})
}

// TakeOver makes s the successor of old, the Server of the same listener
// under the previous config: old stops accepting (StopAccepting, which
// hands the listener over), its open sessions go on until they end, and
// from then on s's Shutdown, Close and Active cover them as they do s's
// own, so a drain waits for sessions opened before a reload too. It also
// takes over what old had taken over. Call it before s.Serve, so that the
// listener has been handed over; do not call old's methods afterwards.
func (s *Server) TakeOver(old *Server) {
	old.StopAccepting()
	old.mu.Lock()
	inherited := append(old.retired, old)
	old.retired = nil
	old.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range inherited {
		if r.Active() > 0 { // stopped: a server that is empty stays empty
			s.retired = append(s.retired, r)
		}
	}
}

// Shutdown stops accepting and waits for open sessions to end, those of
// the Servers it took over included. When ctx ends first, it closes the
// remaining sessions, waits for them to finish and returns ctx.Err(). It
// returns nil when every session ended on its own.
func (s *Server) Shutdown(ctx context.Context) error {
	s.StopAccepting()
	all := s.all()
	drained := make([]<-chan struct{}, len(all))
	for i, srv := range all {
		drained[i] = srv.drainedChan()
	}
	for _, d := range drained {
		select {
		case <-d:
			continue
		case <-ctx.Done():
		}
		for _, srv := range all {
			srv.closeSessions()
		}
		for _, d := range drained {
			<-d
		}
		return ctx.Err()
	}
	return nil
}

// Close stops accepting, closes every open session (those of the Servers it
// took over included) and waits for them to finish. It returns nil.
func (s *Server) Close() error {
	s.StopAccepting()
	all := s.all()
	drained := make([]<-chan struct{}, len(all))
	for i, srv := range all {
		drained[i] = srv.drainedChan()
		srv.closeSessions()
	}
	for _, d := range drained {
		<-d
	}
	return nil
}

// Active returns the number of open client connections, those of the
// Servers it took over included.
func (s *Server) Active() int {
	n := 0
	for _, srv := range s.all() {
		srv.mu.Lock()
		n += srv.count
		srv.mu.Unlock()
	}
	return n
}

// all returns s and the Servers it took over.
func (s *Server) all() []*Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Server{s}, s.retired...)
}

func (s *Server) drainedChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.count == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	if s.drained == nil {
		s.drained = make(chan struct{})
	}
	return s.drained
}

// closeSessions closes both sockets of every open session; sessions that
// have not dialed yet see forced or the cancelled ctx and give up. The
// event loops close theirs and end.
func (s *Server) closeSessions() {
	s.forced.Store(true)
	s.cancel()
	s.mu.Lock()
	for _, lp := range s.loops {
		lp.control(ctlClose)
	}
	for ss := s.head; ss != nil; ss = ss.next {
		_ = ss.client.Close()
		if b := ss.backend.Load(); b != nil {
			_ = b.Close()
		}
	}
	s.mu.Unlock()
}

// recoverSession logs a panic of a session goroutine with its stack.
func (s *Server) recoverSession() {
	if r := recover(); r != nil {
		s.logPanic(r)
	}
}

// logPanic logs the panic r of a session with its stack.
func (s *Server) logPanic(r any) {
	s.log.LogAttrs(s.ctx, slog.LevelError, "tcp session panic",
		slog.String("listener", s.opts.Name), slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
}
