package config

import (
	"os"
	"time"
)

// Config is one loaded, defaulted and validated frontdoor configuration. It is
// plain data: nothing in it changes after Load returns, and it is safe to read
// from any number of goroutines. The zero value is not a usable configuration;
// obtain one from Load or Parse.
type Config struct {
	Global    Global                `toml:"global"`
	Admin     Admin                 `toml:"admin"`
	Log       Log                   `toml:"log"`
	Listeners []Listener            `toml:"listener"`
	Pools     map[string]*Pool      `toml:"pool"`
	JWT       map[string]*JWTPolicy `toml:"jwt"`
	Tracing   Tracing               `toml:"tracing"` // tracing.go

	// Path is the file the configuration was read from ("" when parsed from
	// memory). Relative file names inside the config (jwks_file, access log)
	// are resolved against its directory at load time.
	Path string `toml:"-"`
}

// ErrorAt returns a problem found after Load (by the proxy, in a file the
// config names) as an *Error at TOML path key, so that it prints like
// Load's own errors: with the line key is written on in the file at Path,
// read again for that (line 0 when it cannot be read, or Path is "").
// Safe for concurrent use.
func (c *Config) ErrorAt(key, msg string) *Error {
	e := &Error{File: c.Path, Key: key, Msg: msg}
	if c.Path != "" {
		if data, err := os.ReadFile(c.Path); err == nil {
			e.Line = indexLines(string(data)).line(key)
		}
	}
	return e
}

// Global holds process-wide settings ([global]).
type Global struct {
	// DrainTimeout bounds how long in-flight requests and TCP sessions may
	// run after SIGTERM or after a reload removes them. Default 30s.
	DrainTimeout Duration `toml:"drain_timeout"`
	// ShutdownDelay is how long, after SIGTERM, /readyz answers 503 while
	// the listeners keep serving, before the drain starts: time for a load
	// balancer in front to see the instance leave. Default 0 (drain at
	// once).
	ShutdownDelay Duration `toml:"shutdown_delay"`
}

// Admin is the admin HTTP listener ([admin]): /metrics /healthz /readyz /status,
// and the write endpoints (POST /backends/...) when TokenFile is set.
type Admin struct {
	// Bind is host:port. Default "127.0.0.1:9901". An empty string after
	// defaults means the default; "off" disables the admin listener.
	Bind string `toml:"bind"`
	// TokenFile holds the bearer token the write endpoints require (at
	// least 16 bytes; one trailing newline ignored), read at start and on
	// every reload. Default "": the write endpoints are off. A relative
	// name is resolved against the config file's directory.
	TokenFile string `toml:"token_file"`
}

// Log configures logging ([log]).
type Log struct {
	// Access is "stdout" (default), "off", or a file path (reopened on SIGUSR1).
	Access string `toml:"access"`
	// Level is the level of the process log on stderr: "debug", "info"
	// (default), "warn" or "error".
	Level string `toml:"level"`
}

