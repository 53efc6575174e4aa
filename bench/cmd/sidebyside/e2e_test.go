package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEndToEnd runs the real harness briefly: nginx backend, HAProxy,
// minproxy, grpcbackend and grpcload (built here), frontdoor when
// FRONTDOOR_BIN names a binary, wrk, iperf3 and h2load. It needs those
// programs, so it runs only with FRONTDOOR_BENCH=1.
func TestEndToEnd(t *testing.T) {
	if os.Getenv("FRONTDOOR_BENCH") != "1" {
		t.Skip("set FRONTDOOR_BENCH=1 to run the harness against haproxy, nginx, wrk and iperf3")
	}
	dir := t.TempDir()
	for _, name := range []string{"minproxy", "grpcbackend", "grpcload"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), "frontdoor/bench/"+name).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
	o := options{
		Rounds: 1, Duration: time.Second, Warmup: time.Second,
		Workloads: "small-64,l4-1,grpc-empty-1x64,grpc-stream-1m,grpc-bidi-1k", FrontdoorBin: os.Getenv("FRONTDOOR_BIN"),
		MinproxyBin: filepath.Join(dir, "minproxy"), GRPCBackendBin: filepath.Join(dir, "grpcbackend"),
		GRPCLoadBin: filepath.Join(dir, "grpcload"),
		Out:         filepath.Join(dir, "RESULTS.md"), CPUProxy: "1", CPULoad: "0", Command: "go test",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, o, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	report, err := os.ReadFile(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| haproxy | ", "| minproxy | ", "| direct | ", "### L4 bulk transfer",
		"### gRPC unary, empty message", "### gRPC bidi stream"} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report lacks %q:\n%s\nprogress:\n%s", want, report, stderr.String())
		}
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, "n/a") && !strings.Contains(line, "frontdoor") {
			t.Errorf("a peer failed: %s", line)
		}
	}
}
