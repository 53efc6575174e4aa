// Command sidebyside benchmarks frontdoor side by side with HAProxy, nginx and
// bench/minproxy (a bare fasthttp HostClient proxy) on one machine, on
// HTTP/1.1, L4 and gRPC workloads, and writes a markdown report
// (bench/RESULTS.md). `make bench` and
// `make bench-quick` (bench/bench.mk) build and run it; bench/README.md says
// how to read the figures.
//
// For every round, workload and target, in that nesting (so targets are
// interleaved round by round), it:
//
//   - writes the target's config into a temp dir and starts it pinned with
//     taskset to -cpu-proxy (GOMAXPROCS=1 for Go proxies, nbthread 1 for
//     HAProxy, one nginx worker), listening on a fresh 127.0.0.1 port;
//   - waits until it listens (and answers 200 for HTTP), then warms it up;
//   - reads utime+stime of the target and its descendants from /proc,
//     runs wrk (HTTP), iperf3 (L4), h2load (gRPC) or bench/grpcload (gRPC
//     bidi) pinned to -cpu-load for -d, reads /proc again, and records CPU
//     time, VmHWM and the load tool's figures;
//   - stops the target by PID (SIGTERM, then SIGKILL after 5 s).
//
// The backends (an nginx with one worker serving /small and a 100 KiB /big,
// an iperf3 server, and bench/grpcbackend, a grpc-go server) run on
// -cpu-load for the whole run. gRPC targets are HAProxy (`proto h2` on both
// sides) and frontdoor (an http listener routing to an h2c pool); before
// each gRPC run, bench/grpcload -check makes one call through the target
// and verifies the whole answer. A target that
// cannot be built, started or reached is reported as n/a with the reason; the
// run goes on. -frontdoor2 adds a second frontdoor binary as target
// frontdoor2, run right after frontdoor: a before/after pair in one run.
// Every process binds 127.0.0.1 only; every run is bounded in
// time. The harness stops only processes it started, each by its PID.
//
// Usage:
//
//	sidebyside [-quick] [-rounds 3] [-d 10s] [-workloads small-64,l4-1] [-targets frontdoor]
//	           [-frontdoor bin/frontdoor] [-frontdoor2 OLD-BINARY] [-minproxy bench/out/minproxy]
//	           [-grpcbackend bench/out/grpcbackend] [-grpcload bench/out/grpcload]
//	           [-out bench/RESULTS.md] [-perf DIR] [-keep] [-list]
package main
