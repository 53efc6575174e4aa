package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"frontdoor/balancer"
	"frontdoor/config"
	"frontdoor/health"
	"frontdoor/metrics"
	"frontdoor/proxy/jwt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Building a runtime from a config: pools with their backends, checkers
// and ejectors, JWT policies, and each listener's route table; and
// retiring what the new runtime no longer uses.

// claimHeaders lists the forward_claims headers of every JWT policy.
func claimHeaders(cfg *config.Config) [][]byte {
	seen := map[string]bool{}
	var out [][]byte
	for _, pc := range cfg.JWT {
		for _, h := range pc.ForwardClaims {
			if k := strings.ToLower(h); !seen[k] {
				seen[k] = true
				out = append(out, []byte(h))
			}
		}
	}
	return out
}

// buildPools builds every pool of cfg, reusing Backend objects (and so their
// health state) by pool and address, and pool backends by their full key.
func (p *Proxy) buildPools(cfg *config.Config, old *generation) (*generation, map[string]*poolBackend, error) {
	m := p.opts.Metrics
	gen := &generation{cfg: cfg, pools: map[string]*poolRuntime{}, loaded: time.Now()}
	newUps := map[string]*poolBackend{}
	for name := range cfg.Pools {
		gen.names = append(gen.names, name)
	}
	sort.Strings(gen.names)
	var errs []error
	for _, name := range gen.names {
		pc := cfg.Pools[name]
		pr := &poolRuntime{
			name:            name,
			cfg:             pc,
			hashSource:      pc.HashOn.Source,
			hashName:        []byte(pc.HashOn.Name),
			responseTimeout: pc.ResponseTimeout.Duration,
			retries:         pc.Retries,
			retryBudget:     pc.RetryBudget,
			retriesTotal:    m.RetriesTotal.WithLabelValues(name),
			keyMissing:      m.HashKeyMissing.WithLabelValues(name),
			noBackend:       m.UpstreamErrors.WithLabelValues(name, "", "no_backend"),
		}
		if pc.Strategy != balancer.ConsistentHash {
			pr.hashSource = ""
		}
		q := p.queues[name]
		if q == nil {
			q = &poolQueue{length: m.QueueLength.WithLabelValues(name), wait: m.QueueWait.WithLabelValues(name)}
			p.queues[name] = q
		}
		if pc.Queue != nil {
			pr.queue, pr.queueSize, pr.queueTimeout = q, pc.Queue.Size, pc.Queue.Timeout.Duration
		}
		tlsBase, tlsCerts, err := backendTLSConfig(pc) // tls_backend.go
		if err != nil {
			errs = append(errs, err)
			continue
		}
		gen.certs = append(gen.certs, tlsCerts...)
		members := make([]balancer.Member, len(pc.Backends))
		targets := make([]health.Target, len(pc.Backends))
		ejectables := make([]health.Ejectable, len(pc.Backends))
		addrs := make([]string, len(pc.Backends))
		for i, bc := range pc.Backends {
			key := poolBackendKey(name, pc, bc.Address)
			u := p.poolBackends[key]
			if u == nil {
				u = newUps[key]
			}
			if u == nil {
				bkey := name + "|" + bc.Address
				be := p.backends[bkey]
				if be == nil {
					be = balancer.NewBackend(bc.Address)
					p.backends[bkey] = be
				}
				u = newPoolBackend(p.poolBackendIDs, key, bc.Address, pc, be)
				u.queue = q
				p.poolBackendIDs++
				newUps[key] = u
			}
			pr.ups = append(pr.ups, u)
			if tlsBase != nil {
				cfg := backendTLS(tlsBase, pc.TLS.ServerName, bc.Address)
				gen.commit = append(gen.commit, func() { u.tlsCfg.Store(cfg) })
			}
			members[i] = balancer.Member{Backend: u.be, Weight: memberWeight(u.be, bc.Weight), Tier: bc.Tier}
			targets[i] = health.Target{Address: bc.Address, Backend: u.be, Healthy: u.be.Healthy()}
			ejectables[i] = u.be
			addrs[i] = bc.Address
			var errc [numReasons]prometheus.Counter
			for r, reason := range reasonNames {
				errc[r] = m.UpstreamErrors.WithLabelValues(name, bc.Address, reason)
			}
			pr.errs = append(pr.errs, errc)
		}
		pool, err := balancer.NewPool(members, balancer.Options{
			Strategy: pc.Strategy, TableSize: pc.TableSize, BoundedLoad: pc.BoundedLoad, SlowStart: pc.SlowStart.Duration,
			AllowEmpty: pc.Discovery != nil,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("pool %s: %w", name, err))
			continue
		}
		pr.pool = pool
		pr.loopable = loopable(pr.ups) && pc.TLS == nil // the loop speaks plain TCP
		pr.h2c = pc.Protocol == "h2c"
		var secret []byte
		if pc.AffinitySecretFile != "" {
			data, err := os.ReadFile(pc.AffinitySecretFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("pool %s: read affinity_secret_file: %w", name, err))
				pool.Close()
				continue
			}
			secret = bytes.TrimSuffix(data, []byte("\n"))
		}
		pr.aff = newAffinity(name, pc.Affinity, secret, pool.Members())
		var prev *health.Checker
		if old != nil && old.pools[name] != nil {
			prev = old.pools[name].checker
		}
		okc := make([]prometheus.Counter, len(addrs))
		failc := make([]prometheus.Counter, len(addrs))
		for i, a := range addrs {
			okc[i] = m.HealthChecks.WithLabelValues(name, a, "success")
			failc[i] = m.HealthChecks.WithLabelValues(name, a, "failure")
		}
		// The ejector exists even when passive ejection is off (a disabled
		// one does nothing), so that a reload turning it off releases any
		// backend the previous ejector still held out. It is built first:
		// the checker tells it of recoveries (uneject_on_active_pass).
		ejections := make([]prometheus.Counter, len(addrs))
		for i, a := range addrs {
			ejections[i] = m.Ejections.WithLabelValues(name, a)
		}
		var prevEj *health.Ejector
		if old != nil && old.pools[name] != nil {
			prevEj = old.pools[name].ejector
		}
		ejector := health.NewEjector(health.EjectorOptions{
			Pool: name, Config: pc.Passive, Targets: ejectables, Addresses: addrs,
			Logger: p.opts.Logger, OnEject: func(i int) { ejections[i].Inc() }, Previous: prevEj,
		})
		checker, err := health.NewChecker(health.CheckerOptions{
			Pool:    name,
			Check:   pc.Health,
			TLS:     healthTLS(tlsBase, pc), // tls_backend.go
			Targets: targets,
			Logger:  p.opts.Logger,
			OnCheck: func(i int, ok bool) {
				if ok {
					okc[i].Inc()
				} else {
					failc[i].Inc()
				}
			},
			Ejector:  ejector,
			Previous: prev,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("pool %s: health check: %w", name, err))
			pool.Close()
			continue
		}
		pr.checker = checker
		pr.ejector = ejector
		gen.pools[name] = pr
	}
	if len(errs) > 0 {
		for _, pr := range gen.pools {
			pr.pool.Close()
		}
		return nil, nil, errors.Join(errs...)
	}
	return gen, newUps, nil
}

