package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func dur(d time.Duration) Duration { return Duration{d} }

// TestLoadFull loads DESIGN.md's example and checks every value, written or
// defaulted.
func TestLoadFull(t *testing.T) {
	t.Parallel()
	cfg, err := Load("testdata/full.toml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	hc := HealthCheck{
		Check: "tcp", Path: "/healthz", Method: "GET", ExpectStatus: StatusRange{200, 399},
		Interval: dur(2 * time.Second), Timeout: dur(time.Second), Rise: 2, Fall: 3,
	}
	passive := Passive{
		ConsecutiveFailures: 5, BaseEjection: dur(30 * time.Second), MaxEjectionTime: dur(300 * time.Second),
		MaxEjectionPercent: 50, UnejectOnActivePass: true, CountTimeouts: true, FailureStatuses: MustStatusSet("500,502-504"),
	}
	apiHealth := hc
	apiHealth.Check = "http"
	want := &Config{
		Global: Global{DrainTimeout: dur(30 * time.Second)},
		Admin:  Admin{Bind: "127.0.0.1:9901"},
		Log:    Log{Access: "stdout", Level: "info"},
		Listeners: []Listener{
			{
				Name: "public", Bind: "0.0.0.0:8080", Mode: "http",
				ReadTimeout: dur(30 * time.Second), WriteTimeout: dur(30 * time.Second), IdleTimeout: dur(60 * time.Second),
				MaxConnections: 50000, MaxHeaderBytes: 16384, MaxBodyBytes: 64 << 20,
				HTTP2: HTTP2{MaxConcurrentStreams: 100, InitialWindowSize: 256 << 10, MaxFrameSize: 16384},
				Routes: []Route{
					{Host: "api.example.com", PathPrefix: "/v1/", Pool: "api", JWT: "users"},
					{PathPrefix: "/", Pool: "api"},
				},
			},
			{
				Name: "pg", Bind: "0.0.0.0:6432", Mode: "tcp", Pool: "postgres",
				ReadTimeout: dur(30 * time.Second), WriteTimeout: dur(30 * time.Second), IdleTimeout: dur(time.Hour),
				MaxConnections: 50000, MaxHeaderBytes: 16384, MaxBodyBytes: 64 << 20,
				HTTP2: HTTP2{MaxConcurrentStreams: 100, InitialWindowSize: 256 << 10, MaxFrameSize: 16384},
			},
		},
		Pools: map[string]*Pool{
			"api": {
				Name: "api", Strategy: "consistent_hash", HashOn: HashKey{"header", "X-User-ID"},
				BoundedLoad: 1.25, TableSize: 65537, Affinity: HashKey{"cookie", "fd_backend"}, Protocol: "http1",
				ConnectTimeout: dur(2 * time.Second), ResponseTimeout: dur(30 * time.Second), IdleTimeout: dur(90 * time.Second),
				MaxConnectionsPerBackend: 1024, Retries: 1, RetryBudget: 0.2,
				Backends: []Backend{{Address: "127.0.0.1:9001", Weight: 1}, {Address: "127.0.0.1:9002", Weight: 2}},
				Health:   apiHealth, Passive: passive,
			},
			"postgres": {
				Name: "postgres", Strategy: "round_robin", Protocol: "http1",
				ConnectTimeout: dur(2 * time.Second), ResponseTimeout: dur(30 * time.Second), IdleTimeout: dur(90 * time.Second),
				MaxConnectionsPerBackend: 1024, Retries: 1, RetryBudget: 0.2,
				Backends: []Backend{{Address: "10.0.0.5:5432", Weight: 1}},
				Health:   hc, Passive: passive,
			},
		},
		JWT: map[string]*JWTPolicy{
			"users": {
				Name: "users", JWKSFile: filepath.Join("testdata", "keys", "jwks.json"), JWKSRefresh: dur(5 * time.Minute),
				Issuer: "https://auth.example.com/", Audiences: []string{"api"},
				Algorithms: []string{"RS256", "ES256", "EdDSA"}, Leeway: dur(30 * time.Second),
				ForwardClaims: map[string]string{"sub": "X-User-ID"},
				TokenFrom:     HashKey{"header", "Authorization"}, MaxTokenBytes: 8192,
				CacheSize: 10000, CacheTTL: dur(5 * time.Minute),
			},
		},
		Path: "testdata/full.toml",
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Load mismatch\n got %+v\nwant %+v", cfg, want)
		for name := range want.Pools {
			if !reflect.DeepEqual(cfg.Pools[name], want.Pools[name]) {
				t.Errorf("pool %s\n got %+v\nwant %+v", name, cfg.Pools[name], want.Pools[name])
			}
		}
		for i := range want.Listeners {
			if !reflect.DeepEqual(cfg.Listeners[i], want.Listeners[i]) {
				t.Errorf("listener %d\n got %+v\nwant %+v", i, cfg.Listeners[i], want.Listeners[i])
			}
		}
		if !reflect.DeepEqual(cfg.JWT["users"], want.JWT["users"]) {
			t.Errorf("jwt\n got %+v\nwant %+v", cfg.JWT["users"], want.JWT["users"])
		}
	}
}

