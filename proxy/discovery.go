package proxy

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"frontdoor/balancer"
	"frontdoor/config"
)

// DNS discovery (pool.NAME.discovery). Each discovering pool has a resolver
// goroutine that asks its DNS name again when the records expire (their
// TTL, bounded by min_ttl and max_ttl). When the answer changes the set of
// backends, it stores the set in Proxy.discovered and re-applies the
// running config under Proxy.mu, as ControlBackend does for a weight: the
// pools are rebuilt with the static backends first and the discovered ones
// after, Backend objects are kept by pool and address (health state, in
// flight counts), a new backend takes traffic once its first check passes
// and a removed one drains. Nothing of this runs per request.

// resolver is one discovering pool's goroutine, as Proxy.resolvers holds
// it.
type resolver struct {
	cfg    config.Discovery
	cancel context.CancelFunc
}

// withDiscovered returns cfg with every discovering pool's discovered
// backends appended to its static ones (an address listed in both stays
// static). cfg is not changed; pools without discovered backends are
// shared.
func withDiscovered(cfg *config.Config, discovered map[string][]config.Backend) *config.Config {
	if len(discovered) == 0 {
		return cfg
	}
	out := *cfg
	out.Pools = maps.Clone(cfg.Pools)
	for name, pc := range cfg.Pools {
		found := discovered[name]
		if pc.Discovery == nil || len(found) == 0 {
			continue
		}
		pl := *pc
		pl.Backends = slices.Clip(slices.Clone(pc.Backends))
		static := make(map[string]bool, len(pc.Backends))
		for _, b := range pc.Backends {
			static[strings.ToLower(b.Address)] = true
		}
		for _, b := range found {
			if !static[strings.ToLower(b.Address)] {
				pl.Backends = append(pl.Backends, b)
			}
		}
		out.Pools[name] = &pl
	}
	return &out
}

// applyWithDiscovery is Apply with p.mu held: it forgets the discovered
// backends of pools whose discovery settings cfg changes or removes,
// applies cfg, and restarts the resolvers. A failed apply restores what it
// forgot.
func (p *Proxy) applyWithDiscovery(cfg *config.Config) error {
	prev := maps.Clone(p.discovered)
	for name := range p.discovered {
		pc := cfg.Pools[name]
		r := p.resolvers[name]
		if pc == nil || pc.Discovery == nil || r == nil || r.cfg != *pc.Discovery {
			delete(p.discovered, name)
		}
	}
	if err := p.apply(cfg); err != nil {
		p.discovered = prev
		return err
	}
	p.stopResolvers()
	m := p.opts.Metrics
	for name, pc := range cfg.Pools {
		if pc.Discovery == nil {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		r := &resolver{cfg: *pc.Discovery, cancel: cancel}
		p.resolvers[name] = r
		m.DiscoveryBackends.WithLabelValues(name).Set(float64(len(p.discovered[name])))
		w := &discoveryWorker{
			p: p, pool: name, cfg: r.cfg, client: newDNSClient(r.cfg.Resolver),
			current: p.discovered[name],
			ok:      m.DiscoveryResolutions.WithLabelValues(name, "ok"),
			failed:  m.DiscoveryResolutions.WithLabelValues(name, "error"),
			empty:   m.DiscoveryResolutions.WithLabelValues(name, "empty"),
			success: m.DiscoverySuccess.WithLabelValues(name),
			size:    m.DiscoveryBackends.WithLabelValues(name),
		}
		go w.run(ctx)
	}
	return nil
}

// stopResolvers cancels every resolver goroutine; p.mu is held. A goroutine
// that is waiting for p.mu sees its context done and changes nothing.
func (p *Proxy) stopResolvers() {
	for name, r := range p.resolvers {
		r.cancel()
		delete(p.resolvers, name)
	}
}

// discoveryWorker is one pool's resolver goroutine state.
type discoveryWorker struct {
	p       *Proxy
	pool    string
	cfg     config.Discovery
	client  *dnsClient
	current []config.Backend // the set in force (sorted), owned by run

	ok, failed, empty prometheus.Counter
	success, size     prometheus.Gauge

	state string // what was logged last: "", "ok", "error", "empty", "apply"
}

// run resolves until ctx ends. A panic is logged with its stack and ends
// discovery for the pool until the next reload (the last set stays).
func (w *discoveryWorker) run(ctx context.Context) {
	log := w.p.opts.Logger
	defer func() {
		if r := recover(); r != nil {
			log.Error("discovery stopped by a panic", "pool", w.pool, "err", r, "stack", string(debug.Stack()))
		}
	}()
	t := time.NewTimer(0)
	defer t.Stop()
	retry := w.cfg.MinTTL.Duration
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wait := w.once(ctx, &retry)
		t.Reset(wait)
	}
}

