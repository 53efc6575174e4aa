package balancer

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoBackend is the error for a request whose pool has no member that may
// take traffic (Pick returned -1); the proxy maps it to 503. Pools report
// that case as -1, not as this error, to stay allocation- and branch-light.
var ErrNoBackend = errors.New("balancer: no healthy backend")

// Strategy names, as in the config's strategy key; Options.Strategy takes
// them.
const (
	RoundRobin     = "round_robin"
	LeastConn      = "least_conn"
	ConsistentHash = "consistent_hash"
)

// Limits NewPool enforces.
const (
	// MaxWeight is the largest member weight NewPool accepts. Weights are
	// divided by their greatest common divisor first, so only their ratios
	// matter; round robin keeps a schedule as long as the sum of the reduced
	// weights.
	MaxWeight = 1000
	// DefaultTableSize is the Maglev table size used when Options.TableSize
	// is 0 and the pool has at most 655 members.
	DefaultTableSize = 65537
	// MaxTableSize bounds Options.TableSize (2 bytes per slot, 32 MiB).
	MaxTableSize = 1 << 24
	// maxHashMembers is the most members a consistent_hash pool can have:
	// table slots hold uint16 member indices, 0xffff marking a free slot
	// while the table is built.
	maxHashMembers = 1<<16 - 1
)

// Member is one backend of a pool with its weight, from 1 to MaxWeight, and
// its tier. The zero Weight is invalid (NewPool rejects it); config defaults
// it to 1. The Backend may be shared with other pools.
//
// Tier orders members into failover groups: every picker uses only the up
// members of the lowest tier that has an up member, so members of tier 1
// take traffic only while no member of tier 0 is up, and so on (HAProxy's
// backup servers, Envoy's priority levels without overprovisioning). The
// zero Tier is the primary group; negative tiers are an error. Static
// backends are tier 0; DNS discovery maps SRV priorities to tiers.
type Member struct {
	Backend *Backend
	Weight  int
	Tier    int
}

// Options configure a Pool. The zero value is round robin. Options are read
// only by NewPool.
type Options struct {
	// Strategy is RoundRobin (default when ""), LeastConn or ConsistentHash.
	Strategy string
	// TableSize is the Maglev table size (ConsistentHash only; ignored
	// otherwise). It must be a prime of at least 100 x the member count and
	// at least the sum of the members' weights divided by their greatest
	// common divisor, and at most MaxTableSize. 0 means DefaultTableSize
	// (65537), or the smallest prime that meets both bounds when 65537 does
	// not (more than 655 members).
	TableSize int
	// BoundedLoad is c in consistent hashing with bounded loads
	// (ConsistentHash only; ignored otherwise). When above 1, a member whose
	// in-flight count would exceed ceil(c x (pool in-flight + 1) x weight /
	// weight of up members) is passed over for the next distinct member in
	// table order: hot keys spill, cold keys stay put. 0 (default) disables
	// it; values in (0, 1], negative, NaN or infinite are errors. With it
	// on, count requests with Pool.PickAcquire or Pool.Acquire and Release,
	// never with Backend.Acquire/Release directly: the pool's in-flight
	// total would stay 0 and every busy member would look overloaded.
	BoundedLoad float64
	// SlowStart, when above 0, ramps a member's effective weight linearly
	// from about 0 (1/100 of it) to its full weight over this long after
	// its Backend comes up: from down or ejected, or for the first time
	// (a backend that a reload adds). RoundRobin and LeastConn only;
	// ConsistentHash ignores it, so that keys keep their member (use
	// BoundedLoad to limit a cold member's load). 0 (default) turns it off;
	// negative is an error. Backends that come up together (at start) ramp
	// together, so their shares are as without slow start.
	SlowStart time.Duration
	// Logger receives the stack of a panic in the pool's table-rebuild
	// goroutine (a bug; the old table stays in use). nil means
	// slog.Default().
	Logger *slog.Logger
	// AllowEmpty lets NewPool build a pool of no members, whose Pick
	// always returns -1 (a pool whose backends all come from DNS discovery
	// and none is known yet). Default false: no members is an error.
	AllowEmpty bool

	// now replaces the clock in tests (nanoseconds, as Backend.now); nil
	// means monoNow.
	now func() int64
}

// Picker chooses a member index for a key. Implementations must be safe for
// concurrent use and must not allocate or lock. tried is a bitmask of member
// indices (index % 64) already tried for this request; pickers avoid them
// when another member is up. It returns -1 when no member is up.
type Picker interface {
	Pick(key uint64, tried uint64) int
}

