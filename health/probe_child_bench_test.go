//go:build linux

package health

import (
	"context"
	"testing"
)

// BenchmarkProbeChild is one probe of each kind, back to back, against a
// backend in a child process, and reports this process's CPU time per probe
// (cpu-ns/op): the client's share alone, without the scheduling of many
// targets.
func BenchmarkProbeChild(b *testing.B) {
	for _, kind := range []string{"http", "tcp", "grpc"} {
		b.Run(kind, func(b *testing.B) {
			addrs, _ := startHelper(b, kind, 1)
			hc := check(kind)
			p := newProber(&hc, addrs[0])
			defer p.close()
			if err := p.probe(context.Background()); err != nil { // connect
				b.Fatal(err)
			}
			loop(b, p)
		})
	}
}
