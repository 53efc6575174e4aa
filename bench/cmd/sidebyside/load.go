package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"time"
)

// workload is one traffic shape.
type workload struct {
	Name  string // short id used by -workloads
	Title string // table heading
	L4    bool
	// HTTP (wrk)
	Path  string
	Conns int
	Close bool // send "Connection: close": a new connection per request
	// TLS: over TLS 1.3 to the targets of tlsTargetsFor (tls.go).
	// Handshake "full" or "resume": a new TLS connection per request made
	// by tlsload, with or without session resumption; "": wrk.
	TLS       bool
	Handshake string
	// L4 (iperf3)
	Streams int
	// GRPC, when set, makes this a gRPC workload (h2load or grpcload).
	GRPC *grpcLoad
}

// isHTTP reports whether w is an HTTP/1.1 (wrk) workload.
func (w workload) isHTTP() bool { return !w.L4 && w.GRPC == nil }

// allWorkloads is the full set, in the order they run and are reported.
var allWorkloads = []workload{
	{Name: "small-64", Title: "Small GET, keep-alive, 64 connections", Path: "/small", Conns: 64},
	{Name: "small-1000", Title: "Small GET, keep-alive, 1,000 connections", Path: "/small", Conns: 1000},
	{Name: "big-64", Title: "100 KiB GET, keep-alive, 64 connections", Path: "/big", Conns: 64},
	{Name: "close-64", Title: "Small GET, new connection per request (Connection: close), 64 connections", Path: "/small", Conns: 64, Close: true},
	{Name: "tls-small-64", Title: "TLS 1.3: small GET, keep-alive, 64 connections", Path: "/small", Conns: 64, TLS: true},
	{Name: "tls-small-1000", Title: "TLS 1.3: small GET, keep-alive, 1,000 connections", Path: "/small", Conns: 1000, TLS: true},
	{Name: "tls-full-64", Title: "TLS 1.3: a new connection per request, full handshake (tlsload), 64 in parallel", Path: "/small", Conns: 64, TLS: true, Handshake: "full"},
	{Name: "tls-resume-64", Title: "TLS 1.3: a new connection per request, resumed with a ticket (tlsload), 64 in parallel", Path: "/small", Conns: 64, TLS: true, Handshake: "resume"},
	{Name: "l4-1", Title: "L4 bulk transfer (iperf3), 1 stream", L4: true, Streams: 1},
	{Name: "l4-8", Title: "L4 bulk transfer (iperf3), 8 streams", L4: true, Streams: 8},
	{Name: "grpc-empty-1x64", Title: "gRPC unary, empty message, 1 connection x 64 streams (h2load -c1 -m64)",
		GRPC: &grpcLoad{Method: methodEmpty, Conns: 1, Streams: 64,
			Request: emptyRequest(), RespBytes: int64(len(emptyRequest()))}},
	{Name: "grpc-empty-16x8", Title: "gRPC unary, empty message, 16 connections x 8 streams (h2load -c16 -m8)",
		GRPC: &grpcLoad{Method: methodEmpty, Conns: 16, Streams: 8,
			Request: emptyRequest(), RespBytes: int64(len(emptyRequest()))}},
	{Name: "grpc-64k", Title: "gRPC unary, 64 KiB messages echoed, 1 connection x 16 streams (h2load -c1 -m16)",
		GRPC: &grpcLoad{Method: methodEcho, Conns: 1, Streams: 16, CheckN: 64 << 10, PerMiB: true,
			Request: echoRequest(64 << 10), RespBytes: int64(len(echoRequest(64 << 10)))}},
	{Name: "grpc-stream-1m", Title: "gRPC server stream, 1 MiB per call in 64 KiB messages, 1 connection x 8 streams (h2load -c1 -m8)",
		GRPC: &grpcLoad{Method: methodDownload, Conns: 1, Streams: 8, CheckN: 1 << 20, PerMiB: true,
			Request: downloadRequest(1 << 20), RespBytes: downloadResponseBytes(1 << 20)}},
	{Name: "grpc-bidi-1k", Title: "gRPC bidi stream, 1 KiB messages echoed, 4 connections x 16 long-lived streams (bench/grpcload; a call is one round trip)",
		GRPC: &grpcLoad{Method: methodChat, Conns: 4, Streams: 16, CheckN: 1 << 10, PerMiB: true, Bidi: true,
			Request: echoRequest(1 << 10), RespBytes: int64(len(echoRequest(1 << 10)))}},
}

