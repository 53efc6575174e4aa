package health

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"frontdoor/config"
)

// fakeClock is a settable clock for the Ejector.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// newTestEjector builds an Ejector over n recording backends named b0..bn-1
// with a fake clock at t0.
func newTestEjector(t testing.TB, n int, cfg config.Passive, prev *Ejector) (*Ejector, []*backend, *fakeClock, *atomic.Int64) {
	t.Helper()
	bs := make([]*backend, n)
	targets := make([]Ejectable, n)
	addrs := make([]string, n)
	for i := range bs {
		bs[i] = &backend{}
		targets[i] = bs[i]
		addrs[i] = "b" + strconv.Itoa(i)
	}
	var ejections atomic.Int64
	e := NewEjector(EjectorOptions{Pool: "test", Config: cfg, Targets: targets, Addresses: addrs,
		OnEject: func(int) { ejections.Add(1) }, Previous: prev})
	clk := &fakeClock{t: t0}
	e.now = clk.now
	return e, bs, clk, &ejections
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// passive is a [pool.X.passive] table whose ejections may grow to 32 x base
// and end on an active recovery.
func passive(n, pct int, base time.Duration) config.Passive {
	return config.Passive{ConsecutiveFailures: n, MaxEjectionPercent: pct, BaseEjection: config.Duration{Duration: base},
		MaxEjectionTime: config.Duration{Duration: 32 * base}, UnejectOnActivePass: true}
}

func TestEjectorConsecutiveFailures(t *testing.T) {
	t.Parallel()
	e, bs, _, ejections := newTestEjector(t, 4, passive(5, 50, time.Minute), nil)
	for i := range 4 {
		e.Failure(0)
		if bs[0].ejected.Load() {
			t.Fatalf("ejected after %d failures, want 5", i+1)
		}
	}
	e.Failure(0)
	if !bs[0].ejected.Load() || !e.Ejected(0) || ejections.Load() != 1 {
		t.Fatalf("after 5 failures: ejected %v/%v, OnEject %d; want ejected once", bs[0].ejected.Load(), e.Ejected(0), ejections.Load())
	}
	// Failures of an ejected target are ignored.
	for range 20 {
		e.Failure(0)
	}
	if ejections.Load() != 1 {
		t.Errorf("OnEject called %d times, want 1", ejections.Load())
	}
}

func TestEjectorSuccessResets(t *testing.T) {
	t.Parallel()
	e, bs, _, _ := newTestEjector(t, 4, passive(3, 50, time.Minute), nil)
	for range 5 {
		e.Failure(1)
		e.Failure(1)
		e.Success(1)
	}
	if bs[1].ejected.Load() {
		t.Fatal("ejected although no 3 failures were in a row")
	}
	e.Failure(1)
	e.Failure(1)
	e.Failure(1)
	if !bs[1].ejected.Load() {
		t.Fatal("not ejected after 3 failures in a row")
	}
}

func TestEjectorDisabled(t *testing.T) {
	t.Parallel()
	e, bs, _, _ := newTestEjector(t, 4, passive(0, 100, time.Minute), nil)
	for range 100 {
		e.Failure(0)
	}
	if bs[0].ejected.Load() {
		t.Fatal("disabled Ejector ejected")
	}
	var nilEjector *Ejector
	nilEjector.Success(0)
	nilEjector.Failure(0)
	if nilEjector.Ejected(0) {
		t.Fatal("nil Ejector reports ejected")
	}
}

// TestEjectorMaxPercent fails every target of a pool and counts how many
// the cap lets out.
func TestEjectorMaxPercent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		pool, pct   int
		wantEjected int
	}{
		{name: "4 at 50% ejects 2", pool: 4, pct: 50, wantEjected: 2},
		{name: "1 at 50% ejects none", pool: 1, pct: 50, wantEjected: 0},
		{name: "1 at 100% ejects it", pool: 1, pct: 100, wantEjected: 1},
		{name: "3 at 50% ejects 1", pool: 3, pct: 50, wantEjected: 1},
		{name: "2 at 50% ejects 1", pool: 2, pct: 50, wantEjected: 1},
		{name: "10 at 10% ejects 1", pool: 10, pct: 10, wantEjected: 1},
		{name: "4 at 0% ejects none", pool: 4, pct: 0, wantEjected: 0},
		{name: "5 at 100% ejects all", pool: 5, pct: 100, wantEjected: 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, bs, _, ejections := newTestEjector(t, tc.pool, passive(2, tc.pct, time.Minute), nil)
			for range 3 {
				for i := range tc.pool {
					e.Failure(i)
				}
			}
			got := 0
			for _, b := range bs {
				if b.ejected.Load() {
					got++
				}
			}
			if got != tc.wantEjected || ejections.Load() != int64(tc.wantEjected) {
				t.Errorf("ejected %d (OnEject %d), want %d", got, ejections.Load(), tc.wantEjected)
			}
		})
	}
}