// Listener is one [[listener]] table: a bound address in http or tcp mode.
type Listener struct {
	// Name is unique among listeners, required; the listener label of
	// metrics.
	Name string `toml:"name"`
	// Bind is host:port, required.
	Bind string `toml:"bind"`
	// Mode is "http" (default) or "tcp".
	Mode string `toml:"mode"`

	// ReadTimeout bounds reading one request (headers and body) from the
	// client. Default 30s.
	ReadTimeout Duration `toml:"read_timeout"`
	// WriteTimeout bounds writing one response to the client. Default 30s.
	WriteTimeout Duration `toml:"write_timeout"`
	// IdleTimeout closes a keep-alive client connection (http) or a TCP
	// session with no traffic in either direction (tcp). Default 60s (http),
	// 1h (tcp).
	IdleTimeout Duration `toml:"idle_timeout"`
	// MaxConnections caps concurrent client connections; excess connections
	// are closed at once and counted. Default 50000.
	MaxConnections int `toml:"max_connections"`
	// MaxHeaderBytes caps the request header block; larger gets 431.
	// Default 16384.
	MaxHeaderBytes int `toml:"max_header_bytes"`
	// MaxBodyBytes caps a request body; larger gets 413. Default 64 MiB.
	MaxBodyBytes int64 `toml:"max_body_bytes"`

	// Routes (http mode) are matched by host, then longest path prefix.
	Routes []Route `toml:"route"`

	// TrustedProxies (http mode) lists the peers, as CIDRs ("10.0.0.0/8")
	// or addresses, whose forwarding headers (X-Forwarded-For, -Proto,
	// -Host, Forwarded) are appended to; from any other peer they are
	// replaced. Default empty: frontdoor is the edge and trusts no one.
	TrustedProxies []string `toml:"trusted_proxies"`

	// Pool (tcp mode) names the pool every connection goes to.
	Pool string `toml:"pool"`
	// AcceptProxy expects a PROXY protocol v1 or v2 header from an
	// upstream load balancer on every connection (tcp mode; http mode: its
	// source address is the client's). Default false.
	AcceptProxy bool `toml:"accept_proxy"`
	// SendProxy (tcp mode) writes a PROXY protocol header to the backend:
	// "" (default, none), "v1" or "v2".
	SendProxy string `toml:"send_proxy"`

	// TLS (http mode), when set, terminates TLS on the listener
	// ([listener.tls], tls.go). nil (default): plain HTTP.
	TLS *ListenerTLS `toml:"tls"`
	// SNIRoutes (tcp mode) route TLS connections by the server name of
	// their ClientHello without terminating them ([[listener.sni_route]],
	// tls.go); Pool is then the pool of connections no route matches.
	SNIRoutes []SNIRoute `toml:"sni_route"`

	// HTTP2 is the [listener.http2] table (http mode): the HTTP/2 settings
	// frontdoor advertises to clients.
	HTTP2 HTTP2 `toml:"http2"`
}

// HTTP2 is a listener's [listener.http2] table.
type HTTP2 struct {
	// MaxConcurrentStreams is SETTINGS_MAX_CONCURRENT_STREAMS: streams a
	// client may have open at once; more are refused (REFUSED_STREAM).
	// Default 100.
	MaxConcurrentStreams int `toml:"max_concurrent_streams"`
	// InitialWindowSize is SETTINGS_INITIAL_WINDOW_SIZE, the bytes of
	// request body a stream may send ahead of frontdoor passing them on;
	// the connection's window is 4 times it (at least 1 MiB). Default
	// 262144.
	InitialWindowSize int `toml:"initial_window_size"`
	// MaxFrameSize is SETTINGS_MAX_FRAME_SIZE, the largest frame a client
	// may send, 16384 to 16777215. Default 16384.
	MaxFrameSize int `toml:"max_frame_size"`
}

// Route is one [[listener.route]] table of an http listener.
type Route struct {
	// Host matches the request host exactly, or any subdomain when it is
	// "*.example.com". Empty matches every host.
	Host string `toml:"host"`
	// PathPrefix matches the request path by prefix; default "/".
	PathPrefix string `toml:"path_prefix"`
	// Pool names a [pool.NAME] table, required unless RedirectHTTPS.
	Pool string `toml:"pool"`
	// JWT optionally names a [jwt.NAME] policy every request must pass.
	JWT string `toml:"jwt"`
	// RedirectHTTPS answers every request the route matches with a 308 to
	// the same host and path over https (a plain listener only); Pool
	// and JWT are then not set. Default false.
	RedirectHTTPS bool `toml:"redirect_https"`
	// Transcode, when set, turns HTTP/JSON requests into gRPC calls to the
	// route's pool (protocol "h2c"), as the google.api.http options of a
	// descriptor set bind them. nil: requests pass through.
	Transcode *Transcode `toml:"transcode"`
}

// Transcode is a route's transcode = { ... } table: JSON/HTTP to gRPC.
type Transcode struct {
	// DescriptorSet is the file protoc wrote with --include_imports
	// (--include_source_info is optional), required; read at start and
	// on every reload. A relative name is resolved against the config
	// file's directory.
	DescriptorSet string `toml:"descriptor_set"`
	// Services lists the full names of the services to expose
	// ("users.v1.UserService"), at least one.
	Services []string `toml:"services"`
	// StripPrefix is removed from the request path before it is matched
	// against the path templates; it must be a prefix of the route's
	// path_prefix. Default "" (none).
	StripPrefix string `toml:"strip_prefix"`
	// UseProtoNames writes JSON field names as in the .proto instead of
	// lowerCamelCase. Default false.
	UseProtoNames bool `toml:"use_proto_names"`
	// EmitDefaults writes fields that hold their default value. Default
	// false.
	EmitDefaults bool `toml:"emit_defaults"`
	// EnumsAsInts writes enums as numbers. Default false (names).
	EnumsAsInts bool `toml:"enums_as_ints"`
	// DiscardUnknown ignores request body fields the message lacks.
	// Default false (400).
	DiscardUnknown bool `toml:"discard_unknown"`
	// ForwardHeaders are request headers sent on as gRPC metadata,
	// besides the ones always sent (README, "JSON/HTTP to gRPC"). Default
	// none.
	ForwardHeaders []string `toml:"forward_headers"`
}

