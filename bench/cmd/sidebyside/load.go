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
}

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

// wrkResult is the FDBENCH line of wrkScript.
type wrkResult struct {
	Requests   int64   `json:"requests"`
	DurationUS int64   `json:"duration_us"`
	Bytes      int64   `json:"bytes"`
	Connect    int64   `json:"connect"`
	Read       int64   `json:"read"`
	Write      int64   `json:"write"`
	Status     int64   `json:"status"` // non-2xx/3xx responses
	Timeout    int64   `json:"timeout"`
	P50US      float64 `json:"p50_us"`
	P99US      float64 `json:"p99_us"`
	// CPU is wrk's own CPU time (not from its output).
	CPU time.Duration `json:"-"`
}

// Errors is every failed request wrk saw: non-2xx/3xx plus socket errors.
func (r wrkResult) Errors() int64 { return r.Connect + r.Read + r.Write + r.Status + r.Timeout }

// RPS is completed requests per second.
func (r wrkResult) RPS() float64 {
	if r.DurationUS <= 0 {
		return 0
	}
	return float64(r.Requests) / (float64(r.DurationUS) / 1e6)
}

var errNoSummary = errors.New("wrk: no FDBENCH line in its output")

// parseWrk finds the FDBENCH line in wrk's output.
func parseWrk(out []byte) (wrkResult, error) {
	i := bytes.LastIndex(out, []byte("FDBENCH "))
	if i < 0 {
		return wrkResult{}, errNoSummary
	}
	line := out[i+len("FDBENCH "):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	var r wrkResult
	if err := json.Unmarshal(line, &r); err != nil {
		return wrkResult{}, fmt.Errorf("wrk summary %q: %w", line, err)
	}
	return r, nil
}

// runWrk runs wrk on cpus against url for d with conns connections on one
// thread.
func runWrk(ctx context.Context, cpus, script, url string, conns int, closeConn bool, d time.Duration) (wrkResult, []byte, error) {
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
		return wrkResult{}, out, fmt.Errorf("wrk: %w", err)
	}
	r, err := parseWrk(out)
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