// TestEjectorMaxPercentConcurrent: the cap holds with many goroutines
// failing every target at once.
func TestEjectorMaxPercentConcurrent(t *testing.T) {
	t.Parallel()
	e, bs, _, ejections := newTestEjector(t, 10, passive(3, 50, time.Hour), nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				for i := range 10 {
					e.Failure(i)
				}
			}
		})
	}
	wg.Wait()
	got := 0
	for _, b := range bs {
		if b.ejected.Load() {
			got++
		}
	}
	if got != 5 || ejections.Load() != 5 {
		t.Errorf("ejected %d (OnEject %d), want exactly 5 of 10", got, ejections.Load())
	}
}

// TestEjectorRefusedThenRoom: a target refused by the cap is ejected by its
// next failure once another ejection ended.
func TestEjectorRefusedThenRoom(t *testing.T) {
	t.Parallel()
	e, bs, clk, _ := newTestEjector(t, 2, passive(2, 50, 10*time.Second), nil)
	e.Failure(0)
	e.Failure(0)
	e.Failure(1)
	e.Failure(1)
	if !bs[0].ejected.Load() || bs[1].ejected.Load() {
		t.Fatal("want b0 ejected, b1 refused")
	}
	clk.set(t0.Add(10 * time.Second))
	e.release(clk.now())
	e.Failure(1)
	if bs[0].ejected.Load() || !bs[1].ejected.Load() {
		t.Fatal("want b0 back and b1 ejected by its next failure")
	}
}

// TestEjectorCooldown walks one target through repeat ejections on a fake
// clock: base x 2^(n-1) for the n-th ejection in a row, capped at
// max_ejection_time, and back to base after a long healthy period.
func TestEjectorCooldown(t *testing.T) {
	t.Parallel()
	const base = 10 * time.Second
	tests := []struct {
		name    string
		max     time.Duration
		lengths []time.Duration // of ejections 1, 2, 3, ... in a row
	}{
		{name: "cap between doublings", max: 100 * time.Second, lengths: []time.Duration{10, 20, 40, 80, 100, 100, 100}},
		{name: "cap on a doubling", max: 80 * time.Second, lengths: []time.Duration{10, 20, 40, 80, 80}},
		{name: "default 300s", max: 300 * time.Second, lengths: []time.Duration{10, 20, 40, 80, 160, 300, 300}},
		{name: "cap at base", max: base, lengths: []time.Duration{10, 10, 10}},
		{name: "zero cap means base", max: 0, lengths: []time.Duration{10, 10}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := passive(1, 100, base)
			cfg.MaxEjectionTime.Duration = tc.max
			e, bs, clk, _ := newTestEjector(t, 1, cfg, nil)
			now := t0
			eject := func() {
				t.Helper()
				clk.set(now)
				e.Failure(0)
				if !bs[0].ejected.Load() {
					t.Fatalf("at %s: not ejected", now.Sub(t0))
				}
			}
			// expectLength checks the ejection in force ends exactly want
			// after now, and moves now there.
			expectLength := func(want time.Duration) {
				t.Helper()
				next, ok := e.release(now.Add(want - time.Nanosecond))
				if !ok || !next.Equal(now.Add(want)) || !bs[0].ejected.Load() {
					t.Fatalf("ejection at %s: ends %v (ok %v), want %s later", now.Sub(t0), next.Sub(now), ok, want)
				}
				if until, ej := e.EjectedUntil(0); !ej || !until.Equal(now.Add(want)) {
					t.Fatalf("EjectedUntil = %v, %v; want %v", until.Sub(now), ej, want)
				}
				now = now.Add(want)
				if _, ok := e.release(now); ok || bs[0].ejected.Load() {
					t.Fatalf("ejection at %s: still ejected after %s", now.Sub(t0), want)
				}
				if _, ej := e.EjectedUntil(0); ej {
					t.Fatal("EjectedUntil says ejected after the end")
				}
			}
			for _, l := range tc.lengths {
				now = now.Add(time.Second) // back for a short while
				eject()
				expectLength(l * time.Second)
			}
			// Healthy for 10 x base: the next ejection is short again.
			now = now.Add(10 * base)
			eject()
			expectLength(base)
			// Just under 10 x base healthy: the next one doubles (within the cap).
			now = now.Add(10*base - time.Second)
			eject()
			expectLength(min(2*base, max(tc.max, base)))
		})
	}
}

