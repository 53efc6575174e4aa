package config

import (
	"testing"
	"time"
)

func TestValidateDiscovery(t *testing.T) {
	t.Parallel()
	disc := func(d string) string {
		return minimal("", "", "", "[pool.d]\ndiscovery = "+d+" #<\n")
	}
	runErrCases(t, []errCase{
		{"no name", disc(`{ type = "srv" }`), "pool.d.discovery.name", "discovery has no name"},
		{"bad name", disc(`{ name = "a b.internal", type = "srv" }`), "pool.d.discovery.name", `bad DNS name "a b.internal"`},
		{"no type", disc(`{ name = "api.internal", port = 80 }`), "pool.d.discovery.type", "type"},
		{"unknown type", disc(`{ name = "api.internal", type = "aaaa", port = 80 }`), "pool.d.discovery.type", `"aaaa"`},
		{"a without port", disc(`{ name = "api.internal", type = "a" }`), "pool.d.discovery.port", "port 0 must be 1-65535"},
		{"srv with port", disc(`{ name = "_http._tcp.api.internal", type = "srv", port = 80 }`), "pool.d.discovery.port", "only used with type"},
		{"max below min", disc(`{ name = "api.internal", type = "a", port = 80, min_ttl = "10s", max_ttl = "5s" }`), "pool.d.discovery.max_ttl", "at least min_ttl"},
		{"min zero", disc(`{ name = "api.internal", type = "a", port = 80, min_ttl = "0s" }`), "pool.d.discovery.min_ttl", "greater than 0"},
		{"bad resolver", disc(`{ name = "api.internal", type = "a", port = 80, resolver = "127.0.0.1" }`), "pool.d.discovery.resolver", "not host:port"},
		{"bad on_empty", disc(`{ name = "api.internal", type = "a", port = 80, on_empty = "drop" }`), "pool.d.discovery.on_empty", `"drop"`},
		{"unknown key", poolCfg(`discovery = { name = "api.internal", type = "a", port = 80, ttl = "1s" } #<`), "pool.api.discovery.ttl", "unknown key"},
	})
}

func TestDiscoveryDefaults(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, minimal("", "", "", "[pool.d]\ndiscovery = { name = \"_http._tcp.api.internal\", type = \"srv\" }\n"))
	d := cfg.Pools["d"].Discovery
	if d == nil || d.MinTTL.Duration != time.Second || d.MaxTTL.Duration != time.Minute || d.OnEmpty != DiscoveryKeep || d.Resolver != "" {
		t.Fatalf("discovery = %+v, want min_ttl 1s, max_ttl 60s, on_empty keep, no resolver", d)
	}
	if len(cfg.Pools["d"].Backends) != 0 {
		t.Fatalf("backends = %v, want none", cfg.Pools["d"].Backends)
	}
	// Static backends and discovery mix.
	cfg = mustParse(t, poolCfg(`discovery = { name = "api.internal", type = "a", port = 8080, min_ttl = "2s", max_ttl = "2s", resolver = "127.0.0.1:5353", on_empty = "empty" }`))
	d = cfg.Pools["api"].Discovery
	if d.Port != 8080 || d.MinTTL.Duration != 2*time.Second || d.OnEmpty != DiscoveryEmpty || len(cfg.Pools["api"].Backends) != 1 {
		t.Fatalf("discovery = %+v, backends %v", d, cfg.Pools["api"].Backends)
	}
}
