# frontdoor: two commands do everything on a fresh machine.
#   make run    build, start three demo backends and frontdoor on config.toml
#   make test   vet, staticcheck, every test with -race, then the hot-path
#               promises without it (installs what tests need)

GO        ?= go
BIN       := bin/frontdoor
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
STATICCHECK_VERSION := v0.8.2
GOBIN     := $(shell $(GO) env GOPATH)/bin

# Debian packages the tests drive as real peers (redis through the tcp
# listener, promtool on /metrics, systemd-analyze on the unit, haproxy for
# PROXY-protocol interop, strace for the splice proof, headless chromium for
# the admin status page, openssl, curl and python3 as TLS clients, h2load as an
# HTTP/2 client). Installed only when a command is missing.
TEST_PACKAGES := redis-server:redis-server promtool:prometheus systemd-analyze:systemd iperf3:iperf3 strace:strace haproxy:haproxy \
	chromium:chromium chromedriver:chromium-driver openssl:openssl curl:curl python3:python3 h2load:nghttp2-client
# protoc compiles the transcoding tests' .proto files (internal/transcodetest);
# libprotobuf-dev has the well-known types' .proto files they import.
TEST_FILES := /usr/include/google/protobuf/timestamp.proto:libprotobuf-dev
TEST_PACKAGES += protoc:protobuf-compiler

.PHONY: all build run test test-norace vet lint staticcheck test-deps fmt clean fuzz-smoke

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/frontdoor

# make run: demo backends on 127.0.0.1:9001-9003, frontdoor on :8080, admin
# on :9901. Ctrl-C stops everything it started.
run: build
	@$(GO) build -o bin/demobackend ./bench/demobackend
	@bin/frontdoor -check -config config.toml
	@echo "Starting 3 demo backends and frontdoor. Try, in another terminal:"
	@echo "    curl -i http://127.0.0.1:8080/hello"
	@echo "    curl -s http://127.0.0.1:9901/metrics | grep frontdoor_requests_total"
	@echo "    curl -s http://127.0.0.1:9901/status"
	@echo "Ctrl-C stops everything."
	@bash -c 'bin/demobackend -n 3 -base-port 9001 & b=$$!; \
	  bin/frontdoor -config config.toml & f=$$!; \
	  trap "kill -TERM $$f $$b 2>/dev/null; wait $$f $$b 2>/dev/null; exit 0" INT TERM; \
	  wait -n $$f $$b; kill -TERM $$f $$b 2>/dev/null; wait $$f $$b 2>/dev/null'

test: test-deps vet staticcheck
	$(GO) test -race -count=1 -timeout 15m ./...
	$(MAKE) --no-print-directory test-norace
	$(MAKE) --no-print-directory fuzz-smoke

# test-norace checks the hot path's promises without -race, which changes
# allocation counts and CPU costs (so -race alone never ran them):
#  1. every test of a file built only without it (//go:build !race:
#     allocation counts, CPU ratios), found by grep so a new one needs no
#     edit here, plus NORACE_ALSO, tests that skip or assert less under
#     -race; one package at a time, so CPU measurements do not overlap;
#  2. the Forward and Pick benchmarks, whose allocs/op bench/cmd/allocgate
#     holds to 0 except for its commented allow-list. ALLOC_BENCHTIME is
#     high enough that a fixed warm-up cost rounds to 0 allocs/op while one
#     allocation per request always shows.
NORACE_ALSO := ./proxy:TestForwardBodiesAllocs ./proxy/tcp:TestZeroCopy
ALLOC_BENCH := Forward|Pick
ALLOC_BENCHTIME := 2000x
test-norace:
	@set -e; runs="$(NORACE_ALSO)"; \
	for f in $$(grep -rlE --include='*_test.go' '^//go:build .*!race' .); do \
	  for fn in $$(sed -nE 's/^func (Test[A-Za-z0-9_]*)\([A-Za-z0-9_]+ \*testing\.T\).*/\1/p' $$f); do \
	    runs="$$runs $$(dirname $$f):$$fn"; \
	  done; \
	done; \
	for pkg in $$(for r in $$runs; do echo $${r%%:*}; done | sort -u); do \
	  re=$$(for r in $$runs; do [ "$${r%%:*}" != "$$pkg" ] || echo $${r##*:}; done | paste -sd'|' -); \
	  echo "go test -count=1 -run '^($$re)\$$' $$pkg"; \
	  $(GO) test -count=1 -timeout 5m -run "^($$re)\$$" $$pkg; \
	done
	@mkdir -p bench/out
	$(GO) test -count=1 -timeout 5m -run '^$$' -bench '$(ALLOC_BENCH)' -benchtime $(ALLOC_BENCHTIME) -benchmem ./proxy/... ./balancer/ \
	  > bench/out/allocs.txt 2>&1 || { cat bench/out/allocs.txt; exit 1; }
	$(GO) run ./bench/cmd/allocgate < bench/out/allocs.txt

# fuzz-smoke runs every parser's fuzz target for a bounded number of inputs (FUZZTIME
# each), so CI exercises them beyond their seed corpora. Crashers land in
# the package's testdata/fuzz and fail the run. A target may name its own
# count (pkg:Fuzz:COUNT): FuzzEnginesAgree serves each input through a
# fasthttp server, so it runs fewer.
FUZZTIME ?= 50000x
FUZZ_TARGETS := ./config:FuzzParse ./proxy/jwt:FuzzVerify ./proxy/jwt:FuzzJWKS \
	./proxy/tcp:FuzzParseProxyHeader ./proxy/tcp:FuzzParseClientHello ./health:FuzzRespReader ./proxy:FuzzEnginesAgree:20000x \
	./proxy:FuzzH2Conn:1000x ./proxy/transcode:FuzzParseTemplate ./proxy/transcode:FuzzTranscodeRequest
fuzz-smoke:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; rest=$${t#*:}; fn=$${rest%%:*}; n=$(FUZZTIME); \
	  case $$rest in *:*) n=$${rest#*:};; esac; \
	  echo "fuzz $$pkg $$fn ($$n)"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $$n $$pkg; \
	done

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

staticcheck: $(GOBIN)/staticcheck
	$(GOBIN)/staticcheck ./...

$(GOBIN)/staticcheck:
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# test-deps installs the Debian packages tests use, once, only if missing.
test-deps:
	@missing=""; for pair in $(TEST_PACKAGES); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || missing="$$missing $$pkg"; \
	done; \
	for pair in $(TEST_FILES); do \
	  [ -e $${pair%%:*} ] || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  echo "installing:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin bench/out

-include bench/bench.mk
