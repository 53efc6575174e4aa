package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// options are the command-line settings.
type options struct {
	Quick        bool
	Rounds       int
	Duration     time.Duration
	Warmup       time.Duration
	Workloads    string
	Targets      string
	FrontdoorBin string
	// Frontdoor2Bin, if set, runs as target frontdoor2 right after
	// frontdoor in every round: a before/after pair in one run.
	Frontdoor2Bin string
	MinproxyBin   string
	// GRPCBackendBin and GRPCLoadBin are bench/grpcbackend and
	// bench/grpcload, needed by the gRPC workloads only.
	GRPCBackendBin string
	GRPCLoadBin    string
	Out            string
	CPUProxy       string
	CPULoad        string
	Keep           bool
	PerfDir        string
	MaxNoise       float64
	Retries        int
	Command        string
	Notes          string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "tlsload" {
		os.Exit(tlsLoadMain(os.Args[2:], os.Stdout, os.Stderr)) // tls.go
	}
	var o options
	flag.BoolVar(&o.Quick, "quick", false, "quick preset: 1 round, 3s runs, workloads "+quickWorkloads)
	flag.IntVar(&o.Rounds, "rounds", 3, "rounds (each round runs every target once per workload)")
	flag.DurationVar(&o.Duration, "d", 10*time.Second, "length of one measured run (whole seconds)")
	flag.DurationVar(&o.Warmup, "warmup", 2*time.Second, "HTTP warm-up before each measured run (0 disables)")
	flag.StringVar(&o.Workloads, "workloads", "", "comma-separated workloads (default: all; see -list)")
	flag.StringVar(&o.Targets, "targets", "", "comma-separated targets to run (default: all; baselines always run)")
	flag.StringVar(&o.FrontdoorBin, "frontdoor", "bin/frontdoor", "frontdoor binary (missing: frontdoor is n/a)")
	flag.StringVar(&o.Frontdoor2Bin, "frontdoor2", "", "a second frontdoor binary, run as target frontdoor2 right after frontdoor in every round (before/after a change in one run; none: no frontdoor2 rows)")
	flag.StringVar(&o.MinproxyBin, "minproxy", "bench/out/minproxy", "minproxy binary (go build ./bench/minproxy)")
	flag.StringVar(&o.GRPCBackendBin, "grpcbackend", "bench/out/grpcbackend", "gRPC backend binary for the grpc-* workloads (go build ./bench/grpcbackend)")
	flag.StringVar(&o.GRPCLoadBin, "grpcload", "bench/out/grpcload", "gRPC client for the grpc-* workloads: the check before each run, the bidi load (go build ./bench/grpcload)")
	flag.StringVar(&o.Out, "out", "bench/RESULTS.md", "markdown report to write (also printed)")
	flag.StringVar(&o.CPUProxy, "cpu-proxy", "1", "CPU list (taskset) of the proxy under test")
	flag.StringVar(&o.CPULoad, "cpu-load", "0", "CPU list of the load generator and the backend")
	flag.BoolVar(&o.Keep, "keep", false, "keep the temp dir with configs and logs")
	flag.StringVar(&o.PerfDir, "perf", "", "record each proxy with perf record -g during its measured runs into `DIR` (adds load: figures are then not comparable)")
	flag.Float64Var(&o.MaxNoise, "max-noise", 10, "re-run a run whose noise (other processes on the proxy's CPU) is above this percentage")
	flag.IntVar(&o.Retries, "retries", 2, "at most this many re-runs of a noisy run; the least noisy run is kept")
	flag.StringVar(&o.Command, "command", "", "command named in the report (default: this command line)")
	flag.StringVar(&o.Notes, "notes", "bench/NOTES.md", "markdown appended to the report when the file exists: the analysis of the figures (profiles, what stands in the way)")
	list := flag.Bool("list", false, "list workloads and targets, then exit")
	flag.Parse()
	if *list {
		for _, w := range allWorkloads {
			fmt.Printf("workload %-16s %s\n", w.Name, w.Title)
		}
		for _, t := range httpTargets {
			fmt.Printf("target   %-16s http\n", t.Name)
		}
		for _, t := range l4Targets {
			fmt.Printf("target   %-16s l4\n", t.Name)
		}
		for _, t := range grpcTargets {
			fmt.Printf("target   %-16s grpc\n", t.Name)
		}
		return
	}
	setIfUnset := func(name, v string) {
		set := false
		flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
		if !set {
			_ = flag.Set(name, v)
		}
	}
	if o.PerfDir != "" {
		setIfUnset("retries", "0") // perf's own CPU time counts as noise
	}
	if o.Quick {
		setIfUnset("rounds", "1")
		setIfUnset("d", "3s")
		setIfUnset("warmup", "1s")
		setIfUnset("workloads", quickWorkloads)
		setIfUnset("retries", "0")
	}
	if o.Command == "" {
		o.Command = strings.Join(append([]string{filepath.Base(os.Args[0])}, os.Args[1:]...), " ")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sidebyside:", err)
		os.Exit(1)
	}
}

