package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"frontdoor/config"
)

// h2loadOut is h2load 1.52's output for 2 s of empty calls.
const h2loadOut = `starting benchmark...
spawning thread #0: 1 total client(s). Timing-based test with 0s of warm-up time and 2s of main duration for measurements.
Main benchmark duration is over for thread #0. Stopping all clients.

finished in 2.00s, 44650.00 req/s, 1.56MB/s
requests: 89300 total, 89364 started, 89300 done, 89300 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 89300 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 3.11MB (3263728) total, 174.43KB (178612) headers (space savings 94.74%), 436.04KB (446500) data
                     min         max         mean         sd        +/- sd
time for request:       54us      8.25ms      1.30ms       636us    86.32%
`

func TestParseH2load(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		out       string
		respBytes int64
		want      loadResult
		wantFail  bool
	}{
		{name: "every call answered in full", out: h2loadOut, respBytes: 5,
			want: loadResult{Requests: 89300, DurationUS: 2e6, Bytes: 446500}},
		// A proxy answering some calls trailers-only (grpc-status in the
		// headers, no message) still gets 200s: h2load counts them as
		// succeeded, the data bytes show they were not answered.
		{name: "some calls without their message", out: strings.Replace(h2loadOut, "(446500) data", "(446000) data", 1), respBytes: 5,
			want: loadResult{Requests: 89200, DurationUS: 2e6, Bytes: 446000, Status: 100}},
		{name: "failures", out: strings.Replace(strings.Replace(h2loadOut, "0 failed, 0 errored, 0 timeout", "7 failed, 3 errored, 2 timeout", 1),
			"finished in 2.00s", "finished in 500.5ms", 1), respBytes: 5,
			want: loadResult{Requests: 89300, DurationUS: 500500, Bytes: 446500, Status: 4, Read: 3, Timeout: 2}},
		{name: "no summary", out: "connect to 127.0.0.1:1: Connection refused\n", wantFail: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseH2load([]byte(tc.out), tc.respBytes)
			if tc.wantFail {
				if err == nil {
					t.Fatalf("parseH2load = %+v, want error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseH2load = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestH2loadPercentiles(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := 100; i >= 1; i-- { // out of order, as with several threads
		b.WriteString("1796470502037061\t200\t" + itoa(i*10) + "\n")
	}
	b.WriteString("1796470502037061\t-1\t999999\n") // a failed stream: not a latency
	p := filepath.Join(t.TempDir(), "log.tsv")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p50, p99, err := h2loadPercentiles(f)
	if err != nil || p50 != 500 || p99 != 990 {
		t.Fatalf("h2loadPercentiles = %v, %v, %v; want 500, 990", p50, p99, err)
	}
	empty, _ := os.Open(os.DevNull)
	defer empty.Close()
	if _, _, err := h2loadPercentiles(empty); err == nil {
		t.Fatal("h2loadPercentiles of an empty log: want error")
	}
}

// TestFrontdoorConfigs checks that every config the harness writes for
// frontdoor is one frontdoor accepts.
func TestFrontdoorConfigs(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"http", "grpc", "tcp"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			text := frontdoorConfig(18080, 18081, 19000, mode)
			c, err := config.Parse([]byte(text), mode+".toml")
			if err != nil {
				t.Fatalf("config.Parse: %v\n%s", err, text)
			}
			if got := c.Pools["be"].Protocol; (mode == "grpc") != (got == "h2c") {
				t.Fatalf("mode %s: pool protocol %q", mode, got)
			}
		})
	}
}

func TestHAProxyGRPCConfig(t *testing.T) {
	t.Parallel()
	c := haproxyGRPCConfig(18080, 19000)
	for _, want := range []string{"mode http", "bind 127.0.0.1:18080 proto h2", "server s1 127.0.0.1:19000 proto h2", "nbthread 1"} {
		if !strings.Contains(c, want) {
			t.Errorf("HAProxy gRPC config lacks %q:\n%s", want, c)
		}
	}
}

