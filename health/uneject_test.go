package health

import (
	"strconv"
	"testing"
	"time"
)

// TestEjectorUneject ends an ejection on an operator's order, with or
// without uneject_on_active_pass, and reports false when nothing was
// ejected.
func TestEjectorUneject(t *testing.T) {
	t.Parallel()
	const base = 10 * time.Second
	for _, onPass := range []bool{true, false} {
		t.Run("uneject_on_active_pass="+strconv.FormatBool(onPass), func(t *testing.T) {
			t.Parallel()
			cfg := passive(1, 100, base)
			cfg.UnejectOnActivePass = onPass
			e, bs, clk, _ := newTestEjector(t, 2, cfg, nil)
			if e.Uneject(0) {
				t.Fatal("Uneject of a target not ejected reported true")
			}
			e.Failure(0)
			if !bs[0].ejected.Load() {
				t.Fatal("not ejected after a failure at threshold 1")
			}
			clk.set(t0.Add(time.Second))
			if !e.Uneject(0) || bs[0].ejected.Load() || e.Ejected(0) {
				t.Fatalf("Uneject: ejected %v / %v, want false", bs[0].ejected.Load(), e.Ejected(0))
			}
			if e.Uneject(0) {
				t.Fatal("second Uneject reported true")
			}
			// The pool has room again and the count starts over: one more
			// failure ejects, for twice the base (multiplier kept).
			clk.set(t0.Add(2 * time.Second))
			e.Failure(0)
			if u, ok := e.EjectedUntil(0); !ok || !u.Equal(t0.Add(2*time.Second+2*base)) {
				t.Fatalf("next ejection ends %v (%v), want doubled", u.Sub(t0), ok)
			}
		})
	}
	var nilE *Ejector
	if nilE.Uneject(0) {
		t.Fatal("nil Ejector reported an uneject")
	}
}