// quickWorkloads are the workloads of -quick (make bench-quick).
const quickWorkloads = "small-64,big-64,close-64,l4-1,grpc-empty-1x64"

// selectWorkloads returns the named workloads in their canonical order.
func selectWorkloads(names string) ([]workload, error) {
	if names == "" {
		return allWorkloads, nil
	}
	want := map[string]bool{}
	for n := range strings.SplitSeq(names, ",") {
		want[strings.TrimSpace(n)] = true
	}
	var out []workload
	for _, w := range allWorkloads {
		if want[w.Name] {
			out = append(out, w)
			delete(want, w.Name)
		}
	}
	for n := range want {
		return nil, fmt.Errorf("unknown workload %q (see -list)", n)
	}
	return out, nil
}

// selectTargets filters ts by names (all when empty), always keeping the
// baseline (first); frontdoor2 runs only when its binary is given and
// frontdoor runs too.
func selectTargets(ts []target, names string, second bool) []target {
	want := map[string]bool{}
	for n := range strings.SplitSeq(names, ",") {
		want[strings.TrimSpace(n)] = true
	}
	out := []target{ts[0]}
	for _, t := range ts[1:] {
		if names != "" && !want[t.Name] && (t.Name != "frontdoor2" || !want["frontdoor"]) {
			continue
		}
		if t.Name == "frontdoor2" && !second {
			continue
		}
		out = append(out, t)
	}
	return out
}

