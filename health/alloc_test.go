//go:build !race

package health

import (
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
