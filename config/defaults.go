package config

import (
	"maps"
	"path/filepath"
	"slices"
	"time"
)

// Defaults, as documented on the fields in types.go.
const (
	defaultDrainTimeout     = 30 * time.Second
	defaultAdminBind        = "127.0.0.1:9901"
	defaultAccessLog        = "stdout"
	defaultLogLevel         = "info"
	modeHTTP                = "http"
	modeTCP                 = "tcp"
	defaultReadTimeout      = 30 * time.Second
	defaultWriteTimeout     = 30 * time.Second
	defaultIdleHTTP         = 60 * time.Second
	defaultIdleTCP          = time.Hour
	defaultMaxConnections   = 50000
	defaultMaxHeaderBytes   = 16384
	defaultH2MaxStreams     = 100
	defaultH2Window         = 256 << 10
	defaultH2MaxFrame       = 16384
	defaultMaxBodyBytes     = 64 << 20
	defaultPathPrefix       = "/"
	strategyRoundRobin      = "round_robin"
	strategyLeastConn       = "least_conn"
	strategyConsistentHash  = "consistent_hash"
	defaultTableSize        = 65537
	protocolHTTP1           = "http1"
	protocolH2C             = "h2c"
	defaultConnectTimeout   = 2 * time.Second
	defaultResponseTimeout  = 30 * time.Second
	defaultPoolIdleTimeout  = 90 * time.Second
	defaultMaxConnsPerBack  = 1024
	defaultRetries          = 1
	defaultRetryBudget      = 0.2
	defaultDiscoveryMinTTL  = time.Second
	defaultDiscoveryMaxTTL  = 60 * time.Second
	defaultWeight           = 1
	defaultCheck            = "tcp"
	defaultHealthPath       = "/healthz"
	defaultHealthMethod     = "GET"
	defaultInterval         = 2 * time.Second
	defaultCheckTimeout     = time.Second
	defaultRise             = 2
	defaultFall             = 3
	defaultConsecutiveFails = 5
	defaultBaseEjection     = 30 * time.Second
	defaultMaxEjectionPct   = 50
	defaultMaxEjectionTime  = 300 * time.Second
	defaultFailureStatuses  = "500,502-504"
	defaultLeeway           = 30 * time.Second
	defaultJWKSRefresh      = 5 * time.Minute
	defaultMaxTokenBytes    = 8192
	defaultCacheSize        = 10000
	defaultCacheTTL         = 5 * time.Minute
)

var (
	defaultExpectStatus = StatusRange{Low: 200, High: 399}
	defaultHashOn       = HashKey{Source: sourceIP}
	defaultTokenFrom    = HashKey{Source: sourceHeader, Name: "Authorization"}
	defaultAlgorithms   = []string{"RS256", "ES256", "EdDSA"}
	defaultHMACAlgs     = []string{"HS256"}
)

