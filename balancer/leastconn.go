package balancer

import (
	"math/bits"
	"math/rand/v2"
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
// are used only when no other member is up (the least loaded of them).
type leastConn struct {
	members []Member
	// rand returns 64 random bits; math/rand/v2's top-level Uint64 (lock-free,
	// per-thread state) outside tests.
	rand func() uint64
	p2c  bool
}

func newLeastConn(members []Member) *leastConn {
	return &leastConn{members: members, rand: rand.Uint64, p2c: len(members) > leastConnScanMax}
}

// Pick implements Picker.
func (lc *leastConn) Pick(_ uint64, tried uint64) int {
	if lc.p2c {
		if i := lc.pickP2C(tried); i >= 0 {
			return i
		}
	}
	return lc.scan(tried)
}

// scan returns the least loaded up member not in tried, a uniformly random
// one among equals (reservoir sampling over the ties, with a cheap generator
// seeded from lc.rand at the first tie), or else the least loaded tried one,
// or -1.
func (lc *leastConn) scan(tried uint64) int {
	var seed uint64 // drawn at the first tie: most picks under load have none
	seeded := false
	best, fallback := -1, -1
	var bestLoad, bestWeight, fbLoad, fbWeight int64
	ties := uint64(0)
	for i := range lc.members {
		m := &lc.members[i]
		b := m.Backend
		if !b.Up() {
			continue
		}
		load, w := b.InFlight(), int64(m.Weight)
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
				// The k-th equal member replaces the choice with
				// probability 1/k, so each of them ends up chosen
				// with probability 1/ties.
				ties++
				if !seeded {
					seed, seeded = lc.rand(), true
				}
				var x uint64
				seed, x = wyrand(seed)
				if (x>>32)*ties>>32 != 0 {
					continue
				}
			} else {
				ties = 1
			}
		} else {
			ties = 1
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
// usable draw it returns that one; with none, -1 and the caller scans.
func (lc *leastConn) pickP2C(tried uint64) int {
	n := uint64(len(lc.members))
	a := -1
	var r uint64
	for d := range 8 {
		if d%2 == 0 {
			r = lc.rand()
		} else {
			r <<= 32
		}
		i := int((r >> 32) * n >> 32)
		if i == a || !lc.members[i].Backend.Up() || tried&(1<<(uint(i)&63)) != 0 {
			continue
		}
		if a < 0 {
			a = i
			continue
		}
		ma, mb := &lc.members[a], &lc.members[i]
		if mb.Backend.InFlight()*int64(ma.Weight) < ma.Backend.InFlight()*int64(mb.Weight) {
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
