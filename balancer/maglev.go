package balancer

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
)

// freeSlot marks an unfilled slot while a table is populated.
const freeSlot = 0xffff

// maglev is consistent hashing with a Maglev lookup table (Eisenbud et al.,
// "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016),
// optionally with bounded loads (Mirrokni, Thorup, Zadimoghaddam,
// "Consistent Hashing with Bounded Loads", SODA 2018).
//
// Each member has a permutation of the table's slots derived from two
// xxhashes of its address (offset, skip). Population goes round by round over
// the up members of the lowest tier that has one, in a canonical order (by
// tier, ID, then address), a member of
// weight w taking w turns per round, each turn claiming the next free slot of
// its permutation. Nothing depends on a member's position in the config, so
// every process with the same backends (in any order) and the same up set
// builds the same table, and a key maps to the same address everywhere.
//
// A lookup is table[key % M]. The table holds up members only; it is rebuilt
// off the request path (Pool.stateChanged) and swapped atomically. Until the
// swap lands, for retries (tried) and for members over their bounded load,
// Pick walks forward from key % M to the next distinct member that is up,
// untried and within its bound, for at most 8n+64 slots, then scans the
// members in canonical order. The walk depends only on the table and the
// members' state, so it too is the same in every process.
type maglev struct {
	members []Member
	size    uint64 // M, a prime
	// c is the bounded-load factor, 0 when off.
	c float64
	// total is the owning Pool's in-flight count (bounded loads only).
	total *atomic.Int64
	// order holds member indices in canonical order.
	order []uint16
	// limit bounds the table walk before the canonical scan takes over.
	limit int

	table atomic.Pointer[maglevTable]
}

// maglevTable is one immutable population of the table.
type maglevTable struct {
	slots []uint16
	// share[i] is c x weight of member i / weight of the members the table
	// was built over (bounded loads only): member i's bound is
	// ceil(share[i] x (total+1)).
	share []float64
}

func newMaglev(members []Member, size int, c float64, total *atomic.Int64) *maglev {
	order := make([]uint16, len(members))
	for i := range order {
		order[i] = uint16(i)
	}
	slices.SortStableFunc(order, func(a, b uint16) int {
		ba, bb := members[a].Backend, members[b].Backend
		switch {
		case members[a].Tier != members[b].Tier:
			return cmp.Compare(members[a].Tier, members[b].Tier)
		case ba.ID() < bb.ID():
			return -1
		case ba.ID() > bb.ID():
			return 1
		case ba.Address() < bb.Address():
			return -1
		case ba.Address() > bb.Address():
			return 1
		}
		return 0
	})
	return &maglev{
		members: members,
		size:    uint64(size),
		c:       c,
		total:   total,
		order:   order,
		limit:   min(size, 8*len(members)+64),
	}
}

// build populates a table from the members of the lowest tier with an up
// member that are up now, or from all of them when none is up (so that a
// member coming back before the next rebuild is found by the walk).
func (m *maglev) build() *maglevTable {
	chosen := make([]uint16, 0, len(m.order))
	tier := lowestUpTier(m.members)
	for _, i := range m.order {
		if m.members[i].Tier == tier && m.members[i].Backend.Up() {
			chosen = append(chosen, i)
		}
	}
	if len(chosen) == 0 {
		chosen = append(chosen, m.order...)
	}
	g := 0
	upWeight := 0
	for _, i := range chosen {
		g = gcd(g, m.members[i].Weight)
		upWeight += m.members[i].Weight
	}
	size := m.size
	next := make([]uint64, len(chosen))
	skip := make([]uint64, len(chosen))
	turns := make([]int, len(chosen))
	for k, i := range chosen {
		b := m.members[i].Backend
		next[k] = b.offset % size
		skip[k] = b.skip%(size-1) + 1
		turns[k] = m.members[i].Weight / g
	}
	slots := make([]uint16, size)
	for s := range slots {
		slots[s] = freeSlot
	}
	// tableSize ensures size >= the reduced weight sum, so every chosen
	// member takes all its turns of the first round.
	filled := uint64(0)
fill:
	for {
		for k, i := range chosen {
			for range turns[k] {
				pos := next[k]
				for slots[pos] != freeSlot {
					pos += skip[k]
					if pos >= size {
						pos -= size
					}
				}
				slots[pos] = i
				pos += skip[k]
				if pos >= size {
					pos -= size
				}
				next[k] = pos
				if filled++; filled == size {
					break fill
				}
			}
		}
	}
	t := &maglevTable{slots: slots}
	if m.c != 0 {
		t.share = make([]float64, len(m.members))
		for i, mb := range m.members {
			t.share[i] = m.c * float64(mb.Weight) / float64(upWeight)
		}
	}
	return t
}

// capacity is member i's bound for a request arriving when total requests
// are in flight: ceil(c x weight x (total+1) / up weight). The relative
// epsilon keeps float rounding (0.3 x 10 = 3.0000000000000004) from raising
// the bound by one.
func (t *maglevTable) capacity(i int, total int64) int64 {
	return int64(math.Ceil(t.share[i] * float64(total+1) * (1 - 1e-12)))
}

// Pick implements Picker.
func (m *maglev) Pick(key uint64, tried uint64) int {
	t := m.table.Load()
	s := key % m.size
	if m.c == 0 {
		i := int(t.slots[s])
		if tried&(1<<(uint(i)&63)) == 0 && m.members[i].Backend.Up() {
			return i
		}
	}
	w := hashWalk{t: t, tried: tried}
	if m.c != 0 {
		w.total = m.total.Load()
	}
	i, _ := m.walk(&w, s)
	if i < 0 {
		i = w.fallback()
	}
	return i
}

