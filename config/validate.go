package config

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Limits Load enforces beyond "greater than zero".
const (
	maxRetries      = 10
	minTablePerBack = 100
	maxTableSize    = 1 << 24
	// maxWeight is the largest backend weight the balancer accepts.
	maxWeight         = 1000
	maxNameLen        = 128
	durationExample   = `such as "2s" or "1m30s"`
	nameCharsHint     = "use letters, digits, '_', '-' and '.'"
	bindExampleHint   = "use host:port such as 127.0.0.1:8080 or :8080"
	backendAddrHint   = "use host:port such as 10.0.0.3:8080"
	defineOrFixSuffix = " or fix the name"
)

// validator collects every problem of a defaulted configuration.
type validator struct {
	file string
	idx  *lineIndex
	// bad holds paths that already failed to decode: no second error for
	// those.
	bad  map[string]bool
	errs []*Error
}

// add records a problem at path unless that path already failed to decode.
func (v *validator) add(path, format string, args ...any) {
	if v.bad[path] {
		return
	}
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	v.errs = append(v.errs, &Error{File: v.file, Line: v.idx.line(path), Key: path, Msg: msg})
}

// at describes where path is written, for messages that point at a second
// place ("listener[0] at line 3").
func (v *validator) at(path string) string {
	if l := v.idx.line(path); l > 0 {
		return fmt.Sprintf("%s at line %d", path, l)
	}
	return path
}

// validate checks c and returns its problems; c has had defaults applied.
func (v *validator) validate(c *Config) {
	v.positiveDuration("global.drain_timeout", c.Global.DrainTimeout)
	if c.Global.ShutdownDelay.Duration < 0 {
		v.add("global.shutdown_delay", "shutdown_delay must be 0 (drain at once) or more; use a duration %s", durationExample)
	}
	v.admin(c)
	v.tracing(c) // tracing.go
	v.log(c)
	v.listeners(c)
	for _, name := range sortedNames(c.Pools) {
		v.pool(c, name, c.Pools[name])
	}
	for _, name := range sortedNames(c.JWT) {
		v.jwt(name, c.JWT[name])
	}
	v.bindConflicts(c)
}

func (v *validator) admin(c *Config) {
	if c.Admin.Bind == "off" {
		if c.Admin.TokenFile != "" {
			v.add("admin.token_file", "token_file needs the admin listener; remove it or set admin.bind")
		}
		return
	}
	if f := c.Admin.TokenFile; f != "" {
		if msg := checkReadable(f); msg != "" {
			v.add("admin.token_file", "%s", msg)
		} else if data, err := os.ReadFile(f); err == nil && len(strings.TrimSuffix(string(data), "\n")) < 16 {
			v.add("admin.token_file", "admin token in %s is shorter than 16 bytes; generate one with: head -c 32 /dev/urandom | base64 > FILE", f)
		}
	}
	if _, _, msg := checkHostPort(c.Admin.Bind, true, true); msg != "" {
		v.add("admin.bind", "%s; use host:port such as 127.0.0.1:9901, or \"off\" to disable the admin listener", msg)
	}
}

func (v *validator) log(c *Config) {
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add("log.level", "%s", enumMsg("log level", c.Log.Level, []string{"debug", "info", "warn", "error"}))
	}
	switch c.Log.Access {
	case "stdout", "off":
		return
	}
	if msg := checkWritable(c.Log.Access); msg != "" {
		v.add("log.access", "%s", msg)
	}
}