// Pool is an immutable set of members with a strategy. Pick, PickAcquire,
// Acquire, Release and Members are safe for concurrent use, lock-free and
// allocation-free.
//
// Round robin and consistent_hash pools, and least_conn pools with slow
// start or with members of more than one tier, watch their backends and
// rebuild their schedule, Maglev table, ramp state or active tier off the
// request path when one of them goes up or down (and, for round robin, in
// steps while slow start ramps a member); until the rebuild lands, Pick walks
// past members that are down, and may keep using the tier of the last build
// (a backup that a returning primary replaces gets picks for that moment).
// Close stops the watching; call it when a reload retires the pool, or the
// backends keep the pool reachable. A least_conn pool of one tier without
// slow start holds no such state, and Close is a no-op for it.
//
// Create pools with NewPool; the zero value is not usable. Do not copy.
type Pool struct {
	members []Member
	picker  Picker
	// hash is the picker of a consistent_hash pool, nil otherwise.
	hash *maglev
	// rr is the picker of a round_robin pool, nil otherwise.
	rr *weightedRoundRobin
	// lc is the picker of a least_conn pool, nil otherwise.
	lc *leastConn
	// ramp is slow start, nil when off (or consistent_hash).
	ramp *ramp
	// watching says that the pool watches its backends and rebuilds.
	watching bool
	now      func() int64
	// bounded says whether Acquire/Release maintain total.
	bounded bool
	log     *slog.Logger

	// Rebuild scheduling (slow path, consistent_hash only).
	mu      sync.Mutex
	dirty   bool // a member changed Up since the running rebuild started
	running bool // a rebuild goroutine is live
	closed  bool
	wg      sync.WaitGroup
	buildMu sync.Mutex // serialises table builds
	builds  atomic.Int64

	// total is the pool's in-flight count under bounded loads; it is written
	// on every request, so it sits on its own cache line.
	_     [64]byte
	total atomic.Int64
	_     [56]byte
}

// NewPool builds a pool over members with opts. Members keep their order;
// Pick returns indices into Members(). It returns an error, naming the
// problem, when members is empty, a backend is nil, a weight is out of
// range, or opts are invalid for the strategy. NewPool keeps members (the
// caller must not modify the slice afterwards).
func NewPool(members []Member, opts Options) (*Pool, error) {
	if len(members) == 0 {
		if opts.AllowEmpty {
			return &Pool{picker: noMember{}, log: slog.Default(), now: monoNow}, nil
		}
		return nil, errors.New("balancer: pool needs at least one backend")
	}
	for i, m := range members {
		if m.Backend == nil {
			return nil, fmt.Errorf("balancer: member %d: nil backend", i)
		}
		if m.Weight < 1 || m.Weight > MaxWeight {
			return nil, fmt.Errorf("balancer: backend %s: weight %d is outside 1..%d", m.Backend.Address(), m.Weight, MaxWeight)
		}
		if m.Tier < 0 {
			return nil, fmt.Errorf("balancer: backend %s: tier %d is negative", m.Backend.Address(), m.Tier)
		}
	}
	if opts.SlowStart < 0 {
		return nil, fmt.Errorf("balancer: slow start %v is negative", opts.SlowStart)
	}
	p := &Pool{members: members, log: opts.Logger, now: opts.now}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.now == nil {
		p.now = monoNow
	}
	if opts.SlowStart > 0 && opts.Strategy != ConsistentHash {
		p.ramp = &ramp{span: int64(opts.SlowStart), now: p.now}
	}
	switch opts.Strategy {
	case "", RoundRobin:
		p.rr = newWeightedRoundRobin(members, p.ramp, p)
		p.picker = p.rr
	case LeastConn:
		p.lc = newLeastConn(members, p.ramp)
		p.picker = p.lc
	case ConsistentHash:
		c := opts.BoundedLoad
		if c != 0 && (math.IsNaN(c) || math.IsInf(c, 0) || c <= 1) {
			return nil, fmt.Errorf("balancer: bounded load %v is not above 1", c)
		}
		if len(members) > maxHashMembers {
			return nil, fmt.Errorf("balancer: %d backends exceed the consistent_hash limit of %d", len(members), maxHashMembers)
		}
		size, err := tableSize(opts.TableSize, len(members), reducedWeight(members))
		if err != nil {
			return nil, err
		}
		p.bounded = c != 0
		p.hash = newMaglev(members, size, c, &p.total)
		p.picker = p.hash
	default:
		return nil, fmt.Errorf("balancer: unknown strategy %q", opts.Strategy)
	}
	// A tiered least_conn pool watches too: its rebuild publishes the
	// active tier for power of two choices.
	if p.hash != nil || p.rr != nil || p.ramp != nil || (p.lc != nil && p.lc.tiered) {
		// Watch first, then build: a change that lands in between
		// schedules a rebuild that waits on buildMu and reads the new state.
		p.watching = true
		for _, m := range members {
			m.Backend.watch(p)
		}
		p.rebuild()
	}
	return p, nil
}