// pickAcquire picks like Pick under bounded loads and counts the request on
// the chosen member and in the pool total. It returns the member (or -1), its
// in-flight count just after this request was counted, and the pool total
// its bound was computed from (other requests only).
//
// The request is counted in the pool total first and its member's in-flight
// count second (Pool.Release undoes them in the opposite order), so the
// total never falls below the sum of the counts it covers: with an exact
// snapshot some member is always below its bound. The bound test and the
// member's increment are one CAS, so concurrent requests cannot both take a
// member's last place. When a whole walk finds every member full because
// the total it read has gone stale, it walks again with the fresh total, up
// to three times, before it settles for the up member with the least excess.
func (m *maglev) pickAcquire(key uint64, tried uint64) (idx int, load int64, total int64) {
	t := m.table.Load()
	s := key % m.size
	seen := m.total.Add(1) // includes this request
	var w hashWalk
	for attempt := 0; ; attempt++ {
		w = hashWalk{t: t, tried: tried, total: seen - 1, acquire: true}
		if idx, load = m.walk(&w, s); idx >= 0 {
			return idx, load, seen - 1
		}
		if w.over < 0 || attempt == 2 {
			break
		}
		now := m.total.Load()
		if now == seen {
			break
		}
		seen = now
	}
	idx = w.fallback()
	if idx < 0 {
		m.total.Add(-1)
		return -1, 0, seen - 1
	}
	return idx, m.members[idx].Backend.inFlight.Add(1), seen - 1
}

// hashWalk is the state of one walk over the table (on the caller's stack).
type hashWalk struct {
	t       *maglevTable
	tried   uint64
	total   int64 // pool in-flight the bounds are computed from
	acquire bool  // CAS the chosen member's in-flight count up

	// Up members the walk passed over, for the fallback: the one with the
	// least excess over its bound (first seen on ties), and the first
	// tried one.
	over       int
	overExcess int64
	triedUp    int
}

// fallback is the member to use when no up untried member is within its
// bound: the up untried one with the least excess, else an up tried one,
// else -1.
func (w *hashWalk) fallback() int {
	if w.over >= 0 {
		return w.over
	}
	return w.triedUp
}

// walk scans table slots from s for the first distinct member that is up,
// untried and (under bounded loads) within its bound, then the members in
// canonical order. It returns that member and, under bounded loads, its
// in-flight count (after the increment when w.acquire), or -1 and leaves
// the candidates for w.fallback.
func (m *maglev) walk(w *hashWalk, s uint64) (int, int64) {
	w.over, w.triedUp = -1, -1
	prev := -1
	slots := w.t.slots
	for range m.limit {
		i := int(slots[s])
		if s++; s == m.size {
			s = 0
		}
		if i == prev {
			continue
		}
		prev = i
		if load, ok := m.try(w, i); ok {
			return i, load
		}
	}
	// The canonical order is by tier first: once an up member of a tier
	// has been passed over (tried, or over its bound), members of higher
	// tiers are not used.
	for _, i := range m.order {
		if c := w.fallback(); c >= 0 && m.members[i].Tier > m.members[c].Tier {
			break
		}
		if load, ok := m.try(w, int(i)); ok {
			return int(i), load
		}
	}
	return -1, 0
}

// try reports whether member i may take the request, acquiring it when the
// walk asks, and returns its in-flight count. Members it passes over that are
// up go to the walk's fallback candidates.
func (m *maglev) try(w *hashWalk, i int) (int64, bool) {
	b := m.members[i].Backend
	if !b.Up() {
		return 0, false
	}
	if w.tried&(1<<(uint(i)&63)) != 0 {
		if w.triedUp < 0 {
			w.triedUp = i
		}
		return 0, false
	}
	if m.c == 0 {
		return 0, true
	}
	limit := w.t.capacity(i, w.total)
	for {
		v := b.inFlight.Load()
		if v+1 > limit {
			if excess := v + 1 - limit; w.over < 0 || excess < w.overExcess {
				w.over, w.overExcess = i, excess
			}
			return 0, false
		}
		if !w.acquire {
			return v, true
		}
		if b.inFlight.CompareAndSwap(v, v+1) {
			return v + 1, true
		}
	}
}

// tableSize validates a requested Maglev table size, or picks the default,
// for n members whose weights, divided by their gcd, sum to weight.
func tableSize(requested, n, weight int) (int, error) {
	least := max(100*n, weight)
	if requested == 0 {
		if DefaultTableSize >= least {
			return DefaultTableSize, nil
		}
		return nextPrime(least), nil
	}
	switch {
	case requested > MaxTableSize:
		return 0, fmt.Errorf("balancer: table size %d is above the limit of %d", requested, MaxTableSize)
	case !isPrime(requested):
		return 0, fmt.Errorf("balancer: table size %d is not a prime", requested)
	case requested < 100*n:
		return 0, fmt.Errorf("balancer: table size %d is below 100 x %d backends", requested, n)
	case requested < weight:
		return 0, fmt.Errorf("balancer: table size %d is below the reduced weight sum %d", requested, weight)
	}
	return requested, nil
}

// reducedWeight is the sum of the members' weights divided by their gcd.
func reducedWeight(members []Member) int {
	g, sum := 0, 0
	for _, m := range members {
		g = gcd(g, m.Weight)
		sum += m.Weight
	}
	return sum / g
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	if n%2 == 0 {
		return n == 2
	}
	for d := 3; d*d <= n; d += 2 {
		if n%d == 0 {
			return false
		}
	}
	return true
}

func nextPrime(n int) int {
	for !isPrime(n) {
		n++
	}
	return n
}