// Pool is one [pool.NAME] table.
type Pool struct {
	// Name is the NAME of [pool.NAME], filled in by Load.
	Name string `toml:"-"`

	// Strategy is "round_robin" (default), "least_conn" or "consistent_hash".
	Strategy string `toml:"strategy"`
	// HashOn says where consistent_hash takes its key; default source_ip.
	HashOn HashKey `toml:"hash_on"`
	// BoundedLoad, when above 1, caps a backend at ceil(c x average) in-flight
	// requests under consistent hashing. 0 (default) disables it.
	BoundedLoad float64 `toml:"bounded_load"`
	// TableSize is the Maglev lookup table size, a prime of at least 100 x
	// the backend count. Default 65537.
	TableSize int `toml:"table_size"`
	// Affinity is "" (none), "cookie:NAME" or "header:NAME" (stateless
	// session affinity, learned from the backend's response for headers).
	Affinity HashKey `toml:"affinity"`
	// AffinitySecretFile optionally holds a secret (at least 16 bytes; one
	// trailing newline ignored) that keys the affinity tokens, so clients
	// cannot compute a token for a backend of their choice. Every frontdoor
	// instance sharing a config must use the same secret. Without it the
	// key is derived from the pool name and the affinity setting alone.
	AffinitySecretFile string `toml:"affinity_secret_file"`
	// Protocol spoken to the backends: "http1" (default) or "h2c".
	Protocol string `toml:"protocol"`
	// SlowStart ramps a backend's weight linearly from about 0 to full over
	// this long after it comes up (from down or ejected, or added by a
	// reload), under round_robin and least_conn; consistent_hash ignores it
	// (keys stay put). Default 0: off.
	SlowStart Duration `toml:"slow_start"`

	// ConnectTimeout bounds dialing a backend. Default 2s.
	ConnectTimeout Duration `toml:"connect_timeout"`
	// ResponseTimeout bounds the wait for the first response byte; then 504.
	// Default 30s.
	ResponseTimeout Duration `toml:"response_timeout"`
	// IdleTimeout closes pooled idle upstream connections. Default 90s.
	IdleTimeout Duration `toml:"idle_timeout"`
	// MaxConnectionsPerBackend caps open connections to each backend.
	// Default 1024.
	MaxConnectionsPerBackend int `toml:"max_connections_per_backend"`
	// Retries is how many times a failed request is tried on another
	// backend. Default 1; 0 disables retries.
	Retries int `toml:"retries"`
	// RetryBudget caps retries at this fraction of active requests (with a
	// floor of 3 concurrent retries). Default 0.2.
	RetryBudget float64 `toml:"retry_budget"`

	// Backends lists the pool's static members. A pool needs at least one
	// static backend or a Discovery.
	Backends []Backend `toml:"backends"`
	// Discovery, when set, adds the backends a DNS name resolves to,
	// re-resolved as its records expire. nil (default): static backends
	// only.
	Discovery *Discovery `toml:"discovery"`
	// Health is the active health check, [pool.NAME.health].
	Health HealthCheck `toml:"health"`
	// Passive is passive ejection, [pool.NAME.passive].
	Passive Passive `toml:"passive"`
	// TLS, when set, makes connections to the backends TLS (tls.go),
	// health checks included. nil (default): plain TCP.
	TLS *PoolTLS `toml:"tls"`
	// Queue, when set, makes a request that finds every backend at
	// MaxConnectionsPerBackend wait for a free connection slot (HAProxy's
	// maxconn queue). nil (default): no queue, such a request gets 503 at
	// once.
	Queue *Queue `toml:"queue"`
}

// Queue is a pool's wait queue, pool.NAME.queue = { size = N, timeout = "1s" }:
// requests over the per-backend connection limit wait, first come first
// served, for a connection slot on any backend of the pool. Both keys are
// required.
type Queue struct {
	// Size is how many requests may wait at once, at least 1; a request
	// that finds the queue full gets 503 at once.
	Size int `toml:"size"`
	// Timeout is the longest a request waits (HAProxy's timeout queue),
	// greater than 0; then 503.
	Timeout Duration `toml:"timeout"`
}

