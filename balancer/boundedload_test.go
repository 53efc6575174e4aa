package balancer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

// zipfRun drives p from goroutines that each keep window requests in flight:
// pick with PickAcquire semantics, hold, release the oldest. Keys follow a
// Zipf law over 10,000 distinct values, so a few keys are hot.
type zipfRun struct {
	picks     int     // all picks
	violation int     // picks whose member went past ceil(c x average)+1
	exceeded  int     // picks past the exact bound ceil(c x (total+1)/n)
	maxRatio  float64 // max of member load / average, average >= 5
	spilled   int     // picks that did not land on the key's table slot
	hotPicks  int     // picks of the hottest key
	hotSpill  int     // of which spilled
	coldPicks int     // picks of keys beyond the 100 hottest
	coldSpill int     // of which spilled
}

func runZipf(t *testing.T, p *Pool, c float64, goroutines, window, perGoroutine int) zipfRun {
	t.Helper()
	n := float64(len(p.Members()))
	var mu sync.Mutex
	var sum zipfRun
	// Every goroutine fills its window before any goes on, and none
	// releases its window before all are done, so the pool holds
	// goroutines x window requests throughout.
	var wg, warm, done sync.WaitGroup
	warm.Add(goroutines)
	done.Add(goroutines)
	for g := range goroutines {
		wg.Go(func() {
			var r zipfRun
			src := rand.New(rand.NewPCG(uint64(g)+1, 0x5eed))
			z := rand.NewZipf(src, 1.1, 1, 9999)
			ring := make([]int, window)
			for i := range perGoroutine {
				if i == window {
					warm.Done()
					warm.Wait()
				}
				if i >= window {
					p.Release(ring[i%window])
				}
				v := z.Uint64()
				_, key := wyrand(v) // spread the Zipf ranks over the key space
				home := int(p.hash.table.Load().slots[key%p.hash.size])
				var idx int
				var load, total int64
				if c > 0 {
					idx, load, total = p.hash.pickAcquire(key, 0)
				} else {
					idx = p.PickAcquire(key, 0)
					load = p.Members()[idx].Backend.InFlight()
					total = p.InFlight() - 1
				}
				ring[i%window] = idx
				r.picks++
				avg := float64(total+1) / n
				if c > 0 {
					if load > int64(math.Ceil(c*avg))+1 {
						r.violation++
					}
					if load > int64(math.Ceil(c*float64(total+1)/n)) {
						r.exceeded++
					}
				}
				if avg >= 5 { // a ratio to a near-empty pool says little
					r.maxRatio = max(r.maxRatio, float64(load)/avg)
				}
				spill := idx != home
				if spill {
					r.spilled++
				}
				switch {
				case v == 0:
					r.hotPicks++
					if spill {
						r.hotSpill++
					}
				case v >= 100:
					r.coldPicks++
					if spill {
						r.coldSpill++
					}
				}
			}
			done.Done()
			done.Wait()
			for _, i := range ring {
				p.Release(i)
			}
			mu.Lock()
			defer mu.Unlock()
			sum.picks += r.picks
			sum.violation += r.violation
			sum.exceeded += r.exceeded
			sum.maxRatio = max(sum.maxRatio, r.maxRatio)
			sum.spilled += r.spilled
			sum.hotPicks += r.hotPicks
			sum.hotSpill += r.hotSpill
			sum.coldPicks += r.coldPicks
			sum.coldSpill += r.coldSpill
		})
	}
	wg.Wait()
	return sum
}

func TestBoundedLoadZipf(t *testing.T) {
	t.Parallel()
	const (
		n            = 10
		goroutines   = 8
		window       = 16
		perGoroutine = 15_000
	)
	for _, c := range []float64{1.25, 2} {
		t.Run(fmt.Sprintf("c=%v", c), func(t *testing.T) {
			t.Parallel()
			testBoundedZipf(t, c, n, goroutines, window, perGoroutine)
		})
	}
	t.Run("unbounded", func(t *testing.T) {
		t.Parallel()
		p := mustPool(t, testMembers(testBackends(n)), Options{Strategy: ConsistentHash})
		r := runZipf(t, p, 0, goroutines, window, perGoroutine)
		t.Logf("same stream without bounded load: max member load / average = %.3f, spilled %d", r.maxRatio, r.spilled)
		// The stream must be skewed enough for the bounded runs to mean
		// something: without a bound, a member goes well past 1.25 x
		// average.
		if r.maxRatio < 1.75 || r.spilled != 0 {
			t.Errorf("unbounded max load / average = %.3f (want >= 1.75), spilled %d (want 0)", r.maxRatio, r.spilled)
		}
	})
}