func run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	start := time.Now()
	workloads, err := selectWorkloads(o.Workloads)
	if err != nil {
		return err
	}
	httpTs := selectTargets(httpTargets, o.Targets, o.Frontdoor2Bin != "")
	l4Ts := selectTargets(l4Targets, o.Targets, o.Frontdoor2Bin != "")
	grpcTs := selectTargets(grpcTargets, o.Targets, o.Frontdoor2Bin != "")
	needL4 := slices.ContainsFunc(workloads, func(w workload) bool { return w.L4 })
	needHTTP := slices.ContainsFunc(workloads, workload.isHTTP)
	needGRPC := slices.ContainsFunc(workloads, func(w workload) bool { return w.GRPC != nil })
	needH2load := slices.ContainsFunc(workloads, func(w workload) bool { return w.GRPC != nil && !w.GRPC.Bidi })
	tools := []string{"taskset"}
	if needHTTP {
		tools = append(tools, "wrk", "nginx", "haproxy")
	}
	if needL4 {
		tools = append(tools, "iperf3", "haproxy")
	}
	if needGRPC {
		tools = append(tools, "haproxy")
	}
	if needH2load {
		tools = append(tools, "h2load")
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s not found (make bench installs it from Debian): %w", t, err)
		}
	}
	var absGRPCBackend, absGRPCLoad string
	for _, b := range []struct {
		need      bool
		path, how string
		abs       *string
	}{
		{needGRPC, o.GRPCBackendBin, "go build -o bench/out/grpcbackend ./bench/grpcbackend", &absGRPCBackend},
		{needGRPC, o.GRPCLoadBin, "go build -o bench/out/grpcload ./bench/grpcload", &absGRPCLoad},
	} {
		if !b.need {
			continue
		}
		if _, err := os.Stat(b.path); err != nil {
			return fmt.Errorf("%w (make bench builds it: %s)", err, b.how)
		}
		*b.abs, _ = filepath.Abs(b.path)
	}
	raiseNoFile(stderr)

	dir, err := os.MkdirTemp("", "frontdoor-bench-")
	if err != nil {
		return err
	}
	if o.Keep {
		fmt.Fprintln(stderr, "configs and logs in", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	// nginx workers may drop privileges; they need to reach files in dir.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), []byte(strings.Repeat("x", bigBytes)), 0o644); err != nil {
		return err
	}
	script := filepath.Join(dir, "report.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return err
	}
	// Snapshot the binaries: bin/frontdoor is shared with everyone working
	// in the tree, and a rebuild in the middle of a run would mix versions.
	absFrontdoor := ""
	if o.FrontdoorBin != "" {
		absFrontdoor, _ = filepath.Abs(o.FrontdoorBin)
		if cp, err := copyExecutable(absFrontdoor, filepath.Join(dir, "frontdoor")); err == nil {
			absFrontdoor = cp
		}
	}
	absFrontdoor2 := ""
	if o.Frontdoor2Bin != "" {
		absFrontdoor2, _ = filepath.Abs(o.Frontdoor2Bin)
		if cp, err := copyExecutable(absFrontdoor2, filepath.Join(dir, "frontdoor2")); err == nil {
			absFrontdoor2 = cp
		}
	}
	absMinproxy, _ := filepath.Abs(o.MinproxyBin)
	if cp, err := copyExecutable(absMinproxy, filepath.Join(dir, "minproxy")); err == nil {
		absMinproxy = cp
	}
	localRange, _ := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	pp, err := newPorts(string(localRange), os.Getpid())
	if err != nil {
		return err
	}
	e := &env{Dir: dir, FrontdoorBin: absFrontdoor, Frontdoor2Bin: absFrontdoor2, MinproxyBin: absMinproxy, GRPCLoadBin: absGRPCLoad, Ports: pp}
	for _, w := range workloads {
		if w.GRPC != nil && !w.GRPC.Bidi {
			if err := os.WriteFile(grpcBodyPath(e, w), w.GRPC.Request, 0o644); err != nil {
				return err
			}
		}
	}
	tick := clockTick()

	// Backends, on the load CPU, for the whole run.
	if needHTTP {
		if e.BackendPort, err = e.Ports.get(); err != nil {
			return err
		}
		conf, err := writeFile(dir, "nginx-backend.conf", nginxBackendConfig(dir, e.BackendPort))
		if err != nil {
			return err
		}
		argv, err := nginxCmd(dir, conf, "backend")
		if err != nil {
			return err
		}
		be, err := startProc("nginx backend", o.CPULoad, argv, nil, filepath.Join(dir, "backend.log"))
		if err != nil {
			return err
		}
		defer be.stop(5 * time.Second)
		e.LoadPIDs = append(e.LoadPIDs, be.pid())
		if err := waitHTTP(ctx, be, "http://"+addr(e.BackendPort)+"/big", 10*time.Second); err != nil {
			return fmt.Errorf("backend: %w", err)
		}
	}
	if needL4 {
		if e.IperfPort, err = e.Ports.get(); err != nil {
			return err
		}
		srv, err := startProc("iperf3 server", o.CPULoad,
			[]string{"iperf3", "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(e.IperfPort)}, nil, filepath.Join(dir, "iperf3-server.log"))
		if err != nil {
			return err
		}
		defer srv.stop(5 * time.Second)
		e.LoadPIDs = append(e.LoadPIDs, srv.pid())
		if err := waitListening(ctx, srv, e.IperfPort, 10*time.Second); err != nil {
			return err
		}
	}
	if needGRPC {
		if e.GRPCPort, err = e.Ports.get(); err != nil {
			return err
		}
		be, err := startProc("grpc backend", o.CPULoad, []string{absGRPCBackend, "-listen", addr(e.GRPCPort)}, nil,
			filepath.Join(dir, "grpcbackend.log"))
		if err != nil {
			return err
		}
		defer be.stop(5 * time.Second)
		e.LoadPIDs = append(e.LoadPIDs, be.pid())
		if err := waitGRPC(ctx, be, e.GRPCLoadBin, addr(e.GRPCPort), &grpcLoad{Method: methodEmpty}, 10*time.Second); err != nil {
			return fmt.Errorf("grpc backend: %w", err)
		}
	}
	if o.PerfDir != "" {
		if err := os.MkdirAll(o.PerfDir, 0o755); err != nil {
			return err
		}
	}

	loadStart := readLoadAvg()
	var samples []sample
	reruns := 0
	for r := 1; r <= o.Rounds; r++ {
		for _, w := range workloads {
			ts := httpTs
			switch {
			case w.L4:
				ts = l4Ts
			case w.GRPC != nil:
				ts = grpcTs
			}
			if w.TLS {
				ts = tlsTargetsFor(httpTs) // tls.go
			}
			for _, t := range ts {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				s := runOne(ctx, o, e, t, w, r, script, tick)
				fmt.Fprintf(stderr, "round %d/%d %-10s %-15s %s\n", r, o.Rounds, w.Name, t.Name, progress(s))
				for try := 1; try <= o.Retries && noisy(s, o.MaxNoise) && ctx.Err() == nil; try++ {
					s2 := runOne(ctx, o, e, t, w, r, script, tick)
					reruns++
					fmt.Fprintf(stderr, "  re-run %d  %-10s %-15s %s\n", try, w.Name, t.Name, progress(s2))
					if s2.ok() && s2.Other < s.Other {
						s = s2
					}
				}
				samples = append(samples, s)
			}
		}
	}

	m := meta{
		Command: o.Command, Started: start, Elapsed: time.Since(start), Rounds: o.Rounds,
		Duration: o.Duration, Warmup: o.Warmup, CPUProxy: o.CPUProxy, CPULoad: o.CPULoad,
		Machine: machine(e.FrontdoorBin, e.Frontdoor2Bin, loadStart), Reruns: reruns, MaxNoise: o.MaxNoise, Retries: o.Retries,
	}
	report := render(m, workloads, targetSets{HTTP: httpTs, L4: l4Ts, GRPC: grpcTs}, samples)
	if notes, err := os.ReadFile(o.Notes); err == nil {
		report += "\n" + string(notes)
	}
	fmt.Fprint(stdout, report)
	if o.Out != "" {
		if err := os.MkdirAll(filepath.Dir(o.Out), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(o.Out, []byte(report), 0o644); err != nil {
			return err
		}
		fmt.Fprintln(stderr, "wrote", o.Out)
	}
	return nil
}

// noisy reports whether a successful run had more than maxPct percent of
// noise.
func noisy(s sample, maxPct float64) bool {
	n := noisePct(s)
	return s.ok() && !math.IsNaN(n) && n > maxPct
}

func progress(s sample) string {
	if !s.ok() {
		return "n/a: " + oneLine(s.Err)
	}
	if strings.HasPrefix(s.Workload, "l4") {
		return fmt.Sprintf("%.2f Gbit/s, proxy cpu %.2fs, noise %.0f%%", s.Iperf.End.SumReceived.BitsPerSecond/1e9, s.CPU.Seconds(), noisePct(s))
	}
	if strings.HasPrefix(s.Workload, "grpc") {
		return fmt.Sprintf("%.0f calls/s, %.2f µs/call, p99 %.2f ms, errors %d, rss %.1f MiB, noise %.0f%%",
			s.Load.RPS(), cpuPerReqUS(s), s.Load.P99US/1000, s.Load.Errors(), rssMiB(s), noisePct(s))
	}
	return fmt.Sprintf("%.0f req/s, %.2f µs/req, p99 %.2f ms, errors %d, rss %.1f MiB, noise %.0f%%",
		s.Load.RPS(), cpuPerReqUS(s), s.Load.P99US/1000, s.Load.Errors(), rssMiB(s), noisePct(s))
}

// runOne starts target t, runs workload w through it and stops it.
func runOne(ctx context.Context, o options, e *env, t target, w workload, round int, script string, tick time.Duration) sample {
	s := sample{Round: round, Workload: w.Name, Target: t.Name}
	fail := func(err error) sample { s.Err = err.Error(); return s }
	port := e.IperfPort
	var p *proc
	var l launch
	if t.Setup != nil {
		var err error
		if port, err = e.Ports.get(); err != nil {
			return fail(err)
		}
		if l, err = t.Setup(e, port); err != nil {
			return fail(err)
		}
		logPath := filepath.Join(e.Dir, fmt.Sprintf("r%d-%s-%s.log", round, w.Name, t.Name))
		if p, err = startProc(t.Name, o.CPUProxy, l.Argv, l.Env, logPath); err != nil {
			return fail(err)
		}
		defer p.stop(5 * time.Second)
		if err := waitListening(ctx, p, port, 10*time.Second); err != nil {
			return fail(err)
		}
	}
	url := workloadURL(w, port) // tls.go
	switch {
	case w.GRPC != nil:
		if err := waitGRPC(ctx, p, e.GRPCLoadBin, addr(port), w.GRPC, 10*time.Second); err != nil {
			return fail(err)
		}
		if o.Warmup > 0 {
			if _, out, err := runGRPC(ctx, o, e, w, port, "", o.Warmup); err != nil {
				return fail(fmt.Errorf("warm-up: %w: %s", err, lastLine(out)))
			}
		}
	case !w.L4:
		if err := waitHTTP(ctx, p, url, 10*time.Second); err != nil {
			return fail(err)
		}
		if o.Warmup > 0 {
			if _, out, err := runHTTPLoad(ctx, o.CPULoad, script, url, w, o.Warmup); err != nil {
				return fail(fmt.Errorf("warm-up: %w: %s", err, lastLine(out)))
			}
		}
	}
	var before treeUsage
	if p != nil {
		var err error
		if before, err = readTree("/proc", p.pid(), tick); err != nil {
			return fail(err)
		}
	}
	cpuBefore, cpuErr := readCPUStat(o.CPUProxy)
	loadBefore, loadErr := readCPUStat(o.CPULoad)
	ownBefore := ownLoadCPU(e, tick)
	wallStart := time.Now()
	var perf *proc
	if o.PerfDir != "" && p != nil {
		perf = startPerf(o, p.pid(), filepath.Join(o.PerfDir, fmt.Sprintf("%s-%s-r%d.perf.data", t.Name, w.Name, round)))
		if perf != nil {
			defer perf.stop(5 * time.Second)
		}
	}
	switch {
	case w.L4:
		r, out, err := runIperf(ctx, o.CPULoad, port, w.Streams, o.Duration)
		if err != nil {
			return fail(fmt.Errorf("%w: %s", err, lastLine(out)))
		}
		s.Iperf = r
	case w.GRPC != nil:
		logPath := filepath.Join(e.Dir, fmt.Sprintf("r%d-%s-%s.h2load.tsv", round, w.Name, t.Name))
		r, out, err := runGRPC(ctx, o, e, w, port, logPath, o.Duration)
		if err != nil {
			return fail(fmt.Errorf("%w: %s", err, lastLine(out)))
		}
		if r.Requests == 0 {
			return fail(fmt.Errorf("no call answered in full (%d errors: non-200, errored, timed out, or a 200 without the whole answer)", r.Errors()))
		}
		s.Load = r
		s.MiB = float64(r.Requests) * w.GRPC.callMiB()
	default:
		r, out, err := runHTTPLoad(ctx, o.CPULoad, script, url, w, o.Duration)
		if err != nil {
			return fail(fmt.Errorf("%w: %s", err, lastLine(out)))
		}
		if r.Requests == 0 {
			return fail(errors.New("no request completed"))
		}
		s.Load = r
	}
	if p != nil {
		if p.exited() {
			return fail(fmt.Errorf("%s exited during the run: %v: %s", t.Name, p.err, p.logTail()))
		}
		after, err := readTree("/proc", p.pid(), tick)
		if err != nil {
			return fail(err)
		}
		s.CPU = after.CPU - before.CPU
		s.HWMKiB = after.HWMKiB
	}
	wall := time.Since(wallStart).Seconds()
	s.Other, s.OtherLoad = math.NaN(), math.NaN() // unknown, or no proxy on that CPU (direct)
	if cpuAfter, err := readCPUStat(o.CPUProxy); err == nil && cpuErr == nil && p != nil {
		s.Other = foreignShare(cpuBefore, cpuAfter, tick, s.CPU, wall)
	}
	if loadAfter, err := readCPUStat(o.CPULoad); err == nil && loadErr == nil {
		own := ownLoadCPU(e, tick) - ownBefore + s.Load.CPU + s.Iperf.CPU
		s.OtherLoad = foreignShare(loadBefore, loadAfter, tick, own, wall)
	}
	if perf != nil {
		select {
		case <-perf.done:
		case <-time.After(10 * time.Second):
		}
	}
	return s
}

// foreignShare returns the share of wall seconds that a CPU, going from
// before to after, spent busy (or stolen) beyond own, the CPU time our own
// processes used there.
func foreignShare(before, after cpuTimes, tick, own time.Duration, wall float64) float64 {
	busy := time.Duration(after.Busy-before.Busy+after.Steal-before.Steal) * tick
	if wall <= 0 {
		return math.NaN()
	}
	return max(0, (busy-own).Seconds()/wall)
}

// ownLoadCPU sums the CPU time of our long-lived processes on the load CPU.
func ownLoadCPU(e *env, tick time.Duration) time.Duration {
	var d time.Duration
	for _, pid := range e.LoadPIDs {
		if u, err := readTree("/proc", pid, tick); err == nil {
			d += u.CPU
		}
	}
	return d
}

// copyExecutable copies the program src to dst and returns dst. A missing
// src is an error the caller may ignore: the target then reports n/a.
//
// The copy's pages are then dropped from the page cache, so the program
// loads from disk like an installed one (HAProxy's, nginx's). Left as the
// write put them there, they can be large folios that the kernel maps 2 MiB
// at a time (FilePmdMapped in smaps): the same frontdoor binary showed
// 20.9 MiB of RSS at idle from such a copy against 16.7 MiB evicted.
func copyExecutable(src, dst string) (string, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		return "", fmt.Errorf("copy %s: %w", src, err)
	}
	if err := dropPageCache(dst); err != nil {
		return "", fmt.Errorf("copy %s: %w", src, err)
	}
	return dst, nil
}

// dropPageCache writes the file at path to disk and evicts its pages from
// the page cache.
func dropPageCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// readCPUStat reads the /proc/stat times of cpu, which must be a single CPU
// number.
func readCPUStat(cpu string) (cpuTimes, error) {
	if _, err := strconv.Atoi(cpu); err != nil {
		return cpuTimes{}, fmt.Errorf("cpu %q is not a single CPU", cpu)
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	return parseCPUStat(b, cpu)
}

// startPerf starts `perf record` on pid for the length of one measured run,
// pinned to the load CPU. It returns nil (and says why) when perf cannot
// start.
func startPerf(o options, pid int, out string) *proc {
	secs := max(1, int(o.Duration.Round(time.Second)/time.Second))
	p, err := startProc("perf", o.CPULoad, []string{"perf", "record", "-e", "cpu-clock", "-F", "999", "-g",
		"-p", strconv.Itoa(pid), "-o", out, "--", "sleep", strconv.Itoa(secs)}, nil, out+".log")
	if err != nil {
		fmt.Fprintln(os.Stderr, "perf:", err)
		return nil
	}
	return p
}

func lastLine(out []byte) string {
	s := strings.TrimSpace(string(out))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// raiseNoFile lifts the open-file limit to its hard maximum; the children
// inherit it (the 1,000-connection workload needs a few thousand).
func raiseNoFile(stderr io.Writer) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		fmt.Fprintln(stderr, "raise open-file limit:", err)
	}
	if rl.Cur < 8192 {
		fmt.Fprintf(stderr, "warning: open-file limit %d is low for 1,000 connections\n", rl.Cur)
	}
}

func readLoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// machine collects the report's machine and version table.
func machine(frontdoorBin, frontdoor2Bin, loadStart string) [][2]string {
	first := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		s := strings.TrimSpace(string(out))
		if s == "" {
			if err != nil {
				return "n/a (" + err.Error() + ")"
			}
			return "n/a"
		}
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[:i]
		}
		return s
	}
	cpu := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	fd := "n/a (not built)"
	if frontdoorBin != "" {
		if _, err := os.Stat(frontdoorBin); err == nil {
			fd = first(frontdoorBin, "-version")
		}
	}
	kernel := first("uname", "-r")
	rows := [][2]string{
		{"source tree", first("git", "describe", "--always", "--dirty")},
		{"CPUs (nproc)", first("nproc")},
		{"CPU model", cpu},
		{"kernel", kernel},
		{"go", runtime.Version()},
		{"frontdoor", fd},
		{"haproxy", first("haproxy", "-v")},
		{"nginx", first("nginx", "-v")},
		{"wrk", first("wrk", "-v")},
		{"iperf3", first("iperf3", "-v")},
		{"h2load", first("h2load", "--version")},
		{"load average (1 5 15 min) at start / end", loadStart + " / " + readLoadAvg()},
	}
	if frontdoor2Bin != "" {
		rows = slices.Insert(rows, 6, [2]string{"frontdoor2", first(frontdoor2Bin, "-version")})
	}
	return rows
}
