package proxy

import (
	"context"
	"crypto/tls"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"frontdoor/balancer"
	"frontdoor/config"
	"frontdoor/health"
	"frontdoor/metrics"
	"frontdoor/proxy/jwt"
)

// Upstream error reasons, the reason label of upstream_errors_total.
const (
	reasonConnect = iota
	reasonTimeout
	reasonReset
	reasonLimit
	reasonStatus5xx
	reasonOther
	numReasons
)

var reasonNames = [numReasons]string{"connect", "timeout", "reset", "limit", "status_5xx", "other"}

// poolBackend is one backend of one pool with its HTTP/1.1 connection pool. It
// outlives a runtime: a reload that keeps the pool name, address and
// connection settings keeps the poolBackend, so health state and pooled
// connections survive.
type poolBackend struct {
	id  int // unique in the Proxy: an event loop's index of its own state (loop.go)
	key string
	be  *balancer.Backend
	hc  *fasthttp.HostClient
	// addrPort is the address when it is an IP address (the event loop
	// connects to it), else invalid.
	addrPort       netip.AddrPort
	connectTimeout time.Duration
	// conns counts the open connections to the backend of every engine
	// (event loops, the goroutine engine's HostClient, the h2c transport),
	// against maxConns (max_connections_per_backend; 0: no limit). Take one
	// with takeConn before connecting and give it back with giveConn when
	// the connection closes.
	conns    atomic.Int64
	maxConns int64
	retired  atomic.Bool // no runtime uses it any more
	// queue is the wait queue of the backend's pool (core_queue.go), which
	// giveConn hands a freed slot to while anybody waits; nil: none.
	queue *poolQueue
	// reserved counts slots held, by requests that waited in the queue, for
	// a connection the goroutine engine's Dial is about to make.
	reserved atomic.Int64
	// h2 holds the HTTP/2 connections of an h2c pool's backend
	// (h2engine_upstream.go), made on first use; idleTimeout is the pool's
	// idle_timeout, after which an unused one closes.
	h2          atomic.Pointer[h2Upstream]
	idleTimeout time.Duration
	// tlsCfg, for a pool with tls, is the backend's client config, set
	// by every Apply (a reload rotates CAs and client certificates);
	// connections dial through dialTLS (tls_backend.go). nil: plain TCP.
	tlsCfg atomic.Pointer[tls.Config]
}

// closeIdle closes u's idle connections (a reload retired it).
func (u *poolBackend) closeIdle() {
	u.hc.CloseIdleConnections()
	if up := u.h2.Load(); up != nil {
		up.closeIdle()
	}
}

func poolBackendKey(pool string, p *config.Pool, addr string) string {
	// Connection settings are part of the key: changing them builds a new
	// HostClient (and so new connections) for the backend.
	var b strings.Builder
	b.WriteString(pool)
	b.WriteByte('|')
	b.WriteString(addr)
	b.WriteByte('|')
	b.WriteString(p.ConnectTimeout.String())
	b.WriteByte('|')
	b.WriteString(p.IdleTimeout.String())
	b.WriteByte('|')
	b.WriteString(strconv.Itoa(p.MaxConnectionsPerBackend))
	if t := p.TLS; t != nil {
		// Plain and TLS connections never share a pool; a new name to
		// verify starts from new connections.
		b.WriteString("|tls|")
		b.WriteString(t.ServerName)
		b.WriteString(strconv.FormatBool(t.InsecureSkipVerify))
	}
	return b.String()
}