// listeners checks every listener and its routes.
func (v *validator) listeners(c *Config) {
	if len(c.Listeners) == 0 {
		v.add("listener", `no listeners; add a [[listener]] table with name, bind and a [[listener.route]]`)
	}
	names := make(map[string]string) // name -> path of first use
	for i := range c.Listeners {
		l := &c.Listeners[i]
		p := indexKey("listener", i)
		switch {
		case l.Name == "":
			v.add(p+".name", `listener has no name; add name = "..." (used in metrics and logs)`)
		case !isName(l.Name):
			v.add(p+".name", "bad listener name %q: %s", l.Name, nameCharsHint)
		case names[l.Name] != "":
			v.add(p+".name", "duplicate listener name %q (also %s); give each listener its own name", l.Name, v.at(names[l.Name]))
		default:
			names[l.Name] = p
		}
		switch {
		case l.Bind == "":
			v.add(p+".bind", `listener has no bind address; add bind = "host:port", e.g. "0.0.0.0:8080"`)
		default:
			if _, _, msg := checkHostPort(l.Bind, true, true); msg != "" {
				v.add(p+".bind", "%s; %s", msg, bindExampleHint)
			}
		}
		v.positiveDuration(p+".read_timeout", l.ReadTimeout)
		v.positiveDuration(p+".write_timeout", l.WriteTimeout)
		v.positiveDuration(p+".idle_timeout", l.IdleTimeout)
		v.positiveInt(p+".max_connections", l.MaxConnections)
		v.positiveInt(p+".max_header_bytes", l.MaxHeaderBytes)
		if l.MaxBodyBytes <= 0 {
			v.add(p+".max_body_bytes", "must be greater than 0 (a size in bytes, e.g. 67108864)")
		}
		switch l.Mode {
		case modeHTTP:
			v.httpListener(c, p, l)
		case modeTCP:
			v.tcpListener(c, p, l)
		default:
			v.add(p+".mode", "%s", enumMsg("listener mode", l.Mode, []string{modeHTTP, modeTCP}))
		}
		v.listenerTLS(p, l)  // tls.go
		v.sniRoutes(c, p, l) // tls.go
	}
}

func (v *validator) httpListener(c *Config, p string, l *Listener) {
	h := l.HTTP2
	v.positiveInt(p+".http2.max_concurrent_streams", h.MaxConcurrentStreams)
	if h.InitialWindowSize < 1 || h.InitialWindowSize > 1<<31-1 {
		v.add(p+".http2.initial_window_size", "must be 1 to 2147483647 bytes (the HTTP/2 limit), e.g. 262144")
	}
	if h.MaxFrameSize < 16384 || h.MaxFrameSize > 1<<24-1 {
		v.add(p+".http2.max_frame_size", "must be 16384 to 16777215 bytes (the HTTP/2 limits)")
	}
	if l.Pool != "" {
		v.add(p+".pool", `pool is only for tcp listeners; on an http listener put pool = %q in a [[listener.route]]`, l.Pool)
	}
	for j, cidr := range l.TrustedProxies {
		if _, err := ParseTrusted(cidr); err != nil {
			v.add(indexKey(p+".trusted_proxies", j), "%q is not a CIDR or an IP address, e.g. \"10.0.0.0/8\" or \"192.0.2.7\"", cidr)
		}
	}
	if l.SendProxy != "" {
		v.add(p+".send_proxy", `send_proxy is only for tcp listeners; remove it or set mode = "tcp"`)
	}
	if len(l.Routes) == 0 {
		v.add(p, `http listener %q has no routes; add a [[listener.route]] with pool = "..."`, l.Name)
		return
	}
	type routeKey struct{ host, prefix string }
	seen := make(map[routeKey]string)
	for j := range l.Routes {
		r := &l.Routes[j]
		rp := indexKey(p+".route", j)
		if msg := checkHostPattern(r.Host); msg != "" {
			v.add(rp+".host", "%s", msg)
		}
		if !strings.HasPrefix(r.PathPrefix, "/") {
			v.add(rp+".path_prefix", "path_prefix %q must start with \"/\", e.g. \"/%s\"", r.PathPrefix, r.PathPrefix)
		}
		k := routeKey{strings.ToLower(r.Host), r.PathPrefix}
		if first, dup := seen[k]; dup {
			v.add(rp, "duplicate route for host %q and path_prefix %q (also %s); remove one or change its host or path_prefix", r.Host, r.PathPrefix, v.at(first))
		} else {
			seen[k] = rp
		}
		if r.RedirectHTTPS {
			// Answered by frontdoor itself (tls.go checks the listener).
			if r.Pool != "" || r.JWT != "" {
				v.add(rp+".redirect_https", "a route with redirect_https answers every request itself; remove its pool and jwt")
			}
			continue
		}
		v.poolRef(c, rp+".pool", r.Pool, "route")
		if r.Transcode != nil {
			v.transcode(c, rp, r)
		}
		if r.JWT != "" {
			if _, ok := c.JWT[r.JWT]; !ok {
				v.add(rp+".jwt", "no jwt policy named %q; define [jwt.%s]%s%s", r.JWT, keySeg(r.JWT), defineOrFixSuffix, didYouMean(r.JWT, sortedNames(c.JWT)))
			}
		}
	}
}

