package balancer

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
)

// State bits of Backend.state. Up is exactly stateHealthy: healthy, not
// ejected and not held out by an operator (admin.go), read with one atomic
// load.
const (
	stateHealthy uint32 = 1 << iota
	stateEjected
	stateDrain    // AdminDrain
	stateMaint    // AdminMaint
	stateNoWeight // a runtime weight of 0
)

// Seeds of the two Maglev hashes of a backend's address (offset and skip).
// They are part of the on-the-wire contract between frontdoor processes:
// changing them remaps every consistent_hash key.
const (
	maglevOffsetSeed = 0x6d61676c65762d6f // "maglev-o"
	maglevSkipSeed   = 0x6d61676c65762d73 // "maglev-s"
)

// Backend is one backend address and its live state. Its identity (Address,
// ID and the hash seeds derived from the address) is fixed at NewBackend; its
// state (healthy, ejected, the operator's drain or maint, in-flight count) is
// atomic.
//
// All methods are safe for concurrent use. Backends are created once per
// address and kept across config reloads, so health state and counters
// survive a reload; a Backend may belong to several pools at once (an old and
// a new generation during a reload).
//
// The zero value is not usable: create Backends with NewBackend and do not
// copy them.
type Backend struct {
	address string
	id      uint64
	// offset and skip seed the backend's Maglev permutation. They come from
	// the address alone, so every process builds the same table.
	offset uint64
	skip   uint64

	// state holds stateHealthy and stateEjected. It is read on every pick.
	state atomic.Uint32
	// upSince is when Up last turned true, in nanoseconds of now; slow
	// start ramps the backend's weight from then. Written on transitions
	// only, read by pools while a ramp runs.
	upSince atomic.Int64
	// now is the clock upSince is read from: monoNow outside tests.
	now func() int64

	// inFlight is written on every request; the padding keeps those writes
	// from invalidating the cache line that pickers read state from.
	_        [64]byte
	inFlight atomic.Int64
	_        [56]byte

	// watchers are the pools to tell when Up changes; guarded by mu. This is
	// the slow path: it runs on health transitions, never per request.
	mu       sync.Mutex
	watchers map[*Pool]struct{}
	// weight is the runtime weight override (admin.go); guarded by mu.
	weight weightOverride
}

// NewBackend returns a Backend for address (host:port), down until
// SetHealthy(true). The address is taken as given: two spellings of one
// host (a name and its IP) are two backends with different hashes.
func NewBackend(address string) *Backend {
	return &Backend{
		address: address,
		id:      xxhash.Sum64String(address),
		offset:  seededHash(maglevOffsetSeed, address),
		skip:    seededHash(maglevSkipSeed, address),
		now:     monoNow,
	}
}

// epoch is the origin of monoNow; it is set once, at package init.
var epoch = time.Now()

// monoNow is the package's clock: nanoseconds on the monotonic clock since
// the package was initialised.
func monoNow() int64 { return int64(time.Since(epoch)) }

func seededHash(seed uint64, s string) uint64 {
	d := xxhash.NewWithSeed(seed)
	_, _ = d.WriteString(s)
	return d.Sum64()
}

// Address is the backend's host:port as configured.
func (b *Backend) Address() string { return b.address }

// ID is a stable 64-bit identifier derived from the address alone (xxhash),
// the same in every process, used for hash seeds and opaque affinity tokens.
func (b *Backend) ID() uint64 { return b.id }

// Up reports whether the backend may take new traffic: healthy, not
// ejected, in AdminReady and without a runtime weight of 0. It is one atomic
// load.
func (b *Backend) Up() bool { return b.state.Load() == stateHealthy }

// Healthy reports the active health state alone.
func (b *Backend) Healthy() bool { return b.state.Load()&stateHealthy != 0 }

// Ejected reports whether passive ejection currently holds the backend out.
func (b *Backend) Ejected() bool { return b.state.Load()&stateEjected != 0 }

// SetHealthy records the active health state (it satisfies
// health.StatusSetter). Pools see the change on their next Pick. When Up
// changes, the pools containing the backend are told to rebuild their
// schedule or table (round_robin, consistent_hash, and least_conn with slow
// start); the rebuild runs on a pool goroutine, not on the caller's. When Up
// turns true, the backend records the time: slow start ramps it from then.
func (b *Backend) SetHealthy(healthy bool) { b.set(stateHealthy, healthy) }

// SetEjected records passive ejection; an ejected backend is not Up whatever
// its health. Pools see it on their next Pick, as with SetHealthy. It is
// cheap enough to call from a request goroutine.
func (b *Backend) SetEjected(ejected bool) { b.set(stateEjected, ejected) }

func (b *Backend) set(bit uint32, on bool) {
	var old uint32
	if on {
		old = b.state.Or(bit)
	} else {
		old = b.state.And(^bit)
	}
	now := old &^ bit
	if on {
		now |= bit
	}
	if (old == stateHealthy) != (now == stateHealthy) {
		if now == stateHealthy {
			// A pool may read the state before upSince is stored and
			// give the backend its full weight for that moment; the
			// rebuild that notify triggers reads the new value.
			b.upSince.Store(b.now())
		}
		b.notify()
	}
}

// Acquire counts one more in-flight request or connection. Pair each with
// Release. Code that picked the backend from a Pool should call Pool.Acquire
// instead, which also feeds the pool's bounded-load accounting.
func (b *Backend) Acquire() { b.inFlight.Add(1) }

// Release counts one in-flight request or connection as done. Call it once
// per Acquire, never more.
func (b *Backend) Release() { b.inFlight.Add(-1) }

// InFlight is the number of in-flight requests (L7) or open connections (L4)
// over every pool the backend belongs to.
func (b *Backend) InFlight() int64 { return b.inFlight.Load() }

func (b *Backend) watch(p *Pool) {
	b.mu.Lock()
	if b.watchers == nil {
		b.watchers = make(map[*Pool]struct{})
	}
	b.watchers[p] = struct{}{}
	b.mu.Unlock()
}

func (b *Backend) unwatch(p *Pool) {
	b.mu.Lock()
	delete(b.watchers, p)
	b.mu.Unlock()
}

// notify tells every watching pool that Up changed. It copies the watcher set
// so that pools are called without b.mu held.
func (b *Backend) notify() {
	b.mu.Lock()
	if len(b.watchers) == 0 {
		b.mu.Unlock()
		return
	}
	pools := make([]*Pool, 0, len(b.watchers))
	for p := range b.watchers {
		pools = append(pools, p)
	}
	b.mu.Unlock()
	for _, p := range pools {
		p.stateChanged()
	}
}
