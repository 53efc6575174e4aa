//go:build !race

package metrics

import (
	"testing"
	"time"
)

// TestDurationObserveAllocs: observing, with or without an exemplar, never
// allocates (the request path calls it for every request).
func TestDurationObserveAllocs(t *testing.T) {
	d := NewDurationVec("a_seconds", "help", []string{"a"}).With("x")
	id := []byte("4bf92f3577b34da6a3ce929d0e0e4736")
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		i++
		d.Observe(time.Duration(i)*time.Millisecond, id, time.Unix(int64(i), 0)) // an exemplar every time
	}); n != 0 {
		t.Fatalf("%v allocs per Observe", n)
	}
}