func (v *validator) tcpListener(c *Config, p string, l *Listener) {
	if len(l.Routes) > 0 {
		v.add(indexKey(p+".route", 0), `tcp listener cannot have routes; remove the [[listener.route]] tables and set pool = "..." on the listener`)
	}
	if l.Pool != "" || len(l.SNIRoutes) == 0 {
		// With sni_route, pool is the optional default (tls.go).
		v.poolRef(c, p+".pool", l.Pool, "tcp listener")
	}
	if len(l.TrustedProxies) > 0 {
		v.add(p+".trusted_proxies", `trusted_proxies is only for http listeners (a tcp listener reads no headers); remove it`)
	}
	switch l.SendProxy {
	case "", "v1", "v2":
	default:
		v.add(p+".send_proxy", "%s", enumMsg("send_proxy version", l.SendProxy, []string{"v1", "v2"}))
	}
}

// poolRef checks that name (from a route or tcp listener) names a pool.
func (v *validator) poolRef(c *Config, path, name, who string) {
	if name == "" {
		v.add(path, `%s has no pool; add pool = "NAME" naming a [pool.NAME] table`, who)
		return
	}
	if _, ok := c.Pools[name]; !ok {
		v.add(path, "no pool named %q; define [pool.%s]%s%s", name, keySeg(name), defineOrFixSuffix, didYouMean(name, sortedNames(c.Pools)))
	}
}