func newPoolBackend(id int, key, addr string, p *config.Pool, be *balancer.Backend) *poolBackend {
	connectTimeout := p.ConnectTimeout.Duration
	u := &poolBackend{id: id, key: key, be: be, addrPort: parseAddrPort(addr), connectTimeout: connectTimeout,
		maxConns: int64(p.MaxConnectionsPerBackend), idleTimeout: p.IdleTimeout.Duration}
	u.hc = &fasthttp.HostClient{
		Addr: addr,
		// The connection budget is the pool backend's, shared with the event
		// loops and the h2c transport: Dial takes from it, and the
		// connection's Close gives back.
		Dial: func(a string) (net.Conn, error) {
			if !u.claimReserved() && !u.takeConn() {
				return nil, fasthttp.ErrNoFreeConns
			}
			if p.TLS != nil {
				c, err := u.dialTLS(context.Background()) // tls_backend.go
				if err != nil {
					u.giveConn()
				}
				return c, err
			}
			c, err := fasthttp.DialTimeout(a, connectTimeout)
			if err != nil {
				u.giveConn()
				return nil, err
			}
			if tc, ok := c.(*net.TCPConn); ok {
				// A request is always followed by a read of its
				// response: send it from that read (goengine_deferconn.go).
				dc := newDeferConn(tc, false)
				dc.budget, dc.fresh = u, true
				return dc, nil
			}
			return &budgetConn{Conn: c, u: u}, nil
		},
		MaxConns:                 math.MaxInt32, // the budget above limits
		MaxIdleConnDuration:      p.IdleTimeout.Duration,
		NoDefaultUserAgentHeader: true,
		DisablePathNormalizing:   true,
		// One attempt: frontdoor retries on another backend itself, and a
		// retry inside fasthttp would hit the same backend.
		MaxIdemponentCallAttempts: 1,
		ReadBufferSize:            8192,
		WriteBufferSize:           8192,
	}
	return u
}

// budgetConn gives its pool backend's connection budget back when closed, for
// a backend connection that is not a plain TCP socket.
type budgetConn struct {
	net.Conn
	u    *poolBackend
	once sync.Once
}

func (c *budgetConn) Close() error {
	c.once.Do(c.u.giveConn)
	return c.Conn.Close()
}

// takeConn reserves one connection of the backend's budget; false: the
// backend is at max_connections_per_backend. Safe for concurrent use.
func (u *poolBackend) takeConn() bool {
	if n := u.conns.Add(1); u.maxConns > 0 && n > u.maxConns {
		u.conns.Add(-1)
		return false
	}
	return true
}

// giveConn returns a connection taken with takeConn, or a slot granted by
// the queue: to the head of the pool's queue when anybody waits
// (poolQueue.handOver). It frees first and looks for waiters second; park
// does the opposite, so a slot is never left free while a request waits.
func (u *poolBackend) giveConn() {
	u.conns.Add(-1)
	if q := u.queue; q != nil && q.waiting() {
		q.handOver(u)
	}
}

// reserve lets the next Dial to u use a slot the caller holds (a request
// that waited in the queue) instead of taking one; unreserve gives it
// back if no Dial used it (the request found an idle connection).
func (u *poolBackend) reserve() { u.reserved.Add(1) }

func (u *poolBackend) unreserve() {
	if u.claimReserved() {
		u.giveConn()
	}
}

