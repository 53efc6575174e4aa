//go:build !race

package health

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestEjectorZeroAllocs: the per-response calls allocate nothing.
func TestEjectorZeroAllocs(t *testing.T) {
	e, _, _, _ := newTestEjector(t, 16, passive(1<<30, 50, time.Minute), nil)
	tests := []struct {
		name string
		fn   func()
	}{
		{name: "Success with no failures", fn: func() { e.Success(3) }},
		{name: "Success after a failure", fn: func() { e.Failure(4); e.Success(4) }},
		{name: "Failure below the threshold", fn: func() { e.Failure(5) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tc.fn); n != 0 {
				t.Errorf("%.1f allocs per call, want 0", n)
			}
		})
	}
	var nilEjector *Ejector
	if n := testing.AllocsPerRun(1000, func() { nilEjector.Success(0) }); n != 0 {
		t.Errorf("nil Ejector Success: %.1f allocs, want 0", n)
	}
}

// TestProbeZeroAllocs: once connected, a tcp or http probe allocates
// nothing (the backends run in a child process, so that only the prober's
// allocations are counted).
func TestProbeZeroAllocs(t *testing.T) {
	for _, kind := range []string{"tcp", "http"} {
		t.Run(kind, func(t *testing.T) {
			addrs, _ := startHelper(t, kind, 1)
			hc := check(kind)
			p := newProber(&hc, addrs[0])
			defer p.close()
			ctx := context.Background()
			if err := p.probe(ctx); err != nil { // connect, make the poller
				t.Fatal(err)
			}
			var err error
			if n := testing.AllocsPerRun(200, func() { err = p.probe(ctx) }); n != 0 || err != nil {
				t.Errorf("%.2f allocations per probe (err %v), want 0", n, err)
			}
		})
	}
}

// TestEngineZeroAllocs: the engine, scheduling and recording included,
// allocates nothing per check in steady state.
func TestEngineZeroAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for a second")
	}
	for _, kind := range []string{"tcp", "http"} {
		t.Run(kind, func(t *testing.T) {
			addrs, _ := startHelper(t, kind, 50)
			hc := check(kind)
			targets := make([]Target, len(addrs))
			for i, a := range addrs {
				targets[i] = Target{Address: a, Backend: &backend{}}
			}
			var checks, failed atomic.Int64
			c, err := NewChecker(CheckerOptions{Pool: "allocs", Check: hc, Targets: targets,
				OnCheck: func(_ int, ok bool) {
					checks.Add(1)
					if !ok {
						failed.Add(1)
					}
				}})
			if err != nil {
				t.Fatal(err)
			}
			startChecker(t, c)
			waitFor(t, 5*time.Second, "two rounds", func() bool { return checks.Load() >= 2*int64(len(addrs)) })
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			n0 := checks.Load()
			time.Sleep(time.Second) // the window counted, not synchronisation
			runtime.ReadMemStats(&m1)
			n := checks.Load() - n0
			if n < 500 || failed.Load() > 0 {
				t.Fatalf("%d checks in a second (%d failed), want about %d", n, failed.Load(), len(addrs)*1000/int(hc.Interval.Duration.Milliseconds()))
			}
			// A few allocations of the runtime and the test itself may
			// fall into the window; one per check would be 1.0.
			per := float64(m1.Mallocs-m0.Mallocs) / float64(n)
			t.Logf("%d allocations in %d checks", m1.Mallocs-m0.Mallocs, n)
			if per > 0.02 {
				t.Errorf("%.3f allocations per check (%d in %d checks), want 0", per, m1.Mallocs-m0.Mallocs, n)
			}
		})
	}
}
