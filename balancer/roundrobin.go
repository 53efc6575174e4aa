package balancer

import "sync/atomic"

// weightedRoundRobin spreads picks over members in proportion to weight with
// one atomic add per pick. The schedule is a slice of member indices in which
// each member appears weight times, interleaved (smooth weighted round robin,
// computed once at build time), so consecutive picks do not hit one member in
// a burst.
type weightedRoundRobin struct {
	members  []Member
	schedule []int32
	next     atomic.Uint64
}

func newWeightedRoundRobin(members []Member) *weightedRoundRobin {
	total := 0
	for _, m := range members {
		total += m.Weight
	}
	// Smooth weighted round robin (nginx): each step adds every weight to its
	// current value, picks the largest and subtracts the total.
	current := make([]int, len(members))
	schedule := make([]int32, 0, total)
	for range total {
		best := 0
		for i, m := range members {
			current[i] += m.Weight
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		schedule = append(schedule, int32(best))
	}
	return &weightedRoundRobin{members: members, schedule: schedule}
}

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
