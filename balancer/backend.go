package balancer

import (
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// Backend is one backend address and its live state. Its identity (Address,
// ID) is fixed; its state is atomic and safe to read and write from any
// goroutine. Backends are created once per pool and address and kept across
// config reloads, so health state and counters survive a reload.
//
// A new Backend is down (not healthy) until SetHealthy(true).
type Backend struct {
	address string
	id      uint64

	healthy  atomic.Bool
	ejected  atomic.Bool
	inFlight atomic.Int64

	// watchers are the pools to tell when Up changes; guarded by mu. This is
	// the slow path: it runs on health transitions, never per request.
	mu       sync.Mutex
	watchers map[*Pool]struct{}
}

// NewBackend returns a Backend for address (host:port), down until marked
// healthy.
func NewBackend(address string) *Backend {
	return &Backend{address: address, id: xxhash.Sum64String(address)}
}

// Address is the backend's host:port as configured.
func (b *Backend) Address() string { return b.address }

// ID is a stable 64-bit identifier derived from the address alone, the same
// in every process, used for hash seeds and opaque affinity tokens.
func (b *Backend) ID() uint64 { return b.id }

// Up reports whether the backend may take new traffic: healthy and not
// ejected.
func (b *Backend) Up() bool { return b.healthy.Load() && !b.ejected.Load() }

// Healthy reports the active health state alone.
func (b *Backend) Healthy() bool { return b.healthy.Load() }

// Ejected reports whether passive ejection currently holds the backend out.
func (b *Backend) Ejected() bool { return b.ejected.Load() }

// SetHealthy records the active health state (it satisfies
// health.StatusSetter). Pools containing the backend see the change on their
// next Pick.
func (b *Backend) SetHealthy(healthy bool) {
	if b.healthy.Swap(healthy) != healthy {
		b.notify()
	}
}

// SetEjected records passive ejection. Pools see it on their next Pick.
func (b *Backend) SetEjected(ejected bool) {
	if b.ejected.Swap(ejected) != ejected {
		b.notify()
	}
}

// Acquire counts one more in-flight request or connection. Pair each with
// Release.
func (b *Backend) Acquire() { b.inFlight.Add(1) }

// Release counts one in-flight request or connection as done.
func (b *Backend) Release() { b.inFlight.Add(-1) }

// InFlight is the number of in-flight requests (L7) or open connections (L4).
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

func (b *Backend) notify() {
	b.mu.Lock()
	pools := make([]*Pool, 0, len(b.watchers))
	for p := range b.watchers {
		pools = append(pools, p)
	}
	b.mu.Unlock()
	for _, p := range pools {
		p.stateChanged()
	}
}
