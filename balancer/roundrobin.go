package balancer

import (
	"container/heap"
	"sync/atomic"
)

// weightedRoundRobin spreads picks over members in proportion to weight with
// one atomic add per pick. The schedule is a slice of member indices in which
// each member appears weight times, interleaved, computed once at build time,
// so consecutive picks do not hit one member in a burst. Weights are divided
// by their greatest common divisor first, so weights 100 and 200 cost a
// schedule of 3 slots, not 300.
type weightedRoundRobin struct {
	members  []Member
	schedule []int32
	next     atomic.Uint64
}

func newWeightedRoundRobin(members []Member) *weightedRoundRobin {
	g := 0
	for _, m := range members {
		g = gcd(g, m.Weight)
	}
	n := int64(len(members))
	h := make(turnHeap, len(members))
	total := 0
	for i, m := range members {
		h[i] = turn{member: int32(i), weight: int64(m.Weight / g), phase: 2*int64(i) + 1, span: 2 * n}
		total += m.Weight / g
	}
	heap.Init(&h)
	// Earliest deadline first (stride scheduling): member i's k-th turn
	// (k from 0) is due at (k + phase_i) / weight_i, with phases
	// (2i+1)/2n staggered over (0, 1) so that members of equal weight do
	// not fall due together. Each member has exactly weight_i deadlines in
	// every unit interval, so one cycle of total turns gives every member
	// exactly its weight, and a heavy member's turns interleave with the
	// light ones: weights 5:1:1:1:1 give a a b a c a d a e. It costs
	// O(total x log n), where nginx's smooth weighted round robin costs
	// O(total x n).
	schedule := make([]int32, 0, total)
	for range total {
		schedule = append(schedule, h[0].member)
		h[0].done++
		heap.Fix(&h, 0)
	}
	return &weightedRoundRobin{members: members, schedule: schedule}
}

// turn is one member's position in the round-robin schedule build: its next
// turn is due at (done + phase/span) / weight.
type turn struct {
	member int32
	weight int64
	done   int64
	phase  int64
	span   int64
}

type turnHeap []turn

func (h turnHeap) Len() int { return len(h) }
func (h turnHeap) Less(a, b int) bool {
	da := (h[a].done*h[a].span + h[a].phase) * h[b].weight
	db := (h[b].done*h[b].span + h[b].phase) * h[a].weight
	if da != db {
		return da < db
	}
	return h[a].member < h[b].member
}
func (h turnHeap) Swap(a, b int) { h[a], h[b] = h[b], h[a] }
func (h *turnHeap) Push(x any)   { *h = append(*h, x.(turn)) }
func (h *turnHeap) Pop() (x any) { x, *h = (*h)[len(*h)-1], (*h)[:len(*h)-1]; return x }

func (r *weightedRoundRobin) Pick(_ uint64, tried uint64) int {
	n := uint64(len(r.schedule))
	start := r.next.Add(1) - 1
	// Walk the schedule from the next slot until an up member not yet tried
	// turns up; one pass covers every member.
	fallback := -1
	for i := range n {
		idx := int(r.schedule[(start+i)%n])
		if !r.members[idx].Backend.Up() {
			continue
		}
		if tried&(1<<(uint(idx)%64)) != 0 {
			if fallback < 0 {
				fallback = idx
			}
			continue
		}
		return idx
	}
	return fallback
}
