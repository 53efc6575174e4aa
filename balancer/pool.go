package balancer

import (
	"errors"
	"fmt"
)

// ErrNoBackend is returned when a pool has no member that may take traffic.
var ErrNoBackend = errors.New("balancer: no healthy backend")

// Strategy names, as in the config's strategy key.
const (
	RoundRobin     = "round_robin"
	LeastConn      = "least_conn"
	ConsistentHash = "consistent_hash"
)

// Member is one backend of a pool with its weight (at least 1).
type Member struct {
	Backend *Backend
	Weight  int
}

// Options configure a Pool. The zero value is round robin.
type Options struct {
	// Strategy is RoundRobin (default when ""), LeastConn or ConsistentHash.
	Strategy string
	// TableSize is the Maglev table size (ConsistentHash); default 65537.
	TableSize int
	// BoundedLoad > 1 enables bounded loads for ConsistentHash.
	BoundedLoad float64
}

// Picker chooses a member index for a key. It must not allocate or lock.
// tried is a bitmask of member indices (index % 64) already tried for this
// request; pickers avoid them when another member is up. It returns -1 when
// no member is up.
type Picker interface {
	Pick(key uint64, tried uint64) int
}

// Pool is an immutable set of members with a strategy. Pick is safe for
// concurrent use and allocation-free. Close detaches the pool from its
// backends' state notifications; call it when a reload retires the pool.
type Pool struct {
	members []Member
	picker  Picker
	// onChange is called after a member's up/down state changed, so that
	// strategies with precomputed tables can rebuild them.
	onChange func()
}

// NewPool builds a pool over members with opts. Members keep their order;
// Pick returns indices into Members().
func NewPool(members []Member, opts Options) (*Pool, error) {
	if len(members) == 0 {
		return nil, errors.New("balancer: pool needs at least one backend")
	}
	for _, m := range members {
		if m.Weight < 1 {
			return nil, fmt.Errorf("balancer: backend %s: weight %d is below 1", m.Backend.Address(), m.Weight)
		}
	}
	p := &Pool{members: members}
	switch opts.Strategy {
	case "", RoundRobin:
		p.picker = newWeightedRoundRobin(members)
	default:
		return nil, fmt.Errorf("balancer: unknown strategy %q", opts.Strategy)
	}
	for _, m := range members {
		m.Backend.watch(p)
	}
	return p, nil
}

// Members returns the pool's members in configured order. The caller must not
// modify the slice.
func (p *Pool) Members() []Member { return p.members }

// Pick returns the index of the member to use for key, avoiding the members
// in tried (a bitmask of index % 64), or -1 when none is up.
func (p *Pool) Pick(key uint64, tried uint64) int { return p.picker.Pick(key, tried) }

// Close stops the pool from watching its backends' state.
func (p *Pool) Close() {
	for _, m := range p.members {
		m.Backend.unwatch(p)
	}
}

func (p *Pool) stateChanged() {
	if p.onChange != nil {
		p.onChange()
	}
}
