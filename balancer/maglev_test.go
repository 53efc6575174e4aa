package balancer

import (
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

// countPicks returns how many of keys each member gets.
func countPicks(p *Pool, keys []uint64) []int {
	counts := make([]int, len(p.Members()))
	for _, k := range keys {
		counts[p.Pick(k, 0)]++
	}
	return counts
}

func TestMaglevBalance(t *testing.T) {
	t.Parallel()
	p := mustPool(t, testMembers(testBackends(10)), Options{Strategy: ConsistentHash})
	counts := countPicks(p, testKeys(1, qualityKeys))
	mean := float64(qualityKeys) / 10
	worst := float64(slices.Max(counts)) / mean
	t.Logf("balance: 10 equal backends, %d random keys: max/mean = %.4f (counts %v)", qualityKeys, worst, counts)
	if worst > 1.03 {
		t.Errorf("max/mean = %.4f, want <= 1.03", worst)
	}
	slots := make([]int, 10)
	for _, i := range p.hash.table.Load().slots {
		slots[i]++
	}
	t.Logf("balance: table slots per backend (M=%d): %v", p.hash.size, slots)
}

func TestMaglevWeights(t *testing.T) {
	t.Parallel()
	weights := []int{2, 1, 1, 1, 1}
	p := mustPool(t, testMembers(testBackends(len(weights)), weights...), Options{Strategy: ConsistentHash})
	counts := countPicks(p, testKeys(2, qualityKeys))
	for i := 1; i < len(weights); i++ {
		ratio := float64(counts[0]) / float64(counts[i])
		t.Logf("weights: weight-2 backend / weight-1 backend %d = %.4f (%d / %d keys)", i, ratio, counts[0], counts[i])
		if ratio < 2*0.97 || ratio > 2*1.03 {
			t.Errorf("weight-2 / weight-1 member %d = %.4f, want 2 +-3%%", i, ratio)
		}
	}
}

// disruption compares two mappings of keys: moved counts keys that changed
// backend; extra counts those among them that were not on removed.
func disruption(before, after []string, removed string) (moved, extra int) {
	for k := range before {
		if before[k] == after[k] {
			continue
		}
		moved++
		if before[k] != removed {
			extra++
		}
	}
	return moved, extra
}

func mapKeys(p *Pool, keys []uint64) []string {
	out := make([]string, len(keys))
	for k, key := range keys {
		out[k] = addressOf(p, p.Pick(key, 0))
	}
	return out
}

func TestMaglevDisruption(t *testing.T) {
	t.Parallel()
	bs := testBackends(10)
	keys := testKeys(3, qualityKeys)
	p := mustPool(t, testMembers(bs), Options{Strategy: ConsistentHash})
	before := mapKeys(p, keys)
	removed := bs[3].Address()
	onRemoved := 0
	for _, a := range before {
		if a == removed {
			onRemoved++
		}
	}

	check := func(name string, after []string) {
		t.Helper()
		moved, extra := disruption(before, after, removed)
		frac := float64(extra) / float64(len(keys))
		t.Logf("disruption (%s): %d keys moved, %d of them were on the removed backend, extra = %.4f%% of all keys",
			name, moved, moved-extra, 100*frac)
		if moved-extra != onRemoved {
			t.Errorf("%s: %d keys left the removed backend, want all %d", name, moved-extra, onRemoved)
		}
		if frac > 0.01 {
			t.Errorf("%s: %.4f%% of keys moved between surviving backends, want <= 1%%", name, 100*frac)
		}
	}

	bs[3].SetHealthy(false)
	waitSettled(t, p)
	check("marked down", mapKeys(p, keys))

	without := slices.Delete(slices.Clone(bs), 3, 4)
	q := mustPool(t, testMembers(without), Options{Strategy: ConsistentHash})
	check("pool built without it", mapKeys(q, keys))

	bs[3].SetHealthy(true)
	waitSettled(t, p)
	restored := mapKeys(p, keys)
	same := 0
	for k := range keys {
		if restored[k] == before[k] {
			same++
		}
	}
	frac := float64(same) / float64(len(keys))
	t.Logf("disruption: after adding it back %.4f%% of keys map as before", 100*frac)
	if frac < 0.99 {
		t.Errorf("after adding it back %.4f%% of keys map as before, want >= 99%%", 100*frac)
	}
}

func TestMaglevDeterministicAcrossOrder(t *testing.T) {
	t.Parallel()
	const n = 13
	addrs := make([]string, n)
	for i, b := range testBackends(n) {
		addrs[i] = b.Address()
	}
	weights := map[string]int{addrs[0]: 3, addrs[5]: 2}
	down := map[string]bool{addrs[7]: true}
	build := func(seed uint64) *Pool {
		order := slices.Clone(addrs)
		r := rand.New(rand.NewPCG(seed, 0))
		r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		ms := make([]Member, n)
		for i, a := range order {
			b := NewBackend(a) // a separate process has its own Backend objects
			b.SetHealthy(!down[a])
			ms[i] = Member{Backend: b, Weight: max(1, weights[a])}
		}
		return mustPool(t, ms, Options{Strategy: ConsistentHash, BoundedLoad: 1.25})
	}
	a, b := build(1), build(2)
	if slices.Equal(memberAddrs(a), memberAddrs(b)) {
		t.Fatal("shuffle left the order unchanged")
	}
	keys := testKeys(4, qualityKeys/5)
	for slot := range a.hash.size {
		keys = append(keys, slot) // every table slot once
	}
	index := map[*Pool]map[string]int{a: {}, b: {}}
	for _, p := range []*Pool{a, b} {
		for i, addr := range memberAddrs(p) {
			index[p][addr] = i
		}
	}
	tried := func(p *Pool, addr string) uint64 { return 1 << uint(index[p][addr]%64) }
	for _, k := range keys {
		pa, pb := addressOf(a, a.Pick(k, 0)), addressOf(b, b.Pick(k, 0))
		if pa != pb {
			t.Fatalf("key %#x: %s in one process, %s in the other", k, pa, pb)
		}
		// The retry goes to the same second backend everywhere too.
		ra, rb := addressOf(a, a.Pick(k, tried(a, pa))), addressOf(b, b.Pick(k, tried(b, pb)))
		if ra != rb || ra == pa {
			t.Fatalf("key %#x retry: %s and %s (first %s)", k, ra, rb, pa)
		}
	}
	t.Logf("determinism: %d keys (every slot of M=%d plus %d random) and their retries map identically", len(keys), a.hash.size, qualityKeys/5)
}

func memberAddrs(p *Pool) []string {
	out := make([]string, len(p.Members()))
	for i, m := range p.Members() {
		out[i] = m.Backend.Address()
	}
	return out
}

func TestMaglevTriedWalk(t *testing.T) {
	t.Parallel()
	bs := testBackends(4)
	p := mustPool(t, testMembers(bs), Options{Strategy: ConsistentHash})
	slots := p.hash.table.Load().slots
	for _, key := range testKeys(5, 1000) {
		first := p.Pick(key, 0)
		if want := int(slots[key%p.hash.size]); first != want {
			t.Fatalf("key %#x: Pick = %d, table says %d", key, first, want)
		}
		// The second choice is the next distinct member in table order.
		s := key % p.hash.size
		for int(slots[s]) == first {
			s = (s + 1) % p.hash.size
		}
		second := p.Pick(key, 1<<first)
		if second != int(slots[s]) {
			t.Fatalf("key %#x: retry = %d, next in table order is %d", key, second, slots[s])
		}
		all := uint64(1<<len(bs) - 1)
		if got := p.Pick(key, all); got < 0 {
			t.Fatalf("key %#x: every member tried: Pick = -1, want a tried member", key)
		}
		if got := p.Pick(key, all&^(1<<2)); got != 2 {
			t.Fatalf("key %#x: only member 2 untried: Pick = %d", key, got)
		}
	}
}

func TestMaglevDownMembers(t *testing.T) {
	t.Parallel()
	bs := testBackends(5)
	p := mustPool(t, testMembers(bs), Options{Strategy: ConsistentHash})
	keys := testKeys(6, 20_000)

	// Right after a member goes down, before or after the rebuild lands,
	// Pick never returns it.
	bs[1].SetHealthy(false)
	bs[2].SetEjected(true)
	for _, k := range keys {
		if i := p.Pick(k, 0); i == 1 || i == 2 || i < 0 {
			t.Fatalf("key %#x: Pick = %d with members 1 and 2 down", k, i)
		}
	}
	waitSettled(t, p)
	for _, i := range p.hash.table.Load().slots {
		if i == 1 || i == 2 {
			t.Fatalf("rebuilt table still holds down member %d", i)
		}
	}

	for _, b := range bs {
		b.SetHealthy(false)
	}
	for _, k := range keys[:100] {
		if i := p.Pick(k, 0); i != -1 {
			t.Fatalf("all down: Pick = %d, want -1", i)
		}
		if i := p.PickAcquire(k, 0); i != -1 {
			t.Fatalf("all down: PickAcquire = %d, want -1", i)
		}
	}
	waitSettled(t, p)

	// One member back: found at once, through the all-members table.
	bs[4].SetHealthy(true)
	for _, k := range keys[:1000] {
		if i := p.Pick(k, 0); i != 4 {
			t.Fatalf("only member 4 up: Pick = %d", i)
		}
	}
}

func TestMaglevConcurrentTransitions(t *testing.T) {
	t.Parallel()
	bs := testBackends(8)
	p := mustPool(t, testMembers(bs), Options{Strategy: ConsistentHash})
	keys := testKeys(7, 2000)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				b := bs[(g*200+i)%len(bs)]
				b.SetHealthy(i%3 != 0)
				p.Pick(keys[i], 0)
			}
		})
	}
	wg.Go(func() {
		for _, k := range keys {
			if i := p.Pick(k, 0); i < -1 || i >= len(bs) {
				t.Errorf("Pick = %d, not a member index or -1", i)
				return
			}
		}
	})
	wg.Wait()
	waitSettled(t, p)
	// The settled table holds exactly the members that are up now.
	up := map[uint16]bool{}
	for i, b := range bs {
		if b.Up() {
			up[uint16(i)] = true
		}
	}
	seen := map[uint16]bool{}
	for _, i := range p.hash.table.Load().slots {
		seen[i] = true
	}
	if len(up) > 0 && len(seen) != len(up) {
		t.Fatalf("table holds members %v, up are %v", seen, up)
	}
	for i := range seen {
		if len(up) > 0 && !up[i] {
			t.Fatalf("table holds down member %d", i)
		}
	}
	t.Logf("transitions: %d table builds for 800 state changes", p.builds.Load())
}

