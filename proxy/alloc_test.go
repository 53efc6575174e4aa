//go:build !race

package proxy

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"frontdoor/proxy/internal/requestid"
)

// allocsPerRequest is testing.AllocsPerRun without its GOMAXPROCS(1): with
// one P, the goroutines of one request (client, handler, backend) ready each
// other in turn and starve the access-log writer, which would then never
// recycle a buffer; a real server does not run that way.
func allocsPerRequest(runs int, f func()) float64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / float64(runs)
}

// TestForwardAllocs holds the hot path at zero allocations per request
// (STYLE.md 3.1), with and without the access log, at several pool sizes.
func TestForwardAllocs(t *testing.T) {
	for _, tc := range []struct {
		name      string
		backends  int
		accessLog bool
	}{
		{"3 backends", 3, false},
		{"16 backends", 16, false},
		{"256 backends", 256, false},
		{"3 backends with access log", 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rig := newForwardRig(t, tc.backends, tc.accessLog)
			for range 100 + 3*tc.backends { // warm pools and connections
				rig.do(t)
			}
			if tc.accessLog {
				for range 3000 { // let the free list of line buffers fill
					rig.do(t)
				}
				// Allow the rare buffer the writer has not yet recycled
				// (more of them when other processes hold the CPU the
				// writer would run on): a per-request allocation is 1.
				if n := allocsPerRequest(1000, func() { rig.do(t) }); n > 0.05 {
					t.Errorf("%v allocations per forwarded request, want 0", n)
				}
				return
			}
			// No garbage collection while counting: one empties the
			// sync.Pools, and refilling them (a bufio reader and writer
			// in each backend's HostClient) reads as one allocation per
			// request with 256 backends (seen in loaded runs, reproduced
			// with two runtime.GC calls in the middle of the count).
			defer debug.SetGCPercent(debug.SetGCPercent(-1))
			// Warm up as counted: AllocsPerRun runs on one P, and a pooled
			// reader put back on another P's private slot is out of reach
			// until this P's own pools hold one per backend.
			testing.AllocsPerRun(3*tc.backends, func() { rig.do(t) })
			if n := testing.AllocsPerRun(1000, func() { rig.do(t) }); n != 0 {
				t.Errorf("%v allocations per forwarded request, want 0", n)
			}
		})
	}
}

func TestHelperAllocs(t *testing.T) {
	g := requestid.New()
	var buf [requestid.Len]byte
	rec := accessRecord{start: time.Now(), requestID: []byte("x"), method: []byte("GET"), path: []byte("/\"quoted\"\n")}
	out := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(1000, func() {
		g.Next(&buf)
		out = appendAccessRecord(out[:0], &rec)
	}); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}

// TestH2UnaryAllocs holds the HTTP/2 engine's relay of a unary call at
// zero allocations (STYLE.md 3.1): the raw peers of h2engine_bench_test.go
// allocate nothing themselves, so every allocation counted is frontdoor's.
func TestH2UnaryAllocs(t *testing.T) {
	for _, n := range []int{3, 16} {
		p := startH2Rig(t, n, nil)
		cl := dialRawH2(t, p.Addr("web").String(), "/bench.Service/Call")
		for range 20 {
			cl.calls(t, 64)
		}
		defer debug.SetGCPercent(debug.SetGCPercent(-1))
		if a := allocsPerRequest(50, func() { cl.calls(t, 64) }) / 64; a > 0.05 {
			t.Errorf("%d backends: %v allocations per relayed call, want 0", n, a)
		}
	}
}