func (u *poolBackend) claimReserved() bool {
	for {
		n := u.reserved.Load()
		if n <= 0 {
			return false
		}
		if u.reserved.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// queued reports whether requests wait in the queue of u's pool: a
// finished connection then closes rather than idles, so that its slot goes
// to the head of the queue whichever engine holds the waiter.
func (u *poolBackend) queued() bool { return u.queue != nil && u.queue.waiting() }

// connsFull reports whether the backend is at its connection limit.
func (u *poolBackend) connsFull() bool { return u.maxConns > 0 && u.conns.Load() >= u.maxConns }

// poolRuntime is a pool as one runtime sees it: members, strategy, checks and
// pre-bound metric children. Immutable once built, except for the atomics.
type poolRuntime struct {
	name string
	// cfg is the pool as built: the file's static backends first, then
	// those its discovery found (discovery.go); static counts the former.
	cfg             *config.Pool
	static          int
	pool            *balancer.Pool
	ups             []*poolBackend
	hashSource      string
	hashName        []byte
	responseTimeout time.Duration
	retries         int
	retryBudget     float64
	loopable        bool // the event loop may serve it (loop.go)
	h2c             bool // protocol "h2c": the HTTP/2 engine relays to it, as HTTP/2
	// queue is the pool's wait queue (core_queue.go), nil without a queue
	// setting; queueSize and queueTimeout are the setting.
	queue        *poolQueue
	queueSize    int
	queueTimeout time.Duration

	active   atomic.Int64 // requests in flight through this runtime's pool
	retrying atomic.Int64 // retries in flight

	checker *health.Checker
	ejector *health.Ejector
	aff     *affinity // nil: no affinity (core_affinity.go)

	retriesTotal prometheus.Counter
	keyMissing   prometheus.Counter
	// stats are the metric children of the routes to this pool, on
	// every listener (status.go sums them per backend).
	stats     []*routeStats
	errs      [][numReasons]prometheus.Counter // per member
	noBackend prometheus.Counter
}

// routeStats are a route's metric children.
type routeStats struct {
	requests  [][5]prometheus.Counter // per member, per code class
	noBackend [5]prometheus.Counter   // answered without a backend (backend="")
	// durations are request_duration_seconds per member, then the one of
	// answers without a backend (backend="").
	durations []*metrics.Duration
}

// route is one compiled [[listener.route]].
type route struct {
	host   string
	prefix []byte
	name   string // host + path_prefix, for the access log
	pool   *poolRuntime
	stats  *routeStats
	jwt    *jwt.Policy // nil: no JWT stage
	// stripClaims are the forward_claims headers of every JWT policy,
	// removed on routes without a policy (nil when there is none).
	stripClaims [][]byte
	// redirect: redirect_https; frontdoor answers 308 itself and pool is
	// nil (tls_route.go).
	redirect bool
	// transcode turns HTTP/JSON requests into gRPC calls
	// (transcodeengine.go); nil: the route does not transcode.
	transcode *transcodeRoute
}

// listenerRuntime is an http listener's view of one runtime.
type listenerRuntime struct {
	name string
	// trusted are the trusted_proxies: peers whose forwarding headers are
	// appended to rather than replaced.
	trusted  []netip.Prefix
	routes   routeTable
	notFound [5]prometheus.Counter // pool="" backend=""
	// proto is X-Forwarded-Proto's value: "https" on a TLS listener. hsts
	// is the Strict-Transport-Security added to every answer, nil for
	// none. stripIdent are the forward_client_cert headers of every TLS
	// listener, removed from every request (tls_route.go).
	proto      []byte
	hsts       []byte
	stripIdent [][]byte
}

func bindRouteStats(m *metrics.Metrics, listener, route string, p *poolRuntime) *routeStats {
	s := &routeStats{
		requests:  make([][5]prometheus.Counter, len(p.ups)),
		durations: make([]*metrics.Duration, len(p.ups)+1),
	}
	for i, u := range p.ups {
		for c, class := range metrics.CodeClasses {
			s.requests[i][c] = m.RequestsTotal.WithLabelValues(listener, p.name, u.be.Address(), class)
		}
		s.durations[i] = m.RequestDuration.With(listener, p.name, route, u.be.Address())
	}
	s.durations[len(p.ups)] = m.RequestDuration.With(listener, p.name, route, "")
	p.stats = append(p.stats, s)
	for c, class := range metrics.CodeClasses {
		s.noBackend[c] = m.RequestsTotal.WithLabelValues(listener, p.name, "", class)
	}
	return s
}

// peerOf returns the address of the connection's other end, unmapped.
func peerOf(ctx *fasthttp.RequestCtx) netip.AddrPort {
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return netip.AddrPortFrom(ip.Unmap(), uint16(a.Port))
		}
	}
	return netip.AddrPort{}
}

// trusts reports whether forwarding headers from a are to be kept.
func (rt *listenerRuntime) trusts(a netip.Addr) bool {
	for _, p := range rt.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// observe counts a request of the route that took d, ended at now, in
// request_duration_seconds, for member (-1: answered without a backend),
// with the request's ID as the exemplar when its bucket's turn came. It
// allocates nothing.
func (s *routeStats) observe(member int, d time.Duration, id []byte, now time.Time) {
	if member < 0 || member >= len(s.durations)-1 {
		member = len(s.durations) - 1
	}
	s.durations[member].Observe(d, id, now)
}
