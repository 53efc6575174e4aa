package balancer

import (
	"math/rand/v2"
	"testing"
)

// seeded swaps a least_conn pool's random source for a seeded one.
func seeded(t *testing.T, p *Pool, seed uint64) *leastConn {
	t.Helper()
	lc, ok := p.picker.(*leastConn)
	if !ok {
		t.Fatalf("picker is %T, want *leastConn", p.picker)
	}
	lc.rand = rand.New(rand.NewPCG(seed, seed)).Uint64
	return lc
}

func TestLeastConnTiesAreRandom(t *testing.T) {
	t.Parallel()
	for _, n := range []int{3, 16, 64} {
		p := mustPool(t, testMembers(testBackends(n)), Options{Strategy: LeastConn})
		seeded(t, p, uint64(n))
		const picks = 30_000
		counts := make([]int, n)
		for range picks {
			counts[p.Pick(0, 0)]++
		}
		want := float64(picks) / float64(n)
		lo, hi := picks, 0
		for _, c := range counts {
			lo, hi = min(lo, c), max(hi, c)
		}
		t.Logf("least_conn ties: %d idle members, %d picks: min %d, max %d per member (expected %.0f)", n, picks, lo, hi, want)
		if float64(lo) < 0.8*want || float64(hi) > 1.2*want {
			t.Errorf("%d idle members: picks per member range %d..%d, want within 20%% of %.0f", n, lo, hi, want)
		}
	}
}

func TestLeastConnAvoidsLoaded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		n       int
		loaded  []int // members with 5 in flight
		weights []int
		want    []int // the only acceptable picks
	}{
		{name: "one loaded of 3", n: 3, loaded: []int{0}, want: []int{1, 2}},
		{name: "all but one loaded of 8 (scan)", n: 8, loaded: []int{0, 1, 2, 3, 4, 5, 7}, want: []int{6}},
		{name: "one loaded of 200 (p2c)", n: 200, loaded: []int{17}},
		{name: "heavier weight absorbs load", n: 2, loaded: []int{0, 1}, weights: []int{10, 1}, want: []int{0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bs := testBackends(tc.n)
			p := mustPool(t, testMembers(bs, tc.weights...), Options{Strategy: LeastConn})
			seeded(t, p, 7)
			loaded := map[int]bool{}
			for _, i := range tc.loaded {
				loaded[i] = true
				for range 5 {
					bs[i].Acquire()
				}
			}
			ok := map[int]bool{}
			for _, i := range tc.want {
				ok[i] = true
			}
			for range 2000 {
				i := p.Pick(0, 0)
				if len(ok) > 0 && !ok[i] || len(ok) == 0 && loaded[i] {
					t.Fatalf("Pick = %d (loaded %v, want one of %v)", i, tc.loaded, tc.want)
				}
			}
		})
	}
}

func TestLeastConnLevelsLoad(t *testing.T) {
	t.Parallel()
	// Picks that are never released: the exact scan keeps in-flight per
	// unit of weight level, so 600 picks over weights 1:2:3 land 100:200:300.
	bs := testBackends(3)
	p := mustPool(t, testMembers(bs, 1, 2, 3), Options{Strategy: LeastConn})
	seeded(t, p, 1)
	for range 600 {
		if i := p.PickAcquire(0, 0); i < 0 {
			t.Fatal("PickAcquire = -1")
		}
	}
	for i, want := range []int64{100, 200, 300} {
		if got := bs[i].InFlight(); got != want {
			t.Errorf("member %d (weight %d): %d in flight, want %d", i, i+1, got, want)
		}
	}

	// p2c on a large pool keeps the spread tight too.
	const n = 100
	big := testBackends(n)
	q := mustPool(t, testMembers(big), Options{Strategy: LeastConn})
	seeded(t, q, 2)
	for range 100 * n {
		q.PickAcquire(0, 0)
	}
	lo, hi := int64(1<<62), int64(0)
	for _, b := range big {
		lo, hi = min(lo, b.InFlight()), max(hi, b.InFlight())
	}
	t.Logf("least_conn p2c: %d members, %d unreleased picks: in flight per member %d..%d (mean 100)", n, 100*n, lo, hi)
	if lo < 95 || hi > 105 {
		t.Errorf("p2c spread %d..%d, want within 100 +-5", lo, hi)
	}
}

func TestLeastConnDownAndTried(t *testing.T) {
	t.Parallel()
	for _, n := range []int{4, 100} {
		bs := testBackends(n)
		p := mustPool(t, testMembers(bs), Options{Strategy: LeastConn})
		seeded(t, p, 3)
		bs[0].SetHealthy(false)
		bs[1].SetEjected(true)
		for range 1000 {
			if i := p.Pick(0, 1<<2); i < 3 {
				t.Fatalf("n=%d: Pick = %d, members 0, 1 down and 2 tried", n, i)
			}
		}
		// Only tried members up: the least loaded of them.
		for i := 3; i < n; i++ {
			bs[i].SetHealthy(false)
		}
		if i := p.Pick(0, 1<<2); i != 2 {
			t.Fatalf("n=%d: only tried member 2 up: Pick = %d", n, i)
		}
		bs[2].SetHealthy(false)
		if i := p.Pick(0, 0); i != -1 {
			t.Fatalf("n=%d: all down: Pick = %d, want -1", n, i)
		}
		if i := p.PickAcquire(0, 0); i != -1 {
			t.Fatalf("n=%d: all down: PickAcquire = %d, want -1", n, i)
		}
	}
}

func TestLeastConnUsesTopLevelRand(t *testing.T) {
	t.Parallel()
	// Without a swapped source, two pools do not follow one sequence: ties
	// are random, not always the first member.
	p := mustPool(t, testMembers(testBackends(8)), Options{Strategy: LeastConn})
	seen := map[int]bool{}
	for range 1000 {
		seen[p.Pick(0, 0)] = true
	}
	if len(seen) < 8 {
		t.Fatalf("1000 picks over 8 idle members reached only %d of them", len(seen))
	}
}

func TestLeastConnP2CShunsLoadedHalf(t *testing.T) {
	t.Parallel()
	// p2c takes a loaded member only when both draws are loaded:
	// (50/100) x (49/99) = 24.7% of picks.
	const n, picks = 100, 20_000
	bs := testBackends(n)
	p := mustPool(t, testMembers(bs), Options{Strategy: LeastConn})
	seeded(t, p, 11)
	for i := 0; i < n; i += 2 {
		bs[i].Acquire()
	}
	loaded := 0
	for range picks {
		if p.Pick(0, 0)%2 == 0 {
			loaded++
		}
	}
	frac := float64(loaded) / picks
	t.Logf("least_conn p2c: half of %d members loaded: %.1f%% of picks went to a loaded one (24.7%% expected)", n, 100*frac)
	if frac < 0.22 || frac > 0.28 {
		t.Errorf("%.3f of picks went to loaded members, want 0.247 +-0.03", frac)
	}
}