// Discovery is pool.NAME.discovery = { name = "...", type = "srv" }: the
// pool's backends (besides its static ones) are what a DNS name resolves
// to, re-resolved at the records' TTL bounded by MinTTL and MaxTTL.
type Discovery struct {
	// Name is the DNS name asked, required; it is asked as an absolute
	// name (no search list).
	Name string `toml:"name"`
	// Type is "a" (A and AAAA records: every address a backend at Port)
	// or "srv" (SRV records: every target a backend at its port, weighted
	// by its weight; only the lowest priority present is used). Required.
	Type string `toml:"type"`
	// Port is the backends' port with type "a" (required there, 1-65535);
	// type "srv" takes ports from the records and must not set it.
	Port int `toml:"port"`
	// MinTTL is the shortest wait between resolutions, whatever the
	// records' TTL. Default 1s.
	MinTTL Duration `toml:"min_ttl"`
	// MaxTTL is the longest wait between resolutions, and the wait when
	// the TTL is not known (a failed resolution, the system resolver).
	// Default 60s; at least MinTTL.
	MaxTTL Duration `toml:"max_ttl"`
	// Resolver is the DNS server asked, host:port over UDP. Default "":
	// the first nameserver of /etc/resolv.conf (Go's resolver, without
	// TTLs, when the file names none).
	Resolver string `toml:"resolver"`
	// OnEmpty says what an answer with no records does: "keep" (default)
	// keeps the last good set, as a failed resolution does; "empty" removes
	// every discovered backend.
	OnEmpty string `toml:"on_empty"`
}

// Discovery types and on_empty values.
const (
	DiscoveryA     = "a"
	DiscoverySRV   = "srv"
	DiscoveryKeep  = "keep"
	DiscoveryEmpty = "empty"
)

// Backend is one member of a pool's backends array.
type Backend struct {
	// Address is host:port, required.
	Address string `toml:"address"`
	// Weight is the relative share of traffic, at least 1. Default 1.
	Weight int `toml:"weight"`
	// Tier is the failover group (balancer.Member.Tier): 0, the primary
	// group, for every backend of the config file; DNS discovery sets it
	// from SRV priorities. It is not a TOML key.
	Tier int `toml:"-"`
}

// HealthCheck is a pool's active check, [pool.NAME.health].
type HealthCheck struct {
	// Check is "http", "tcp" (connect only), "grpc" or "none". Default
	// "tcp", as HAProxy's plain "check".
	Check string `toml:"check"`
	// Path (http) is the request path. Default "/healthz".
	Path string `toml:"path"`
	// Method (http) is the request method. Default "GET".
	Method string `toml:"method"`
	// Host (http) is the Host header sent; default the backend address.
	Host string `toml:"host"`
	// ExpectStatus (http) is the accepted status range "LOW-HIGH" or a single
	// code. Default "200-399".
	ExpectStatus StatusRange `toml:"expect_status"`
	// Service (grpc) is the service name asked of grpc.health.v1; default "".
	Service string `toml:"service"`
	// Interval between checks of one backend (jittered by up to 10%).
	// Default 2s.
	Interval Duration `toml:"interval"`
	// Timeout of one check. Default 1s; must be less than Interval.
	Timeout Duration `toml:"timeout"`
	// Rise consecutive successes mark a down backend up. Default 2.
	Rise int `toml:"rise"`
	// Fall consecutive failures mark an up backend down. Default 3.
	Fall int `toml:"fall"`
}