// buildJWT builds every JWT policy of cfg (reading key files again, which
// is how a SIGHUP rotates keys), carrying over the policy of the same name.
func (p *Proxy) buildJWT(cfg *config.Config, gen *generation, old *generation) error {
	gen.jwts = map[string]*jwt.Policy{}
	var errs []error
	for name, pc := range cfg.JWT {
		var prev *jwt.Policy
		if old != nil {
			prev = old.jwts[name]
		}
		pol, err := jwt.New(pc, jwt.Options{Logger: p.opts.Logger, Metrics: p.opts.Metrics, Previous: prev})
		if err != nil {
			errs = append(errs, fmt.Errorf("jwt policy %s: %w", name, err))
			continue
		}
		gen.jwts[name] = pol
	}
	return errors.Join(errs...)
}

func (p *Proxy) buildListenerRuntime(lc *config.Listener, gen *generation, l *httpListener) *listenerRuntime {
	m := p.opts.Metrics
	rt := &listenerRuntime{name: lc.Name}
	for _, s := range lc.TrustedProxies {
		if pfx, err := config.ParseTrusted(s); err == nil { // validated at load
			rt.trusted = append(rt.trusted, pfx)
		}
	}
	for c, class := range metrics.CodeClasses {
		rt.notFound[c] = m.RequestsTotal.WithLabelValues(lc.Name, "", "", class)
	}
	tlsRuntime(rt, lc, gen.cfg) // tls_route.go
	routes := make([]*route, 0, len(lc.Routes))
	for j, rc := range lc.Routes {
		if rc.RedirectHTTPS {
			routes = append(routes, redirectRoute(m, lc, &rc)) // tls_route.go
			continue
		}
		pr := gen.pools[rc.Pool]
		name := rc.Host + rc.PathPrefix
		r := &route{
			host:   rc.Host,
			prefix: []byte(rc.PathPrefix),
			name:   name,
			pool:   pr,
			stats:  bindRouteStats(m, lc.Name, name, pr),
			jwt:    gen.jwts[rc.JWT],
		}
		if r.jwt == nil {
			r.stripClaims = claimHeaders(gen.cfg)
		}
		r.transcode = p.transcodeRoute(gen, &lc.Routes[j], lc)
		routes = append(routes, r)
	}
	rt.routes = compileRoutes(routes)
	return rt
}

// retirePoolBackends drops pool backends the new runtime no longer uses and closes
// their idle connections once in-flight requests had drain time to finish.
func (p *Proxy) retirePoolBackends(gen *generation, drain time.Duration) {
	used := map[string]bool{}
	usedBackend := map[string]bool{}
	for name, pr := range gen.pools {
		for _, u := range pr.ups {
			used[u.key] = true
			usedBackend[name+"|"+u.be.Address()] = true
		}
	}
	for key, u := range p.poolBackends {
		if used[key] {
			continue
		}
		delete(p.poolBackends, key)
		u.retired.Store(true) // event loops forget it with its last connection
		time.AfterFunc(drain, u.closeIdle)
	}
	for key := range p.backends {
		if !usedBackend[key] {
			delete(p.backends, key)
		}
	}
}