// pool checks one [pool.NAME] table.
func (v *validator) pool(c *Config, name string, pl *Pool) {
	p := joinKey("pool", name)
	if !isName(name) {
		v.add(p, "bad pool name %q: %s", name, nameCharsHint)
	}
	v.backends(p, pl)

	isHash := pl.Strategy == strategyConsistentHash
	switch pl.Strategy {
	case strategyRoundRobin, strategyLeastConn, strategyConsistentHash:
	default:
		v.add(p+".strategy", "%s", enumMsg("strategy", pl.Strategy, []string{strategyRoundRobin, strategyLeastConn, strategyConsistentHash}))
	}
	if !pl.HashOn.IsZero() && !isHash {
		v.add(p+".hash_on", `hash_on is only used with strategy = "consistent_hash"; remove it or change the strategy`)
	}
	if pl.BoundedLoad != 0 && !isHash {
		v.add(p+".bounded_load", `bounded_load is only used with strategy = "consistent_hash"; remove it or change the strategy`)
	} else if pl.BoundedLoad != 0 && !(pl.BoundedLoad > 1 && !math.IsInf(pl.BoundedLoad, 1)) {
		v.add(p+".bounded_load", "bounded_load %g must be 0 (off) or greater than 1, e.g. 1.25", pl.BoundedLoad)
	}
	if pl.TableSize != 0 && !isHash {
		v.add(p+".table_size", `table_size is only used with strategy = "consistent_hash"; remove it or change the strategy`)
	} else if isHash {
		v.tableSize(p+".table_size", pl.TableSize, pl.Backends)
	}

	var tcpUsers []string
	for i := range c.Listeners {
		if c.Listeners[i].Mode == modeTCP && (c.Listeners[i].Pool == name || sniRoutesUse(&c.Listeners[i], name)) {
			tcpUsers = append(tcpUsers, fmt.Sprintf("%q", c.Listeners[i].Name))
		}
	}
	usedByTCP := ""
	if len(tcpUsers) > 0 {
		usedByTCP = fmt.Sprintf("pool %q is used by tcp listener %s, which ", name, strings.Join(tcpUsers, ", "))
	}

	if isHash && !pl.HashOn.IsZero() {
		switch {
		case usedByTCP != "" && pl.HashOn.Source != sourceIP:
			v.add(p+".hash_on", `%scan only hash on "source_ip"; set hash_on = "source_ip" or use a separate pool`, usedByTCP)
		case pl.HashOn.Source == sourceHeader || pl.HashOn.Source == sourceCookie || pl.HashOn.Source == sourceQuery ||
			pl.HashOn.Source == sourceIP || pl.HashOn.Source == sourcePath:
		default:
			v.add(p+".hash_on", `bad hash_on %q: use source_ip, path, header:NAME, cookie:NAME or query:NAME`, pl.HashOn.String())
		}
	}
	switch pl.Affinity.Source {
	case "", sourceCookie, sourceHeader:
		if usedByTCP != "" && pl.Affinity.Source != "" {
			v.add(p+".affinity", "%shas no HTTP to carry affinity; remove affinity or use a separate pool", usedByTCP)
		}
	default:
		v.add(p+".affinity", `affinity %q must be "cookie:NAME" or "header:NAME"`, pl.Affinity.String())
	}
	if pl.AffinitySecretFile != "" {
		switch {
		case pl.Affinity.Source == "":
			v.add(p+".affinity_secret_file", "affinity_secret_file is only used with affinity; remove it or set affinity")
		default:
			if msg := checkReadable(pl.AffinitySecretFile); msg != "" {
				v.add(p+".affinity_secret_file", "%s", msg)
			} else if data, err := os.ReadFile(pl.AffinitySecretFile); err == nil && len(strings.TrimSuffix(string(data), "\n")) < 16 {
				v.add(p+".affinity_secret_file", "affinity secret in %s is shorter than 16 bytes; generate one with: head -c 32 /dev/urandom > FILE", pl.AffinitySecretFile)
			}
		}
	}
	switch pl.Protocol {
	case protocolHTTP1, protocolH2C:
		if usedByTCP != "" && pl.Protocol == protocolH2C {
			v.add(p+".protocol", `%scopies bytes and speaks no HTTP; remove protocol = "h2c" or use a separate pool`, usedByTCP)
		}
	default:
		v.add(p+".protocol", "%s", enumMsg("protocol", pl.Protocol, []string{protocolHTTP1, protocolH2C}))
	}

	if pl.SlowStart.Duration < 0 {
		v.add(p+".slow_start", "slow_start must be 0 (off) or positive; use a duration %s", durationExample)
	}
	v.positiveDuration(p+".connect_timeout", pl.ConnectTimeout)
	v.positiveDuration(p+".response_timeout", pl.ResponseTimeout)
	v.positiveDuration(p+".idle_timeout", pl.IdleTimeout)
	v.positiveInt(p+".max_connections_per_backend", pl.MaxConnectionsPerBackend)
	if pl.Retries < 0 || pl.Retries > maxRetries {
		v.add(p+".retries", "retries %d must be between 0 (no retries) and %d", pl.Retries, maxRetries)
	}
	if !(pl.RetryBudget > 0 && pl.RetryBudget <= 1) {
		v.add(p+".retry_budget", "retry_budget %g must be a fraction above 0 and at most 1, e.g. 0.2", pl.RetryBudget)
	}
	v.poolTLS(p, pl, usedByTCP) // tls.go
	v.health(p+".health", &pl.Health)
	v.passive(p+".passive", &pl.Passive)
	if q := pl.Queue; q != nil {
		qp := p + ".queue"
		if q.Size < 1 {
			v.add(qp+".size", "queue size %d must be at least 1; set queue = { size = 1024, timeout = \"1s\" } or remove queue for no queue", q.Size)
		}
		v.positiveDuration(qp+".timeout", q.Timeout)
	}
}