func TestGRPCWorkloads(t *testing.T) {
	t.Parallel()
	ws, err := selectWorkloads("grpc-bidi-1k,grpc-empty-1x64,grpc-empty-16x8,grpc-64k,grpc-stream-1m")
	if err != nil || len(ws) != 5 {
		t.Fatalf("selectWorkloads = %d workloads, %v", len(ws), err)
	}
	for _, w := range ws {
		g := w.GRPC
		if g == nil || w.isHTTP() || g.Conns <= 0 || g.Streams <= 0 || len(g.Request) < 5 || g.RespBytes < 5 {
			t.Errorf("%s: %+v", w.Name, g)
		}
	}
	if _, err := selectWorkloads(quickWorkloads); err != nil {
		t.Fatalf("quick preset: %v", err)
	}
	names := func(ts []target) string {
		var n []string
		for _, t := range ts {
			n = append(n, t.Name)
		}
		return strings.Join(n, ",")
	}
	if got := names(selectTargets(grpcTargets, "frontdoor", true)); got != "haproxy,frontdoor,frontdoor2" {
		t.Errorf("gRPC selectTargets with -frontdoor2 = %s", got)
	}
	if got := names(selectTargets(grpcTargets, "", false)); got != "haproxy,frontdoor" {
		t.Errorf("gRPC selectTargets = %s", got)
	}
}

func TestRenderGRPC(t *testing.T) {
	t.Parallel()
	ws, err := selectWorkloads("grpc-empty-1x64,grpc-stream-1m")
	if err != nil {
		t.Fatal(err)
	}
	mk := func(w workload, target string, cpu time.Duration, calls int64) sample {
		return sample{Round: 1, Workload: w.Name, Target: target, CPU: cpu, HWMKiB: 2048, MiB: float64(calls) * w.GRPC.callMiB(),
			Load: loadResult{Requests: calls, DurationUS: 1e6, P50US: 500, P99US: 2000}}
	}
	samples := []sample{
		mk(ws[0], "haproxy", time.Second, 100000), mk(ws[0], "frontdoor", 3*time.Second, 50000),
		mk(ws[1], "haproxy", time.Second, 400), mk(ws[1], "frontdoor", time.Second/2, 400),
	}
	got := render(meta{Command: "x"}, ws, targetSets{HTTP: httpTargets, L4: l4Targets, GRPC: grpcTargets}, samples)
	for _, want := range []string{
		"## gRPC over HTTP/2",
		"| haproxy | 10.00 | 1.00 | 100000 | 1.00 |",
		"| frontdoor | 60.00 | 6.00 | 50000 | 0.50 |",
		"| proxy | CPU µs/call | ×HAProxy | CPU ms/MiB | ×HAProxy | calls/s |",
		"| frontdoor | 1250.00 | 0.50 | 1.250 | 0.50 | 400 | 1.00 |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "## HTTP/1.1") {
		t.Errorf("gRPC-only report has an HTTP section:\n%s", got)
	}
}

// TestGRPCBodies pins the wire format h2load posts and the answer sizes the
// data check expects (h2load's "data" for one call of each, measured
// against bench/grpcbackend).
func TestGRPCBodies(t *testing.T) {
	t.Parallel()
	if got := emptyRequest(); string(got) != "\x00\x00\x00\x00\x00" {
		t.Fatalf("emptyRequest = %q, want five zero bytes", got)
	}
	// BytesValue: tag 0x0a, varint length (3 bytes for 65536), payload.
	if got := echoRequest(64 << 10); len(got) != 65545 || string(got[:8]) != "\x00\x00\x01\x00\x04\x0a\x80\x80" {
		t.Fatalf("echoRequest(64 KiB) = %d bytes starting %q", len(got), got[:8])
	}
	if got := downloadRequest(1 << 20); string(got) != "\x00\x00\x00\x00\x04\x08\x80\x80\x40" {
		t.Fatalf("downloadRequest(1 MiB) = %q", got)
	}
	for _, c := range []struct {
		n    uint64
		want int64
	}{{1 << 20, 1048720}, {grpcChunkBytes + 10, 65545 + 5 + 2 + 10}, {0, 0}} {
		if got := downloadResponseBytes(c.n); got != c.want {
			t.Errorf("downloadResponseBytes(%d) = %d, want %d", c.n, got, c.want)
		}
	}
}
