package balancer

import "fmt"

// AdminState is what an operator set for a backend at runtime, independent
// of its health: AdminReady (the zero value), AdminDrain or AdminMaint. It
// lives in the Backend, so it survives a config reload for as long as the
// reload keeps the Backend.
type AdminState uint8

// Admin states, as HAProxy's runtime API names them (set server ... state).
const (
	// AdminReady takes traffic when healthy and not ejected: the default.
	AdminReady AdminState = iota
	// AdminDrain takes no new request or connection (affinity included);
	// those in flight finish. Health checks go on.
	AdminDrain
	// AdminMaint is out of rotation like AdminDrain, for maintenance rather
	// than a planned exit; health checks go on, so /status shows whether the
	// backend would be up once set ready.
	AdminMaint
)

var adminStateNames = [...]string{AdminReady: "ready", AdminDrain: "drain", AdminMaint: "maint"}

// String returns "ready", "drain" or "maint".
func (s AdminState) String() string {
	if int(s) < len(adminStateNames) {
		return adminStateNames[s]
	}
	return fmt.Sprintf("AdminState(%d)", uint8(s))
}

// ParseAdminState parses "ready", "drain" or "maint".
func ParseAdminState(s string) (AdminState, error) {
	for i, n := range adminStateNames {
		if n == s {
			return AdminState(i), nil
		}
	}
	return 0, fmt.Errorf("balancer: unknown admin state %q; want ready, drain or maint", s)
}

// AdminState returns the state last set with SetAdminState (AdminReady when
// never set). One atomic load; safe for concurrent use.
func (b *Backend) AdminState() AdminState {
	st := b.state.Load()
	switch {
	case st&stateMaint != 0:
		return AdminMaint
	case st&stateDrain != 0:
		return AdminDrain
	}
	return AdminReady
}

// SetAdminState sets the operator's state. AdminDrain and AdminMaint make Up
// false at once (pickers see it on their next Pick, consistent_hash pools
// rebuild their table as on a health change); requests already counted in
// InFlight are not affected. AdminReady puts the backend back under its
// health and ejection state. Safe for concurrent use; it panics on a value
// outside the three states (a programmer error).
func (b *Backend) SetAdminState(s AdminState) {
	var bit uint32
	switch s {
	case AdminReady:
	case AdminDrain:
		bit = stateDrain
	case AdminMaint:
		bit = stateMaint
	default:
		panic("balancer: SetAdminState: invalid state " + s.String())
	}
	if b.swapBits(stateDrain|stateMaint, bit) {
		b.notify()
	}
}

// swapBits clears the bits of clear, then sets those of set, in one atomic
// step, and reports whether Up changed (the caller then calls notify,
// without b.mu held).
func (b *Backend) swapBits(clear, set uint32) (upChanged bool) {
	for {
		old := b.state.Load()
		now := old&^clear | set
		if old == now {
			return false
		}
		if b.state.CompareAndSwap(old, now) {
			return (old == stateHealthy) != (now == stateHealthy)
		}
	}
}

// weightOverride is a runtime weight and the configured weight it replaced.
type weightOverride struct {
	set        bool
	weight     int
	configured int
}

// SetWeight overrides the backend's configured weight (configured, the
// pool's weight for it in the running config) with w, from 0 to MaxWeight.
// Pools read it when they are built (Weight), so the caller rebuilds the
// pool to apply it. A weight of 0 makes Up false at once, like AdminDrain,
// until a weight above 0 is set or the override is dropped; AdminReady does
// not undo it (HAProxy's weight 0 works the same). The override is tied to
// configured: Weight and DropStaleWeight drop it once the config's weight
// changes. It panics when w is out of range (the caller validates).
// Safe for concurrent use.
func (b *Backend) SetWeight(w, configured int) {
	if w < 0 || w > MaxWeight {
		panic(fmt.Sprintf("balancer: SetWeight: weight %d is outside 0..%d", w, MaxWeight))
	}
	clear, set := uint32(stateNoWeight), uint32(0)
	if w == 0 {
		clear, set = 0, stateNoWeight
	}
	// The bit changes under mu so that it always matches the override.
	b.mu.Lock()
	b.weight = weightOverride{set: true, weight: w, configured: configured}
	changed := b.swapBits(clear, set)
	b.mu.Unlock()
	if changed {
		b.notify()
	}
}

// Weight returns the backend's effective weight given configured, the
// config's weight for it: the override set with SetWeight against the same
// configured weight (overridden true), else configured. It does not change
// the override. Safe for concurrent use; not for the hot path (it locks).
func (b *Backend) Weight(configured int) (w int, overridden bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if o := b.weight; o.set && o.configured == configured {
		return o.weight, true
	}
	return configured, false
}

// DropStaleWeight drops an override set against a configured weight other
// than configured, and with it the hold of a weight of 0. A reload calls it
// once the new config is in force: a weight edited in the file wins over
// the runtime value, as a fresh server line does in HAProxy. Safe for
// concurrent use.
func (b *Backend) DropStaleWeight(configured int) {
	b.mu.Lock()
	changed := false
	if o := b.weight; o.set && o.configured != configured {
		b.weight = weightOverride{}
		changed = b.swapBits(stateNoWeight, 0)
	}
	b.mu.Unlock()
	if changed {
		b.notify()
	}
}