// wrkScript makes wrk print one machine-readable line when it is done.
// Latencies are in microseconds.
const wrkScript = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("FDBENCH {\"requests\":%.0f,\"duration_us\":%.0f,\"bytes\":%.0f,` +
	`\"connect\":%.0f,\"read\":%.0f,\"write\":%.0f,\"status\":%.0f,\"timeout\":%.0f,` +
	`\"p50_us\":%.0f,\"p99_us\":%.0f}\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
`

// loadResult is what one run of a request load generator measured: the
// FDBENCH line of wrkScript or of bench/grpcload, or h2load's summary. A
// request is one gRPC call for h2load and one round trip for grpcload.
type loadResult struct {
	Requests   int64   `json:"requests"`
	DurationUS int64   `json:"duration_us"`
	Bytes      int64   `json:"bytes"`
	Connect    int64   `json:"connect"`
	Read       int64   `json:"read"`
	Write      int64   `json:"write"`
	Status     int64   `json:"status"` // non-2xx/3xx responses; gRPC: calls that did not get their whole answer
	Timeout    int64   `json:"timeout"`
	P50US      float64 `json:"p50_us"`
	P99US      float64 `json:"p99_us"`
	// CPU is the load generator's own CPU time (not from its output).
	CPU time.Duration `json:"-"`
}

// Errors is every failed request the load generator saw: non-2xx/3xx (gRPC:
// not answered in full) plus socket or stream errors.
func (r loadResult) Errors() int64 { return r.Connect + r.Read + r.Write + r.Status + r.Timeout }

// RPS is completed requests per second.
func (r loadResult) RPS() float64 {
	if r.DurationUS <= 0 {
		return 0
	}
	return float64(r.Requests) / (float64(r.DurationUS) / 1e6)
}

var errNoSummary = errors.New("no FDBENCH line in the load generator's output")

// parseFDBench finds the FDBENCH line in the output of wrk (wrkScript) or
// bench/grpcload.
func parseFDBench(out []byte) (loadResult, error) {
	i := bytes.LastIndex(out, []byte("FDBENCH "))
	if i < 0 {
		return loadResult{}, errNoSummary
	}
	line := out[i+len("FDBENCH "):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	var r loadResult
	if err := json.Unmarshal(line, &r); err != nil {
		return loadResult{}, fmt.Errorf("summary %q: %w", line, err)
	}
	return r, nil
}

// runWrk runs wrk on cpus against url for d with conns connections on one
// thread.
func runWrk(ctx context.Context, cpus, script, url string, conns int, closeConn bool, d time.Duration) (loadResult, []byte, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	args := []string{"-c", cpus, "wrk", "-t", "1", "-c", strconv.Itoa(conns), "-d", strconv.Itoa(secs) + "s",
		"--timeout", "5s", "--latency", "-s", script}
	if closeConn {
		args = append(args, "-H", "Connection: close")
	}
	args = append(args, url)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "taskset", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return loadResult{}, out, fmt.Errorf("wrk: %w", err)
	}
	r, err := parseFDBench(out)
	r.CPU = childCPU(cmd)
	return r, out, err
}

// childCPU returns the user+system CPU time of a command that has exited.
func childCPU(cmd *exec.Cmd) time.Duration {
	if cmd.ProcessState == nil {
		return 0
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// iperfResult is the part of iperf3 -J output the harness reads.
type iperfResult struct {
	// CPU is the iperf3 client's own CPU time (not from its output).
	CPU   time.Duration `json:"-"`
	Error string        `json:"error"`
	End   struct {
		SumReceived struct {
			Bytes         float64 `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
}

// parseIperf reads iperf3's JSON report.
func parseIperf(out []byte) (iperfResult, error) {
	var r iperfResult
	if i := bytes.IndexByte(out, '{'); i > 0 {
		out = out[i:]
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("iperf3 report: %w", err)
	}
	if r.Error != "" {
		return r, fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.End.SumReceived.Bytes <= 0 {
		return r, errors.New("iperf3: no bytes received")
	}
	return r, nil
}

// runIperf runs an iperf3 client on cpus through port for d with streams
// parallel streams.
func runIperf(ctx context.Context, cpus string, port, streams int, d time.Duration) (iperfResult, []byte, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "taskset", "-c", cpus, "iperf3", "-c", "127.0.0.1", "-p", strconv.Itoa(port),
		"-t", strconv.Itoa(secs), "-P", strconv.Itoa(streams), "-Z", "-J", "--connect-timeout", "3000")
	out, err := cmd.Output()
	r, perr := parseIperf(out)
	r.CPU = childCPU(cmd)
	if perr != nil {
		if err != nil {
			return r, out, fmt.Errorf("%w (exit: %v)", perr, err)
		}
		return r, out, perr
	}
	return r, out, nil
}
