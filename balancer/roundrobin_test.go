package balancer

import (
	"slices"
	"testing"
)

func TestRoundRobinWeights(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		weights []int
	}{
		{name: "1:2:3", weights: []int{1, 2, 3}},
		{name: "equal", weights: []int{1, 1, 1, 1}},
		{name: "reduced by gcd", weights: []int{100, 200, 300}},
		{name: "coprime", weights: []int{7, 3, 5, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := mustPool(t, testMembers(testBackends(len(tc.weights)), tc.weights...), Options{Strategy: RoundRobin})
			cycle := len(p.rr.sched.Load().slots)
			counts := make([]int, len(tc.weights))
			var first []int
			for k := range 5 * cycle {
				i := p.Pick(uint64(k), 0)
				counts[i]++
				if k < cycle {
					first = append(first, i)
				}
				if (k+1)%cycle == 0 {
					// Every full cycle gives exactly the weights.
					g := 0
					for _, w := range tc.weights {
						g = gcd(g, w)
					}
					for j, w := range tc.weights {
						if want := (k + 1) / cycle * w / g; counts[j] != want {
							t.Fatalf("after %d cycles member %d has %d picks, want %d", (k+1)/cycle, j, counts[j], want)
						}
					}
				}
			}
			t.Logf("round robin %s: cycle of %d picks %v, counts over 5 cycles %v", tc.name, cycle, first, counts)
		})
	}
}

func TestRoundRobinSmooth(t *testing.T) {
	t.Parallel()
	// Weight 5 against four weight-1 members: the heavy one never gets more
	// than two picks in a row.
	p := mustPool(t, testMembers(testBackends(5), 5, 1, 1, 1, 1), Options{})
	run := 0
	for k := range 90 {
		if p.Pick(uint64(k), 0) == 0 {
			if run++; run > 2 {
				t.Fatalf("member 0 picked %d times in a row", run)
			}
		} else {
			run = 0
		}
	}
}

func TestRoundRobinDownAndTried(t *testing.T) {
	t.Parallel()
	bs := testBackends(3)
	p := mustPool(t, testMembers(bs, 1, 2, 3), Options{})
	bs[2].SetHealthy(false)
	for k := range 60 {
		if i := p.Pick(uint64(k), 1<<1); i != 0 {
			t.Fatalf("member 2 down, 1 tried: Pick = %d", i)
		}
	}
	if i := p.Pick(0, 1<<0|1<<1); i < 0 || i > 1 {
		t.Fatalf("only tried members up: Pick = %d", i)
	}
	bs[0].SetEjected(true)
	bs[1].SetHealthy(false)
	if i := p.Pick(0, 0); i != -1 {
		t.Fatalf("all down: Pick = %d", i)
	}
	if !slices.Equal(memberAddrs(p), []string{bs[0].Address(), bs[1].Address(), bs[2].Address()}) {
		t.Fatal("Members changed order")
	}
}

// shares returns each member's share of picks sequential picks.
func shares(p *Pool, picks int) []float64 {
	counts := make([]int, len(p.Members()))
	for k := range picks {
		if i := p.Pick(uint64(k), 0); i >= 0 {
			counts[i]++
		}
	}
	s := make([]float64, len(counts))
	for i, c := range counts {
		s[i] = float64(c) / float64(picks)
	}
	return s
}

