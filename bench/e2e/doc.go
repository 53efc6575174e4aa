// Package e2e holds end-to-end Go benchmarks of frontdoor over real loopback
// sockets, beside two baselines run the same way in the same process:
//
//   - fasthttp: a bare fasthttp.Server whose handler calls HostClient.Do (the
//     floor the library alone gives, like bench/minproxy);
//   - httputil: net/http with httputil.ReverseProxy, the standard library's
//     proxy.
//
// Each benchmark starts a fasthttp backend, the proxy under test and a
// fasthttp client on 127.0.0.1, then sends GETs from parallel goroutines
// over keep-alive connections. ns/op is the wall time per request with the
// whole machine shared by client, proxy and backend; allocs/op counts every
// allocation in the process, and since the fasthttp client and backend
// allocate nothing in steady state it is the proxy's own.
//
// Use it for before/after comparisons of a change to proxy/ or balancer/
// (STYLE.md §3.7):
//
//	go test -run '^$' -bench E2E -count 10 ./bench/e2e > old.txt
//	# change, then the same into new.txt
//	benchstat old.txt new.txt
//
// For comparisons against HAProxy and nginx, pinned to their own CPU, use
// `make bench` (bench/cmd/sidebyside). The package has no non-test code.
package e2e
