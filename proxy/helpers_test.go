package proxy

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"frontdoor/config"
	"frontdoor/internal/loopback"
	"frontdoor/metrics"
)

// testBackend is a real fasthttp server on 127.0.0.1 that answers with its
// name and records what it saw.
type testBackend struct {
	name    string
	addr    string
	ln      net.Listener
	srv     *fasthttp.Server
	hits    atomic.Int64
	delay   atomic.Int64           // nanoseconds every request waits before answering
	lastHdr atomic.Pointer[string] // request header block of the last request
}

func startBackend(t testing.TB, name string) *testBackend {
	t.Helper()
	return startBackendOn(t, name, "127.0.0.1:0")
}

func startBackendOn(t testing.TB, name, addr string) *testBackend {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	b := &testBackend{name: name, addr: ln.Addr().String(), ln: ln}
	b.srv = &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			b.hits.Add(1)
			if d := b.delay.Load(); d > 0 {
				time.Sleep(time.Duration(d))
			}
			if _, ok := t.(*testing.B); !ok {
				h := ctx.Request.Header.String()
				b.lastHdr.Store(&h)
			}
			switch string(ctx.Path()) {
			case "/status/500":
				ctx.SetStatusCode(500)
			case "/status/501":
				ctx.SetStatusCode(501)
			case "/slow":
				time.Sleep(300 * time.Millisecond)
			case "/hop":
				ctx.Response.Header.Set("Connection", "X-Secret")
				ctx.Response.Header.Set("X-Secret", "1")
				ctx.Response.Header.Set("Keep-Alive", "timeout=5")
			}
			ctx.SetBodyString(b.name)
		},
		NoDefaultServerHeader: true,
	}
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(b.stop)
	return b
}

func (b *testBackend) stop() { _ = b.srv.Shutdown() }

func (b *testBackend) header() string {
	if p := b.lastHdr.Load(); p != nil {
		return *p
	}
	return ""
}

type testProxy struct {
	*Proxy
	reg *prometheus.Registry
}

// startProxy parses toml (listeners must bind 127.0.0.1:0), applies it and
// waits until the first health round is done.
func startProxy(t testing.TB, toml string, access *AccessLog) *testProxy {
	t.Helper()
	return startProxyWith(t, toml, Options{AccessLog: access})
}

// startProxyWith is startProxy with opts; their Metrics are set here, on
// the testProxy's own registry.
func startProxyWith(t testing.TB, toml string, opts Options) *testProxy {
	t.Helper()
	cfg, err := config.Parse([]byte(toml), "test.toml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	reg := prometheus.NewRegistry()
	opts.Metrics = metrics.New(reg, "test")
	p := New(opts)
	if err := p.Apply(cfg); err != nil {
		t.Fatalf("apply: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	waitFor(t, 5*time.Second, "first health round", p.Ready)
	return &testProxy{Proxy: p, reg: reg}
}

func (p *testProxy) url(t testing.TB, listener, path string) string {
	t.Helper()
	a := p.Addr(listener)
	if a == nil {
		t.Fatalf("no listener %q", listener)
	}
	return "http://" + a.String() + path
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// poolTOML renders a pool table with the given backends.
func poolTOML(name, extra string, addrs ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[pool.%s]\nbackends = [", name)
	for i, a := range addrs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "{ address = %q }", a)
	}
	b.WriteString("]\n")
	b.WriteString(extra)
	b.WriteString("\n")
	return b.String()
}

// get sends one request with a fresh fasthttp client request.
func get(t testing.TB, c *fasthttp.Client, url string, hdr ...string) (*fasthttp.Response, error) {
	t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI(url)
	req.UseHostHeader = true
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp := &fasthttp.Response{}
	err := c.DoTimeout(req, resp, 5*time.Second)
	return resp, err
}

func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				total += m.Counter.GetValue()
			case m.Gauge != nil:
				total += m.Gauge.GetValue()
			case m.Histogram != nil:
				total += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return total
}

// refusingAddr returns a 127.0.0.1 address that refuses connections for the
// whole test: a socket bound to it that never listens. A port merely bound
// and closed may be taken meanwhile by another test's listener running in
// parallel (seen: a "dead" backend that answered 503).
func refusingAddr(t testing.TB) string {
	t.Helper()
	_, addr := loopback.Bound(t)
	return addr
}

// appendAccessRecord appends r's line to b.
func appendAccessRecord(b []byte, r *accessRecord) []byte {
	var k lineKeys
	return appendRecord(b, r, &k)
}
