package balancer

import (
	"fmt"
	"slices"
	"testing"
)

// tieredPool returns a pool over the given tiers (one member each, all up)
// and its backends.
func tieredPool(t testing.TB, tiers []int, opts Options) (*Pool, []*Backend) {
	t.Helper()
	bs := testBackends(len(tiers))
	ms := testMembers(bs)
	for i := range ms {
		ms[i].Tier = tiers[i]
	}
	p := mustPool(t, ms, opts)
	return p, bs
}

// pickedMembers picks n times with distinct keys and tried and returns the
// members picked, sorted and unique; it fails on -1.
func pickedMembers(t *testing.T, p *Pool, n int, tried uint64) []int {
	t.Helper()
	var got []int
	for _, k := range testKeys(uint64(n), n) {
		i := p.Pick(k, tried)
		if i < 0 {
			t.Fatalf("Pick = -1 with members up")
		}
		if !slices.Contains(got, i) {
			got = append(got, i)
		}
	}
	slices.Sort(got)
	return got
}

// indicesOf returns the members of tiers whose tier is tier.
func indicesOf(tiers []int, tier int, except ...int) []int {
	var out []int
	for i, t := range tiers {
		if t == tier && !slices.Contains(except, i) {
			out = append(out, i)
		}
	}
	return out
}

// TestTierFailover runs the primary and backup groups through every
// strategy: while a primary (tier 0) is up the backups get nothing; with
// every primary down tier 1 takes all traffic, with tier 1 down too tier
// 2; one primary back takes all of it again.
func TestTierFailover(t *testing.T) {
	t.Parallel()
	small := []int{0, 1, 0, 2, 1, 0}
	large := []int{1, 0, 0, 2, 1, 0, 1, 0, 2, 1, 0, 1, 0, 2} // > leastConnScanMax: p2c
	tests := []struct {
		name  string
		tiers []int
		opts  Options
	}{
		{name: "round_robin", tiers: small, opts: Options{Strategy: RoundRobin}},
		{name: "round_robin large", tiers: large, opts: Options{Strategy: RoundRobin}},
		{name: "least_conn scan", tiers: small, opts: Options{Strategy: LeastConn}},
		{name: "least_conn p2c", tiers: large, opts: Options{Strategy: LeastConn}},
		{name: "consistent_hash", tiers: small, opts: Options{Strategy: ConsistentHash}},
		{name: "consistent_hash large", tiers: large, opts: Options{Strategy: ConsistentHash}},
		{name: "consistent_hash bounded", tiers: small, opts: Options{Strategy: ConsistentHash, BoundedLoad: 1.25}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, bs := tieredPool(t, tc.tiers, tc.opts)
			const picks = 3000
			setTier := func(tier int, healthy bool) {
				for _, i := range indicesOf(tc.tiers, tier) {
					bs[i].SetHealthy(healthy)
				}
				waitSettled(t, p)
			}
			check := func(step string, tried uint64, want []int) {
				t.Helper()
				if got := pickedMembers(t, p, picks, tried); !slices.Equal(got, want) {
					t.Errorf("%s: picked members %v, want %v", step, got, want)
				}
			}
			primaries := indicesOf(tc.tiers, 0)
			check("all up", 0, primaries)
			// Retries stay in the primary group while a primary is up,
			// even one already tried.
			check("all up, one primary tried", 1<<primaries[0], indicesOf(tc.tiers, 0, primaries[0]))
			for _, i := range pickedMembers(t, p, picks, triedMask(primaries)) {
				if tc.tiers[i] != 0 {
					t.Errorf("all up, every primary tried: picked member %d of tier %d", i, tc.tiers[i])
				}
			}

			setTier(0, false)
			check("primaries down", 0, indicesOf(tc.tiers, 1))
			setTier(1, false)
			check("tiers 0 and 1 down", 0, indicesOf(tc.tiers, 2))
			setTier(1, true)
			check("tier 1 back", 0, indicesOf(tc.tiers, 1))

			bs[primaries[1]].SetHealthy(true)
			waitSettled(t, p)
			check("one primary back", 0, []int{primaries[1]})
			setTier(0, true)
			check("all back", 0, primaries)
		})
	}
}

func triedMask(idx []int) uint64 {
	var m uint64
	for _, i := range idx {
		m |= 1 << (uint(i) % 64)
	}
	return m
}

// TestTierBeforeRebuild checks the moment between the last primary going down
// and the rebuild: Pick already returns backups (and never a down member).
func TestTierBeforeRebuild(t *testing.T) {
	t.Parallel()
	tiers := []int{0, 0, 1, 1}
	for _, s := range []string{RoundRobin, LeastConn, ConsistentHash} {
		t.Run(s, func(t *testing.T) {
			t.Parallel()
			p, bs := tieredPool(t, tiers, Options{Strategy: s})
			p.Close() // keep the primaries' table: no rebuild
			bs[0].SetHealthy(false)
			bs[1].SetHealthy(false)
			for _, k := range testKeys(9, 500) {
				if i := p.Pick(k, 0); i != 2 && i != 3 {
					t.Fatalf("primaries down, no rebuild: Pick = %d, want a backup", i)
				}
			}
		})
	}
}

func TestTierNegative(t *testing.T) {
	t.Parallel()
	ms := testMembers(testBackends(2))
	ms[1].Tier = -1
	if _, err := NewPool(ms, Options{}); err == nil {
		t.Fatal("NewPool accepted a negative tier")
	}
}

// ExampleMember_tier shows a backup member: it takes traffic only while the
// primary is down.
func ExampleMember_tier() {
	primary, backup := NewBackend("10.0.0.1:80"), NewBackend("10.0.0.2:80")
	primary.SetHealthy(true)
	backup.SetHealthy(true)
	p, err := NewPool([]Member{
		{Backend: primary, Weight: 1},
		{Backend: backup, Weight: 1, Tier: 1},
	}, Options{Strategy: LeastConn})
	if err != nil {
		panic(err)
	}
	defer p.Close()
	fmt.Println(p.Members()[p.Pick(0, 0)].Backend.Address())
	primary.SetHealthy(false)
	fmt.Println(p.Members()[p.Pick(0, 0)].Backend.Address())
	// Output:
	// 10.0.0.1:80
	// 10.0.0.2:80
}