// withDefaults returns a copy of c with every unset setting given its
// default and every relative file name resolved against the directory of
// c.Path. set reports which paths the file wrote: a key written with a zero
// value keeps it (and validation judges it), except where a zero is
// documented to mean "the default" (empty strings, cache_size = 0). It also
// fills Pool.Name and JWTPolicy.Name. c is not modified.
func withDefaults(c Config, set map[string]bool) *Config {
	dir := ""
	if c.Path != "" {
		dir = filepath.Dir(c.Path)
	}
	dur := func(d *Duration, path string, def time.Duration) {
		if !set[path] {
			d.Duration = def
		}
	}
	num := func(n *int, path string, def int) {
		if !set[path] {
			*n = def
		}
	}
	str := func(s *string, def string) {
		if *s == "" {
			*s = def
		}
	}

	dur(&c.Global.DrainTimeout, "global.drain_timeout", defaultDrainTimeout)
	str(&c.Admin.Bind, defaultAdminBind)
	c.Admin.TokenFile = resolve(dir, c.Admin.TokenFile)
	str(&c.Log.Access, defaultAccessLog)
	str(&c.Log.Level, defaultLogLevel)
	if c.Log.Access != "stdout" && c.Log.Access != "off" {
		c.Log.Access = resolve(dir, c.Log.Access)
	}

	c.Listeners = slices.Clone(c.Listeners)
	for i := range c.Listeners {
		l := &c.Listeners[i]
		p := indexKey("listener", i)
		str(&l.Mode, modeHTTP)
		dur(&l.ReadTimeout, p+".read_timeout", defaultReadTimeout)
		dur(&l.WriteTimeout, p+".write_timeout", defaultWriteTimeout)
		idle := defaultIdleHTTP
		if l.Mode == modeTCP {
			idle = defaultIdleTCP
		}
		dur(&l.IdleTimeout, p+".idle_timeout", idle)
		num(&l.MaxConnections, p+".max_connections", defaultMaxConnections)
		num(&l.MaxHeaderBytes, p+".max_header_bytes", defaultMaxHeaderBytes)
		num(&l.HTTP2.MaxConcurrentStreams, p+".http2.max_concurrent_streams", defaultH2MaxStreams)
		num(&l.HTTP2.InitialWindowSize, p+".http2.initial_window_size", defaultH2Window)
		num(&l.HTTP2.MaxFrameSize, p+".http2.max_frame_size", defaultH2MaxFrame)
		if !set[p+".max_body_bytes"] {
			l.MaxBodyBytes = defaultMaxBodyBytes
		}
		l.Routes = slices.Clone(l.Routes)
		for j := range l.Routes {
			str(&l.Routes[j].PathPrefix, defaultPathPrefix)
			if tc := l.Routes[j].Transcode; tc != nil {
				cp := *tc
				cp.DescriptorSet = resolve(dir, cp.DescriptorSet)
				cp.Services = slices.Clone(cp.Services)
				cp.ForwardHeaders = slices.Clone(cp.ForwardHeaders)
				l.Routes[j].Transcode = &cp
			}
		}
		tlsListenerDefaults(l, p, dir, set) // tls.go
	}

	pools := make(map[string]*Pool, len(c.Pools))
	for name, orig := range c.Pools {
		if orig == nil {
			continue
		}
		pl := *orig
		pl.Name = name
		pl.AffinitySecretFile = resolve(dir, pl.AffinitySecretFile)
		p := joinKey("pool", name)
		str(&pl.Strategy, strategyRoundRobin)
		if pl.Strategy == strategyConsistentHash {
			if pl.HashOn.IsZero() {
				pl.HashOn = defaultHashOn
			}
			num(&pl.TableSize, p+".table_size", defaultTableSize)
		}
		str(&pl.Protocol, protocolHTTP1)
		dur(&pl.ConnectTimeout, p+".connect_timeout", defaultConnectTimeout)
		dur(&pl.ResponseTimeout, p+".response_timeout", defaultResponseTimeout)
		dur(&pl.IdleTimeout, p+".idle_timeout", defaultPoolIdleTimeout)
		num(&pl.MaxConnectionsPerBackend, p+".max_connections_per_backend", defaultMaxConnsPerBack)
		num(&pl.Retries, p+".retries", defaultRetries)
		if !set[p+".retry_budget"] {
			pl.RetryBudget = defaultRetryBudget
		}
		pl.Backends = slices.Clone(pl.Backends)
		tlsPoolDefaults(&pl, dir) // tls.go
		if pl.Queue != nil {
			q := *pl.Queue
			pl.Queue = &q
		}
		if pl.Discovery != nil {
			d := *pl.Discovery
			dp := p + ".discovery"
			dur(&d.MinTTL, dp+".min_ttl", defaultDiscoveryMinTTL)
			dur(&d.MaxTTL, dp+".max_ttl", defaultDiscoveryMaxTTL)
			str(&d.OnEmpty, DiscoveryKeep)
			pl.Discovery = &d
		}
		for i := range pl.Backends {
			num(&pl.Backends[i].Weight, indexKey(p+".backends", i)+".weight", defaultWeight)
		}

		h := &pl.Health
		hp := p + ".health"
		str(&h.Check, defaultCheck)
		str(&h.Path, defaultHealthPath)
		str(&h.Method, defaultHealthMethod)
		if (h.ExpectStatus == StatusRange{}) {
			h.ExpectStatus = defaultExpectStatus
		}
		dur(&h.Interval, hp+".interval", defaultInterval)
		timeout := defaultCheckTimeout
		if h.Interval.Duration > 0 && h.Interval.Duration <= defaultCheckTimeout {
			timeout = h.Interval.Duration / 2
		}
		dur(&h.Timeout, hp+".timeout", timeout)
		num(&h.Rise, hp+".rise", defaultRise)
		num(&h.Fall, hp+".fall", defaultFall)

		ps := &pl.Passive
		pp := p + ".passive"
		num(&ps.ConsecutiveFailures, pp+".consecutive_failures", defaultConsecutiveFails)
		dur(&ps.BaseEjection, pp+".base_ejection", defaultBaseEjection)
		dur(&ps.MaxEjectionTime, pp+".max_ejection_time", defaultMaxEjectionTime)
		num(&ps.MaxEjectionPercent, pp+".max_ejection_percent", defaultMaxEjectionPct)
		if !set[pp+".uneject_on_active_pass"] {
			ps.UnejectOnActivePass = true
		}
		if !set[pp+".count_timeouts"] {
			ps.CountTimeouts = true
		}
		if !set[pp+".failure_statuses"] {
			ps.FailureStatuses = MustStatusSet(defaultFailureStatuses)
		}
		pools[name] = &pl
	}
	c.Pools = pools

	policies := make(map[string]*JWTPolicy, len(c.JWT))
	for name, orig := range c.JWT {
		if orig == nil {
			continue
		}
		j := *orig
		j.Name = name
		p := joinKey("jwt", name)
		j.JWKSFile = resolve(dir, j.JWKSFile)
		j.PublicKeyFile = resolve(dir, j.PublicKeyFile)
		j.HMACSecretFile = resolve(dir, j.HMACSecretFile)
		dur(&j.JWKSRefresh, p+".jwks_refresh", defaultJWKSRefresh)
		if !set[p+".algorithms"] {
			if j.HMACSecretFile != "" {
				j.Algorithms = slices.Clone(defaultHMACAlgs)
			} else {
				j.Algorithms = slices.Clone(defaultAlgorithms)
			}
		}
		dur(&j.Leeway, p+".leeway", defaultLeeway)
		if j.TokenFrom.IsZero() {
			j.TokenFrom = defaultTokenFrom
		}
		num(&j.MaxTokenBytes, p+".max_token_bytes", defaultMaxTokenBytes)
		if j.CacheSize == 0 {
			j.CacheSize = defaultCacheSize
		}
		dur(&j.CacheTTL, p+".cache_ttl", defaultCacheTTL)
		j.Audiences = slices.Clone(j.Audiences)
		j.RequiredClaims = slices.Clone(j.RequiredClaims)
		j.ForwardClaims = maps.Clone(j.ForwardClaims)
		policies[name] = &j
	}
	c.JWT = policies
	return &c
}

// resolve makes a relative file name relative to dir; "" stays "".
func resolve(dir, name string) string {
	if name == "" || dir == "" || filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(dir, name)
}
