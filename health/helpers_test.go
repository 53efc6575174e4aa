package health

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"

	"frontdoor/config"
)

// backend is a StatusSetter and Ejectable that records what it is told.
type backend struct {
	healthy atomic.Bool
	ejected atomic.Bool

	mu      sync.Mutex
	history []bool // SetHealthy arguments, in order
}

func (b *backend) SetHealthy(h bool) {
	b.mu.Lock()
	b.history = append(b.history, h)
	b.mu.Unlock()
	b.healthy.Store(h)
}

func (b *backend) SetEjected(e bool) { b.ejected.Store(e) }
func (b *backend) Ejected() bool     { return b.ejected.Load() }
func (b *backend) Healthy() bool     { return b.healthy.Load() }

func (b *backend) sets() []bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]bool(nil), b.history...)
}

// recorder keeps each target's OnCheck/OnChange events in order.
type recorder struct {
	mu sync.Mutex
	ev map[int][]string
}

func newRecorder() *recorder { return &recorder{ev: make(map[int][]string)} }

func (r *recorder) add(i int, s string) {
	r.mu.Lock()
	r.ev[i] = append(r.ev[i], s)
	r.mu.Unlock()
}

func (r *recorder) onCheck(i int, ok bool) {
	if ok {
		r.add(i, "ok")
	} else {
		r.add(i, "fail")
	}
}

func (r *recorder) onChange(i int, up bool) {
	if up {
		r.add(i, "up")
	} else {
		r.add(i, "down")
	}
}

// seq is target i's events joined by spaces.
func (r *recorder) seq(i int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.ev[i], " ")
}

func (r *recorder) count(i int, what string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.ev[i] {
		if e == what {
			n++
		}
	}
	return n
}

// waitFor polls cond every few milliseconds until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// check returns a fast health check of kind.
func check(kind string) config.HealthCheck {
	return config.HealthCheck{
		Check:        kind,
		Path:         "/healthz",
		Method:       "GET",
		ExpectStatus: config.StatusRange{Low: 200, High: 399},
		Interval:     config.Duration{Duration: 20 * time.Millisecond},
		Timeout:      config.Duration{Duration: 500 * time.Millisecond},
		Rise:         2,
		Fall:         3,
	}
}

// startChecker runs c until the test ends and waits for Run to return then.
func startChecker(t testing.TB, c *Checker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// listen opens a listener on a free 127.0.0.1 port.
func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// httpBackend is a real fasthttp server whose status can be changed.
type httpBackend struct {
	addr   string
	status atomic.Int32
	hits   atomic.Int64

	mu                sync.Mutex
	method, uri, host string
}

func startHTTP(t testing.TB, status int) *httpBackend {
	t.Helper()
	ln := listen(t)
	b := &httpBackend{addr: ln.Addr().String()}
	b.status.Store(int32(status))
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		b.hits.Add(1)
		b.mu.Lock()
		b.method = string(ctx.Method())
		b.uri = string(ctx.RequestURI())
		b.host = string(ctx.Host())
		b.mu.Unlock()
		ctx.SetStatusCode(int(b.status.Load()))
		ctx.SetBodyString("ok\n")
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return b
}

func (b *httpBackend) seen() (method, uri, host string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.method, b.uri, b.host
}

// silentBackend accepts connections and never writes a byte.
type silentBackend struct {
	addr     string
	accepted atomic.Int64
}

func startSilent(t testing.TB) *silentBackend {
	t.Helper()
	ln := listen(t)
	s := &silentBackend{addr: ln.Addr().String()}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			s.accepted.Add(1)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return s
}

// closedAddr is a 127.0.0.1 address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln := listen(t)
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// startGRPC runs a real grpc server with grpc-go's health service.
func startGRPC(t testing.TB) (string, *grpchealth.Server) {
	t.Helper()
	ln := listen(t)
	srv := grpc.NewServer()
	hs := grpchealth.NewServer()
	grpc_health_v1.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), hs
}

// logLines collects a JSON slog handler's output.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logLines) logger() *slog.Logger { return slog.New(slog.NewJSONHandler(l, nil)) }

// records decodes every line logged so far.
func (l *logLines) records(t testing.TB) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(l.buf.String()) {
		m := map[string]any{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// closeAccepted accepts connections on ln and closes each at once, calling
// then (if set) after each close, until ln is closed.
func closeAccepted(ln net.Listener, then func()) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
			if then != nil {
				then()
			}
		}
	}()
}
