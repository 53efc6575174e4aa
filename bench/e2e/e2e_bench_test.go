package e2e

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkE2E sends GETs through each proxy over loopback keep-alive
// connections from parallel goroutines (GOMAXPROCS x 16 of them, each with a
// connection of its own).
func BenchmarkE2E(b *testing.B) {
	for _, px := range proxies {
		for _, w := range []struct {
			name string
			path string
			size int
		}{{"small", "/small", len(smallBody)}, {"100KiB", "/big", bigBytes}} {
			b.Run(px.name+"/"+w.name, func(b *testing.B) {
				addr := px.start(b, startBackend(b))
				hc := &fasthttp.HostClient{Addr: addr, MaxConns: 4096}
				if err := newClient(hc, addr, w.path).do(w.size); err != nil {
					b.Fatal(err)
				}
				b.SetParallelism(16)
				b.SetBytes(int64(w.size))
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					c := newClient(hc, addr, w.path)
					for pb.Next() {
						if err := c.do(w.size); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
