package proxy

import (
	"sort"
	"time"

	"frontdoor/health"
)

// ConfigStatus describes the config file and the last reload, as the
// daemon's reload loop knows it.
type ConfigStatus struct {
	File                 string    `json:"file"`
	LastReloadSuccessful bool      `json:"last_reload_successful"`
	LastSuccess          time.Time `json:"last_success"`
	LastAttempt          time.Time `json:"last_attempt,omitzero"`
	LastErrors           []string  `json:"last_errors,omitempty"`
}

// Status is the JSON document served at /status.
type Status struct {
	Config    ConfigStatus     `json:"config"`
	Listeners []ListenerStatus `json:"listeners"`
	Pools     []PoolStatus     `json:"pools"`
}

// ListenerStatus is one listener in /status.
type ListenerStatus struct {
	Name string `json:"name"`
	Bind string `json:"bind"`
	Mode string `json:"mode"`
	Addr string `json:"addr"`
}

// PoolStatus is one pool in /status.
type PoolStatus struct {
	Name     string          `json:"name"`
	Strategy string          `json:"strategy"`
	Check    string          `json:"check"`
	Counts   PoolCounts      `json:"counts"`
	Backends []BackendStatus `json:"backends"`
}

// PoolCounts counts a pool's backends in /status. Up, Down and Ejected
// partition them by health (BackendStatus.State); Ready, Drain and Maint by
// what an operator set (BackendStatus.AdminState).
type PoolCounts struct {
	Backends int `json:"backends"`
	// Serving take new requests now (BackendStatus.Serving).
	Serving int `json:"serving"`
	Up      int `json:"up"`
	Down    int `json:"down"`
	Ejected int `json:"ejected"`
	Ready   int `json:"ready"`
	Drain   int `json:"drain"`
	Maint   int `json:"maint"`
}

// BackendStatus is one backend in /status.
type BackendStatus struct {
	Address string `json:"address"`
	// Source is where the backend comes from: "static" (the pool's
	// backends list) or "dns" (its discovery).
	Source string `json:"source"`
	// Tier is the failover group: 0 (primary) for static backends, the
	// rank of the SRV priority for discovered ones. A backend of tier n
	// takes traffic only while no backend of a lower tier is serving.
	Tier int `json:"tier"`
	// Weight is the effective weight: a runtime override (frontdoor ctl
	// weight) or else ConfiguredWeight; 0 holds the backend out.
	Weight           int `json:"weight"`
	ConfiguredWeight int `json:"configured_weight"`
	// State is the health: "up", "down" or "ejected", whatever the
	// operator set.
	State string `json:"state"`
	// AdminState is what the operator set: "ready" (default), "drain" or
	// "maint".
	AdminState string `json:"admin_state"`
	// Serving is true when the backend takes new requests: up, ready and
	// a weight above 0.
	Serving  bool  `json:"serving"`
	InFlight int64 `json:"in_flight"`
	// Ejected is true while passive ejection holds the backend out (its
	// active check may pass or fail meanwhile); EjectedUntil is when that
	// ends, omitted when not ejected.
	Ejected      bool      `json:"ejected"`
	EjectedUntil time.Time `json:"ejected_until,omitzero"`
	LastResult   string    `json:"last_check_result,omitempty"`
	LastError    string    `json:"last_check_error,omitempty"`
	LastCheck    time.Time `json:"last_check,omitzero"`
	LastChange   time.Time `json:"last_change,omitzero"`
	// CheckHistory is the results of the last active checks (up to 20),
	// oldest first: '+' passed, '-' failed.
	CheckHistory string `json:"check_history,omitempty"`
	// Requests counts the requests and gRPC calls whose final attempt
	// went to this backend, on every route to the pool, and
	// LatencySum their durations in seconds (request_duration_seconds'
	// count and sum, as long as the routes exist): a reader's rates and
	// mean latency come from two samples.
	Requests   uint64  `json:"requests"`
	LatencySum float64 `json:"latency_seconds_sum"`
}

// Status returns the live state of listeners, pools and backends, with cs
// describing the config file.
func (p *Proxy) Status(cs ConfigStatus) Status {
	st := Status{Config: cs}
	p.mu.Lock()
	for _, l := range p.http {
		st.Listeners = append(st.Listeners, ListenerStatus{Name: l.name, Bind: l.bind, Mode: "http", Addr: l.ln.Addr().String()})
	}
	for _, l := range p.tcp {
		st.Listeners = append(st.Listeners, ListenerStatus{Name: l.name, Bind: l.bind, Mode: "tcp", Addr: l.ln.Addr().String()})
	}
	p.mu.Unlock()
	sort.Slice(st.Listeners, func(i, j int) bool { return st.Listeners[i].Name < st.Listeners[j].Name })
	g := p.gen.Load()
	if g == nil {
		return st
	}
	for _, name := range g.names {
		pr := g.pools[name]
		ps := PoolStatus{Name: name, Strategy: pr.cfg.Strategy, Check: pr.cfg.Health.Check}
		checks := pr.checker.Status()
		for i := range pr.ups {
			bs := memberStatus(pr, i, checks)
			ps.Counts.add(&bs)
			ps.Backends = append(ps.Backends, bs)
		}
		st.Pools = append(st.Pools, ps)
	}
	return st
}

// memberStatus describes member i of pr; checks is pr.checker.Status().
func memberStatus(pr *poolRuntime, i int, checks []health.TargetStatus) BackendStatus {
	be := pr.ups[i].be
	configured := pr.cfg.Backends[i].Weight
	weight, _ := be.Weight(configured)
	bs := BackendStatus{
		Address:          be.Address(),
		Source:           "static",
		Tier:             pr.cfg.Backends[i].Tier,
		Weight:           weight,
		ConfiguredWeight: configured,
		State:            "down",
		AdminState:       be.AdminState().String(),
		Serving:          be.Up(),
		InFlight:         be.InFlight(),
	}
	if i >= pr.static {
		bs.Source = "dns"
	}
	if until, ok := pr.ejector.EjectedUntil(i); ok {
		bs.Ejected, bs.EjectedUntil = true, until
	}
	switch {
	case be.Ejected():
		bs.State = "ejected"
	case be.Healthy():
		bs.State = "up"
	}
	if i < len(checks) {
		c := checks[i]
		bs.LastResult, bs.LastError, bs.LastCheck, bs.LastChange = c.LastResult, c.LastError, c.LastCheck, c.LastChange
		bs.CheckHistory = c.History
	}
	for _, s := range pr.stats {
		if i < len(s.durations) {
			n, sum := s.durations[i].CountSum()
			bs.Requests += n
			bs.LatencySum += sum
		}
	}
	return bs
}

func (c *PoolCounts) add(bs *BackendStatus) {
	c.Backends++
	if bs.Serving {
		c.Serving++
	}
	switch bs.State {
	case "up":
		c.Up++
	case "ejected":
		c.Ejected++
	default:
		c.Down++
	}
	switch bs.AdminState {
	case "drain":
		c.Drain++
	case "maint":
		c.Maint++
	default:
		c.Ready++
	}
}