// backends checks a pool's backend list and its discovery.
func (v *validator) backends(p string, pl *Pool) {
	if d := pl.Discovery; d != nil {
		v.discovery(p+".discovery", d)
	}
	if len(pl.Backends) == 0 {
		if pl.Discovery == nil {
			v.add(p+".backends", `pool has no backends; add backends = [{ address = "host:port" }] or discovery = { name = "...", type = "srv" }`)
		}
		return
	}
	seen := make(map[string]string)
	for i, b := range pl.Backends {
		bp := indexKey(p+".backends", i)
		switch {
		case b.Address == "":
			v.add(bp+".address", `backend has no address; %s`, backendAddrHint)
		default:
			if _, _, msg := checkHostPort(b.Address, false, false); msg != "" {
				v.add(bp+".address", "%s; %s", msg, backendAddrHint)
			} else if first, dup := seen[strings.ToLower(b.Address)]; dup {
				v.add(bp+".address", "duplicate backend %q (also %s); list each address once and use weight for a bigger share", b.Address, v.at(first))
			} else {
				seen[strings.ToLower(b.Address)] = bp
			}
		}
		if b.Weight < 1 {
			v.add(bp+".weight", "weight %d must be at least 1; remove the backend to take it out of the pool", b.Weight)
		} else if b.Weight > maxWeight {
			v.add(bp+".weight", "weight %d is above %d; scale the pool's weights down (only their ratios matter)", b.Weight, maxWeight)
		}
	}
}

// discovery checks pool.NAME.discovery.
func (v *validator) discovery(p string, d *Discovery) {
	name := strings.TrimSuffix(d.Name, ".")
	switch {
	case name == "":
		v.add(p+".name", `discovery has no name; set name = "_http._tcp.api.internal" (srv) or "api.internal" (a)`)
	case len(name) > 253 || strings.ContainsAny(name, " \t/:@"):
		v.add(p+".name", "bad DNS name %q", d.Name)
	}
	switch d.Type {
	case DiscoveryA:
		if d.Port < 1 || d.Port > 65535 {
			v.add(p+".port", `port %d must be 1-65535: type "a" records carry no port; set port = 8080`, d.Port)
		}
	case DiscoverySRV:
		if d.Port != 0 {
			v.add(p+".port", `port is only used with type = "a" (SRV records carry their ports); remove it`)
		}
	default:
		v.add(p+".type", "%s", enumMsg("type", d.Type, []string{DiscoveryA, DiscoverySRV}))
	}
	v.positiveDuration(p+".min_ttl", d.MinTTL)
	v.positiveDuration(p+".max_ttl", d.MaxTTL)
	if d.MinTTL.Duration > 0 && d.MaxTTL.Duration < d.MinTTL.Duration {
		v.add(p+".max_ttl", "max_ttl %v must be at least min_ttl %v", d.MaxTTL.Duration, d.MinTTL.Duration)
	}
	if d.Resolver != "" {
		if _, _, msg := checkHostPort(d.Resolver, false, false); msg != "" {
			v.add(p+".resolver", `%s; write the DNS server as "127.0.0.1:53"`, msg)
		}
	}
	switch d.OnEmpty {
	case DiscoveryKeep, DiscoveryEmpty:
	default:
		v.add(p+".on_empty", "%s", enumMsg("on_empty", d.OnEmpty, []string{DiscoveryKeep, DiscoveryEmpty}))
	}
}