// once resolves one time, applies a changed set, and returns how long to
// wait for the next resolution. retry is the wait after a failure, doubled
// per failure in a row from min_ttl up to max_ttl.
func (w *discoveryWorker) once(ctx context.Context, retry *time.Duration) time.Duration {
	minTTL, maxTTL := w.cfg.MinTTL.Duration, w.cfg.MaxTTL.Duration
	found, ttl, err := w.client.resolve(ctx, &w.cfg)
	if ctx.Err() != nil {
		return maxTTL
	}
	log := w.p.opts.Logger
	switch {
	case err != nil:
		w.failed.Inc()
		w.transition("error", func() {
			log.Warn("discovery failed; keeping the last backends", "pool", w.pool, "name", w.cfg.Name,
				"backends", len(w.current), "err", err)
		})
		wait := *retry
		*retry = min(*retry*2, maxTTL)
		return wait
	case len(found) == 0:
		w.empty.Inc()
		*retry = minTTL
		keep := w.cfg.OnEmpty != config.DiscoveryEmpty
		w.transition("empty", func() {
			log.Warn("discovery answered no records", "pool", w.pool, "name", w.cfg.Name,
				"on_empty", w.cfg.OnEmpty, "backends_kept", keep && len(w.current) > 0)
		})
		if !keep {
			w.update(ctx, nil)
		}
	default:
		w.ok.Inc()
		w.success.Set(float64(time.Now().UnixNano()) / 1e9)
		*retry = minTTL
		w.transition("ok", func() {
			log.Info("discovery resolved", "pool", w.pool, "name", w.cfg.Name, "backends", len(found))
		})
		w.update(ctx, found)
	}
	if ttl < 0 { // not known: no records, or Go's resolver
		return maxTTL
	}
	return min(max(ttl, minTTL), maxTTL)
}

// transition runs logf when the worker's state changes to state, so a
// state is logged once, not on every resolution.
func (w *discoveryWorker) transition(state string, logf func()) {
	if w.state != state {
		w.state = state
		logf()
	}
}

// update makes found (sorted by address) the pool's discovered set when it
// differs from the one in force, re-applying the running config.
func (w *discoveryWorker) update(ctx context.Context, found []config.Backend) {
	if slices.Equal(found, w.current) {
		return
	}
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.gen.Load()
	if ctx.Err() != nil || p.closed || g == nil {
		return
	}
	prev, had := p.discovered[w.pool]
	if len(found) == 0 {
		delete(p.discovered, w.pool)
	} else {
		p.discovered[w.pool] = found
	}
	if err := p.apply(g.cfg); err != nil {
		if had {
			p.discovered[w.pool] = prev
		} else {
			delete(p.discovered, w.pool)
		}
		w.transition("apply", func() {
			p.opts.Logger.Error("discovery: rebuild pool with the new backends; keeping the last ones", "pool", w.pool,
				"backends", len(found), "err", err)
		})
		return
	}
	added, removed := diffBackends(w.current, found)
	p.opts.Logger.Info("discovered backends changed", "pool", w.pool, "added", added, "removed", removed)
	w.current = found
	w.size.Set(float64(len(found)))
}

// diffBackends returns the addresses in b but not a, and in a but not b.
func diffBackends(a, b []config.Backend) (added, removed []string) {
	in := func(s []config.Backend, addr string) bool {
		return slices.ContainsFunc(s, func(x config.Backend) bool { return x.Address == addr })
	}
	for _, x := range b {
		if !in(a, x.Address) {
			added = append(added, x.Address)
		}
	}
	for _, x := range a {
		if !in(b, x.Address) {
			removed = append(removed, x.Address)
		}
	}
	return added, removed
}

// srvRecord is one SRV answer.
type srvRecord struct {
	priority, weight, port uint16
	target                 string
}

// srvBackends turns SRV answers into backends: each priority group present,
// in ascending order of priority, is a tier (0 for the lowest, 1 for the
// next, ...: backups that take traffic only while no backend of a lower
// tier is up), and each target:port appears once, in the lowest priority
// that lists it, with its weight (0 counts as 1, above balancer.MaxWeight as
// MaxWeight). The result is sorted by address.
func srvBackends(recs []srvRecord) []config.Backend {
	if len(recs) == 0 {
		return nil
	}
	recs = slices.Clone(recs)
	slices.SortStableFunc(recs, func(a, b srvRecord) int { return cmp.Compare(a.priority, b.priority) })
	seen := map[string]bool{}
	var out []config.Backend
	tier, prio := -1, -1
	for _, r := range recs {
		if r.port == 0 {
			continue
		}
		target := strings.TrimSuffix(r.target, ".")
		if target == "" {
			continue // "." means the service is not available here
		}
		addr := joinHostPort(target, r.port)
		if seen[addr] {
			continue
		}
		seen[addr] = true
		if int(r.priority) != prio {
			// Tiers count the groups that give a backend, so they
			// have no gaps.
			tier, prio = tier+1, int(r.priority)
		}
		out = append(out, config.Backend{Address: addr, Weight: min(max(int(r.weight), 1), balancer.MaxWeight), Tier: tier})
	}
	sortBackends(out)
	return out
}

func sortBackends(bs []config.Backend) {
	slices.SortFunc(bs, func(a, b config.Backend) int { return strings.Compare(a.Address, b.Address) })
}

func joinHostPort(host string, port uint16) string {
	if strings.Contains(host, ":") {
		return fmt.Sprintf("[%s]:%d", host, port)
	}
	return fmt.Sprintf("%s:%d", host, port)
}
