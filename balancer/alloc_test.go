//go:build !race

package balancer

import (
	"fmt"
	"testing"
)

// TestPickAllocs asserts that every picker allocates nothing per request at
// every benchmarked size: a plain pick, a retry (tried bits), a pick with
// members down before the table rebuild, and the PickAcquire/Release cycle.
//
// Not parallel: AllocsPerRun refuses to run beside parallel tests.
func TestPickAllocs(t *testing.T) {
	for _, s := range benchStrategies {
		for _, n := range benchSizes {
			t.Run(fmt.Sprintf("%s/%d", s.name, n), func(t *testing.T) {
				p := benchPool(t, n, s.opts)
				var state, key uint64
				cases := []struct {
					name string
					fn   func()
				}{
					{"Pick", func() {
						state, key = wyrand(state)
						p.Pick(key, 0)
					}},
					{"Pick retry", func() {
						state, key = wyrand(state)
						p.Pick(key, 1|1<<1)
					}},
					{"PickAcquire/Release", func() {
						state, key = wyrand(state)
						p.Release(p.PickAcquire(key, 0))
					}},
					{"Pick with a member drained", func() {
						state, key = wyrand(state)
						p.Pick(key, 0)
					}},
					{"Pick with members down", func() {
						state, key = wyrand(state)
						p.Pick(key, 0)
					}},
				}
				for _, c := range cases {
					if c.name == "Pick with a member drained" {
						p.Members()[n-1].Backend.SetAdminState(AdminDrain)
						waitSettled(t, p) // the rebuild allocates, off the pick
					}
					if c.name == "Pick with members down" {
						p.Close() // keep the stale table: walk past down members
						for i := 0; i < n; i += 2 {
							p.Members()[i].Backend.SetHealthy(false)
						}
					}
					if a := testing.AllocsPerRun(1000, c.fn); a != 0 {
						t.Errorf("%s: %v allocs per run, want 0", c.name, a)
					}
				}
			})
		}
	}
}

// TestPickAllocsRamping asserts that picks allocate nothing while slow start
// ramps a member (between two ramp steps; a step's rebuild allocates once,
// off the request path).
//
// Not parallel: AllocsPerRun refuses to run beside parallel tests.
func TestPickAllocsRamping(t *testing.T) {
	for _, strategy := range []string{RoundRobin, LeastConn} {
		for _, n := range benchSizes {
			t.Run(fmt.Sprintf("%s/%d", strategy, n), func(t *testing.T) {
				p, _ := rampingPool(t, n, strategy)
				var state, key uint64
				pick := func() {
					state, key = wyrand(state)
					p.Release(p.PickAcquire(key, 0))
				}
				if a := testing.AllocsPerRun(1000, pick); a != 0 {
					t.Errorf("%v allocs per run, want 0", a)
				}
			})
		}
	}
}

// TestPickAllocsTiered asserts that picks in a pool with a backup tier
// allocate nothing, with the primaries up and with them down (the backups
// serving).
//
// Not parallel: AllocsPerRun refuses to run beside parallel tests.
func TestPickAllocsTiered(t *testing.T) {
	for _, s := range benchStrategies {
		for _, n := range benchSizes {
			t.Run(fmt.Sprintf("%s/%d", s.name, n), func(t *testing.T) {
				tiers := make([]int, n)
				for i := range tiers {
					tiers[i] = i % 2
				}
				p, bs := tieredPool(t, tiers, s.opts)
				var state, key uint64
				pick := func() {
					state, key = wyrand(state)
					p.Release(p.PickAcquire(key, 1))
				}
				if a := testing.AllocsPerRun(1000, pick); a != 0 {
					t.Errorf("primaries up: %v allocs per run, want 0", a)
				}
				for i := 0; i < n; i += 2 {
					bs[i].SetHealthy(false)
				}
				waitSettled(t, p)
				if a := testing.AllocsPerRun(1000, pick); a != 0 {
					t.Errorf("primaries down: %v allocs per run, want 0", a)
				}
			})
		}
	}
}
