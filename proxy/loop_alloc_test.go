//go:build !race

package proxy

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// newLoopRig returns a forwardRig whose requests go over real sockets on
// 127.0.0.1 to a proxy whose event loop forwards them to real fasthttp
// backends: the path of plain HTTP/1.1 traffic (loop.go).
func newLoopRig(tb testing.TB, backends int, bodySize int) *forwardRig {
	tb.Helper()
	addrs := make([]string, backends)
	for i := range addrs {
		b := startBackend(tb, "b"+itoaTest(i+1))
		// Not the test backend's handler: it keeps a copy of every
		// request's head (two allocations) for other tests.
		body := []byte("hello from the backend\n")
		if bodySize > 0 {
			body = []byte(strings.Repeat("x", bodySize))
		}
		b.srv.Handler = func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) }
		addrs[i] = b.addr
	}
	p := upProxy(tb, listenerTOML+`
  [[listener.route]]
  pool = "bench"
`+poolTOML("bench", `health = { check = "none" }`, addrs...), nil)
	front := p.Addr("web").String()
	r := &forwardRig{
		client: &fasthttp.HostClient{Addr: front, MaxConns: 1},
		req:    &fasthttp.Request{},
		resp:   &fasthttp.Response{},
	}
	r.req.SetRequestURI("http://" + front + "/api/users?id=7")
	r.req.Header.Set("User-Agent", "bench")
	r.req.Header.Set("Accept", "*/*")
	return r
}

// TestLoopForwardAllocs holds the event loop's request path at zero
// allocations per request (STYLE.md 3.1): the client and the backends are
// fasthttp, which allocate nothing in steady state, so any allocation is
// the proxy's.
func TestLoopForwardAllocs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		backends int
		body     int
	}{
		{"3 backends", 3, 0},
		{"64 backends", 64, 0},
		{"100 KiB answers", 3, 100 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rig := newLoopRig(t, tc.backends, tc.body)
			for range 100 + 3*tc.backends {
				rig.do(t)
			}
			defer debug.SetGCPercent(debug.SetGCPercent(-1))
			// 10,000 requests: the test's own client and per-CPU pool
			// caches allocate once when first run on another CPU, which
			// must not read as a per-request cost.
			if n := allocsPerRequest(10000, func() { rig.do(t) }); n > 0.01 {
				t.Errorf("%v allocations per request through the event loop, want 0", n)
			}
		})
	}
}

// BenchmarkLoopForward measures one small GET through the event loop over
// real loopback sockets (client, proxy and backend share the machine's
// CPUs, so compare runs of the same machine only).
func BenchmarkLoopForward(b *testing.B) {
	for _, tc := range []struct {
		name string
		body int
	}{{"small", 0}, {"100KiB", 100 << 10}} {
		b.Run(tc.name, func(b *testing.B) {
			rig := newLoopRig(b, 3, tc.body)
			for range 30 {
				rig.do(b)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				rig.do(b)
			}
		})
	}
}