// TestEjectorCapNoOverflow ejects one target far more often than the
// multiplier has bits: the length stays at the cap.
func TestEjectorCapNoOverflow(t *testing.T) {
	t.Parallel()
	cfg := passive(1, 100, time.Second)
	cfg.MaxEjectionTime.Duration = 300 * time.Second
	e, _, clk, _ := newTestEjector(t, 1, cfg, nil)
	now := t0
	for range 200 {
		clk.set(now)
		e.Failure(0)
		until, ok := e.EjectedUntil(0)
		if !ok || until.Sub(now) <= 0 || until.Sub(now) > 300*time.Second {
			t.Fatalf("ejection of %v (ok %v)", until.Sub(now), ok)
		}
		now = until
		e.release(now)
	}
}

// TestEjectorRecovered: an active recovery ends an ejection at once with
// uneject_on_active_pass, keeps it (and reports its end) without, and says
// nothing for a target that is not ejected.
func TestEjectorRecovered(t *testing.T) {
	t.Parallel()
	const base = 10 * time.Second
	for _, uneject := range []bool{true, false} {
		t.Run("uneject="+strconv.FormatBool(uneject), func(t *testing.T) {
			t.Parallel()
			cfg := passive(1, 100, base)
			cfg.UnejectOnActivePass = uneject
			e, bs, clk, _ := newTestEjector(t, 2, cfg, nil)
			if ended, until := e.Recovered(0); ended || !until.IsZero() {
				t.Fatalf("not ejected: Recovered = %v, %v", ended, until)
			}
			e.Failure(0)
			clk.set(t0.Add(time.Second))
			ended, until := e.Recovered(0)
			if uneject {
				if !ended || !until.IsZero() || bs[0].ejected.Load() || e.Ejected(0) {
					t.Fatalf("Recovered = %v, %v; ejected %v", ended, until, bs[0].ejected.Load())
				}
				// The multiplier is kept: an ejection soon after is doubled.
				clk.set(t0.Add(2 * time.Second))
				e.Failure(0)
				if u, _ := e.EjectedUntil(0); !u.Equal(t0.Add(2*time.Second + 2*base)) {
					t.Errorf("next ejection ends %v, want doubled", u.Sub(t0))
				}
				// The pool has room again: b1 could be ejected at 100%.
				return
			}
			if ended || !until.Equal(t0.Add(base)) || !bs[0].ejected.Load() {
				t.Fatalf("Recovered = %v, %v; ejected %v; want kept until %v", ended, until, bs[0].ejected.Load(), t0.Add(base))
			}
		})
	}
}

// TestEjectorRun ends an ejection in real time and leaves ejections alone
// when it stops.
func TestEjectorRun(t *testing.T) {
	t.Parallel()
	e, bs, _, _ := newTestEjector(t, 4, passive(1, 50, 30*time.Millisecond), nil)
	e.now = time.Now
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()

	e.Failure(0)
	if !bs[0].ejected.Load() {
		t.Fatal("not ejected")
	}
	waitFor(t, 5*time.Second, "ejection to end", func() bool { return !bs[0].ejected.Load() })

	e.base = time.Hour // not touched by Failure concurrently: only this goroutine fails
	e.Failure(1)
	cancel()
	<-done
	if !bs[1].ejected.Load() || !e.Ejected(1) {
		t.Fatal("Run un-ejected on return")
	}
}

