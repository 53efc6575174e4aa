package balancer

import (
	"container/heap"
	"sync/atomic"
)

// weightedRoundRobin spreads picks over the up members in proportion to
// weight with one atomic add per pick, as nginx's smooth weighted round
// robin does: a member that is down gives its share to every up member in
// proportion to their weights, not to its neighbour in the schedule.
//
// The schedule is a slice of member indices in which each up member appears
// weight times, interleaved, so consecutive picks do not hit one member in
// a burst. Weights are divided by their greatest common divisor first, so
// weights 100 and 200 cost a schedule of 3 slots, not 300. The pool rebuilds
// the schedule off the request path when a member's Up changes (and in
// steps while slow start ramps a member) and publishes it atomically; until
// the new one lands, Pick walks past members that are down.
type weightedRoundRobin struct {
	members []Member
	// ramp is the pool's slow start, nil when off.
	ramp *ramp
	// pool is told when a ramp step falls due (Pool.stateChanged).
	pool  *Pool
	sched atomic.Pointer[rrSchedule]
	next  atomic.Uint64
}

// rrSchedule is one immutable round-robin schedule.
type rrSchedule struct {
	slots []int32
	// due is when the next slow-start step begins (nanoseconds of
	// ramp.now), 0 when no member ramps.
	due int64
	// partial says that slots lack some members (they were down at the
	// build).
	partial bool
	// stale is set by the first Pick that finds due passed, which asks the
	// pool for the rebuild.
	stale atomic.Bool
}

// newWeightedRoundRobin returns a picker over members with a schedule over
// all of them; the pool builds the first real one (build) before use.
func newWeightedRoundRobin(members []Member, r *ramp, p *Pool) *weightedRoundRobin {
	return &weightedRoundRobin{members: members, ramp: r, pool: p}
}

// build returns the schedule for the members of the lowest tier with an up
// member that are up at now (all members when none is up, so that Pick finds
// a member coming back before the next rebuild), with each ramping member's
// weight scaled by its slow-start step.
func (r *weightedRoundRobin) build(now int64) *rrSchedule {
	chosen := make([]int32, 0, len(r.members))
	tier := lowestUpTier(r.members)
	for i, m := range r.members {
		if m.Tier == tier && m.Backend.Up() {
			chosen = append(chosen, int32(i))
		}
	}
	anyUp := len(chosen) > 0
	if !anyUp {
		for i := range r.members {
			chosen = append(chosen, int32(i))
		}
	}
	weights := make([]int64, len(chosen))
	for k, i := range chosen {
		weights[k] = int64(r.members[i].Weight)
	}
	s := &rrSchedule{partial: len(chosen) < len(r.members)}
	if r.ramp != nil && anyUp {
		levels := make([]int64, len(chosen))
		for k, i := range chosen {
			var next int64
			levels[k], next = r.ramp.level(r.members[i].Backend, now)
			if next != 0 && (s.due == 0 || next < s.due) {
				s.due = next
			}
		}
		if s.due != 0 {
			limit := max(maxRampSchedule, reducedSum(weights))
			for k := range weights {
				weights[k] *= levels[k]
			}
			fitSchedule(weights, limit)
		}
	}
	s.slots = schedule(chosen, weights)
	return s
}

// reducedSum is the sum of weights divided by their greatest common divisor.
func reducedSum(weights []int64) int64 {
	var g, sum int64
	for _, w := range weights {
		g = gcd64(g, w)
		sum += w
	}
	if g == 0 {
		return 0
	}
	return sum / g
}

// fitSchedule scales weights down, keeping each at least 1, when their
// reduced sum exceeds limit.
func fitSchedule(weights []int64, limit int64) {
	var g, sum int64
	for _, w := range weights {
		g = gcd64(g, w)
		sum += w
	}
	if sum/g <= limit {
		return
	}
	for k, w := range weights {
		weights[k] = max(1, w*limit/sum)
	}
}

func gcd64(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// schedule interleaves members (indices into the pool's members) by weights
// (parallel to members, each at least 1), each member appearing
// weight/gcd times.
func schedule(members []int32, weights []int64) []int32 {
	var g int64
	for _, w := range weights {
		g = gcd64(g, w)
	}
	n := int64(len(members))
	h := make(turnHeap, len(members))
	total := int64(0)
	for k, i := range members {
		h[k] = turn{member: i, weight: weights[k] / g, phase: 2*int64(k) + 1, span: 2 * n}
		total += weights[k] / g
	}
	heap.Init(&h)
	// Earliest deadline first (stride scheduling): member k's j-th turn
	// (j from 0) is due at (j + phase_k) / weight_k, with phases
	// (2k+1)/2n staggered over (0, 1) so that members of equal weight do
	// not fall due together. Each member has exactly weight_k deadlines in
	// every unit interval, so one cycle of total turns gives every member
	// exactly its weight, and a heavy member's turns interleave with the
	// light ones: weights 5:1:1:1:1 give a a b a c a d a e. It costs
	// O(total x log n), where nginx's smooth weighted round robin costs
	// O(total x n).
	slots := make([]int32, 0, total)
	for range total {
		slots = append(slots, h[0].member)
		h[0].done++
		heap.Fix(&h, 0)
	}
	return slots
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

// Pick implements Picker.
func (r *weightedRoundRobin) Pick(_ uint64, tried uint64) int {
	s := r.sched.Load()
	if s.due != 0 {
		r.stepDue(s)
	}
	slots := s.slots
	n := uint64(len(slots))
	start := r.next.Add(1) - 1
	// Walk the schedule from the next slot until an up member not yet tried
	// turns up; one pass covers every member in the schedule.
	fallback := -1
	for i := range n {
		idx := int(slots[(start+i)%n])
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
	if fallback < 0 && s.partial {
		// Every scheduled member went down and the rebuild has not landed:
		// look for one that came up since the build.
		return r.scan(tried)
	}
	return fallback
}

// scan returns, among the up members of the lowest tier that has one, the
// first not in tried, else the first in tried, else -1.
func (r *weightedRoundRobin) scan(tried uint64) int {
	best, fallback := -1, -1
	for i := range r.members {
		m := &r.members[i]
		if !m.Backend.Up() {
			continue
		}
		low := best
		if low < 0 {
			low = fallback
		}
		if low >= 0 {
			if m.Tier >= r.members[low].Tier {
				if best >= 0 || m.Tier > r.members[low].Tier {
					continue
				}
			} else {
				// A lower tier: forget the higher one's candidates.
				best, fallback = -1, -1
			}
		}
		if tried&(1<<(uint(i)%64)) == 0 {
			best = i
		} else if fallback < 0 {
			fallback = i
		}
	}
	if best >= 0 {
		return best
	}
	return fallback
}

// stepDue asks the pool for a rebuild, once per schedule, when the next
// slow-start step of s has begun.
func (r *weightedRoundRobin) stepDue(s *rrSchedule) {
	if r.ramp.now() >= s.due && s.stale.CompareAndSwap(false, true) {
		r.pool.stateChanged()
	}
}
