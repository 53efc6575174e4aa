package proxy

import (
	"errors"
	"fmt"

	"frontdoor/balancer"
	"frontdoor/metrics"
)

// BackendChange is the answer to an admin write (metrics.BackendController):
// the backend as /status shows it before and after the command.
type BackendChange struct {
	Pool    string `json:"pool"`
	Address string `json:"address"`
	// Command is what was asked: "state drain", "weight 3", "uneject".
	Command string `json:"command"`
	// Changed is false when the backend already was as asked (a second
	// drain, an uneject of a backend that was not ejected).
	Changed bool          `json:"changed"`
	Before  BackendStatus `json:"before"`
	After   BackendStatus `json:"after"`
}

var _ metrics.BackendController = (*Proxy)(nil)

// ControlBackend implements metrics.BackendController, the admin write
// endpoints, on the running config:
//
//   - OpState "drain" or "maint" takes the backend out of every pick at once
//     (requests and connections in flight finish; health checks go on);
//     "ready" puts it back under its health and ejection state.
//   - OpWeight sets a runtime weight from 0 to balancer.MaxWeight. A weight
//     above 0 rebuilds the runtime from the running config (as a reload of
//     an unchanged file does: requests in flight finish on the old one). A
//     weight of 0 holds the backend out like drain, without a rebuild, until
//     a weight above 0 is set; "ready" does not undo it.
//   - OpUneject ends a passive ejection now.
//
// The state lives in the balancer.Backend, so it survives reloads that keep
// the backend (same pool and address) and goes with a removed backend. A
// runtime weight lasts until a reload changes that backend's weight in the
// file (balancer.Backend.DropStaleWeight). Unknown pools and backends wrap
// metrics.ErrUnknownBackend, out-of-range values metrics.ErrBadCommand.
// Safe for concurrent use; it serialises with Apply.
func (p *Proxy) ControlBackend(pool, address string, c metrics.BackendCommand) (any, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("proxy: shutting down")
	}
	g := p.gen.Load()
	var pr *poolRuntime
	if g != nil {
		pr = g.pools[pool]
	}
	if pr == nil {
		return nil, fmt.Errorf("no pool %q: %w", pool, metrics.ErrUnknownBackend)
	}
	i := -1
	for j, u := range pr.ups {
		if u.be.Address() == address {
			i = j
			break
		}
	}
	if i < 0 {
		return nil, fmt.Errorf("pool %s has no backend %q: %w", pool, address, metrics.ErrUnknownBackend)
	}
	be := pr.ups[i].be
	ch := BackendChange{Pool: pool, Address: address, Before: memberStatus(pr, i, nil)}
	switch c.Op {
	case metrics.OpState:
		s, err := balancer.ParseAdminState(c.State)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", err, metrics.ErrBadCommand)
		}
		ch.Command = "state " + s.String()
		be.SetAdminState(s)
	case metrics.OpWeight:
		if c.Weight < 0 || c.Weight > balancer.MaxWeight {
			return nil, fmt.Errorf("weight %d is outside 0..%d: %w", c.Weight, balancer.MaxWeight, metrics.ErrBadCommand)
		}
		ch.Command = fmt.Sprintf("weight %d", c.Weight)
		configured := pr.cfg.Backends[i].Weight
		prev, _ := be.Weight(configured)
		be.SetWeight(c.Weight, configured)
		if c.Weight > 0 && c.Weight != prev {
			if err := p.apply(g.cfg); err != nil {
				be.SetWeight(prev, configured)
				return nil, fmt.Errorf("pool %s backend %s: apply weight %d: %w", pool, address, c.Weight, err)
			}
			g = p.gen.Load()
			pr = g.pools[pool]
		}
	case metrics.OpUneject:
		ch.Command = "uneject"
		pr.ejector.Uneject(i)
	default:
		return nil, fmt.Errorf("unknown command %q: %w", c.Op, metrics.ErrBadCommand)
	}
	ch.After = memberStatus(pr, i, nil)
	ch.Changed = ch.Before.AdminState != ch.After.AdminState || ch.Before.Weight != ch.After.Weight ||
		ch.Before.Ejected != ch.After.Ejected
	p.opts.Logger.Info("backend changed by admin", "pool", pool, "backend", address, "command", ch.Command,
		"changed", ch.Changed, "admin_state", ch.After.AdminState, "weight", ch.After.Weight,
		"serving", ch.After.Serving, "in_flight", ch.After.InFlight)
	return ch, nil
}

// EachBackendAdmin reports what an operator set per backend
// (metrics.BackendAdminSource).
func (g *generation) EachBackendAdmin(fn func(pool, backend, state string, weight int)) {
	for _, name := range g.names {
		pr := g.pools[name]
		for i, u := range pr.ups {
			w, _ := u.be.Weight(pr.cfg.Backends[i].Weight)
			fn(name, u.be.Address(), u.be.AdminState().String(), w)
		}
	}
}

// memberWeight is the weight a pool is built with for be, configured in the
// file: the runtime override when one applies. A runtime weight of 0 keeps
// configured (the backend is held out by its state, and pools take 1 and
// up).
func memberWeight(be *balancer.Backend, configured int) int {
	if w, _ := be.Weight(configured); w > 0 {
		return w
	}
	return configured
}

// dropStaleWeights drops the runtime weights that gen's config replaced by
// editing the backend's weight, once gen is in force.
func dropStaleWeights(gen *generation) {
	for _, pr := range gen.pools {
		for i, u := range pr.ups {
			u.be.DropStaleWeight(pr.cfg.Backends[i].Weight)
		}
	}
}
