package balancer

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// testBackends returns n backends with distinct addresses, all up.
func testBackends(n int) []*Backend {
	bs := make([]*Backend, n)
	for i := range bs {
		bs[i] = NewBackend(fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250+1))
		bs[i].SetHealthy(true)
	}
	return bs
}

// testMembers pairs backends with weights; missing weights are 1.
func testMembers(bs []*Backend, weights ...int) []Member {
	ms := make([]Member, len(bs))
	for i, b := range bs {
		w := 1
		if i < len(weights) {
			w = weights[i]
		}
		ms[i] = Member{Backend: b, Weight: w}
	}
	return ms
}

// mustPool builds a pool and closes it when the test ends.
func mustPool(t testing.TB, ms []Member, opts Options) *Pool {
	t.Helper()
	p, err := NewPool(ms, opts)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// waitSettled waits until the pool's table reflects every Up change made so
// far.
func waitSettled(t testing.TB, p *Pool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !p.settled() {
		if time.Now().After(deadline) {
			t.Fatal("table rebuild did not settle within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// testKeys returns n pseudo-random keys, the same for every call with seed.
func testKeys(seed uint64, n int) []uint64 {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = r.Uint64()
	}
	return keys
}

// addressOf maps a pick to its backend address ("" for -1).
func addressOf(p *Pool, i int) string {
	if i < 0 {
		return ""
	}
	return p.Members()[i].Backend.Address()
}

// rampingPool returns a pool of n members with a 30s slow start in which
// member 0 came back 10s ago (by the returned clock), settled.
func rampingPool(tb testing.TB, n int, strategy string) (*Pool, *fakeClock) {
	tb.Helper()
	clk := newFakeClock()
	bs := clockBackends(n, clk)
	p := mustPool(tb, testMembers(bs), Options{Strategy: strategy, SlowStart: 30 * time.Second, now: clk.now})
	clk.advance(time.Hour)
	bs[0].SetHealthy(false)
	bs[0].SetHealthy(true)
	clk.advance(10 * time.Second)
	p.Pick(0, 0)
	waitSettled(tb, p)
	if _, ok := p.ramp.active(); !ok {
		tb.Fatal("no ramp running")
	}
	return p, clk
}