// tableSize checks a Maglev table size: a prime of at least 100 x backends,
// and at least the weights' sum divided by their greatest common divisor (so
// every backend gets its share of slots).
func (v *validator) tableSize(path string, size int, bs []Backend) {
	backends := len(bs)
	need := max(minTablePerBack*backends, minTablePerBack)
	g, sum := 0, 0
	for _, b := range bs {
		if b.Weight >= 1 && b.Weight <= maxWeight {
			g, sum = gcd(g, b.Weight), sum+b.Weight
		}
	}
	if g > 0 {
		need = max(need, sum/g)
	}
	switch {
	case need > maxTableSize:
		v.add(path, "%d backends is too many for consistent_hash (table_size would exceed %d); split the pool", backends, maxTableSize)
	case size > maxTableSize:
		v.add(path, "table_size %d is too large; use a prime of at most %d, such as %d", size, maxTableSize, nextPrime(need))
	case size < need:
		v.add(path, "table_size %d must be at least %d (100 x %d backends, and the sum of weights over their gcd); use a prime such as %d", size, need, backends, nextPrime(need))
	case !isPrime(size):
		v.add(path, "table_size %d must be a prime; use %d", size, nextPrime(size))
	}
}

// health checks [pool.NAME.health].
func (v *validator) health(p string, h *HealthCheck) {
	switch h.Check {
	case "http", "tcp", "grpc", "none":
	default:
		v.add(p+".check", "%s", enumMsg("health check", h.Check, []string{"http", "tcp", "grpc", "none"}))
	}
	if !strings.HasPrefix(h.Path, "/") {
		v.add(p+".path", "path %q must start with \"/\", e.g. \"/healthz\"", h.Path)
	}
	if !isToken(h.Method) {
		v.add(p+".method", "bad method %q: use an HTTP method such as GET or HEAD", h.Method)
	}
	if !h.ExpectStatus.Valid() {
		v.add(p+".expect_status", "bad status range %q: %s", h.ExpectStatus.String(), errStatusRange.Error())
	}
	v.positiveDuration(p+".interval", h.Interval)
	v.positiveDuration(p+".timeout", h.Timeout)
	if h.Timeout.Duration > 0 && h.Interval.Duration > 0 && h.Timeout.Duration >= h.Interval.Duration {
		v.add(p+".timeout", "timeout %s must be less than interval %s; lower timeout or raise interval", h.Timeout, h.Interval)
	}
	if h.Rise < 1 {
		v.add(p+".rise", "rise %d must be at least 1", h.Rise)
	}
	if h.Fall < 1 {
		v.add(p+".fall", "fall %d must be at least 1", h.Fall)
	}
}

// passive checks [pool.NAME.passive].
func (v *validator) passive(p string, ps *Passive) {
	if ps.ConsecutiveFailures < 0 {
		v.add(p+".consecutive_failures", "consecutive_failures %d must be 0 (off) or more", ps.ConsecutiveFailures)
	}
	v.positiveDuration(p+".base_ejection", ps.BaseEjection)
	if ps.BaseEjection.Duration > 0 && ps.MaxEjectionTime.Duration < ps.BaseEjection.Duration {
		v.add(p+".max_ejection_time", "max_ejection_time %s must be at least base_ejection %s", ps.MaxEjectionTime, ps.BaseEjection)
	}
	if ps.MaxEjectionPercent < 0 || ps.MaxEjectionPercent > 100 {
		v.add(p+".max_ejection_percent", "max_ejection_percent %d must be between 0 and 100", ps.MaxEjectionPercent)
	}
}

// bindConflicts reports listeners (and the admin listener) whose addresses
// would collide. Port 0 (any free port) never collides.
func (v *validator) bindConflicts(c *Config) {
	type bound struct {
		path, bind, host string
		port             int
	}
	var seen []bound
	add := func(path, bind string) {
		host, port, msg := checkHostPort(bind, true, true)
		if msg != "" || port == 0 {
			return
		}
		for _, b := range seen {
			if b.port == port && hostsOverlap(b.host, host) {
				v.add(path, "bind %q overlaps %s (bind %q); give each listener its own port", bind, v.at(b.path), b.bind)
				return
			}
		}
		seen = append(seen, bound{path, bind, host, port})
	}
	if c.Admin.Bind != "off" {
		add("admin.bind", c.Admin.Bind)
	}
	for i := range c.Listeners {
		add(indexKey("listener", i)+".bind", c.Listeners[i].Bind)
	}
}

