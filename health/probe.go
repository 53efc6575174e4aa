package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"frontdoor/config"
)

var (
	// ErrUnhealthy is wrapped by a probe error when the backend answered but
	// reported itself unhealthy: an HTTP status outside expect_status, or a
	// grpc.health.v1 status other than SERVING.
	ErrUnhealthy = errors.New("health: backend reports unhealthy")
	// ErrTimeout is wrapped by a probe error when the backend did not answer
	// within the check's timeout (connect included).
	ErrTimeout = errors.New("health: check timed out")
)

// maxHealthBody caps the response body an HTTP check reads; a larger body
// fails the check.
const maxHealthBody = 1 << 20

// prober runs one check against one backend. probe is called by one
// goroutine at a time; close releases the connections and may be called
// while a probe runs (which then fails promptly) and more than once.
type prober interface {
	probe(ctx context.Context) error
	close()
}

// newProber returns the prober for check kind hc.Check against address. It
// opens nothing: connections are made by the first probe.
func newProber(hc *config.HealthCheck, address string) prober {
	switch hc.Check {
	case "tcp":
		return &tcpProber{address: address, timeout: hc.Timeout.Duration}
	case "http":
		return newHTTPProber(hc, address)
	case "grpc":
		return newGRPCProber(hc, address)
	}
	// NewChecker rejects every other kind.
	panic("health: no prober for check " + hc.Check)
}

// timeoutErr wraps err with ErrTimeout when it is a timeout of any kind.
func timeoutErr(err error, timeout time.Duration) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, fasthttp.ErrTimeout) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w after %s: %w", ErrTimeout, timeout, err)
	}
	return err
}

// tcpProber passes when a TCP connection is established within the timeout;
// it then closes the connection at once, with a reset.
type tcpProber struct {
	address string
	timeout time.Duration
	dialer  net.Dialer
}

func (p *tcpProber) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	conn, err := p.dialer.DialContext(ctx, "tcp", p.address)
	if err != nil {
		return timeoutErr(err, p.timeout)
	}
	// Close with a reset, as HAProxy does: no FIN exchange and no
	// TIME_WAIT socket left behind per check.
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	return conn.Close()
}

func (p *tcpProber) close() {}

// httpProber sends one prebuilt request over a kept-alive connection (one
// fasthttp.HostClient per backend, at most one connection) and passes when
// the status is in range.
type httpProber struct {
	client    *fasthttp.HostClient
	req       *fasthttp.Request
	resp      *fasthttp.Response
	timeout   time.Duration
	low, high int
	what      string // "GET /healthz", for errors
	dialer    net.Dialer

	// conn is the client's connection (it has at most one), so that close
	// can cut a probe short; closed refuses new ones. Guarded by mu.
	mu     sync.Mutex
	conn   net.Conn
	closed bool
}

// errProberClosed fails a dial after the prober was closed.
var errProberClosed = errors.New("health: prober closed")

func newHTTPProber(hc *config.HealthCheck, address string) *httpProber {
	timeout := hc.Timeout.Duration
	method := hc.Method
	if method == "" {
		method = fasthttp.MethodGet
	}
	host := hc.Host
	if host == "" {
		host = address
	}
	p := &httpProber{
		resp:    new(fasthttp.Response),
		timeout: timeout,
		low:     hc.ExpectStatus.Low,
		high:    hc.ExpectStatus.High,
		what:    method + " " + hc.Path,
	}
	p.client = &fasthttp.HostClient{
		Addr:        address,
		Name:        "frontdoor-health",
		DialTimeout: p.dial,
		MaxConns:    1,
		// Keep the connection across probes; a backend that closed it while
		// idle gets one retry on a fresh connection (RetryIfErr).
		MaxIdleConnDuration:       max(fasthttp.DefaultMaxIdleConnDuration, 3*hc.Interval.Duration),
		MaxIdemponentCallAttempts: 2,
		RetryIfErr:                retryStale,
		ReadTimeout:               timeout,
		WriteTimeout:              timeout,
		MaxResponseBodySize:       maxHealthBody,
		DisablePathNormalizing:    true,
	}
	// Long-lived, owned by the probe goroutine: not from fasthttp's pools.
	p.req = new(fasthttp.Request)
	p.req.Header.SetMethod(method)
	p.req.SetRequestURI(hc.Path)
	p.req.Header.SetHost(host)
	return p
}

