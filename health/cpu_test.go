//go:build !race && linux

package health

import (
	"context"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	cpuTargets  = 1000
	cpuInterval = time.Second
	// cpuBudget is issue 4's budget for 1,000 checks a second, in percent
	// of one core, for the tcp check (the default) and the http check. It
	// is asserted only on a machine that is not oversubscribed (1-minute
	// load average below the CPU count): other processes' context
	// switches inflate CPU time per check here several fold. cpuGuard is
	// asserted always, to catch gross regressions (before the engine, the
	// checker used 4-7% for http and 9-10% for tcp on a quiet machine).
	cpuBudget = 5.0
	cpuGuard  = 12.0
)

// TestCheckerCPU measures what checking 1,000 backends every second costs
// the checker process, for each check kind. The backends run in a child
// process (this test binary re-executed as TestHelperBackends), so the
// figure is the checker's alone; the child's share is logged beside it.
// tcp and http are held to the budget; grpc (a grpc-go ClientConn per
// target, several goroutine hand-offs per call) costs several times more
// per check, and its figure is logged.
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
		kind     string
		window   time.Duration
		asserted bool
	}{
		{kind: "tcp", window: 5 * time.Second, asserted: true},
		{kind: "http", window: 5 * time.Second, asserted: true},
		{kind: "grpc", window: 3 * time.Second},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			pct := measureCPU(t, tc.kind, tc.window)
			if !tc.asserted {
				return
			}
			if pct > cpuGuard {
				t.Errorf("checker used %.2f%% of one core, far over the %.0f%% budget", pct, cpuBudget)
			}
			if load := loadAverage(t); load >= float64(runtime.NumCPU()) {
				t.Logf("budget of %.0f%% not asserted: load average %.1f on %d CPUs", cpuBudget, load, runtime.NumCPU())
			} else if pct > cpuBudget {
				t.Errorf("checker used %.2f%% of one core, budget %.0f%%", pct, cpuBudget)
			}
		})
	}
}

// loadAverage is the 1-minute load average.
func loadAverage(t *testing.T) float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		t.Fatal(err)
	}
	f, err := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// measureCPU runs one checker of kind over cpuTargets backends and returns
// the checker process's CPU use in steady state, in percent of one core.
func measureCPU(t *testing.T, kind string, window time.Duration) float64 {
	addrs, pid := startHelper(t, kind, cpuTargets)
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
	c, err := NewChecker(CheckerOptions{Pool: "cpu", Check: hc, Targets: targets,
		OnCheck: func(i int, ok bool) {
			checks.Add(1)
			if ok {
				return
			}
			failures.Add(1)
			// OnCheck runs after the result is recorded, on the
			// goroutine that probes the target: the state is stable here.
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

	self0, child0, n0, f0, start := selfCPU(t), childCPU(t, pid), checks.Load(), failures.Load(), time.Now()
	time.Sleep(window) // the measurement window, not synchronisation
	self1, child1, n1, f1, wall := selfCPU(t), childCPU(t, pid), checks.Load(), failures.Load(), time.Since(start)

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
	return pct
}