// hostsOverlap reports whether listening on a and b with the same port
// collides: the same host, or a wildcard covering the other.
func hostsOverlap(a, b string) bool {
	all := func(h string) bool { return h == "" || h == "::" }
	any4 := func(h string) bool { return h == "0.0.0.0" }
	is4 := func(h string) bool {
		ip, err := netip.ParseAddr(h)
		return err != nil || ip.Is4() // a name may well resolve to IPv4
	}
	return strings.EqualFold(a, b) || all(a) || all(b) || (any4(a) && is4(b)) || (any4(b) && is4(a))
}

func (v *validator) positiveDuration(path string, d Duration) {
	if d.Duration <= 0 {
		v.add(path, "%s must be greater than 0; use a duration %s", lastKey(path), durationExample)
	}
}

func (v *validator) positiveInt(path string, n int) {
	if n <= 0 {
		v.add(path, "%s %d must be greater than 0", lastKey(path), n)
	}
}

// checkHostPort checks a host:port address and returns its host and port,
// or a message saying what is wrong. An empty host (all interfaces) and port
// 0 (any free port) are accepted only where allowed.
func checkHostPort(addr string, emptyHost, portZero bool) (string, int, string) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Sprintf("bad address %q: not host:port", addr)
	}
	lowest := 1
	if portZero {
		lowest = 0
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < lowest || port > 65535 {
		return "", 0, fmt.Sprintf("bad address %q: the port must be a number from %d to 65535", addr, lowest)
	}
	if host == "" {
		if !emptyHost {
			return "", 0, fmt.Sprintf("bad address %q: the host is missing", addr)
		}
		return host, port, ""
	}
	if _, err := netip.ParseAddr(host); err != nil && !isHostname(host) {
		return "", 0, fmt.Sprintf("bad address %q: %q is neither an IP address nor a host name", addr, host)
	}
	return host, port, ""
}

// checkHostPattern checks a route host: empty, an exact name, or
// "*.suffix". It returns a message, or "".
func checkHostPattern(h string) string {
	if h == "" {
		return ""
	}
	name := h
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		name = rest
	}
	if strings.Contains(h, ":") && !strings.Contains(name, "*") {
		return fmt.Sprintf("bad host %q: leave out the port; the route matches the host name only", h)
	}
	if strings.Contains(name, "*") || !(isHostname(name) || isIP(name)) {
		return fmt.Sprintf(`bad host pattern %q: use an exact name such as "api.example.com" or a wildcard such as "*.example.com"`, h)
	}
	return ""
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// isHostname reports whether s is a plausible DNS name: dot-separated labels
// of letters, digits, '-' and '_', each 1-63 bytes, 253 in all.
func isHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// isName reports whether s is a usable listener, pool or policy name: it
// shows up in metric labels and logs.
func isName(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isBareKeyChar(c) || c == '.') {
			return false
		}
	}
	return true
}

// enumMsg says val is not one of options, suggesting the nearest.
func enumMsg(what, val string, options []string) string {
	if s := nearest(val, options); s != "" {
		return fmt.Sprintf("unknown %s %q; did you mean %q?", what, val, s)
	}
	return fmt.Sprintf("unknown %s %q; use one of: %s", what, val, strings.Join(options, ", "))
}

// didYouMean returns ` (did you mean "x"?)` for the nearest name, or "".
func didYouMean(name string, names []string) string {
	if s := nearest(name, names); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	return ""
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// lastKey returns the last key of a path ("interval" of
// "pool.api.health.interval").
func lastKey(p string) string {
	if parent := parentPath(p); parent != "" {
		return strings.TrimPrefix(p[len(parent):], ".")
	}
	return p
}

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// nextPrime returns the smallest prime >= n.
func nextPrime(n int) int {
	for n = max(n, 2); !isPrime(n); n++ {
	}
	return n
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// ParseTrusted parses one entry of trusted_proxies: a CIDR, or an IP
// address (a prefix of its full length). The prefix is masked.
func ParseTrusted(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return pfx.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
