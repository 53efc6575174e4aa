package proxy

import (
	"context"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"frontdoor/metrics"
)

// BenchmarkTails is the pair for the cost of following the access log: the
// same small GETs through the event loop with the access log on, with 0
// and with 10 followers of /logs filtered by a request ID (frontdoor tail
// -id X at full load). cpu-ns/op is the process's CPU time (user + system,
// client and backends included) per request; compare the two with
// benchstat over -count runs:
//
//	go test -run '^$' -bench Tails -count 8 ./proxy/ | tee tails.txt; benchstat -col /tails tails.txt
func BenchmarkTails(b *testing.B) {
	for _, tails := range []int{0, 10} {
		b.Run("tails="+strconv.Itoa(tails), func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			access, err := NewAccessLog(ctx, filepath.Join(b.TempDir(), "access.log"), nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			backend := startBackend(b, "a")
			backend.srv.Handler = func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("hello from the backend\n") }
			p := upProxy(b, listenerTOML+`
  [[listener.route]]
  pool = "bench"
`+poolTOML("bench", `health = { check = "none" }`, backend.addr), access)
			var wg sync.WaitGroup
			for i := range tails {
				st := access.Follow(metrics.LogFilter{RequestID: "nobody-" + strconv.Itoa(i)})
				wg.Go(func() {
					for {
						if _, _, err := st.Next(ctx); err != nil {
							return
						}
					}
				})
				defer st.Close()
			}
			front := p.Addr("web").String()
			const clients = 8
			b.SetParallelism(clients)
			var ru0, ru1 syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			start := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c := &fasthttp.HostClient{Addr: front, MaxConns: 1}
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(resp)
				req.SetRequestURI("http://" + front + "/x")
				for pb.Next() {
					if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
						b.Errorf("%v %d", err, resp.StatusCode())
						return
					}
				}
			})
			b.StopTimer()
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := time.Duration(syscall.TimevalToNsec(ru1.Utime) - syscall.TimevalToNsec(ru0.Utime) +
				syscall.TimevalToNsec(ru1.Stime) - syscall.TimevalToNsec(ru0.Stime))
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
			cancel()
			wg.Wait()
		})
	}
}

// BenchmarkPublish is the writer goroutine's added work per access line
// with 10 followers filtered by request IDs that do not match (the
// fan-out BenchmarkTails measures end to end, without its noise).
func BenchmarkPublish(b *testing.B) {
	var h logHub
	for i := range 10 {
		h.add(&follower{filter: compileFilter(metrics.LogFilter{RequestID: "nobody-" + strconv.Itoa(i)}), ready: make(chan struct{}, 1), hub: &h})
	}
	rec := accessRecord{start: time.Now(), requestID: []byte("4bf92f3577b34da6a3ce929d0e0e4736"), listener: "web", route: "/",
		pool: "demo", method: []byte("GET"), path: []byte("/x"), status: 200, backend: "127.0.0.1:9001"}
	ln := &logLine{}
	ln.b = appendRecord(ln.b, &rec, &ln.keys)
	b.ReportAllocs()
	for b.Loop() {
		h.publish(ln)
		h.wake()
	}
}