// lowestUpTier is the lowest Tier among the members that are up, or -1 when
// none is up. It reads each member's state once and does not allocate.
func lowestUpTier(members []Member) int {
	low := -1
	for i := range members {
		if t := members[i].Tier; (low < 0 || t < low) && members[i].Backend.Up() {
			low = t
		}
	}
	return low
}

// noMember is the picker of a pool without members.
type noMember struct{}

func (noMember) Pick(uint64, uint64) int { return -1 }

// Members returns the pool's members in configured order. The caller must not
// modify the slice.
func (p *Pool) Members() []Member { return p.members }

// Pick returns the index of the member to use for key, avoiding the members
// in tried (a bitmask of index % 64), or -1 when none is up. Members in
// tried are returned only when no other member is up. Pick does not count
// the request: follow it with Acquire, or use PickAcquire.
func (p *Pool) Pick(key uint64, tried uint64) int { return p.picker.Pick(key, tried) }

// PickAcquire is Pick followed by Acquire of the chosen member, or -1 (and
// nothing acquired) when no member is up. Under bounded loads the capacity
// test and the increment are one compare-and-swap, so concurrent requests
// cannot push a member past its bound as Pick-then-Acquire can. Pair a
// result >= 0 with Release.
func (p *Pool) PickAcquire(key uint64, tried uint64) int {
	if p.bounded {
		i, _, _ := p.hash.pickAcquire(key, tried)
		return i
	}
	i := p.picker.Pick(key, tried)
	if i >= 0 {
		p.members[i].Backend.Acquire()
	}
	return i
}

// Acquire counts one in-flight request on member i (an index from Pick) in
// the backend's InFlight and, under bounded loads, in the pool's total. Pair
// it with Release(i). i must be a valid index.
func (p *Pool) Acquire(i int) {
	// Total first, member second; Release undoes them in the opposite
	// order, so the total always covers the members' counts (maglev.pickAcquire).
	if p.bounded {
		p.total.Add(1)
	}
	p.members[i].Backend.Acquire()
}

// Release counts one in-flight request on member i as done: once per Acquire
// or successful PickAcquire of the same pool, never more.
func (p *Pool) Release(i int) {
	p.members[i].Backend.Release()
	if p.bounded {
		p.total.Add(-1)
	}
}

// InFlight is the pool's in-flight total under bounded loads (requests
// counted through this pool's Acquire and PickAcquire), else the sum of its
// members' InFlight.
func (p *Pool) InFlight() int64 {
	if p.bounded {
		return p.total.Load()
	}
	var n int64
	for _, m := range p.members {
		n += m.Backend.InFlight()
	}
	return n
}

// Close stops the pool from watching its backends' state and waits for a
// table rebuild in progress to finish. The pool stays usable: Pick keeps
// using the last table. Close is idempotent and safe to call concurrently.
func (p *Pool) Close() {
	if !p.watching {
		return
	}
	for _, m := range p.members {
		m.Backend.unwatch(p)
	}
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.wg.Wait()
}

// stateChanged runs in the goroutine that changed a member's Up state, or in
// the round-robin Pick that found a slow-start step due. It marks the table
// stale and starts a rebuild goroutine unless one is live;
// that goroutine loops until no change arrived during its last build, so a
// burst of transitions costs one or two builds.
func (p *Pool) stateChanged() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || !p.watching {
		return
	}
	p.dirty = true
	if p.running {
		return
	}
	p.running = true
	p.wg.Add(1)
	go p.rebuildLoop()
}

func (p *Pool) rebuildLoop() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		if p.closed || !p.dirty {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.dirty = false
		p.mu.Unlock()
		p.safeRebuild()
	}
}

func (p *Pool) safeRebuild() {
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("balancer: rebuild pool schedule", "err", r, "stack", string(debug.Stack()))
		}
	}()
	p.rebuild()
}

// rebuild builds a table, schedule and ramp state from the members' current
// Up state and publishes them.
func (p *Pool) rebuild() {
	p.buildMu.Lock()
	defer p.buildMu.Unlock()
	now := p.now()
	if p.ramp != nil {
		p.ramp.update(p.members, now)
	}
	switch {
	case p.hash != nil:
		p.hash.table.Store(p.hash.build())
	case p.rr != nil:
		p.rr.sched.Store(p.rr.build(now))
	case p.lc != nil:
		p.lc.active.Store(int64(max(lowestUpTier(p.members), 0)))
	}
	p.builds.Add(1)
}

// settled reports whether no rebuild is pending or running, so the table
// reflects every Up change made before the call. Tests poll it.
func (p *Pool) settled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.running && !p.dirty
}
