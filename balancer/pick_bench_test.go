package balancer

import (
	"fmt"
	"testing"
)

// benchSizes are the pool sizes every picker is measured and alloc-tested at.
var benchSizes = []int{3, 10, 16, 256, 1000}

// benchStrategies names the pickers; consistent_hash_bounded is
// consistent_hash with bounded_load = 1.25.
var benchStrategies = []struct {
	name string
	opts Options
}{
	{RoundRobin, Options{Strategy: RoundRobin}},
	{LeastConn, Options{Strategy: LeastConn}},
	{ConsistentHash, Options{Strategy: ConsistentHash}},
	{ConsistentHash + "_bounded", Options{Strategy: ConsistentHash, BoundedLoad: 1.25}},
}

// benchPool builds a pool of n up members with uneven in-flight counts (0 to
// 4, counted through the pool so bounded loads see them), as under traffic.
func benchPool(tb testing.TB, n int, opts Options) *Pool {
	tb.Helper()
	p := mustPool(tb, testMembers(testBackends(n)), opts)
	for i := range n {
		for range i * 7 % 5 {
			p.Acquire(i)
		}
	}
	return p
}

// reportCPU reports the process CPU time per op since start (from
// processCPU) as cpu-ns/op.
func reportCPU(b *testing.B, start int64) {
	if now := processCPU(); start >= 0 && now >= 0 && b.N > 0 {
		b.ReportMetric(float64(now-start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkPick measures Pool.Pick with random keys from parallel
// goroutines: go test -run '^$' -bench Pick -benchmem ./balancer/
func BenchmarkPick(b *testing.B) {
	benchEachPool(b, func(p *Pool, key uint64) bool { return p.Pick(key, 0) >= 0 })
}

// BenchmarkPickAcquireRelease measures a request's whole balancer cycle:
// PickAcquire, then Release.
func BenchmarkPickAcquireRelease(b *testing.B) {
	benchEachPool(b, func(p *Pool, key uint64) bool {
		i := p.PickAcquire(key, 0)
		if i < 0 {
			return false
		}
		p.Release(i)
		return true
	})
}

// benchEachPool runs op with random keys from parallel goroutines for every
// strategy and pool size; op reports whether a member was picked.
func benchEachPool(b *testing.B, op func(p *Pool, key uint64) bool) {
	for _, s := range benchStrategies {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", s.name, n), func(b *testing.B) {
				p := benchPool(b, n, s.opts)
				b.ReportAllocs()
				b.ResetTimer()
				defer reportCPU(b, processCPU())
				b.RunParallel(func(pb *testing.PB) {
					var state, key uint64
					for pb.Next() {
						state, key = wyrand(state)
						if !op(p, key) {
							b.Error("no member picked")
							return
						}
					}
				})
			})
		}
	}
}

// BenchmarkLeastConnScanVsP2C sets leastConnScanMax: the exact scan's cost
// grows with the pool, p2c's does not. Members carry in-flight counts 0 to 4,
// so a fifth of them tie for least loaded, as at light load.
func BenchmarkLeastConnScanVsP2C(b *testing.B) {
	for _, n := range []int{4, 8, 12, 16, 20, 24, 32, 64} {
		p := benchPool(b, n, Options{Strategy: LeastConn})
		lc := p.picker.(*leastConn)
		b.Run(fmt.Sprintf("scan/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b, processCPU())
			for b.Loop() {
				lc.scan(0, false, 0)
			}
		})
		b.Run(fmt.Sprintf("p2c/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b, processCPU())
			for b.Loop() {
				lc.pickP2C(0, false, 0)
			}
		})
	}
}

// BenchmarkPickRamping measures Pool.PickAcquire and Release while slow start
// ramps one member: every pick reads the clock then (the real one, though
// the ramp runs on the test's clock, which stands still).
func BenchmarkPickRamping(b *testing.B) {
	for _, strategy := range []string{RoundRobin, LeastConn} {
		for _, n := range []int{3, 16, 256} {
			b.Run(fmt.Sprintf("%s/%d", strategy, n), func(b *testing.B) {
				p, clk := rampingPool(b, n, strategy)
				p.ramp.now = func() int64 {
					monoNow()
					return clk.now()
				}
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					var state, key uint64
					for pb.Next() {
						state, key = wyrand(state)
						p.Release(p.PickAcquire(key, 0))
					}
				})
			})
		}
	}
}