// TestLoadDemoConfig keeps the repository's demo config.toml loadable.
func TestLoadDemoConfig(t *testing.T) {
	t.Parallel()
	cfg, err := Load("../config.toml")
	if err != nil {
		for _, e := range Errors(err) {
			t.Error(e)
		}
		t.FailNow()
	}
	if len(cfg.Listeners) == 0 || cfg.Pools["demo"] == nil {
		t.Fatalf("demo config lacks its listener or pool demo: %+v", cfg)
	}
}

// TestAcceptance is the brief's case: an unknown key, a route to a missing
// pool and a bad duration in one file are all reported, each on its line.
func TestAcceptance(t *testing.T) {
	t.Parallel()
	_, err := Load("testdata/acceptance.toml")
	got := Errors(err)
	want := []string{
		`testdata/acceptance.toml:4: listener[0].colour: unknown key; remove it or use one of: accept_proxy, bind, http2, idle_timeout, max_body_bytes, max_connections, max_header_bytes, mode, name, pool, read_timeout, route, send_proxy, sni_route, tls, trusted_proxies, write_timeout`,
		`testdata/acceptance.toml:8: listener[0].route[0].pool: no pool named "apii"; define [pool.apii] or fix the name (did you mean "api"?)`,
		`testdata/acceptance.toml:14: pool.api.health.interval: bad duration "3x": use a Go duration such as 2s or 1m30s`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(got), len(want), err)
	}
	for i := range want {
		if got[i].Error() != want[i] {
			t.Errorf("error %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}

func TestRetriesZeroStaysZero(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, minimal("", "", "retries = 0\n[pool.api.passive]\nconsecutive_failures = 0\n", ""))
	if got := cfg.Pools["api"].Retries; got != 0 {
		t.Errorf("retries = %d, want 0", got)
	}
	if got := cfg.Pools["api"].Passive.ConsecutiveFailures; got != 0 {
		t.Errorf("consecutive_failures = %d, want 0", got)
	}
	cfg = mustParse(t, minimal("", "", "", ""))
	if got := cfg.Pools["api"].Retries; got != 1 {
		t.Errorf("default retries = %d, want 1", got)
	}
}

func TestRelativePaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if err := os.Mkdir(keys, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"jwks.json", "pub.pem", "secret"} {
		if err := os.WriteFile(filepath.Join(keys, f), []byte(strings.Repeat("x", 32)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	abs := filepath.Join(keys, "pub.pem")
	text := minimal("", "", "", `
[log]
access = "logs/access.log"
[jwt.a]
jwks_file = "keys/jwks.json"
[jwt.b]
public_key_file = "`+abs+`"
[jwt.c]
hmac_secret_file = "./keys/secret"
`)
	if err := os.Mkdir(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "frontdoor.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	checks := []struct{ name, got, want string }{
		{"log.access", cfg.Log.Access, filepath.Join(dir, "logs", "access.log")},
		{"jwks_file", cfg.JWT["a"].JWKSFile, filepath.Join(keys, "jwks.json")},
		{"public_key_file (absolute)", cfg.JWT["b"].PublicKeyFile, abs},
		{"hmac_secret_file", cfg.JWT["c"].HMACSecretFile, filepath.Join(keys, "secret")},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if got := cfg.JWT["c"].Algorithms; !reflect.DeepEqual(got, []string{"HS256"}) {
		t.Errorf("hmac policy default algorithms = %v, want [HS256]", got)
	}

	// The same text loaded from another directory no longer finds its files.
	_, err = Parse([]byte(text), "elsewhere/frontdoor.toml")
	var missing []string
	for _, e := range Errors(err) {
		missing = append(missing, e.Key)
	}
	if want := []string{"log.access", "jwt.a.jwks_file", "jwt.c.hmac_secret_file"}; !reflect.DeepEqual(missing, want) {
		t.Errorf("errors for moved config at %v, want %v (%v)", missing, want, err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := Load("testdata/does-not-exist.toml")
	errs := Errors(err)
	if len(errs) != 1 || errs[0].Line != 0 || !strings.Contains(errs[0].Error(), "testdata/does-not-exist.toml: cannot read config: no such file") {
		t.Fatalf("got %v", err)
	}
}

// TestDefaultsFollowExplicitValues checks defaults that depend on other
// settings and that explicit zeros are kept for validation.
func TestDefaultsFollowExplicitValues(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, minimal("", "", "strategy = \"consistent_hash\"\n[pool.api.health]\ninterval = \"1s\"\n", ""))
	pl := cfg.Pools["api"]
	if pl.HashOn != (HashKey{Source: "source_ip"}) || pl.TableSize != 65537 {
		t.Errorf("consistent_hash defaults: hash_on %v table_size %d", pl.HashOn, pl.TableSize)
	}
	if pl.Health.Timeout.Duration != 500*time.Millisecond {
		t.Errorf("health timeout with interval 1s = %v, want 500ms", pl.Health.Timeout)
	}
	cfg = mustParse(t, minimal("", "", "", ""))
	if pl := cfg.Pools["api"]; pl.TableSize != 0 || !pl.HashOn.IsZero() {
		t.Errorf("round_robin pool got hashing defaults: %+v", pl)
	}
}

func TestParseDoesNotShareState(t *testing.T) {
	t.Parallel()
	text := []byte(minimal("", "", "", ""))
	a := mustParse(t, string(text))
	b := mustParse(t, string(text))
	a.Pools["api"].Backends[0].Weight = 99
	if b.Pools["api"].Backends[0].Weight != 1 {
		t.Fatal("two Parse results share backends")
	}
}

// minimal returns a small valid config: listener "web" with a route to pool
// "api". The extras are inserted in the listener, the route, the pool
// table, and after everything.
func minimal(listener, route, pool, rest string) string {
	return `[[listener]]
name = "web"
bind = "127.0.0.1:0"
` + listener + `
  [[listener.route]]
  pool = "api"
` + route + `

[pool.api]
backends = [{ address = "127.0.0.1:9001" }]
` + pool + `

` + rest
}

func mustParse(t *testing.T, text string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(text), "test.toml")
	if err != nil {
		for _, e := range Errors(err) {
			t.Error(e)
		}
		t.Fatalf("Parse of\n%s\nfailed", text)
	}
	return cfg
}

// TestValidEdgeCases loads settings at the edge of what is allowed.
func TestValidEdgeCases(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, text string }{
		{"admin off, access log off", minimal("", "", "", "[admin]\nbind = \"off\"\n[log]\naccess = \"off\"\nlevel = \"debug\"\n")},
		{"admin token file", minimal("", "", "", "[admin]\ntoken_file = \"testdata/keys/admin.token\"\n")},
		{"port 0 binds never collide", minimal("", "", "", "[[listener]]\nname = \"b\"\nbind = \"127.0.0.1:0\"\nmode = \"tcp\"\npool = \"api\"\n")},
		{"same port on two loopback addresses", minimal("", "", "", "[[listener]]\nname = \"b\"\nbind = \"127.0.0.2:8080\"\nmode = \"tcp\"\npool = \"api\"\n[[listener]]\nname = \"c\"\nbind = \"127.0.0.3:8080\"\nmode = \"tcp\"\npool = \"api\"\n")},
		{"ipv4 wildcard beside ipv6", minimal("", "", "", "[[listener]]\nname = \"b\"\nbind = \"0.0.0.0:8080\"\nmode = \"tcp\"\npool = \"api\"\n[[listener]]\nname = \"c\"\nbind = \"[::1]:8080\"\nmode = \"tcp\"\npool = \"api\"\n")},
		{"tcp pool hashing on source_ip", minimal("", "", "strategy = \"consistent_hash\"\nhash_on = \"source_ip\"\ntable_size = 101\n", "[[listener]]\nname = \"pg\"\nbind = \"127.0.0.1:0\"\nmode = \"tcp\"\npool = \"api\"\naccept_proxy = true\nsend_proxy = \"v2\"\n")},
		{"http listener behind a PROXY protocol balancer", minimal("accept_proxy = true\ntrusted_proxies = [\"10.0.0.0/8\"]\n", "", "", "")},
		{"wildcard host and hostname backends", minimal("", "  host = \"*.example.com\"\n  path_prefix = \"/v1/\"\n", "", "[pool.b]\nbackends = [{ address = \"backend-1.internal:80\" }, { address = \"[::1]:81\", weight = 100 }]\n")},
		{"route hosts differ only by path", minimal("", "  host = \"a.example.com\"\n  [[listener.route]]\n  host = \"a.example.com\"\n  path_prefix = \"/api/\"\n  pool = \"api\"\n", "", "")},
		{"bounded load and affinity", minimal("", "", "strategy = \"consistent_hash\"\nhash_on = \"query:user\"\nbounded_load = 1.01\naffinity = \"header:Mcp-Session-Id\"\nprotocol = \"h2c\"\nretries = 10\nretry_budget = 1\n", "")},
		{"slow start, and with consistent_hash (no effect there)", minimal("", "", "slow_start = \"30s\"\n[pool.b]\nstrategy = \"consistent_hash\"\nslow_start = \"1m\"\nbackends = [{ address = \"10.0.0.9:80\" }]\n", "")},
		{"health extremes", minimal("", "", "[pool.api.health]\ncheck = \"none\"\nexpect_status = 204\nrise = 1\nfall = 1\n[pool.api.passive]\nmax_ejection_percent = 0\n", "")},
		{"grpc check", minimal("", "", "[pool.api.health]\ncheck = \"grpc\"\nservice = \"my.Service\"\ninterval = \"10s\"\ntimeout = \"9s\"\n", "")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mustParse(t, tc.text)
		})
	}
}

func TestErrorsHelper(t *testing.T) {
	t.Parallel()
	if Errors(nil) != nil {
		t.Error("Errors(nil) is not nil")
	}
	foreign := errors.New("boom")
	a := &Error{File: "f.toml", Line: 2, Key: "k", Msg: "m"}
	got := Errors(errors.Join(a, fmt.Errorf("wrapped: %w", &Error{Msg: "inner"}), foreign))
	if len(got) != 3 || got[0] != a || got[1].Msg != "inner" || got[2].Msg != "boom" {
		t.Fatalf("Errors = %v", got)
	}
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "f.toml", Line: 2, Key: "k", Msg: "m"}, "f.toml:2: k: m"},
		{Error{File: "f.toml", Msg: "m"}, "f.toml: m"},
		{Error{Line: 3, Key: "k", Msg: "m"}, "line 3: k: m"},
		{Error{Msg: "m"}, "m"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}
