# bench/bench.mk: side-by-side benchmarks of frontdoor against HAProxy, nginx
# and bench/minproxy. Included by the top-level Makefile; run from the
# repository root. See bench/README.md.
#
#   make bench         full run: 3 rounds, 10 s per run, every workload
#                      (about 15 minutes); writes bench/RESULTS.md
#   make bench-quick   1 round, 3 s runs, fewer workloads (under 2 minutes);
#                      writes bench/out/RESULTS-quick.md
#
# Extra harness flags go in BENCH_ARGS, e.g.
#   make bench-quick BENCH_ARGS="-targets frontdoor -perf bench/out/perf"

BENCH_GO    ?= $(or $(GO),go)
BENCH_ARGS  ?=
# command:Debian package, for each peer and load generator the harness runs.
BENCH_TOOLS := haproxy:haproxy nginx:nginx wrk:wrk iperf3:iperf3 h2load:nghttp2-client
BENCH_SUDO  := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: bench bench-quick bench-deps bench-build

# Install the peers and load generators from Debian, only when one is missing
# (apt-get update runs once, then one apt-get install for all of them).
bench-deps:
	@missing=""; \
	for pair in $(BENCH_TOOLS); do \
		b=$${pair%%:*}; pkg=$${pair##*:}; \
		command -v $$b >/dev/null 2>&1 || [ -x /usr/sbin/$$b ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "bench: installing$$missing from Debian"; \
		$(BENCH_SUDO) apt-get update && $(BENCH_SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi

# bin/frontdoor (with the top-level LDFLAGS, so -version is stamped), the minimal fasthttp proxy, the gRPC backend and bidi load
# generator, and the harness. A frontdoor that does not build is reported as n/a rather than stopping the run.
bench-build:
	@mkdir -p bin bench/out
	@$(BENCH_GO) build -ldflags "$(LDFLAGS)" -o bin/frontdoor ./cmd/frontdoor || \
		{ rm -f bin/frontdoor; echo "bench: ./cmd/frontdoor does not build; frontdoor will be n/a"; }
	$(BENCH_GO) build -o bench/out/minproxy ./bench/minproxy
	$(BENCH_GO) build -o bench/out/grpcbackend ./bench/grpcbackend
	$(BENCH_GO) build -o bench/out/grpcload ./bench/grpcload
	$(BENCH_GO) build -o bench/out/sidebyside ./bench/cmd/sidebyside

# ulimit: 1,000 client connections need about 2,000 descriptors per proxy;
# raise the limit where allowed, the harness raises its soft limit further.
bench: bench-deps bench-build
	ulimit -n 65536 2>/dev/null || true; \
	bench/out/sidebyside -command "make bench" -out bench/RESULTS.md $(BENCH_ARGS)

bench-quick: bench-deps bench-build
	ulimit -n 65536 2>/dev/null || true; \
	bench/out/sidebyside -quick -command "make bench-quick" -out bench/out/RESULTS-quick.md $(BENCH_ARGS)
