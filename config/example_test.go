package config_test

import (
	"fmt"

	"frontdoor/config"
)

func ExampleParse() {
	cfg, err := config.Parse([]byte(`
[[listener]]
name = "public"
bind = "127.0.0.1:8080"
  [[listener.route]]
  pool = "web"

[pool.web]
backends = [
  { address = "127.0.0.1:9001" },
  { address = "127.0.0.1:9002", weight = 2 },
]
retries = 0
`), "frontdoor.toml")
	if err != nil {
		fmt.Println(err)
		return
	}
	l := cfg.Listeners[0]
	p := cfg.Pools[l.Routes[0].Pool]
	fmt.Println(l.Name, l.Mode, l.IdleTimeout, l.Routes[0].PathPrefix)
	fmt.Println(p.Name, p.Strategy, p.Retries, p.Health.Check, p.Health.Interval, p.Backends[1].Weight)
	// Output:
	// public http 1m0s /
	// web round_robin 0 tcp 2s 2
}

func ExampleErrors() {
	_, err := config.Parse([]byte(`
[[listener]]
name = "public"
bind = "127.0.0.1:8080"
colour = "blue"
  [[listener.route]]
  pool = "apii"

[pool.api]
backends = [{ address = "127.0.0.1:9001" }]
  [pool.api.health]
  interval = "3x"
`), "config.toml")
	for _, e := range config.Errors(err) {
		fmt.Println(e)
	}
	// Output:
	// config.toml:5: listener[0].colour: unknown key; remove it or use one of: accept_proxy, bind, http2, idle_timeout, max_body_bytes, max_connections, max_header_bytes, mode, name, pool, read_timeout, route, send_proxy, sni_route, tls, trusted_proxies, write_timeout
	// config.toml:7: listener[0].route[0].pool: no pool named "apii"; define [pool.apii] or fix the name (did you mean "api"?)
	// config.toml:12: pool.api.health.interval: bad duration "3x": use a Go duration such as 2s or 1m30s
}

func ExampleParseHashKey() {
	k, err := config.ParseHashKey("header:X-User-ID")
	fmt.Println(k.Source, k.Name, err)
	_, err = config.ParseHashKey("header:")
	fmt.Println(err)
	// Output:
	// header X-User-ID <nil>
	// bad key source "header:": the header name after the colon is empty
}

func ExampleLoad() {
	cfg, err := config.Load("testdata/full.toml")
	if err != nil {
		for _, e := range config.Errors(err) {
			fmt.Println(e)
		}
		return
	}
	api := cfg.Pools["api"]
	fmt.Println(api.Strategy, api.HashOn, api.TableSize, api.Health.ExpectStatus)
	fmt.Println(cfg.JWT["users"].JWKSFile)
	// Output:
	// consistent_hash header:X-User-ID 65537 200-399
	// testdata/keys/jwks.json
}

func ExampleParseTicketKeys() {
	keys, err := config.ParseTicketKeys([]byte("# made with: openssl rand -base64 32\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n"))
	fmt.Println(len(keys), keys[1][0], err)
	_, err = config.ParseTicketKeys([]byte("c2hvcnQ=\n"))
	fmt.Println(err)
	// Output:
	// 2 1 <nil>
	// line 1: a key is 32 bytes, this one 5; make a key with: openssl rand -base64 32
}

func ExampleMatchServerName() {
	fmt.Println(config.MatchServerName("*.example.com", "api.example.com"))
	fmt.Println(config.MatchServerName("*.example.com", "a.b.example.com"))
	fmt.Println(config.MatchServerName("*.example.com", "example.com"))
	// Output:
	// true
	// false
	// false
}
