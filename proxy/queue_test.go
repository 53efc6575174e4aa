package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Tests of the pool queue (core_queue.go), each through both HTTP/1.1
// engines.

// queueRig serves pool "s" (health "none") on backends addrs with extra
// pool settings, through engine e.
func queueRig(t *testing.T, e engine, extra string, addrs ...string) *coreRig {
	t.Helper()
	return startCoreRig(t, e, listenerTOML+`
  [[listener.route]]
  pool = "s"
`+poolTOML("s", "health = { check = \"none\" }\n"+extra, addrs...))
}

// queueGet sends GET path on a new connection to r and returns the status,
// the Retry-After header and how long the answer took.
func queueGet(t *testing.T, r *coreRig, path string) (int, string, time.Duration) {
	t.Helper()
	start := time.Now()
	c, err := net.Dial("tcp", r.Addr("web").String())
	if err != nil {
		t.Error(err)
		return 0, "", 0
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: q\r\n\r\n", path)
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		t.Error(err)
		return 0, "", 0
	}
	return resp.StatusCode(), string(resp.Header.Peek("Retry-After")), time.Since(start)
}

// queued is how many requests wait in pool "s"'s queue now.
func (r *coreRig) queued() int64 { return r.queues["s"].n.Load() }

// heldBackend answers every request after d, and counts the requests it
// holds at once.
func heldBackend(t *testing.T, d time.Duration) (b *scripted, maxHeld *atomic.Int64) {
	var held atomic.Int64
	maxHeld = new(atomic.Int64)
	b = startScripted(t, func(c net.Conn, _ int, req *fasthttp.Request) bool {
		n := held.Add(1)
		for m := maxHeld.Load(); n > m && !maxHeld.CompareAndSwap(m, n); m = maxHeld.Load() {
		}
		time.Sleep(d)
		held.Add(-1)
		_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return err == nil
	})
	return b, maxHeld
}

// TestQueueBurst: a burst of 4x the per-backend limit per backend gets no
// error with a queue, each answer within the queue's timeout (plus the
// backend's time), and the backends never see more than their limit;
// without a queue the same burst gets 503s with Retry-After, as before.
func TestQueueBurst(t *testing.T) {
	t.Parallel()
	const limit, backends, timeout = 2, 2, 2 * time.Second
	for _, e := range engines {
		for _, withQueue := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/queue=%v", e.name, withQueue), func(t *testing.T) {
				t.Parallel()
				var addrs []string
				var held []*atomic.Int64
				for range backends {
					b, m := heldBackend(t, 20*time.Millisecond)
					addrs, held = append(addrs, b.addr), append(held, m)
				}
				extra := fmt.Sprintf("max_connections_per_backend = %d\n", limit)
				if withQueue {
					extra += fmt.Sprintf("queue = { size = 1024, timeout = %q }\n", timeout)
				}
				r := queueRig(t, e, extra, addrs...)
				var wg sync.WaitGroup
				var ok, refused atomic.Int64
				var slowest atomic.Int64
				for range 4 * limit * backends {
					wg.Go(func() {
						st, ra, took := queueGet(t, r, "/")
						for m := slowest.Load(); int64(took) > m && !slowest.CompareAndSwap(m, int64(took)); m = slowest.Load() {
						}
						switch {
						case st == 200:
							ok.Add(1)
						case st == 503 && ra == "1" && !withQueue:
							refused.Add(1)
						default:
							t.Errorf("status %d, Retry-After %q", st, ra)
						}
					})
				}
				wg.Wait()
				for i, m := range held {
					if n := m.Load(); n > limit {
						t.Errorf("backend %d held %d requests at once, limit %d", i, n, limit)
					}
				}
				if withQueue {
					if ok.Load() != 4*limit*backends {
						t.Errorf("%d of %d answered 200", ok.Load(), 4*limit*backends)
					}
					if d := time.Duration(slowest.Load()); d > timeout+time.Second {
						t.Errorf("slowest answer took %v, queue timeout %v", d, timeout)
					}
					if r.queued() != 0 {
						t.Errorf("%d requests still queued", r.queued())
					}
					if n := histogramCount(t, r.testProxy, "frontdoor_queue_wait_seconds", "s"); n == 0 {
						t.Error("queue_wait_seconds counted no wait")
					}
				} else if refused.Load() == 0 {
					t.Errorf("no request got 503 without a queue (%d answered)", ok.Load())
				}
			})
		}
	}
}

