package balancer

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when the test says so.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(int64(time.Hour))
	return c
}

func (c *fakeClock) now() int64              { return c.ns.Load() }
func (c *fakeClock) set(t int64)             { c.ns.Store(t) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// clockBackends returns n up backends that read clk.
func clockBackends(n int, clk *fakeClock) []*Backend {
	bs := make([]*Backend, n)
	for i := range bs {
		bs[i] = NewBackend(fmt.Sprintf("10.1.%d.%d:8080", i/250, i%250+1))
		bs[i].now = clk.now
		bs[i].SetHealthy(true)
	}
	return bs
}

// settleAt moves clk to t, lets a pick notice a slow-start step that fell
// due, and waits for the rebuild it asked for.
func settleAt(t *testing.T, p *Pool, clk *fakeClock, at int64) {
	t.Helper()
	clk.set(at)
	p.Pick(0, 0)
	waitSettled(t, p)
}

// TestSlowStartRamp measures the share of a member that comes back (from
// down or from an ejection) in 10 windows across the ramp and compares it
// with the linear ramp of its weight, f x w / (others + f x w), within 10%.
// Each window averages 10 points of 600 picks (round robin) or 3,000
// (least_conn, random ties) with the clock stopped at each point.
func TestSlowStartRamp(t *testing.T) {
	t.Parallel()
	const slow = 30 * time.Second
	tests := []struct {
		name     string
		strategy string
		weights  []int
		member   int  // the member that comes back
		eject    bool // it was ejected rather than down
		picks    int  // per point
	}{
		{name: "round robin, B of A/B/C", strategy: RoundRobin, weights: []int{1, 1, 1}, member: 1, picks: 600},
		{name: "round robin, weights 1,2,3, weight 3", strategy: RoundRobin, weights: []int{1, 2, 3}, member: 2, picks: 600},
		{name: "round robin, ejected", strategy: RoundRobin, weights: []int{1, 1, 1, 1}, member: 0, eject: true, picks: 600},
		{name: "round robin, 16 members", strategy: RoundRobin, weights: []int{2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, member: 0, picks: 600},
		{name: "least_conn idle, B of A/B/C", strategy: LeastConn, weights: []int{1, 1, 1}, member: 1, picks: 3000},
		{name: "least_conn idle p2c, 10 members", strategy: LeastConn, weights: []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, member: 4, picks: 6000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := newFakeClock()
			bs := clockBackends(len(tc.weights), clk)
			p := mustPool(t, testMembers(bs, tc.weights...), Options{Strategy: tc.strategy, SlowStart: slow, now: clk.now})
			if lc, ok := p.picker.(*leastConn); ok {
				lc.rand = rand.New(rand.NewPCG(uint64(len(tc.weights)), 18)).Uint64
			}
			// Everyone came up an hour ago: no ramp.
			clk.advance(time.Hour)
			settleAt(t, p, clk, clk.now())
			b := bs[tc.member]
			if tc.eject {
				b.SetEjected(true)
			} else {
				b.SetHealthy(false)
			}
			waitSettled(t, p)
			clk.advance(time.Minute)
			t0 := clk.now()
			if tc.eject {
				b.SetEjected(false)
			} else {
				b.SetHealthy(true)
			}
			waitSettled(t, p)
			w := float64(tc.weights[tc.member])
			others := -w
			for _, x := range tc.weights {
				others += float64(x)
			}
			for win := range 10 {
				var got, want float64
				for j := range 10 {
					f := (float64(win) + (float64(j)+0.5)/10) / 10
					settleAt(t, p, clk, t0+int64(f*float64(slow)))
					counts := 0
					for k := range tc.picks {
						if p.Pick(uint64(k), 0) == tc.member {
							counts++
						}
					}
					got += float64(counts) / float64(tc.picks) / 10
					want += f * w / (others + f*w) / 10
				}
				t.Logf("window %d (%2d%%-%3d%% of slow_start): share %.4f, ramp %.4f", win, 10*win, 10*win+10, got, want)
				if got < 0.9*want || got > 1.1*want {
					t.Errorf("window %d: share %.4f, want %.4f +- 10%%", win, got, want)
				}
			}
			// Past the ramp: the full share, and picks stop reading the clock.
			settleAt(t, p, clk, t0+int64(slow))
			p.Pick(0, 0)
			if u := p.ramp.until.Load(); u != 0 {
				t.Errorf("ramp over, until = %d, want 0", u)
			}
			if p.rr != nil {
				if d := p.rr.sched.Load().due; d != 0 {
					t.Errorf("ramp over, schedule due = %d, want 0", d)
				}
			}
		})
	}
}

// TestSlowStartSurvivesReload checks that a pool built by a reload while a
// member ramps continues that ramp (the start time lives in the Backend),
// and that a backend the reload adds ramps from when it comes up.
func TestSlowStartSurvivesReload(t *testing.T) {
	t.Parallel()
	const slow = 10 * time.Second
	clk := newFakeClock()
	bs := clockBackends(4, clk)
	bs[3].SetHealthy(false) // added by the reload below, not yet up
	clk.advance(time.Hour)
	bs[1].SetHealthy(false)
	bs[1].SetHealthy(true) // B came back at t0
	t0 := clk.now()
	old := mustPool(t, testMembers(bs[:3]), Options{SlowStart: slow, now: clk.now})
	clk.set(t0 + int64(slow/2))
	reloaded := mustPool(t, testMembers(bs), Options{SlowStart: slow, now: clk.now})
	old.Close()
	// Half-way: B has half its weight, D (down) none.
	if got, want := shares(reloaded, 6000)[1], 0.5/2.5; got < 0.9*want || got > 1.1*want {
		t.Errorf("after the reload, half-way through B's ramp: share %.4f, want %.4f", got, want)
	}
	bs[3].SetHealthy(true) // D comes up at t0 + slow/2
	clk.set(t0 + int64(slow))
	settleAt(t, reloaded, clk, t0+int64(slow))
	// B is done; D is half-way.
	got := shares(reloaded, 6000)
	if want := 0.5 / 3.5; got[3] < 0.9*want || got[3] > 1.1*want {
		t.Errorf("D half-way: share %.4f, want %.4f (all %.4f)", got[3], want, got)
	}
	if want := 1 / 3.5; got[1] < 0.9*want || got[1] > 1.1*want {
		t.Errorf("B done: share %.4f, want %.4f (all %.4f)", got[1], want, got)
	}
}

// TestSlowStartConsistentHashKeepsKeys checks that consistent hashing
// ignores slow start: a member that just came up takes its keys at once.
func TestSlowStartConsistentHashKeepsKeys(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	bs := clockBackends(5, clk)
	p := mustPool(t, testMembers(bs), Options{Strategy: ConsistentHash, SlowStart: time.Minute, now: clk.now})
	ref := mustPool(t, testMembers(bs), Options{Strategy: ConsistentHash})
	bs[2].SetHealthy(false)
	bs[2].SetHealthy(true)
	waitSettled(t, p)
	waitSettled(t, ref)
	if p.ramp != nil {
		t.Fatal("consistent_hash pool has a ramp")
	}
	for _, k := range testKeys(18, 10_000) {
		if a, b := p.Pick(k, 0), ref.Pick(k, 0); a != b {
			t.Fatalf("key %x: %d with slow start, %d without", k, a, b)
		}
	}
}

func TestSlowStartNegative(t *testing.T) {
	t.Parallel()
	if _, err := NewPool(testMembers(testBackends(2)), Options{SlowStart: -time.Second}); err == nil {
		t.Fatal("NewPool accepted a negative slow start")
	}
}
