// Command allocgate holds the hot path to its allocation promises in CI. It
// reads the output of `go test -bench -benchmem` on stdin, copies it to
// stdout, and exits 1 when a benchmark reports more allocs/op than it may:
// 0 (STYLE.md §3: the L7 pass-through path and every picker allocate
// nothing per request in steady state), or the bound of its entry in the
// allow-list (allowed, in main.go), where each entry says why. It also
// exits 1 when the input holds no benchmark result, when go test reported
// a failure, or when an allow-list entry matched no benchmark (a renamed
// benchmark must not keep an exemption nobody sees).
//
// `make test` runs it on the Forward and Pick benchmarks (Makefile,
// test-norace):
//
//	go test -run '^$' -bench 'Forward|Pick' -benchtime 2000x -benchmem ./proxy/... ./balancer/ > bench/out/allocs.txt
//	go run ./bench/cmd/allocgate < bench/out/allocs.txt
//
// allocs/op is the benchmark's allocations divided by b.N, rounded down, so
// a fixed cost of warming up (a pool refilled after a garbage collection,
// connections of a 256-backend pool) must stay below b.N allocations: with
// -benchtime 2000x, a steady allocation of one per request always shows.
package main
