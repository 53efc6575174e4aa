package proxy

import (
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// forwardRig is the whole L7 path in one process: a fasthttp client writes
// into an in-memory listener served by frontdoor's handler, which routes,
// picks and forwards over a second in-memory listener to a real fasthttp
// backend handler. No sockets, so the figures are the proxy's own work.
type forwardRig struct {
	client  *fasthttp.HostClient
	req     *fasthttp.Request
	resp    *fasthttp.Response
	cleanup func()
}

func newForwardRig(tb testing.TB, backends int, accessLog bool) *forwardRig {
	tb.Helper()
	body := []byte("hello from the backend\n")
	backendLn := fasthttputil.NewInmemoryListener()
	backend := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) }}
	go func() { _ = backend.Serve(backendLn) }()

	// The pool's addresses are distinct names; every upstream dials the
	// same in-memory backend.
	addrs := make([]string, backends)
	for i := range addrs {
		addrs[i] = "127.0.0.1:" + itoaTest(20000+i)
	}
	p := startProxy(tb, listenerTOML+`
  [[listener.route]]
  path_prefix = "/"
  pool = "bench"
`+poolTOML("bench", `health = { check = "none" }`, addrs...), nil)
	g := p.gen.Load()
	for _, u := range g.pools["bench"].ups {
		u.hc.Dial = func(string) (net.Conn, error) { return backendLn.Dial() }
	}
	var l *httpListener
	for _, hl := range p.http {
		l = hl
	}
	if accessLog {
		l.log = &AccessLog{writes: true, lines: make(chan *logLine, accessLogQueue), free: make(chan *logLine, accessLogQueue)}
		// A full free list, as a long-running writer has: the test measures
		// the request path, not how fast a loaded machine schedules the
		// writer goroutine.
		for range accessLogQueue / 2 {
			l.log.free <- &logLine{b: make([]byte, 0, 1024)}
		}
		go func() {
			for b := range l.log.lines {
				l.log.recycle(b)
			}
		}()
	}
	frontLn := fasthttputil.NewInmemoryListener()
	go func() { _ = l.server.Serve(frontLn) }()

	rig := &forwardRig{
		client: &fasthttp.HostClient{Addr: "front", Dial: func(string) (net.Conn, error) { return frontLn.Dial() }},
		req:    &fasthttp.Request{},
		resp:   &fasthttp.Response{},
	}
	rig.req.SetRequestURI("http://front/api/users?id=7")
	rig.req.Header.Set("User-Agent", "bench")
	rig.req.Header.Set("Accept", "*/*")
	rig.cleanup = func() {
		_ = frontLn.Close()
		_ = backendLn.Close()
	}
	tb.Cleanup(rig.cleanup)
	return rig
}

func (r *forwardRig) do(tb testing.TB) {
	if err := r.client.DoTimeout(r.req, r.resp, 5*time.Second); err != nil {
		tb.Fatal(err)
	}
	if r.resp.StatusCode() != 200 {
		tb.Fatalf("status %d: %s", r.resp.StatusCode(), r.resp.Body())
	}
}

func itoaTest(n int) string {
	b := []byte{}
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

// BenchmarkForward measures one small GET through the whole L7 path
// (client → frontdoor handler → backend), at 3, 16 and 256 backends. The
// target is 0 allocs/op; the client and backend are fasthttp, which allocate
// nothing in steady state either, so any allocation here is ours.
func BenchmarkForward(b *testing.B) {
	for _, n := range []int{3, 16, 256} {
		b.Run("backends="+itoaTest(n), func(b *testing.B) {
			rig := newForwardRig(b, n, false)
			for range 3 * n {
				rig.do(b) // one warm connection per backend
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				rig.do(b)
			}
		})
	}
	b.Run("backends=3/accesslog", func(b *testing.B) {
		rig := newForwardRig(b, 3, true)
		rig.do(b)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			rig.do(b)
		}
	})
}

// BenchmarkRouteMatch measures matching host and path against a table of
// exact, wildcard and host-less routes.
func BenchmarkRouteMatch(b *testing.B) {
	mk := func(host, prefix string) *route { return &route{host: host, prefix: []byte(prefix)} }
	t := compileRoutes([]*route{
		mk("api.example.com", "/v1/"), mk("api.example.com", "/v2/"), mk("*.example.com", "/"),
		mk("", "/static/"), mk("", "/"),
	})
	host, path := []byte("www.example.com:8080"), []byte("/index.html")
	b.ReportAllocs()
	for b.Loop() {
		if t.match(host, path) == nil {
			b.Fatal("no match")
		}
	}
}

// BenchmarkAccessLogFormat measures formatting one access log line.
func BenchmarkAccessLogFormat(b *testing.B) {
	rec := accessRecord{
		start: time.Now(), duration: 1234 * time.Microsecond, requestID: []byte("4bf92f3577b34da6a3ce929d0e0e4736"),
		listener: "public", route: "api.example.com/v1/", method: []byte("GET"), host: []byte("api.example.com"),
		path: []byte("/v1/users/42"), status: 200, backend: "10.0.0.3:8080", bytesIn: 0, bytesOut: 512,
	}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendAccessRecord(buf[:0], &rec)
	}
}
