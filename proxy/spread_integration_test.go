package proxy

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestRoundRobinSpreadsOverSurvivors: through the real proxy with round
// robin over A, B and C, stopping B (its tcp check marks it down) gives A
// and C 50/50 +- 2% of the requests, not A a third and C two thirds; B's
// return gives each a third again.
func TestRoundRobinSpreadsOverSurvivors(t *testing.T) {
	t.Parallel()
	bs := []*testBackend{startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")}
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "rr"
`+poolTOML("rr", `strategy = "round_robin"
[pool.rr.health]
check = "tcp"
interval = "100ms"
timeout = "80ms"
fall = 1
rise = 1`, bs[0].addr, bs[1].addr, bs[2].addr), nil)
	client := &fasthttp.Client{}
	url := p.url(t, "web", "/")
	allUp := func() bool {
		for _, b := range bs {
			if backendState(p, "rr", b.addr) != "up" {
				return false
			}
		}
		return true
	}
	waitFor(t, 5*time.Second, "all backends up", allUp)
	// spread sends n requests one after another and returns each
	// backend's share of them.
	spread := func(n int) []float64 {
		t.Helper()
		before := make([]int64, len(bs))
		for i, b := range bs {
			before[i] = b.hits.Load()
		}
		for range n {
			if resp, err := get(t, client, url); err != nil || resp.StatusCode() != 200 {
				t.Fatalf("request failed: %v %v", err, resp)
			}
		}
		s := make([]float64, len(bs))
		for i, b := range bs {
			s[i] = float64(b.hits.Load()-before[i]) / float64(n)
		}
		return s
	}
	check := func(what string, got, want []float64) {
		t.Helper()
		t.Logf("%s: shares a %.4f, b %.4f, c %.4f", what, got[0], got[1], got[2])
		for i := range got {
			if d := got[i] - want[i]; d > 0.02 || d < -0.02 {
				t.Errorf("%s: backend %s share %.4f, want %.4f +- 0.02", what, bs[i].name, got[i], want[i])
			}
		}
	}
	check("all up", spread(3000), []float64{1.0 / 3, 1.0 / 3, 1.0 / 3})

	addr := bs[1].addr
	bs[1].stop()
	waitFor(t, 5*time.Second, "b down", func() bool { return backendState(p, "rr", addr) != "up" })
	spread(30) // let the schedule rebuild land
	check("b stopped", spread(3000), []float64{0.5, 0, 0.5})

	bs[1] = startBackendOn(t, "b", addr)
	waitFor(t, 5*time.Second, "b back up", allUp)
	spread(30)
	check("b back", spread(3000), []float64{1.0 / 3, 1.0 / 3, 1.0 / 3})
}