func testBoundedZipf(t *testing.T, c float64, n, goroutines, window, perGoroutine int) {
	t.Helper()
	bs := testBackends(n)
	p := mustPool(t, testMembers(bs), Options{Strategy: ConsistentHash, BoundedLoad: c})
	r := runZipf(t, p, c, goroutines, window, perGoroutine)
	t.Logf("bounded load c=%.2f, %d backends, %d goroutines x %d in flight, Zipf(s=1.1) keys: %d picks, max member load / average = %.3f, "+
		"spilled %.2f%% of all picks, %.2f%% of the hottest key's, %.2f%% of cold keys' (rank >= 100)",
		c, n, goroutines, window, r.picks, r.maxRatio,
		100*float64(r.spilled)/float64(r.picks), 100*float64(r.hotSpill)/float64(r.hotPicks),
		100*float64(r.coldSpill)/float64(r.coldPicks))
	t.Logf("bounded load c=%.2f: %d picks past ceil(c x (total+1)/n) (a stale total, settled by the least-excess fallback), %d past ceil(c x average)+1",
		c, r.exceeded, r.violation)
	if r.violation > 0 {
		t.Errorf("%d picks put a member past ceil(c x average)+1", r.violation)
	}
	if r.exceeded > r.picks/1000 {
		t.Errorf("%d of %d picks went past the exact bound, want at most 0.1%%", r.exceeded, r.picks)
	}
	if r.hotSpill == 0 {
		t.Error("the hottest key never spilled")
	}
	if cold := float64(r.coldSpill) / float64(r.coldPicks); cold > float64(r.hotSpill)/float64(r.hotPicks) {
		t.Errorf("cold keys spilled more often (%.3f) than the hottest key", cold)
	}
	if got := p.InFlight(); got != 0 {
		t.Errorf("pool in-flight total after all releases = %d", got)
	}
	for i, b := range bs {
		if b.InFlight() != 0 {
			t.Errorf("member %d in flight after all releases = %d", i, b.InFlight())
		}
	}
}

func TestBoundedLoadSpillAndReturn(t *testing.T) {
	t.Parallel()
	const n, c = 4, 1.5
	p := mustPool(t, testMembers(testBackends(n)), Options{Strategy: ConsistentHash, BoundedLoad: c})
	plain := mustPool(t, testMembers(testBackends(n)), Options{Strategy: ConsistentHash})
	keys := testKeys(8, 5000)
	// Idle: every key stays on its table slot, as without bounded loads.
	for _, k := range keys {
		if a, b := addressOf(p, p.Pick(k, 0)), addressOf(plain, plain.Pick(k, 0)); a != b {
			t.Fatalf("idle pool: key %#x on %s, %s without bounded loads", k, a, b)
		}
	}
	for _, k := range keys[:200] {
		home := p.Pick(k, 0)
		next := p.Pick(k, 1<<home) // the next distinct member in table order
		// 3 in flight on home: the bound for one more is
		// ceil(1.5 x (3+1) / 4) = 2, so the key spills to next.
		for range 3 {
			p.Acquire(home)
		}
		if got := p.Pick(k, 0); got != next {
			t.Fatalf("key %#x: home %d loaded: Pick = %d, want next in table order %d", k, home, got, next)
		}
		if got := p.PickAcquire(k, 0); got != next {
			t.Fatalf("key %#x: home %d loaded: PickAcquire = %d, want %d", k, home, got, next)
		}
		p.Release(next)
		// With 1 in flight on home the bound is ceil(1.5 x 2 / 4) = 1,
		// still too low for one more; with 0 the key returns home.
		p.Release(home)
		p.Release(home)
		if got := p.Pick(k, 0); got != next {
			t.Fatalf("key %#x: home at 1 of bound 1: Pick = %d, want %d", k, got, next)
		}
		p.Release(home)
		if got := p.Pick(k, 0); got != home {
			t.Fatalf("key %#x: home idle again: Pick = %d, want %d", k, got, home)
		}
	}
}

func TestBoundedLoadAllOverBound(t *testing.T) {
	t.Parallel()
	// Load that the pool did not count (another pool sharing the backends,
	// during a reload) can put every member over its bound. The key then
	// stays on its table slot rather than failing.
	bs := testBackends(3)
	p := mustPool(t, testMembers(bs), Options{Strategy: ConsistentHash, BoundedLoad: 1.25})
	for _, b := range bs {
		for range 10 {
			b.Acquire()
		}
	}
	for _, k := range testKeys(9, 100) {
		home := int(p.hash.table.Load().slots[k%p.hash.size])
		if got := p.Pick(k, 0); got != home {
			t.Fatalf("all over bound: Pick = %d, want home %d", got, home)
		}
		if got := p.Pick(k, 1<<home); got == home || got < 0 {
			t.Fatalf("all over bound, home tried: Pick = %d", got)
		}
	}
}

func TestCapacity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		c        float64
		weight   int
		upWeight int
		total    int64
		want     int64
	}{
		{name: "idle", c: 1.25, weight: 1, upWeight: 10, total: 0, want: 1},
		{name: "paper", c: 1.25, weight: 1, upWeight: 10, total: 100, want: 13},
		{name: "exact product", c: 1.5, weight: 1, upWeight: 5, total: 9, want: 3},
		{name: "inexact c", c: 1.1, weight: 1, upWeight: 1, total: 9, want: 11},
		{name: "inexact share", c: 1.5, weight: 1, upWeight: 5, total: 9, want: 3},
		{name: "just above", c: 1.25, weight: 1, upWeight: 10, total: 80, want: 11},
		{name: "weighted", c: 2, weight: 2, upWeight: 4, total: 3, want: 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tb := &maglevTable{share: []float64{tc.c * float64(tc.weight) / float64(tc.upWeight)}}
			if got := tb.capacity(0, tc.total); got != tc.want {
				t.Fatalf("capacity = %d, want %d", got, tc.want)
			}
		})
	}
}
