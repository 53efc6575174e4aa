package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Method paths of frontdoor.bench.Bench, the service of bench/grpcbackend
// (no package may import a bench program, so each spells them).
const (
	methodEmpty    = "/frontdoor.bench.Bench/Empty"    // unary, Empty -> Empty
	methodEcho     = "/frontdoor.bench.Bench/Echo"     // unary, BytesValue echoed
	methodDownload = "/frontdoor.bench.Bench/Download" // UInt64Value{n} -> n bytes in BytesValue messages
	methodChat     = "/frontdoor.bench.Bench/Chat"     // bidi, every BytesValue echoed
)

// grpcChunkBytes is the payload of every Download message of
// bench/grpcbackend but the last.
const grpcChunkBytes = 64 << 10

// grpcFrame returns m as a gRPC length-prefixed message: a zero
// compression flag, the 4-byte big-endian length, the protobuf encoding.
func grpcFrame(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err) // well-known types always marshal
	}
	return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b))), b...)
}

// emptyRequest is the body of an Empty call, and its answer.
func emptyRequest() []byte { return grpcFrame(&emptypb.Empty{}) }

// echoRequest is the body of an Echo call or one Chat message of n payload
// bytes, and its answer.
func echoRequest(n int) []byte { return grpcFrame(wrapperspb.Bytes(make([]byte, n))) }

// downloadRequest is the body of a Download call for n bytes.
func downloadRequest(n uint64) []byte { return grpcFrame(wrapperspb.UInt64(n)) }

// downloadResponseBytes is the answer's body, gRPC framing included, of a
// Download call for n bytes.
func downloadResponseBytes(n uint64) int64 {
	total := int64(n/grpcChunkBytes) * int64(len(echoRequest(grpcChunkBytes)))
	if rest := n % grpcChunkBytes; rest > 0 {
		total += int64(len(echoRequest(int(rest))))
	}
	return total
}

// grpcLoad is the shape of a gRPC workload: h2load posting one gRPC
// message per call to the grpc-go backend (bench/grpcbackend) through the
// proxy, or, for Bidi, bench/grpcload ping-ponging on long-lived streams.
type grpcLoad struct {
	Method         string // full method name: the request's :path
	Conns, Streams int    // connections x concurrent streams on each
	// Request is the body of one call, gRPC length-prefixed (h2load -d);
	// for Bidi, one message as it goes on the wire.
	Request []byte
	// RespBytes is the response body of one call (Bidi: one echoed
	// message), gRPC framing included. h2load counts a call whose answer
	// is 200 with any grpc-status as succeeded, so a run must have received
	// at least this many bytes per succeeded call (see parseH2load).
	RespBytes int64
	CheckN    int  // -size of the grpcload -check made before measuring; Bidi: the message payload
	PerMiB    bool // report CPU per MiB as well as per call
	Bidi      bool // driven by bench/grpcload, not h2load
}

// callMiB is what one call moves through the proxy, both directions,
// gRPC framing included (headers and trailers not), in MiB.
func (g *grpcLoad) callMiB() float64 {
	return float64(int64(len(g.Request))+g.RespBytes) / (1 << 20)
}

// grpcHeaders make h2load's POSTs valid gRPC requests.
var grpcHeaders = []string{"-H", "content-type: application/grpc", "-H", "te: trailers"}

// runH2load runs h2load (one thread) on cpus against url for d, posting
// the file body with g's connections and streams. With logPath set it asks
// h2load for its per-request log there, reads the latency percentiles from
// it and removes it.
func runH2load(ctx context.Context, cpus, url, body string, g *grpcLoad, d time.Duration, logPath string) (loadResult, []byte, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	args := []string{"-c", cpus, "h2load", "-t", "1", "-c", strconv.Itoa(g.Conns), "-m", strconv.Itoa(g.Streams),
		"-D", strconv.Itoa(secs), "-d", body}
	args = append(args, grpcHeaders...)
	if logPath != "" {
		args = append(args, "--log-file", logPath)
		defer os.Remove(logPath)
	}
	args = append(args, url)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "taskset", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return loadResult{}, out, fmt.Errorf("h2load: %w", err)
	}
	r, err := parseH2load(out, g.RespBytes)
	r.CPU = childCPU(cmd)
	if err != nil || logPath == "" {
		return r, out, err
	}
	f, err := os.Open(logPath)
	if err != nil {
		return r, out, err
	}
	defer f.Close()
	r.P50US, r.P99US, err = h2loadPercentiles(f)
	return r, out, err
}

