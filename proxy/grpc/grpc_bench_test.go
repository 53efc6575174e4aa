package grpc

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	grpclib "google.golang.org/grpc"

	"frontdoor/config"
)

func BenchmarkParseTimeout(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := parseTimeout("12345m"); !ok {
			b.Fatal("not ok")
		}
	}
}

func BenchmarkHashKey(b *testing.B) {
	r := &http.Request{
		RemoteAddr: "10.1.2.3:4567",
		URL:        &url.URL{Path: "/pkg.Service/Method"},
		Header:     http.Header{"X-User-Id": {"alice"}},
	}
	for _, on := range []config.HashKey{{Source: "source_ip"}, {Source: "header", Name: "X-User-ID"}, {Source: "path"}} {
		st := newRouteState(&Route{HashOn: on}, nil)
		b.Run(on.Source, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = st.key(r)
			}
		})
	}
}

// BenchmarkUnary measures small unary calls from one grpc-go client
// connection, straight to a backend and through frontdoor to three, with
// 1, 4 and 16 goroutines per CPU (p1, p4, p16). Client, frontdoor and
// backends share the machine, so compare the two targets with each other,
// not with other tools. allocs/op counts every party in the process; the
// difference between the targets is what frontdoor adds per call. Run with
// -benchtime=5s for the throughput figure (calls/s).
func BenchmarkUnary(b *testing.B) {
	backends := make([]*testBackend, 3)
	for i := range backends {
		backends[i] = startBackend(b, "b"+strconv.Itoa(i))
	}
	f := newFixture(b, fixtureOpts{backends: 3})
	targets := []struct {
		name string
		cc   *grpclib.ClientConn
	}{
		{"direct", dial(b, backends[0].addr)},
		{"frontdoor", f.cc},
	}
	payload := make([]byte, 64)
	for _, par := range []int{1, 4, 16} {
		for _, tg := range targets {
			b.Run(tg.name+"/p"+strconv.Itoa(par), func(b *testing.B) {
				ctx := context.Background()
				if _, err := unary(ctx, tg.cc, methodUnary, payload); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.SetParallelism(par)
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := unary(ctx, tg.cc, methodUnary, payload); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
			})
		}
	}
}

// BenchmarkBidiStream measures bulk throughput: one bidi echo stream of 64
// KiB messages (256 each way) at a time, straight to a backend and through
// frontdoor. MB/s counts the bytes echoed back.
func BenchmarkBidiStream(b *testing.B) {
	backend := startBackend(b, "direct")
	f := newFixture(b, fixtureOpts{backends: 1})
	const msgs = 256
	targets := []struct {
		name string
		cc   *grpclib.ClientConn
	}{
		{"direct", dial(b, backend.addr)},
		{"frontdoor", f.cc},
	}
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			b.ReportAllocs()
			total := int64(0)
			for b.Loop() {
				cs, err := tg.cc.NewStream(context.Background(), &descBidi, methodBidi, raw)
				if err != nil {
					b.Fatal(err)
				}
				msg := make([]byte, 64<<10)
				done := make(chan error, 1)
				go func() {
					for range msgs {
						if err := cs.SendMsg(&msg); err != nil {
							done <- err
							return
						}
					}
					done <- cs.CloseSend()
				}()
				for {
					var m []byte
					err := cs.RecvMsg(&m)
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					total += int64(len(m))
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(total / int64(b.N))
		})
	}
}

// BenchmarkUnaryLatency makes one small unary call at a time from one
// client connection: ns/op is the round-trip latency, straight to a backend
// and through frontdoor.
func BenchmarkUnaryLatency(b *testing.B) {
	backend := startBackend(b, "direct")
	f := newFixture(b, fixtureOpts{backends: 1})
	targets := []struct {
		name string
		cc   *grpclib.ClientConn
	}{
		{"direct", dial(b, backend.addr)},
		{"frontdoor", f.cc},
	}
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := unary(context.Background(), tg.cc, methodUnary, []byte("x")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
