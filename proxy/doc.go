// Package proxy is frontdoor's Layer-7 core, its engines, and the runtime
// that holds them.
//
// The top (proxy.go, runtime.go, listener.go, status.go, tcplistener.go): a
// Proxy binds the listeners of a config, builds an immutable runtime from it
// (route tables, pools, health checkers, stages, pre-bound metric children)
// and publishes it through atomic pointers. Each request loads its
// listener's pointer once and uses that snapshot to the end. Apply builds
// the next runtime beside the old one, keeping listener sockets whose bind
// is unchanged and pool backends (health state, connection pools,
// connection budgets) whose pool and address are unchanged, swaps it in,
// and lets the old one drain. DNS discovery (discovery*.go) re-applies the
// running config the same way when a pool's discovered backends change.
//
// The core (core_*.go) makes every decision a user can observe, once for
// every engine: the route, the request ID, the JWT stage, the headers that
// go out either way, affinity, which backend and whether to retry, passive
// ejection, the pool queue at the backends' connection limit (core_queue.go:
// engines only park and resume an exchange), every answer frontdoor makes
// itself (refuse, fail), the error to
// status mapping (classifyUpstreamError), metrics and the access record. An
// exchange goes through its phases: begin, then pick and attempted once per
// backend tried, then end.
//
// The engines own sockets, buffers and framing, and drive the core's
// phases:
//   - the event loop (loop*.go): plain HTTP/1.1 on epoll, one loop per
//     GOMAXPROCS per listener, no goroutine per connection;
//   - the goroutine engine (goengine*.go): fasthttp's server, for what the
//     loop hands over (HTTP/1.0, Expect, upgrades, large or chunked request
//     bodies, heads it cannot parse);
//   - the HTTP/2 engine (h2engine*.go): every connection that opens with
//     the HTTP/2 preface, relayed frame by frame, gRPC included;
//   - the transcoding engine (transcodeengine.go): requests to a route with
//     transcode = { ... }, handed over by the goroutine engine after begin,
//     become gRPC calls (package proxy/transcode builds them) that ride the
//     HTTP/2 engine's backend connections to the route's h2c pool
//     (transcodecall.go). It lives at the top for TestRooms, since the
//     goroutine engine calls it.
//
// TLS (tls_*.go): a listener with [listener.tls] has no event loop; its
// connections shake hands in their first read (tls_front.go, after
// frontdoor read and classified the ClientHello) and are served by the
// goroutine engine, or by the HTTP/2 entry point when ALPN chose h2. The
// core sets X-Forwarded-Proto https, HSTS and the client-certificate
// headers, and answers redirect_https routes (tls_route.go). Pools with
// tls leave the loop too: the goroutine engine dials them through
// poolBackend.dialTLS (tls_backend.go), which the HTTP/2 engine is meant
// to use for TLS to h2c pools.
//
// The core never names an engine's declarations, and engines do not name
// each other's (TestRooms). The same cases run through both HTTP/1.1
// engines in TestParity. The forwarding paths allocate nothing per request
// in steady state (BenchmarkForward, BenchmarkLoopForward,
// TestForwardAllocs, TestLoopForwardAllocs).
package proxy