// TestRoundRobinSpreadsDownShare checks that the share of members that are
// down or ejected goes to every up member in proportion to weight (nginx's
// smooth weighted round robin), not to a neighbour in the schedule.
func TestRoundRobinSpreadsDownShare(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		weights []int
		down    []int
		ejected []int
		want    []float64
	}{
		{name: "B of A/B/C down", weights: []int{1, 1, 1}, down: []int{1}, want: []float64{0.5, 0, 0.5}},
		{name: "C of A/B/C down", weights: []int{1, 1, 1}, down: []int{2}, want: []float64{0.5, 0.5, 0}},
		{name: "two of 5 down", weights: []int{1, 1, 1, 1, 1}, down: []int{1, 2}, want: []float64{1.0 / 3, 0, 0, 1.0 / 3, 1.0 / 3}},
		{name: "weights 1,2,3, weight 2 down", weights: []int{1, 2, 3}, down: []int{1}, want: []float64{0.25, 0, 0.75}},
		{name: "weights 1,2,3, weight 1 down", weights: []int{1, 2, 3}, down: []int{0}, want: []float64{0, 0.4, 0.6}},
		{name: "weights 5,1,1,1,1, heavy and one light down", weights: []int{5, 1, 1, 1, 1}, down: []int{0, 2}, want: []float64{0, 1.0 / 3, 0, 1.0 / 3, 1.0 / 3}},
		{name: "weights 3,1,2,2, two down", weights: []int{3, 1, 2, 2}, down: []int{1}, ejected: []int{3}, want: []float64{0.6, 0, 0.4, 0}},
		{name: "one ejected of 3", weights: []int{1, 1, 1}, ejected: []int{0}, want: []float64{0, 0.5, 0.5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bs := testBackends(len(tc.weights))
			p := mustPool(t, testMembers(bs, tc.weights...), Options{})
			for _, i := range tc.down {
				bs[i].SetHealthy(false)
			}
			for _, i := range tc.ejected {
				bs[i].SetEjected(true)
			}
			waitSettled(t, p)
			got := shares(p, 6000)
			for i := range got {
				if d := got[i] - tc.want[i]; d > 0.02 || d < -0.02 {
					t.Errorf("member %d (weight %d): share %.4f, want %.4f +- 0.02 (all %.4f)", i, tc.weights[i], got[i], tc.want[i], got)
				}
			}
		})
	}
}

// TestRoundRobinMemberComesBack checks the spread after a member that was
// down comes back: every member gets its weight's share again.
func TestRoundRobinMemberComesBack(t *testing.T) {
	t.Parallel()
	bs := testBackends(3)
	p := mustPool(t, testMembers(bs, 1, 2, 3), Options{})
	bs[1].SetHealthy(false)
	waitSettled(t, p)
	if got := shares(p, 6000); got[1] != 0 || got[0] < 0.23 || got[0] > 0.27 {
		t.Fatalf("weight 2 down: shares %.4f, want 0.25, 0, 0.75", got)
	}
	bs[1].SetHealthy(true)
	waitSettled(t, p)
	want := []float64{1.0 / 6, 2.0 / 6, 3.0 / 6}
	got := shares(p, 6000)
	for i := range got {
		if d := got[i] - want[i]; d > 0.02 || d < -0.02 {
			t.Errorf("back up: member %d share %.4f, want %.4f +- 0.02", i, got[i], want[i])
		}
	}
	// The rebuilt schedule is the full one again: one cycle gives exact
	// weights.
	if n := len(p.rr.sched.Load().slots); n != 6 {
		t.Errorf("schedule has %d slots, want 6", n)
	}
}

// TestRoundRobinAllDownThenOneBack checks that a pool whose schedule holds
// only members that went down finds a member that came up before the
// rebuild lands.
func TestRoundRobinAllDownThenOneBack(t *testing.T) {
	t.Parallel()
	bs := testBackends(3)
	bs[1].SetHealthy(false)
	bs[2].SetHealthy(false)
	p := mustPool(t, testMembers(bs), Options{}) // schedule of member 0 alone
	p.Close()                                    // freeze it: no rebuild from here on
	bs[0].SetHealthy(false)
	if i := p.Pick(0, 0); i != -1 {
		t.Fatalf("all down: Pick = %d", i)
	}
	bs[2].SetHealthy(true)
	for k := range 10 {
		if i := p.Pick(uint64(k), 0); i != 2 {
			t.Fatalf("member 2 back, schedule stale: Pick = %d, want 2", i)
		}
	}
}
