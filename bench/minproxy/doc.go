// Command minproxy is the smallest useful HTTP/1.1 reverse proxy on fasthttp:
// a fasthttp.Server whose handler hands each request to one
// fasthttp.HostClient. It has no routing, health checks, request IDs, metrics
// or retries, so the side-by-side benchmark (bench/cmd/sidebyside) uses it as
// the floor that the fasthttp library alone gives: whatever frontdoor costs
// above minproxy is frontdoor's own work.
//
//	minproxy -listen 127.0.0.1:8080 -backend 127.0.0.1:9001
//
// Only hop-by-hop handling it does: a client's "Connection: close" is not
// forwarded (the upstream connection stays pooled) but is honoured towards the
// client. It listens on IPv4 loopback only and exits on SIGINT or SIGTERM.
package main