var (
	reFinished = regexp.MustCompile(`(?m)^finished in ([0-9.]+[a-zµ]+),`)
	reRequests = regexp.MustCompile(`(?m)^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	reData     = regexp.MustCompile(`(?m)^traffic: .*\((\d+)\) data`)
)

// parseH2load reads h2load's summary. respBytes is the response body of one
// call: succeeded calls beyond data/respBytes got a 200 without their whole
// answer (a trailers-only error status, for instance) and count as errors,
// not as calls.
func parseH2load(out []byte, respBytes int64) (loadResult, error) {
	fm, rm, dm := reFinished.FindSubmatch(out), reRequests.FindSubmatch(out), reData.FindSubmatch(out)
	if fm == nil || rm == nil || dm == nil {
		return loadResult{}, errors.New("h2load: no summary in its output")
	}
	d, err := time.ParseDuration(string(fm[1]))
	if err != nil {
		return loadResult{}, fmt.Errorf("h2load: duration: %w", err)
	}
	var n [7]int64
	for i := range n {
		n[i], _ = strconv.ParseInt(string(rm[i+1]), 10, 64) // \d+ always parses
	}
	data, _ := strconv.ParseInt(string(dm[1]), 10, 64)
	succeeded, failed, errored, timedOut := n[3], n[4], n[5], n[6]
	short := int64(0)
	if respBytes > 0 {
		short = max(0, succeeded-data/respBytes)
	}
	// h2load's failed includes errored (stream or connection errors).
	return loadResult{Requests: succeeded - short, DurationUS: d.Microseconds(), Bytes: data,
		Status: failed - errored + short, Read: errored, Timeout: timedOut}, nil
}

// h2loadPercentiles reads an h2load --log-file (start time, status, µs to
// the end of the response; status -1 for a failed stream) and returns the
// 50th and 99th percentile of the answered calls, in µs.
func h2loadPercentiles(f *os.File) (p50, p99 float64, err error) {
	var us []int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := bytes.Split(sc.Bytes(), []byte{'\t'})
		if len(fields) < 3 || string(fields[1]) == "-1" {
			continue
		}
		v, err := strconv.ParseInt(string(fields[2]), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("h2load log: %q: %w", sc.Text(), err)
		}
		us = append(us, v)
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if len(us) == 0 {
		return 0, 0, errors.New("h2load log: no answered call")
	}
	slices.Sort(us)
	at := func(q float64) float64 { return float64(us[int(q*float64(len(us)-1))]) }
	return at(0.50), at(0.99), nil
}

// runGRPCLoad runs bench/grpcload on cpus against addr for d with g's
// connections and streams, at most a million round trips a second of d.
func runGRPCLoad(ctx context.Context, cpus, bin, addr string, g *grpcLoad, d time.Duration) (loadResult, []byte, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "taskset", "-c", cpus, bin, "-addr", addr,
		"-conns", strconv.Itoa(g.Conns), "-streams", strconv.Itoa(g.Streams), "-size", strconv.Itoa(g.CheckN),
		"-d", strconv.Itoa(secs)+"s", "-n", strconv.Itoa(secs*1_000_000))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return loadResult{}, out, fmt.Errorf("grpcload: %w", err)
	}
	r, err := parseFDBench(out)
	r.CPU = childCPU(cmd)
	return r, out, err
}

// runGRPC runs g's load generator against the proxy (or backend) on port.
func runGRPC(ctx context.Context, o options, e *env, w workload, port int, logPath string, d time.Duration) (loadResult, []byte, error) {
	if w.GRPC.Bidi {
		return runGRPCLoad(ctx, o.CPULoad, e.GRPCLoadBin, addr(port), w.GRPC, d)
	}
	return runH2load(ctx, o.CPULoad, "http://"+addr(port)+w.GRPC.Method, grpcBodyPath(e, w), w.GRPC, d, logPath)
}

// grpcBodyPath is where run writes the request body of workload w.
func grpcBodyPath(e *env, w workload) string {
	return e.Dir + "/" + w.Name + ".body"
}

// waitGRPC makes one call of g's method through addr with bench/grpcload
// -check (the status is OK and every byte came back) until one succeeds, p
// exits, or the deadline passes.
func waitGRPC(ctx context.Context, p *proc, grpcload, addr string, g *grpcLoad, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		out, err := exec.CommandContext(cctx, grpcload, "-addr", addr, "-check", g.Method,
			"-size", strconv.Itoa(g.CheckN), "-d", "2s").CombinedOutput()
		cancel()
		if err == nil {
			return nil
		}
		err = fmt.Errorf("%w: %s", err, lastLine(out))
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited: %v: %s", p.name, p.err, p.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: gRPC %s: %w", nameOf(p), g.Method, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
