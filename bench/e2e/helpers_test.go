package e2e

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"frontdoor/config"
	"frontdoor/metrics"
	"frontdoor/proxy"
)

// smallBody is the backend's answer on /small; /big answers bigBytes bytes.
const (
	smallBody = "hello from the bench backend\n"
	bigBytes  = 100 << 10
)

var bigBody = []byte(strings.Repeat("x", bigBytes))

// listen opens a listener on a free 127.0.0.1 port.
func listen(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return ln
}

// startBackend runs a fasthttp backend and returns its address.
func startBackend(tb testing.TB) string {
	tb.Helper()
	ln := listen(tb)
	s := &fasthttp.Server{
		NoDefaultDate: true,
		Handler: func(ctx *fasthttp.RequestCtx) {
			switch string(ctx.Path()) {
			case "/big":
				ctx.SetBody(bigBody)
			default:
				ctx.SetBodyString(smallBody)
			}
		},
	}
	go func() { _ = s.Serve(ln) }()
	tb.Cleanup(func() { _ = s.Shutdown() })
	return ln.Addr().String()
}

// starter starts one proxy in front of backend and returns its address.
type starter func(tb testing.TB, backend string) string

// proxies are the proxies under test, frontdoor first.
var proxies = []struct {
	name  string
	start starter
}{
	{"frontdoor", startFrontdoor},
	{"fasthttp", startFastHTTP},
	{"httputil", startReverseProxy},
}

// startFrontdoor runs frontdoor's proxy in process with one http listener
// and a pool of backend without health checks.
func startFrontdoor(tb testing.TB, backend string) string {
	tb.Helper()
	toml := `
[log]
access = "off"

[[listener]]
name = "bench"
bind = "127.0.0.1:0"
  [[listener.route]]
  pool = "be"

[pool.be]
backends = [{ address = "` + backend + `" }]
  [pool.be.health]
  check = "none"
`
	cfg, err := config.Parse([]byte(toml), "e2e.toml")
	if err != nil {
		tb.Fatalf("config: %v", err)
	}
	p := proxy.New(proxy.Options{Metrics: metrics.New(prometheus.NewRegistry(), "bench")})
	if err := p.Apply(cfg); err != nil {
		tb.Fatalf("apply: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	deadline := time.Now().Add(5 * time.Second)
	for !p.Ready() {
		if time.Now().After(deadline) {
			tb.Fatal("frontdoor not ready after 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	a := p.Addr("bench")
	if a == nil {
		tb.Fatal("frontdoor: no listener named bench")
	}
	return a.String()
}

// startFastHTTP runs the minimal fasthttp proxy (as bench/minproxy).
func startFastHTTP(tb testing.TB, backend string) string {
	tb.Helper()
	hc := &fasthttp.HostClient{Addr: backend, MaxConns: 4096}
	s := &fasthttp.Server{
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		Handler: func(ctx *fasthttp.RequestCtx) {
			if err := hc.Do(&ctx.Request, &ctx.Response); err != nil {
				ctx.ResetBody()
				ctx.SetStatusCode(fasthttp.StatusBadGateway)
			}
		},
	}
	ln := listen(tb)
	go func() { _ = s.Serve(ln) }()
	tb.Cleanup(func() { _ = s.Shutdown() })
	return ln.Addr().String()
}

// startReverseProxy runs net/http's httputil.ReverseProxy with an idle pool
// large enough for the benchmark's connections.
func startReverseProxy(tb testing.TB, backend string) string {
	tb.Helper()
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(&url.URL{Scheme: "http", Host: backend})
		},
		Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute},
	}
	s := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	ln := listen(tb)
	go func() {
		if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			tb.Error(err)
		}
	}()
	tb.Cleanup(func() { _ = s.Close() })
	return ln.Addr().String()
}

// client is one goroutine's request state; fasthttp's HostClient pools the
// connections.
type client struct {
	hc   *fasthttp.HostClient
	req  *fasthttp.Request
	resp *fasthttp.Response
}

func newClient(hc *fasthttp.HostClient, addr, path string) *client {
	c := &client{hc: hc, req: &fasthttp.Request{}, resp: &fasthttp.Response{}}
	c.req.SetRequestURI("http://" + addr + path)
	c.req.Header.Set("User-Agent", "bench")
	c.req.Header.Set("Accept", "*/*")
	return c
}

// do sends one request and checks it got 200 with wantLen body bytes.
func (c *client) do(wantLen int) error {
	if err := c.hc.DoTimeout(c.req, c.resp, 5*time.Second); err != nil {
		return err
	}
	if c.resp.StatusCode() != fasthttp.StatusOK || len(c.resp.Body()) != wantLen {
		return errBadResponse
	}
	return nil
}

var errBadResponse = errors.New("e2e: not a 200 with the expected body length")