// Passive is passive ejection, [pool.NAME.passive]: consecutive failures seen
// on real traffic eject a backend for a cooldown. The ejection ends when the
// cooldown is over or, with UnejectOnActivePass, as soon as the active check
// sees the backend recover.
type Passive struct {
	// ConsecutiveFailures (connection failures, resets, timeouts when
	// CountTimeouts, and the statuses in FailureStatuses) that eject a
	// backend. Default 5; 0 disables passive ejection.
	ConsecutiveFailures int `toml:"consecutive_failures"`
	// BaseEjection is the first ejection's length; the n-th ejection in a
	// row lasts BaseEjection × 2^(n-1), at most MaxEjectionTime. Default 30s.
	BaseEjection Duration `toml:"base_ejection"`
	// MaxEjectionTime caps an ejection's length (Envoy's
	// max_ejection_time). Default 300s; at least BaseEjection.
	MaxEjectionTime Duration `toml:"max_ejection_time"`
	// MaxEjectionPercent caps the share of a pool ejected at once. Default 50.
	MaxEjectionPercent int `toml:"max_ejection_percent"`
	// UnejectOnActivePass ends an ejection at once when the active check
	// reports the backend's recovery (its down-to-up transition after rise
	// passes); a check that passed all along ends nothing. Default true.
	UnejectOnActivePass bool `toml:"uneject_on_active_pass"`
	// CountTimeouts counts a response_timeout (504) as a failure; a connect
	// timeout is a connect failure and always counts. Default true.
	CountTimeouts bool `toml:"count_timeouts"`
	// FailureStatuses are the backend statuses that count as failures,
	// read from a list such as "500,502-504" (the default: 501, 505 and
	// the other 5xx do not count, as in HAProxy). Only 500-599 may be
	// listed; "" counts no status.
	FailureStatuses StatusSet `toml:"failure_statuses"`
}

// JWTPolicy is one [jwt.NAME] table.
type JWTPolicy struct {
	// Name is the NAME of [jwt.NAME], filled in by Load.
	Name string `toml:"-"`

	// Exactly one key source: JWKSFile (reloaded on SIGHUP), JWKSURL
	// (https, or http to loopback; refreshed every JWKSRefresh), PublicKeyFile
	// (PEM), HMACSecretFile (raw secret, one trailing newline ignored).
	JWKSFile       string `toml:"jwks_file"`
	JWKSURL        string `toml:"jwks_url"`
	PublicKeyFile  string `toml:"public_key_file"`
	HMACSecretFile string `toml:"hmac_secret_file"`
	// JWKSRefresh is how often JWKSURL is fetched. Default 5m.
	JWKSRefresh Duration `toml:"jwks_refresh"`

	// Issuer, when set, must equal the iss claim.
	Issuer string `toml:"issuer"`
	// Audiences, when set, must contain one of the aud claim's values.
	Audiences []string `toml:"audiences"`
	// Algorithms allowed; default ["RS256", "ES256", "EdDSA"].
	Algorithms []string `toml:"algorithms"`
	// Leeway for exp, nbf and iat. Default 30s.
	Leeway Duration `toml:"leeway"`
	// RequiredClaims must be present in every token.
	RequiredClaims []string `toml:"required_claims"`
	// ForwardClaims maps claim name to the request header set from it.
	// Incoming copies of those headers are always removed first.
	ForwardClaims map[string]string `toml:"forward_claims"`
	// TokenFrom is where the token is read: "header:Authorization" (default,
	// "Bearer " prefix), "header:NAME" or "cookie:NAME".
	TokenFrom HashKey `toml:"token_from"`
	// StripAuthorization removes the token's header before forwarding.
	StripAuthorization bool `toml:"strip_authorization"`
	// MaxTokenBytes rejects longer tokens before parsing. Default 8192.
	MaxTokenBytes int `toml:"max_token_bytes"`
	// CacheSize is the number of verified tokens remembered. Default 10000;
	// 0 after defaults means the default, -1 disables the cache.
	CacheSize int `toml:"cache_size"`
	// CacheTTL bounds how long a verified token is remembered (never past
	// its exp). Default 5m.
	CacheTTL Duration `toml:"cache_ttl"`
}

// Duration is a time.Duration read from a Go duration string ("2s", "1m30s").
type Duration struct{ time.Duration }

// HashKey is a parsed key source such as "source_ip", "path",
// "header:X-User-ID", "cookie:session" or "query:id". The zero value means
// unset.
type HashKey struct {
	// Source is "source_ip", "path", "header", "cookie" or "query".
	Source string
	// Name is the header, cookie or query parameter name ("" for source_ip
	// and path). Header names are kept as written.
	Name string
}

// StatusRange is an inclusive range of HTTP status codes, read from "200-399"
// or "204".
type StatusRange struct{ Low, High int }

// StatusSet is a set of 5xx statuses, read from a comma-separated list of
// codes and ranges within 500-599 such as "500,502-504". The zero value is
// the empty set. Has reads it without allocating; it is safe for concurrent
// reads.
type StatusSet struct{ has [100]bool }
