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
			cycle := len(p.picker.(*weightedRoundRobin).schedule)
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
