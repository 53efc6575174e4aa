package proxy

import (
	"sort"
	"time"
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
	Backends []BackendStatus `json:"backends"`
}

// BackendStatus is one backend in /status.
type BackendStatus struct {
	Address  string `json:"address"`
	Weight   int    `json:"weight"`
	State    string `json:"state"` // "up", "down" or "ejected"
	InFlight int64  `json:"in_flight"`
	// Ejected is true while passive ejection holds the backend out (its
	// active check may pass or fail meanwhile); EjectedUntil is when that
	// ends, omitted when not ejected.
	Ejected      bool      `json:"ejected"`
	EjectedUntil time.Time `json:"ejected_until,omitzero"`
	LastResult   string    `json:"last_check_result,omitempty"`
	LastError    string    `json:"last_check_error,omitempty"`
	LastCheck    time.Time `json:"last_check,omitzero"`
	LastChange   time.Time `json:"last_change,omitzero"`
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
		for i, u := range pr.ups {
			bs := BackendStatus{
				Address:  u.be.Address(),
				Weight:   pr.cfg.Backends[i].Weight,
				State:    "down",
				InFlight: u.be.InFlight(),
			}
			if until, ok := pr.ejector.EjectedUntil(i); ok {
				bs.Ejected, bs.EjectedUntil = true, until
			}
			switch {
			case u.be.Ejected():
				bs.State = "ejected"
			case u.be.Up():
				bs.State = "up"
			}
			if i < len(checks) {
				c := checks[i]
				bs.LastResult, bs.LastError, bs.LastCheck, bs.LastChange = c.LastResult, c.LastError, c.LastCheck, c.LastChange
			}
			ps.Backends = append(ps.Backends, bs)
		}
		st.Pools = append(st.Pools, ps)
	}
	return st
}