// TestQueueFullAndTimeout: with the one connection busy and the one queue
// place taken, a request gets 503 queue_full at once; the waiting one gets
// 503 queue_timeout when its wait passes timeout; both with Retry-After.
func TestQueueFullAndTimeout(t *testing.T) {
	t.Parallel()
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			b, arrived, release := startHolding(t)
			r := queueRig(t, e, "max_connections_per_backend = 1\nqueue = { size = 1, timeout = \"300ms\" }\n", b.addr)
			held, heldBR := dialLoop(t, r.testProxy, 0)
			fmt.Fprintf(held, "GET /held HTTP/1.1\r\nHost: q\r\n\r\n")
			<-arrived

			type answer struct {
				st   int
				ra   string
				took time.Duration
			}
			waited := make(chan answer, 1)
			go func() {
				st, ra, took := queueGet(t, r, "/waits")
				waited <- answer{st, ra, took}
			}()
			waitFor(t, 5*time.Second, "a request in the queue", func() bool { return r.queued() == 1 })

			st, ra, took := queueGet(t, r, "/full")
			if st != 503 || ra != "1" || took > 200*time.Millisecond {
				t.Errorf("queue full: %d, Retry-After %q after %v; want 503 with Retry-After at once", st, ra, took)
			}
			r.record(t, "reason", "queue_full")

			a := <-waited
			if a.st != 503 || a.ra != "1" || a.took < 250*time.Millisecond || a.took > 2*time.Second {
				t.Errorf("queue timeout: %d, Retry-After %q after %v; want 503 with Retry-After after 300ms", a.st, a.ra, a.took)
			}
			rec := r.record(t, "reason", "queue_timeout")
			if rec["path"] != "/waits" || rec["status"] != float64(503) || rec["backend"] != nil && rec["backend"] != "" {
				t.Errorf("queue_timeout record %v", rec)
			}
			if r.queued() != 0 {
				t.Errorf("%d requests still queued", r.queued())
			}

			close(release)
			if resp := readAnswer(t, heldBR, false); resp.StatusCode() != 200 {
				t.Errorf("held request: %d", resp.StatusCode())
			}
			// The slot is free again: a request goes through.
			if st, _, _ := queueGet(t, r, "/after"); st != 200 {
				t.Errorf("after the queue emptied: %d", st)
			}
		})
	}
}

// TestQueueFIFO: requests that wait are served in the order they came, and
// a request that comes while others wait goes behind them.
func TestQueueFIFO(t *testing.T) {
	t.Parallel()
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			arrived := make(chan struct{}, 1)
			var mu sync.Mutex
			var order []string
			b := startScripted(t, func(c net.Conn, _ int, req *fasthttp.Request) bool {
				path := string(req.URI().Path())
				if path == "/held" {
					arrived <- struct{}{}
					<-release
				} else {
					mu.Lock()
					order = append(order, path)
					mu.Unlock()
				}
				_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				return err == nil
			})
			r := queueRig(t, e, "max_connections_per_backend = 1\nqueue = { size = 16, timeout = \"5s\" }\n", b.addr)
			held, heldBR := dialLoop(t, r.testProxy, 0)
			fmt.Fprintf(held, "GET /held HTTP/1.1\r\nHost: q\r\n\r\n")
			<-arrived

			const n = 6
			var wg sync.WaitGroup
			for i := range n {
				path := fmt.Sprintf("/%d", i)
				wg.Go(func() {
					if st, _, _ := queueGet(t, r, path); st != 200 {
						t.Errorf("%s: %d", path, st)
					}
				})
				waitFor(t, 5*time.Second, path+" in the queue", func() bool { return r.queued() == int64(i+1) })
			}
			close(release)
			if resp := readAnswer(t, heldBR, false); resp.StatusCode() != 200 {
				t.Errorf("held request: %d", resp.StatusCode())
			}
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			var want []string
			for i := range n {
				want = append(want, fmt.Sprintf("/%d", i))
			}
			if strings.Join(order, " ") != strings.Join(want, " ") {
				t.Errorf("backend saw %v, want %v", order, want)
			}
		})
	}
}

// TestQueueClientGone: in the event loop, a client that leaves while its
// request waits frees its place at once (499 client_gone in the access
// log); the next request is served. (The goroutine engine notices only
// when the wait ends, as fasthttp reads nothing while a handler runs.)
func TestQueueClientGone(t *testing.T) {
	t.Parallel()
	e := engines[0] // the goroutine engine notices a gone client only when it writes
	b, arrived, release := startHolding(t)
	r := queueRig(t, e, "max_connections_per_backend = 1\nqueue = { size = 4, timeout = \"5s\" }\n", b.addr)
	held, heldBR := dialLoop(t, r.testProxy, 0)
	fmt.Fprintf(held, "GET /held HTTP/1.1\r\nHost: q\r\n\r\n")
	<-arrived
	gone, _ := dialLoop(t, r.testProxy, 0)
	fmt.Fprintf(gone, "GET /gone HTTP/1.1\r\nHost: q\r\n\r\n")
	waitFor(t, 5*time.Second, "a request in the queue", func() bool { return r.queued() == 1 })
	_ = gone.Close()
	waitFor(t, 2*time.Second, "the queue empty", func() bool { return r.queued() == 0 })
	if rec := r.record(t, "path", "/gone"); rec["reason"] != "client_gone" || rec["status"] != float64(499) {
		t.Errorf("record of the request whose client left: %v", rec)
	}
	close(release)
	if resp := readAnswer(t, heldBR, false); resp.StatusCode() != 200 {
		t.Errorf("held request: %d", resp.StatusCode())
	}
	if st, _, _ := queueGet(t, r, "/next"); st != 200 {
		t.Errorf("after a client left the queue: %d", st)
	}
}

// histogramCount returns the sample count of histogram family name for
// pool.
func histogramCount(t *testing.T, p *testProxy, name, pool string) uint64 {
	t.Helper()
	mfs, err := p.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "pool" && l.GetValue() == pool {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}
