package balancer

import (
	"math/bits"
	"math/rand/v2"
	"sync/atomic"
)

// leastConnScanMax is the largest pool that least_conn scans exactly; larger
// pools use power of two choices. The exact scan reads every member (about
// 3 ns each, plus one random draw when the least loaded ones tie) and always
// finds the least loaded; p2c costs one random draw and two members whatever
// the pool size, and finds a member better loaded than most (Mitzenmacher).
// BenchmarkLeastConnScanVsP2C, process CPU time per pick (cpu-ns/op, the
// 2-core development machine was shared and loaded, so wall time was noise),
// Go 1.26 amd64, -count 6: scan 4: 20 ns, 8: 35, 12: 51, 16: 61, 32: 114,
// 64: 206; p2c: 22-36 ns at every size. The lines cross between 4 and 8
// members. Up to 8 the scan costs at most about 10 ns more than p2c for the
// exact answer, which matters most in small pools, where one slow backend
// is a large share of the capacity; beyond 8 it costs twice p2c and more,
// growing linearly.
const leastConnScanMax = 8

// leastConn picks the member with the fewest in-flight requests per unit of
// weight (inFlight_a x weight_b < inFlight_b x weight_a), breaking ties at
// random. Pools of up to leastConnScanMax members are scanned exactly; larger
// ones use power of two choices: two distinct random members, the less
// loaded one wins. Both skip members that are down or tried; tried members
// are used only when no other member is up (the least loaded of them). Both
// consider only the lowest tier with an up member: the scan finds it as it
// goes, p2c draws from the tier of the pool's last rebuild and leaves the
// pick to the scan when it finds no usable member there.
//
// While slow start ramps a member, its weight in the comparison is scaled by
// its ramp fraction f, and so is its chance among equally loaded members:
// the scan weighs ties by f, p2c keeps a ramping draw with probability f.
// An idle pool (every member at 0 in flight) then gives a member of equal
// weight the share f / (members - 1 + f), the linear ramp.
type leastConn struct {
	members []Member
	// rand returns 64 random bits; math/rand/v2's top-level Uint64 (lock-free,
	// per-thread state) outside tests.
	rand func() uint64
	p2c  bool
	// ramp is the pool's slow start, nil when off.
	ramp *ramp
	// tiered says that members have more than one Tier. active is then the
	// lowest tier with an up member at the pool's last rebuild (0 when
	// none), the only tier p2c draws from; the scan finds the lowest tier
	// itself.
	tiered bool
	active atomic.Int64
}

func newLeastConn(members []Member, r *ramp) *leastConn {
	lc := &leastConn{members: members, rand: rand.Uint64, p2c: len(members) > leastConnScanMax, ramp: r}
	for i := range members {
		if members[i].Tier != members[0].Tier {
			lc.tiered = true
		}
	}
	lc.active.Store(int64(members[0].Tier))
	return lc
}

// Pick implements Picker.
func (lc *leastConn) Pick(_ uint64, tried uint64) int {
	now, ramping := lc.ramp.active()
	if lc.p2c {
		if i := lc.pickP2C(tried, ramping, now); i >= 0 {
			return i
		}
	}
	return lc.scan(tried, ramping, now)
}

// scan returns the least loaded up member not in tried, a uniformly random
// one among equals (reservoir sampling over the ties, with a cheap generator
// seeded from lc.rand at the first tie), or else the least loaded tried one,
// or -1. With ramping, weights and ties are scaled by the ramp fractions at
// now.
func (lc *leastConn) scan(tried uint64, ramping bool, now int64) int {
	var seed uint64 // drawn at the first tie: most picks under load have none
	seeded := false
	best, fallback := -1, -1
	tier := 0 // of best and fallback, when either is set
	var bestLoad, bestWeight, fbLoad, fbWeight int64
	ties := uint64(0)
	for i := range lc.members {
		m := &lc.members[i]
		b := m.Backend
		if !b.Up() {
			continue
		}
		if best >= 0 || fallback >= 0 {
			if m.Tier > tier {
				continue
			}
			if m.Tier < tier {
				// A lower tier is up: forget the higher one.
				best, fallback = -1, -1
			}
		}
		tier = m.Tier
		load, w := b.InFlight(), int64(m.Weight)
		tw := uint64(1) // weight among ties
		if ramping {
			f := lc.ramp.fraction(b, now)
			w *= f
			tw = uint64(f)
		}
		if tried&(1<<(uint(i)&63)) != 0 {
			if fallback < 0 || load*fbWeight < fbLoad*w {
				fallback, fbLoad, fbWeight = i, load, w
			}
			continue
		}
		if best >= 0 {
			d := load*bestWeight - bestLoad*w
			if d > 0 {
				continue
			}
			if d == 0 {
				// An equal member replaces the choice with
				// probability tw/ties (ties summing tw over the
				// equal members so far), so each of them ends up
				// chosen with probability tw/ties: 1/k for k equal
				// members without a ramp.
				ties += tw
				if !seeded {
					seed, seeded = lc.rand(), true
				}
				var x uint64
				seed, x = wyrand(seed)
				if hi, _ := bits.Mul64(x, ties); hi >= tw {
					continue
				}
			} else {
				ties = tw
			}
		} else {
			ties = tw
		}
		best, bestLoad, bestWeight = i, load, w
	}
	if best < 0 {
		return fallback
	}
	return best
}

// pickP2C draws members at random until it has two distinct usable (up,
// untried) ones, at most eight draws, and returns the less loaded; on a tie
// the first drawn, which is either of them with equal probability. With one
// usable draw it returns that one; with none, -1 and the caller scans. With
// ramping, a draw of a ramping member counts with probability its ramp
// fraction at now, and loads are compared per unit of ramped weight.
func (lc *leastConn) pickP2C(tried uint64, ramping bool, now int64) int {
	n := uint64(len(lc.members))
	a := -1
	var r uint64
	var fa int64
	tier := int(lc.active.Load())
	for d := range 8 {
		if d%2 == 0 {
			r = lc.rand()
		} else {
			r <<= 32
		}
		i := int((r >> 32) * n >> 32)
		if i == a || lc.members[i].Tier != tier || !lc.members[i].Backend.Up() || tried&(1<<(uint(i)&63)) != 0 {
			continue
		}
		fi := int64(1)
		if ramping {
			fi = lc.ramp.fraction(lc.members[i].Backend, now)
			if fi < rampOne && int64(lc.rand()%rampOne) >= fi {
				continue
			}
		}
		if a < 0 {
			a, fa = i, fi
			continue
		}
		ma, mb := &lc.members[a], &lc.members[i]
		if mb.Backend.InFlight()*int64(ma.Weight)*fa < ma.Backend.InFlight()*int64(mb.Weight)*fi {
			return i
		}
		return a
	}
	return a
}

// wyrand is wyhash's generator: it advances state and returns the new state
// and 64 random bits.
func wyrand(state uint64) (uint64, uint64) {
	state += 0xa0761d6478bd642f
	hi, lo := bits.Mul64(state, state^0xe7037ed1a0b428db)
	return state, hi ^ lo
}
