// Command evproxy is a measurement, not a product: the smallest HTTP/1.1
// reverse proxy we could write on ONE goroutine with its own epoll
// (golang.org/x/sys/unix, edge-triggered, non-blocking sockets, the thread
// locked with runtime.LockOSThread), keeping fasthttp only to parse and
// write request and response heads. The side-by-side benchmark
// (bench/cmd/sidebyside, target "evproxy") runs it next to HAProxy,
// minproxy and frontdoor to show the CPU floor an event-loop core would give
// frontdoor, without goroutine parks and wakes, runtime timers or the
// netpoller on the request path.
//
//	evproxy -listen 127.0.0.1:8080 -backend 127.0.0.1:9001
//
// What it does: keep-alive and "Connection: close" clients, pipelined
// requests (served one at a time, in order), request bodies with
// Content-Length that fit the 8 KiB read buffer together with the head,
// a pool of keep-alive backend connections (non-blocking connect in the same
// epoll, one request in flight each, one retry on a fresh connection when a
// pooled one was closed under us before answering), hop-by-hop headers
// dropped and X-Forwarded-For added, response bodies with Content-Length,
// none (HEAD, 204, 304) or delimited by the backend closing, and a
// once-per-second sweep that closes clients idle for 60 s and fails
// requests whose backend has not finished in 30 s.
//
// The loop polls with a raw, zero-timeout epoll_wait and reads and writes
// with raw system calls, so the runtime is entered only for the blocking
// wait when nothing is ready. Responses carry fasthttp's cached Date (its
// one-second updater goroutine is the only other goroutine), not the
// backend's. It allocates nothing per keep-alive request (TestAllocs).
//
// What it does not do: chunked request or response bodies (501 and 502),
// larger request bodies (413), heads over 8 KiB (431) or ending in bare
// LFs, 100-continue, upgrades, IPv6, more than one backend, health checks,
// metrics, logs, graceful shutdown. It listens on IPv4 loopback only and
// exits on SIGINT or SIGTERM (the Go runtime's default).
package main
