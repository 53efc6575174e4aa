//go:build !race && linux

package health

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
)

const (
	helperEnv   = "FRONTDOOR_HEALTH_HELPER" // "kind count" for the helper process
	cpuTargets  = 1000
	cpuInterval = time.Second
	cpuBudget   = 5.0 // percent of one core
)

// TestCheckerCPU measures what checking 1,000 backends every second costs
// the checker process, for each check kind. The backends run in a child
// process (this test binary re-executed as TestHelperBackends), so the
// figure is the checker's alone; the child's share is logged beside it.
// The budget is 5% of one core.
//
// Run: go test -run TestCheckerCPU -v ./health
func TestCheckerCPU(t *testing.T) {
	if testing.Short() {
		t.Skip("measures for several seconds")
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < 3*cpuTargets {
		t.Skipf("need %d open files, have %d (%v)", 3*cpuTargets, lim.Cur, err)
	}
	for _, tc := range []struct {
		kind   string
		window time.Duration
	}{
		{kind: "http", window: 5 * time.Second},
		{kind: "tcp", window: 3 * time.Second},
		{kind: "grpc", window: 3 * time.Second},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			measureCPU(t, tc.kind, tc.window)
		})
	}
}

func measureCPU(t *testing.T, kind string, window time.Duration) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperBackends$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d", helperEnv, kind, cpuTargets))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = stdin.Close() // the helper exits on EOF
		_ = cmd.Wait()
	}()
	var addrs []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "READY" {
		if strings.HasPrefix(sc.Text(), "127.0.0.1:") {
			addrs = append(addrs, sc.Text())
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	if len(addrs) != cpuTargets {
		t.Fatalf("helper gave %d addresses, want %d", len(addrs), cpuTargets)
	}

	hc := check(kind)
	hc.Interval.Duration, hc.Timeout.Duration = cpuInterval, 500*time.Millisecond
	targets := make([]Target, len(addrs))
	for i, a := range addrs {
		targets[i] = Target{Address: a, Backend: &backend{}}
	}
	var checks, failures atomic.Int64
	var c *Checker
	var errMu sync.Mutex
	var errSample []string // a few distinct probe errors, for the log
	c, err = NewChecker(CheckerOptions{Pool: "cpu", Check: hc, Targets: targets,
		OnCheck: func(i int, ok bool) {
			checks.Add(1)
			if ok {
				return
			}
			failures.Add(1)
			// OnCheck runs on the target's goroutine after the result is
			// recorded: the state is stable here.
			tg := c.targets[i]
			tg.mu.Lock()
			msg := tg.st.lastErr.Error()
			tg.mu.Unlock()
			errMu.Lock()
			if len(errSample) < 3 && !slices.Contains(errSample, msg) {
				errSample = append(errSample, msg)
			}
			errMu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitFor(t, 10*time.Second, "first round", c.FirstRoundDone)
	// After one more interval every target has left the first-round burst
	// and sits at its spread phase: steady state.
	time.Sleep(cpuInterval + 100*time.Millisecond)

	self0, child0, n0, f0, start := selfCPU(t), childCPU(t, cmd.Process.Pid), checks.Load(), failures.Load(), time.Now()
	if f := os.Getenv("HEALTH_CPU_PROFILE"); f != "" {
		pf, _ := os.Create(f + "." + kind)
		_ = pprof.StartCPUProfile(pf)
		defer pprof.StopCPUProfile()
	}
	time.Sleep(window) // the measurement window, not synchronisation
	self1, child1, n1, f1, wall := selfCPU(t), childCPU(t, cmd.Process.Pid), checks.Load(), failures.Load(), time.Since(start)

	n, failed := n1-n0, f1-f0
	used := self1.total() - self0.total()
	pct := 100 * used.Seconds() / wall.Seconds()
	sysPct := 100 * (self1.sys - self0.sys).Seconds() / wall.Seconds()
	childPct := 100 * (child1 - child0).Seconds() / wall.Seconds()
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("%s: %d targets every %s: %d checks in %s (%.0f/s), %d failed; checker %.2f%% of one core (%.2f%% system; %.1f µs CPU per check); backends (child process) %.2f%%; loadavg %s",
		kind, cpuTargets, cpuInterval, n, wall.Round(time.Millisecond), float64(n)/wall.Seconds(), failed,
		pct, sysPct, float64(used.Microseconds())/float64(max(n, 1)), childPct, strings.TrimSpace(string(load)))
	if failed > n/100 {
		// Healthy local backends only time out when the machine is too
		// busy to run them; the redials that follow make the figure
		// meaningless. Correctness is covered by the other tests.
		errMu.Lock()
		defer errMu.Unlock()
		t.Skipf("machine overloaded: %d of %d checks failed against healthy backends (%q); CPU figure not trusted", failed, n, errSample)
	}
	if rate := float64(n) / wall.Seconds(); rate < 0.85*cpuTargets || rate > 1.15*cpuTargets {
		t.Errorf("%.0f checks/s, want about %d", rate, cpuTargets)
	}
	if pct > cpuBudget {
		t.Errorf("checker used %.2f%% of one core, budget %.0f%%", pct, cpuBudget)
	}
}

// cpuTime is user and system CPU time.
type cpuTime struct{ user, sys time.Duration }

func (c cpuTime) total() time.Duration { return c.user + c.sys }

// selfCPU is this process's CPU time.
func selfCPU(t *testing.T) cpuTime {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return cpuTime{time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())}
}

// childCPU is a running process's user+system CPU time from /proc.
func childCPU(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the parenthesised command: state is field 3, utime 14,
	// stime 15, in clock ticks (USER_HZ, 100 on Linux).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("parse /proc/%d/stat: %v %v", pid, err1, err2)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// TestHelperBackends is not a test: run by TestCheckerCPU with helperEnv
// set, it serves "count" backends of "kind" on 127.0.0.1, prints their
// addresses and READY, and exits when its stdin closes.
func TestHelperBackends(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("helper process for TestCheckerCPU")
	}
	var kind string
	var n int
	if _, err := fmt.Sscanf(spec, "%s %d", &kind, &n); err != nil {
		t.Fatal(err)
	}
	lns := make([]net.Listener, n)
	for i := range lns {
		lns[i] = listen(t)
	}
	switch kind {
	case "http":
		srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok\n") }}
		for _, ln := range lns {
			go func() { _ = srv.Serve(ln) }()
		}
	case "tcp":
		for _, ln := range lns {
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					_ = c.Close()
				}
			}()
		}
	case "grpc":
		srv := grpc.NewServer()
		grpc_health_v1.RegisterHealthServer(srv, grpchealth.NewServer())
		for _, ln := range lns {
			go func() { _ = srv.Serve(ln) }()
		}
	default:
		t.Fatalf("unknown kind %q", kind)
	}
	w := bufio.NewWriter(os.Stdout)
	for _, ln := range lns {
		fmt.Fprintln(w, ln.Addr().String())
	}
	fmt.Fprintln(w, "READY")
	_ = w.Flush()
	_, _ = io.Copy(io.Discard, os.Stdin)
}
