package health

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkEjectorSuccess is the per-response hot path at several pool
// sizes, serial and from all Ps at once (each goroutine on its own target,
// as the proxy's connections spread over backends).
func BenchmarkEjectorSuccess(b *testing.B) {
	for _, n := range []int{3, 16, 256} {
		e, _, _, _ := newTestEjector(b, n, passive(5, 50, time.Minute), nil)
		b.Run("backends="+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				e.Success(i)
				if i++; i == n {
					i = 0
				}
			}
		})
		b.Run("backends="+strconv.Itoa(n)+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(1)) % n
				for pb.Next() {
					e.Success(i)
				}
			})
		})
	}
}

// BenchmarkEjectorFailureSuccess alternates a failure and a success on one
// target: the counter is written on every call.
func BenchmarkEjectorFailureSuccess(b *testing.B) {
	e, _, _, _ := newTestEjector(b, 16, passive(5, 50, time.Minute), nil)
	b.ReportAllocs()
	for b.Loop() {
		e.Failure(7)
		e.Success(7)
	}
}
