package health

import (
	"context"
	"syscall"
	"testing"

	"google.golang.org/grpc/health/grpc_health_v1"
)

// BenchmarkProbe is one probe of each kind, back to back, against a real
// backend in this process (its CPU and its allocations are included; see
// BenchmarkProbeChild for the prober's alone).
func BenchmarkProbe(b *testing.B) {
	b.Run("http", func(b *testing.B) {
		srv := startHTTP(b, 200)
		hc := check("http")
		p := newProber(&hc, srv.addr)
		defer p.close()
		loop(b, p)
	})
	b.Run("tcp", func(b *testing.B) {
		ln := listen(b)
		closeAccepted(ln, nil)
		defer ln.Close()
		hc := check("tcp")
		p := newProber(&hc, ln.Addr().String())
		defer p.close()
		loop(b, p)
	})
	b.Run("grpc", func(b *testing.B) {
		addr, hs := startGRPC(b)
		hs.SetServingStatus("", grpc_health_v1.HealthCheckResponse_SERVING)
		hc := check("grpc")
		p := newProber(&hc, addr)
		defer p.close()
		loop(b, p)
	})
}

// loop probes b.N times and reports process CPU (client and in-process
// server together) per probe beside wall time.
func loop(b *testing.B, p prober) {
	ctx := context.Background()
	b.ReportAllocs()
	var r0, r1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	for b.Loop() {
		if err := p.probe(ctx); err != nil {
			b.Fatal(err)
		}
	}
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	cpu := (r1.Utime.Nano() + r1.Stime.Nano()) - (r0.Utime.Nano() + r0.Stime.Nano())
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
}
