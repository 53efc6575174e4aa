// Command demobackend runs small HTTP/1.1 demo backends on 127.0.0.1 for
// `make run`, manual testing and the side-by-side benchmarks.
//
// Usage, either one listener per -listen/-name pair (flags repeat, pairs are
// matched in order; a missing -name defaults to "backend-N"):
//
//	go run ./bench/demobackend -listen 127.0.0.1:9001 -name backend-1 -listen 127.0.0.1:9002 -name backend-2
//
// or a numbered range, backend-1 on -base-port, backend-2 on -base-port+1, ...:
//
//	go run ./bench/demobackend -n 3 -base-port 9001
//
// With no flags it runs three backends on 127.0.0.1:9001-9003, the pool in the
// repository's config.toml. Every address must be a loopback address: the
// program refuses anything else.
//
// Each backend answers:
//
//	GET /healthz         200 "ok\n"
//	/slow?ms=N           sleeps N ms (at most 60000), then answers as below
//	/size?bytes=N        200 with exactly N bytes of 'x' (at most 1 GiB)
//	anything else        200 "<name> <METHOD> <path>\n"
//
// Every response carries X-Backend: <name>, and the request's X-Request-ID
// echoed back when the request had one. The program logs one line per
// backend when it starts listening and shuts down cleanly (in-flight
// requests finish) on SIGINT or SIGTERM, exiting 0.
package main