// TestEjectorPrevious: a replacement Ejector takes over the ejection in
// force and the repeat multiplier by address; a target ejected without a
// Previous is released after BaseEjection.
func TestEjectorPrevious(t *testing.T) {
	t.Parallel()
	const base = 10 * time.Second
	old, bs, _, _ := newTestEjector(t, 2, passive(1, 100, base), nil)
	old.Failure(1) // b1 ejected until t0+10s, multiplier 1
	old.Failure(0)

	// The new pool drops b0's position: b1 is now index 0, plus a new b2
	// built over the same backend objects.
	targets := []Ejectable{bs[1], &backend{}}
	e := NewEjector(EjectorOptions{Pool: "test", Config: passive(1, 100, base), Targets: targets,
		Addresses: []string{"b1", "b2"}, Previous: old})
	e.now = func() time.Time { return t0.Add(5 * time.Second) }
	if !e.Ejected(0) || e.Ejected(1) {
		t.Fatal("want b1 ejected, b2 not")
	}
	if next, ok := e.release(t0.Add(5 * time.Second)); !ok || !next.Equal(t0.Add(base)) {
		t.Fatalf("carried ejection ends %v, want %v", next, t0.Add(base))
	}
	e.release(t0.Add(base))
	if bs[1].ejected.Load() {
		t.Fatal("carried ejection not ended")
	}
	e.now = func() time.Time { return t0.Add(base + time.Second) }
	e.Failure(0)
	if next, _ := e.release(t0.Add(base + time.Second)); !next.Equal(t0.Add(base + time.Second + 2*base)) {
		t.Errorf("repeat ejection after reload ends %v, want doubled", next.Sub(t0))
	}

	// No Previous: the backend's own Ejected() is trusted.
	stuck := &backend{}
	stuck.ejected.Store(true)
	e2 := NewEjector(EjectorOptions{Config: passive(0, 50, base), Targets: []Ejectable{stuck}})
	if !e2.Ejected(0) {
		t.Fatal("backend reporting Ejected not taken as ejected")
	}
	e2.release(time.Now().Add(base))
	if stuck.ejected.Load() {
		t.Fatal("inherited ejection not ended after BaseEjection")
	}
}

func TestNewEjectorPanics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts EjectorOptions
	}{
		{name: "address count", opts: EjectorOptions{Targets: []Ejectable{&backend{}}, Addresses: []string{"a", "b"}}},
		{name: "nil target", opts: EjectorOptions{Targets: []Ejectable{nil}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Error("NewEjector did not panic")
				}
			}()
			NewEjector(tc.opts)
		})
	}
}

// TestEjectorLogs: one line per ejection and one per end, none per failure;
// the end says "backend up" only when the backend's active check lets it
// take traffic.
func TestEjectorLogs(t *testing.T) {
	t.Parallel()
	for _, healthy := range []bool{true, false} {
		t.Run("healthy="+strconv.FormatBool(healthy), func(t *testing.T) {
			t.Parallel()
			var logs logLines
			b := &backend{}
			b.healthy.Store(healthy)
			e := NewEjector(EjectorOptions{Pool: "api", Config: passive(3, 100, 10*time.Second),
				Targets: []Ejectable{b}, Addresses: []string{"10.0.0.1:80"}, Logger: logs.logger()})
			e.now = func() time.Time { return t0 }
			for range 10 {
				e.Failure(0)
			}
			e.release(t0.Add(10 * time.Second))
			lines := logs.records(t)
			if len(lines) != 2 {
				t.Fatalf("%d log lines, want 2: %v", len(lines), lines)
			}
			if l := lines[0]; l["msg"] != "backend ejected" || l["pool"] != "api" || l["backend"] != "10.0.0.1:80" ||
				l["reason"] != "3 consecutive failures" || l["duration"] == nil {
				t.Errorf("ejection line %v", l)
			}
			want := "backend up"
			if !healthy {
				want = "backend ejection ended"
			}
			if l := lines[1]; l["msg"] != want || l["backend"] != "10.0.0.1:80" {
				t.Errorf("end line %v, want %q", l, want)
			}
		})
	}
}