// dial connects to the backend for the HostClient and remembers the
// connection for close.
func (p *httpProber) dial(addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := p.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = conn.Close()
		return nil, errProberClosed
	}
	p.conn = conn
	return conn, nil
}

// retryStale retries once when a kept-alive connection turned out to be
// closed by the backend; any other error fails the check.
func retryStale(_ *fasthttp.Request, attempts int, err error) (resetTimeout, retry bool) {
	stale := errors.Is(err, io.EOF) || errors.Is(err, fasthttp.ErrConnectionClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
	return false, attempts == 1 && stale
}

func (p *httpProber) probe(context.Context) error {
	// fasthttp takes no context: the timeout bounds the call, and Run
	// calls close when its context ends, which cuts the call short.
	if err := p.client.DoTimeout(p.req, p.resp, p.timeout); err != nil {
		return fmt.Errorf("http %s: %w", p.what, timeoutErr(err, p.timeout))
	}
	if code := p.resp.StatusCode(); code < p.low || code > p.high {
		return fmt.Errorf("http %s: %w: status %d, want %d-%d", p.what, ErrUnhealthy, code, p.low, p.high)
	}
	return nil
}

func (p *httpProber) close() {
	p.mu.Lock()
	p.closed = true
	if p.conn != nil {
		_ = p.conn.Close()
	}
	p.mu.Unlock()
	p.client.CloseIdleConnections()
}

// grpcProber calls grpc.health.v1.Health/Check over one h2c ClientConn kept
// open for the Checker's life; SERVING passes.
type grpcProber struct {
	conn    *grpc.ClientConn
	client  grpc_health_v1.HealthClient
	req     *grpc_health_v1.HealthCheckRequest
	timeout time.Duration
	err     error // set when the ClientConn could not be created
}

func newGRPCProber(hc *config.HealthCheck, address string) *grpcProber {
	p := &grpcProber{
		req:     &grpc_health_v1.HealthCheckRequest{Service: hc.Service},
		timeout: hc.Timeout.Duration,
	}
	interval := hc.Interval.Duration
	// Reconnect at least once per interval, so a backend that comes back is
	// seen by the next check rather than after grpc's default backoff (up
	// to 120s).
	bo := backoff.DefaultConfig
	bo.BaseDelay = min(bo.BaseDelay, interval)
	bo.MaxDelay = interval
	conn, err := grpc.NewClient("passthrough:///"+address,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// A connection attempt may outlive one probe's deadline and serve
		// the next probe.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: max(p.timeout, interval)}),
		grpc.WithUserAgent("frontdoor-health"),
		grpc.WithDisableServiceConfig(),
	)
	if err != nil {
		p.err = fmt.Errorf("grpc client for %s: %w", address, err)
		return p
	}
	p.conn = conn
	p.client = grpc_health_v1.NewHealthClient(conn)
	return p
}

func (p *grpcProber) probe(ctx context.Context) error {
	if p.err != nil {
		return p.err
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	resp, err := p.client.Check(ctx, p.req)
	if err != nil {
		if status.Code(err) == codes.DeadlineExceeded {
			err = fmt.Errorf("%w after %s: %w", ErrTimeout, p.timeout, err)
		}
		return fmt.Errorf("grpc health check %q: %w", p.req.GetService(), err)
	}
	if s := resp.GetStatus(); s != grpc_health_v1.HealthCheckResponse_SERVING {
		return fmt.Errorf("grpc health check %q: %w: %s", p.req.GetService(), ErrUnhealthy, s)
	}
	return nil
}

func (p *grpcProber) close() {
	if p.conn != nil {
		_ = p.conn.Close()
	}
}