func TestMaglevRebuildStopsOnClose(t *testing.T) {
	t.Parallel()
	bs := testBackends(3)
	p, err := NewPool(testMembers(bs), Options{Strategy: ConsistentHash})
	if err != nil {
		t.Fatal(err)
	}
	running := func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.running
	}
	bs[0].SetHealthy(false)
	p.Close()
	if running() {
		t.Fatal("rebuild goroutine still running after Close returned")
	}
	before := p.builds.Load()
	bs[0].SetHealthy(true)
	bs[1].SetEjected(true)
	if running() || p.builds.Load() != before {
		t.Fatal("a closed pool rebuilt its table")
	}
	if i := p.Pick(42, 0); i < 0 {
		t.Fatal("a closed pool stopped picking")
	}
	p.Close() // idempotent
}

func TestTableSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		requested int
		n         int
		weight    int
		want      int
		err       string
	}{
		{name: "default", n: 10, weight: 10, want: 65537},
		{name: "default at 655 members", n: 655, weight: 655, want: 65537},
		{name: "default grows with members", n: 1000, weight: 1000, want: 100003},
		{name: "default grows with weight", n: 100, weight: 70000, want: 70001},
		{name: "explicit prime", requested: 1009, n: 10, weight: 10, want: 1009},
		{name: "not prime", requested: 65536, n: 10, weight: 10, err: "not a prime"},
		{name: "too small", requested: 997, n: 10, weight: 10, err: "below 100 x 10"},
		{name: "below weight", requested: 1009, n: 10, weight: 2000, err: "reduced weight"},
		{name: "too large", requested: MaxTableSize + 43, n: 10, weight: 10, err: "above the limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tableSize(tc.requested, tc.n, tc.weight)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("tableSize = %d, %v; want error with %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("tableSize = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}
