package health

import (
	"context"
	"errors"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"

	"frontdoor/config"
)

// newTestChecker builds a Checker over targets with events recorded.
func newTestChecker(t testing.TB, hc config.HealthCheck, targets ...Target) (*Checker, *recorder) {
	t.Helper()
	rec := newRecorder()
	c, err := NewChecker(CheckerOptions{
		Pool: "test", Check: hc, Targets: targets,
		OnCheck: rec.onCheck, OnChange: rec.onChange,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, rec
}

// TestCheckerRiseFallHTTP flips a real backend between 200 and 503 and
// checks that transitions happen after exactly rise/fall results.
func TestCheckerRiseFallHTTP(t *testing.T) {
	t.Parallel()
	srv := startHTTP(t, 200)
	b := &backend{}
	hc := check("http")
	hc.Rise, hc.Fall = 2, 3
	rec := newRecorder()
	var logs logLines
	c, err := NewChecker(CheckerOptions{Pool: "web", Check: hc, Targets: []Target{{Address: srv.addr, Backend: b}},
		Logger: logs.logger(), OnCheck: rec.onCheck, OnChange: rec.onChange})
	if err != nil {
		t.Fatal(err)
	}
	startChecker(t, c)

	waitFor(t, 5*time.Second, "first up", func() bool { return rec.count(0, "up") == 1 })
	srv.status.Store(503)
	waitFor(t, 5*time.Second, "down", func() bool { return rec.count(0, "down") == 1 })
	srv.status.Store(200)
	waitFor(t, 5*time.Second, "second up", func() bool { return rec.count(0, "up") == 2 })

	// The backend's status changes once per flip, so the results are
	// monotone runs; transitions must sit exactly after the 1st success
	// (fresh target), the 3rd failure and the 2nd success.
	want := regexp.MustCompile(`^ok up (ok )*fail fail fail down (fail )*ok ok up( ok)*$`)
	if seq := rec.seq(0); !want.MatchString(seq) {
		t.Errorf("events %q do not match %s", seq, want)
	}
	if got := b.sets(); !slices.Equal(got[:3], []bool{true, false, true}) {
		t.Errorf("SetHealthy calls %v, want [true false true ...]", got)
	}
	st := c.Status()[0]
	if !st.Healthy || st.LastChange.IsZero() || st.LastCheck.Before(st.LastChange) {
		t.Errorf("status %+v: want healthy with change and check times", st)
	}

	// One log line per transition, none per probe.
	lines := logs.records(t)
	wantMsgs := []string{"backend up", "backend down", "backend up"}
	wantReasons := []string{"first check passed", "3 consecutive checks failed", "2 consecutive checks passed"}
	if len(lines) != len(wantMsgs) {
		t.Fatalf("%d log lines, want %d: %v", len(lines), len(wantMsgs), lines)
	}
	for i, l := range lines {
		if l["msg"] != wantMsgs[i] || l["pool"] != "web" || l["backend"] != srv.addr || l["reason"] != wantReasons[i] {
			t.Errorf("log line %d: %v, want %s with pool, backend and reason %q", i, l, wantMsgs[i], wantReasons[i])
		}
	}
	if e, _ := lines[1]["err"].(string); !strings.Contains(e, "status 503") {
		t.Errorf("down line err %q, want the failing status", e)
	}
}

// TestCheckerCallbackPanic: a panicking callback is logged with its stack
// and the target keeps being checked.
func TestCheckerCallbackPanic(t *testing.T) {
	t.Parallel()
	srv := startHTTP(t, 200)
	var calls atomic.Int64
	var logs logLines
	c, err := NewChecker(CheckerOptions{Pool: "p", Check: check("http"),
		Targets: []Target{{Address: srv.addr, Backend: &backend{}}}, Logger: logs.logger(),
		OnCheck: func(int, bool) {
			if calls.Add(1) == 1 {
				panic("boom")
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	startChecker(t, c)
	waitFor(t, 5*time.Second, "checks after the panic", func() bool { return calls.Load() >= 3 })
	var found bool
	for _, l := range logs.records(t) {
		if l["panic"] == "boom" {
			st, _ := l["stack"].(string)
			found = strings.Contains(st, "health.")
		}
	}
	if !found {
		t.Error("panic not logged with its stack")
	}
}

func TestCheckerHTTPRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		method   string
		path     string
		host     string
		wantHost string // "" = the backend address
	}{
		{name: "defaults", method: "GET", path: "/healthz"},
		{name: "empty method is GET", method: "", path: "/ready?full=1"},
		{name: "head with host", method: "HEAD", path: "/", host: "svc.internal", wantHost: "svc.internal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startHTTP(t, 200)
			hc := check("http")
			hc.Method, hc.Path, hc.Host = tc.method, tc.path, tc.host
			p := newHTTPProber(&hc, srv.addr)
			defer p.close()
			for range 3 { // the connection is reused
				if err := p.probe(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			method, uri, host := srv.seen()
			wantMethod, wantHost := tc.method, tc.wantHost
			if wantMethod == "" {
				wantMethod = "GET"
			}
			if wantHost == "" {
				wantHost = srv.addr
			}
			if method != wantMethod || uri != tc.path || host != wantHost {
				t.Errorf("server saw %s %s Host %s, want %s %s Host %s", method, uri, host, wantMethod, tc.path, wantHost)
			}
		})
	}
}

func TestCheckerHTTPStatusRange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		status    int
		low, high int
		ok        bool
	}{
		{name: "200 in default range", status: 200, low: 200, high: 399, ok: true},
		{name: "302 in default range", status: 302, low: 200, high: 399, ok: true},
		{name: "404 outside default range", status: 404, low: 200, high: 399},
		{name: "503 outside default range", status: 503, low: 200, high: 399},
		{name: "single code match", status: 204, low: 204, high: 204, ok: true},
		{name: "single code mismatch", status: 200, low: 204, high: 204},
		{name: "range of errors accepted", status: 418, low: 400, high: 499, ok: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startHTTP(t, tc.status)
			hc := check("http")
			hc.ExpectStatus = config.StatusRange{Low: tc.low, High: tc.high}
			p := newHTTPProber(&hc, srv.addr)
			defer p.close()
			err := p.probe(context.Background())
			if tc.ok && err != nil {
				t.Fatalf("probe: %v, want success", err)
			}
			if !tc.ok && !errors.Is(err, ErrUnhealthy) {
				t.Fatalf("probe: %v, want ErrUnhealthy", err)
			}
		})
	}
}

// TestCheckerClosedPort: every kind fails fast against a port nothing
// listens on, and the target never goes up.
func TestCheckerClosedPort(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"tcp", "http", "grpc"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			b := &backend{}
			hc := check(kind)
			hc.Timeout.Duration = 2 * time.Second
			c, rec := newTestChecker(t, hc, Target{Address: closedAddr(t), Backend: b})
			start := time.Now()
			startChecker(t, c)
			waitFor(t, 5*time.Second, "three probes", func() bool { return rec.count(0, "fail") >= 3 })
			if d := time.Since(start); d > time.Second {
				t.Errorf("three refused probes took %s; a refused connect must not wait for the timeout", d)
			}
			if !c.FirstRoundDone() {
				t.Error("FirstRoundDone false after probes")
			}
			st := c.Status()[0]
			if st.Healthy || st.LastResult != "failure" || st.LastError == "" || b.healthy.Load() {
				t.Errorf("status %+v, backend healthy %v: want down with an error", st, b.healthy.Load())
			}
			if rec.count(0, "up")+rec.count(0, "down") != 0 {
				t.Errorf("events %q: want no transition", rec.seq(0))
			}
		})
	}
}

func TestCheckerTCPOpenPort(t *testing.T) {
	t.Parallel()
	ln := listen(t)
	defer ln.Close()
	p := newTCPProber(ln.Addr().String(), time.Second)
	if err := p.probe(context.Background()); err != nil {
		t.Fatalf("tcp probe of a listening port: %v", err)
	}
}

// TestCheckerSilentServer: a backend that accepts and never answers is
// marked down by the timeout.
func TestCheckerSilentServer(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"http", "grpc"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := startSilent(t)
			hc := check(kind)
			hc.Interval.Duration = 200 * time.Millisecond
			hc.Timeout.Duration = 100 * time.Millisecond
			hc.Fall = 1

			p := newProber(&hc, srv.addr)
			start := time.Now()
			err := p.probe(context.Background())
			elapsed := time.Since(start)
			p.close()
			if !errors.Is(err, ErrTimeout) {
				t.Errorf("probe: %v, want ErrTimeout", err)
			}
			if elapsed < hc.Timeout.Duration || elapsed > hc.Timeout.Duration+time.Second {
				t.Errorf("probe took %s, want about the %s timeout", elapsed, hc.Timeout.Duration)
			}

			b := &backend{}
			b.healthy.Store(true)
			c, rec := newTestChecker(t, hc, Target{Address: srv.addr, Backend: b, Healthy: true})
			startChecker(t, c)
			waitFor(t, 5*time.Second, "down", func() bool { return rec.count(0, "down") == 1 })
			if b.healthy.Load() || !strings.HasPrefix(rec.seq(0), "fail down") {
				t.Errorf("events %q, backend healthy %v: want fail down", rec.seq(0), b.healthy.Load())
			}
		})
	}
}

func TestCheckerGRPC(t *testing.T) {
	t.Parallel()
	addr, hs := startGRPC(t)
	hs.SetServingStatus("api", grpc_health_v1.HealthCheckResponse_SERVING)
	hs.SetServingStatus("batch", grpc_health_v1.HealthCheckResponse_NOT_SERVING)

	tests := []struct {
		name    string
		service string
		ok      bool
		unwell  bool // ErrUnhealthy rather than an RPC error
	}{
		{name: "server overall serving", service: "", ok: true},
		{name: "service serving", service: "api", ok: true},
		{name: "service not serving", service: "batch", unwell: true},
		{name: "unknown service", service: "nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hc := check("grpc")
			hc.Service = tc.service
			p := newProber(&hc, addr)
			defer p.close()
			err := p.probe(context.Background())
			switch {
			case tc.ok && err != nil:
				t.Fatalf("probe: %v, want success", err)
			case !tc.ok && err == nil:
				t.Fatal("probe passed, want failure")
			case errors.Is(err, ErrUnhealthy) != tc.unwell:
				t.Fatalf("probe: %v, ErrUnhealthy want %v", err, tc.unwell)
			}
		})
	}
}

// TestCheckerGRPCTransitions flips grpc-go's health server between SERVING
// and NOT_SERVING under a running Checker.
func TestCheckerGRPCTransitions(t *testing.T) {
	t.Parallel()
	addr, hs := startGRPC(t)
	hs.SetServingStatus("api", grpc_health_v1.HealthCheckResponse_SERVING)
	b := &backend{}
	hc := check("grpc")
	hc.Service, hc.Rise, hc.Fall = "api", 2, 2
	c, rec := newTestChecker(t, hc, Target{Address: addr, Backend: b})
	startChecker(t, c)

	waitFor(t, 5*time.Second, "up", func() bool { return b.healthy.Load() })
	hs.SetServingStatus("api", grpc_health_v1.HealthCheckResponse_NOT_SERVING)
	waitFor(t, 5*time.Second, "down", func() bool { return rec.count(0, "down") == 1 })
	hs.SetServingStatus("api", grpc_health_v1.HealthCheckResponse_SERVING)
	waitFor(t, 5*time.Second, "up again", func() bool { return rec.count(0, "up") == 2 })

	want := regexp.MustCompile(`^ok up (ok )*fail fail down (fail )*ok ok up( ok)*$`)
	if seq := rec.seq(0); !want.MatchString(seq) {
		t.Errorf("events %q do not match %s", seq, want)
	}
}

func TestCheckerNone(t *testing.T) {
	t.Parallel()
	b0, b1 := &backend{}, &backend{}
	b1.healthy.Store(true)
	c, rec := newTestChecker(t, config.HealthCheck{Check: "none"},
		Target{Address: closedAddr(t), Backend: b0},
		Target{Address: closedAddr(t), Backend: b1, Healthy: true})
	if c.FirstRoundDone() {
		t.Error("FirstRoundDone true for check none before Run marked the targets up")
	}
	startChecker(t, c)
	waitFor(t, 5*time.Second, "first round done", c.FirstRoundDone)
	if !b0.healthy.Load() {
		t.Error("FirstRoundDone before the target was marked up")
	}
	if rec.seq(0) != "up" || rec.seq(1) != "" {
		t.Errorf("events %q %q: want one up for the down target, none for the up one", rec.seq(0), rec.seq(1))
	}
	for i, st := range c.Status() {
		if !st.Healthy || st.LastResult != "" || !st.LastCheck.IsZero() {
			t.Errorf("target %d status %+v: want healthy, never checked", i, st)
		}
	}
	if got := b1.sets(); len(got) != 0 {
		t.Errorf("already healthy backend told %v, want nothing", got)
	}
}

// TestStartNoneMarksBeforeReturning: Start with check "none" returns with
// every target up, so a listener started next never finds the pool empty.
func TestStartNoneMarksBeforeReturning(t *testing.T) {
	t.Parallel()
	b := &backend{}
	c, _ := newTestChecker(t, config.HealthCheck{Check: "none"}, Target{Address: closedAddr(t), Backend: b})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c.Start(ctx)
	if !b.healthy.Load() || !c.FirstRoundDone() {
		t.Errorf("after Start: healthy %v, first round done %v; want both", b.healthy.Load(), c.FirstRoundDone())
	}
}

// TestCheckerPrevious: a Checker replacing another on reload takes over
// results, times and counters by address.
func TestCheckerPrevious(t *testing.T) {
	t.Parallel()
	up := startHTTP(t, 200)
	down := closedAddr(t)
	hc := check("http")
	old, _ := newTestChecker(t, hc,
		Target{Address: up.addr, Backend: &backend{}},
		Target{Address: down, Backend: &backend{}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); old.Run(ctx) }()
	waitFor(t, 5*time.Second, "old checker's first round", func() bool {
		st := old.Status()
		return old.FirstRoundDone() && st[0].Healthy
	})
	cancel()
	<-done
	oldStatus := old.Status()

	fresh := closedAddr(t)
	c, err := NewChecker(CheckerOptions{Pool: "test", Check: hc, Previous: old, Targets: []Target{
		{Address: fresh, Backend: &backend{}},
		{Address: down, Backend: &backend{}},
		{Address: up.addr, Backend: &backend{}, Healthy: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := c.Status()
	if got[0] != (TargetStatus{Address: fresh}) {
		t.Errorf("new address status %+v, want empty", got[0])
	}
	if got[1] != oldStatus[1] || got[2] != oldStatus[0] {
		t.Errorf("carried status\n%+v\n%+v\nwant\n%+v\n%+v", got[1], got[2], oldStatus[1], oldStatus[0])
	}
}

// TestCheckerPreviousCounters: a target two failures into fall=3 under the
// old Checker goes down on the new Checker's first failure.
func TestCheckerPreviousCounters(t *testing.T) {
	t.Parallel()
	addr := closedAddr(t)
	hc := check("tcp")
	old, _ := newTestChecker(t, hc, Target{Address: addr, Backend: &backend{}, Healthy: true})
	old.targets[0].st = state{healthy: true, everUp: true, fails: 2, checked: true}

	b := &backend{}
	b.healthy.Store(true)
	rec := newRecorder()
	c, err := NewChecker(CheckerOptions{Pool: "test", Check: hc, Previous: old,
		Targets: []Target{{Address: addr, Backend: b, Healthy: true}},
		OnCheck: rec.onCheck, OnChange: rec.onChange})
	if err != nil {
		t.Fatal(err)
	}
	startChecker(t, c)
	// The backend is marked down before the change is reported: wait for
	// the events, which must begin with the one failure.
	waitFor(t, 5*time.Second, "fail down", func() bool { return len(rec.seq(0)) >= len("fail down") })
	if seq := rec.seq(0); !strings.HasPrefix(seq, "fail down") || b.healthy.Load() {
		t.Errorf("events %q (healthy %v), want fail down first", seq, b.healthy.Load())
	}
}

// TestCheckerCancelDiscards: a probe cut short by the end of Run is not
// recorded, so replacing a Checker never marks a backend down, and Run
// returns without waiting for the probe's timeout.
func TestCheckerCancelDiscards(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"http", "grpc"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := startSilent(t)
			hc := check(kind)
			hc.Interval.Duration, hc.Timeout.Duration, hc.Fall = 10*time.Second, 5*time.Second, 1
			b := &backend{}
			b.healthy.Store(true)
			c, rec := newTestChecker(t, hc, Target{Address: srv.addr, Backend: b, Healthy: true})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); c.Run(ctx) }()
			waitFor(t, 5*time.Second, "probe connected", func() bool { return srv.accepted.Load() > 0 })
			cancel()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				t.Fatal("Run did not return promptly after cancel")
			}
			if seq := rec.seq(0); seq != "" || !b.healthy.Load() || c.FirstRoundDone() || b.sets() != nil {
				t.Errorf("after cancel: events %q, healthy %v, first round %v, sets %v; want nothing recorded",
					seq, b.healthy.Load(), c.FirstRoundDone(), b.sets())
			}
		})
	}
}

func TestNewCheckerRejects(t *testing.T) {
	t.Parallel()
	ok := Target{Address: "127.0.0.1:1", Backend: &backend{}}
	mod := func(f func(*config.HealthCheck)) config.HealthCheck {
		hc := check("http")
		f(&hc)
		return hc
	}
	tests := []struct {
		name    string
		hc      config.HealthCheck
		targets []Target
	}{
		{name: "unknown kind", hc: mod(func(h *config.HealthCheck) { h.Check = "udp" }), targets: []Target{ok}},
		{name: "empty kind", hc: mod(func(h *config.HealthCheck) { h.Check = "" }), targets: []Target{ok}},
		{name: "zero interval", hc: mod(func(h *config.HealthCheck) { h.Interval.Duration = 0 }), targets: []Target{ok}},
		{name: "zero timeout", hc: mod(func(h *config.HealthCheck) { h.Timeout.Duration = 0 }), targets: []Target{ok}},
		{name: "rise 0", hc: mod(func(h *config.HealthCheck) { h.Rise = 0 }), targets: []Target{ok}},
		{name: "fall 0", hc: mod(func(h *config.HealthCheck) { h.Fall = 0 }), targets: []Target{ok}},
		{name: "relative path", hc: mod(func(h *config.HealthCheck) { h.Path = "healthz" }), targets: []Target{ok}},
		{name: "empty status range", hc: mod(func(h *config.HealthCheck) { h.ExpectStatus = config.StatusRange{} }), targets: []Target{ok}},
		{name: "inverted status range", hc: mod(func(h *config.HealthCheck) { h.ExpectStatus = config.StatusRange{Low: 400, High: 200} }), targets: []Target{ok}},
		{name: "nil backend", hc: check("tcp"), targets: []Target{{Address: "127.0.0.1:1"}}},
		{name: "empty address", hc: check("tcp"), targets: []Target{{Backend: &backend{}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if c, err := NewChecker(CheckerOptions{Pool: "p", Check: tc.hc, Targets: tc.targets}); err == nil {
				t.Errorf("NewChecker accepted it: %+v", c)
			}
		})
	}
}

// TestCheckerSpread: with the random source pinned, the second round of
// each target lands where the spread puts it.
func TestCheckerSpread(t *testing.T) {
	t.Parallel()
	srv := startHTTP(t, 200)
	hc := check("http")
	hc.Interval.Duration = 400 * time.Millisecond
	c, rec := newTestChecker(t, hc, Target{Address: srv.addr, Backend: &backend{}})
	c.rand = func() float64 { return 0.75 } // second probe after 0.25 x interval
	start := time.Now()
	startChecker(t, c)
	waitFor(t, 5*time.Second, "two probes", func() bool { return rec.count(0, "ok") >= 2 })
	if d := time.Since(start); d < 75*time.Millisecond || d > 350*time.Millisecond {
		t.Errorf("second probe after %s, want about 100ms (a quarter interval, ± half a 40ms slot)", d)
	}
}

// TestCheckerLateStart: a backend that starts after the Checker goes up on
// its first passing check, within a few intervals (grpc's reconnect backoff
// is capped at the interval).
func TestCheckerLateStart(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"tcp", "http", "grpc"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			addr := closedAddr(t)
			hc := check(kind)
			hc.Interval.Duration = 50 * time.Millisecond
			b := &backend{}
			c, rec := newTestChecker(t, hc, Target{Address: addr, Backend: b})
			startChecker(t, c)
			waitFor(t, 5*time.Second, "failures", func() bool { return rec.count(0, "fail") >= 4 })

			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Skipf("port %s taken meanwhile: %v", addr, err)
			}
			switch kind {
			case "tcp":
				defer ln.Close()
			case "http":
				srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {}}
				go func() { _ = srv.Serve(ln) }()
				defer func() { _ = srv.Shutdown() }()
			case "grpc":
				srv := grpc.NewServer()
				grpc_health_v1.RegisterHealthServer(srv, grpchealth.NewServer())
				go func() { _ = srv.Serve(ln) }()
				defer srv.Stop()
			}
			started := time.Now()
			// The up event, not b.healthy: SetHealthy comes before the
			// OnCheck and OnChange callbacks that write the events.
			waitFor(t, 5*time.Second, "up", func() bool { return rec.count(0, "up") == 1 })
			if d := time.Since(started); d > 1*time.Second {
				t.Errorf("up %s after the backend started, want within a few 50ms intervals", d)
			}
			if !regexp.MustCompile(`^(fail )+ok up`).MatchString(rec.seq(0)) || !b.healthy.Load() {
				t.Errorf("events %q, backend healthy %v: want failures then ok up", rec.seq(0), b.healthy.Load())
			}
		})
	}
}

func TestCheckerSlotGrid(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	tests := []struct {
		name       string
		slot       time.Duration
		start, now time.Duration // offsets from base
		after      time.Duration
		want       time.Duration
	}{
		{name: "rounded up to the nearest slot", slot: 100 * ms, start: 30 * ms, now: 30 * ms, after: 250 * ms, want: 270 * ms},
		{name: "rounded down to the nearest slot", slot: 100 * ms, start: 10 * ms, now: 10 * ms, after: 230 * ms, want: 190 * ms},
		{name: "on the grid already", slot: 100 * ms, start: 50 * ms, now: 50 * ms, after: 250 * ms, want: 250 * ms},
		{name: "probe time subtracted", slot: 100 * ms, start: 0, now: 40 * ms, after: 250 * ms, want: 260 * ms},
		{name: "overdue fires at the next slot", slot: 100 * ms, start: 0, now: 330 * ms, after: 250 * ms, want: 70 * ms},
		{name: "due before the slot start fires at the next slot", slot: 100 * ms, start: 0, now: 320 * ms, after: 330 * ms, want: 80 * ms},
		{name: "no grid", slot: 0, start: 30 * ms, now: 40 * ms, after: 250 * ms, want: 240 * ms},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &Checker{slot: tc.slot, now: func() time.Time { return base.Add(tc.now) }}
			if got := c.until(base.Add(tc.start), float64(tc.after)); got != tc.want {
				t.Errorf("until = %s, want %s", got, tc.want)
			}
		})
	}
}

// panicProber panics on every probe.
type panicProber struct{}

func (panicProber) probe(context.Context) error { panic("probe exploded") }
func (panicProber) close()                      {}

// TestCheckerProbePanic: a panicking probe counts as a failed check and is
// logged with its stack; checking goes on.
func TestCheckerProbePanic(t *testing.T) {
	t.Parallel()
	var logs logLines
	rec := newRecorder()
	b := &backend{}
	b.healthy.Store(true)
	hc := check("tcp")
	hc.Fall = 2
	c, err := NewChecker(CheckerOptions{Pool: "p", Check: hc, Logger: logs.logger(),
		Targets: []Target{{Address: "127.0.0.1:1", Backend: b, Healthy: true}},
		OnCheck: rec.onCheck, OnChange: rec.onChange})
	if err != nil {
		t.Fatal(err)
	}
	c.newProber = func(*config.HealthCheck, string) prober { return panicProber{} }
	startChecker(t, c)
	waitFor(t, 5*time.Second, "three failed checks", func() bool { return rec.count(0, "fail") >= 3 })
	if seq := rec.seq(0); !strings.HasPrefix(seq, "fail fail down fail") {
		t.Errorf("events %q, want fail fail down fail...", seq)
	}
	if st := c.Status()[0]; !strings.Contains(st.LastError, "probe exploded") {
		t.Errorf("last error %q, want the panic", st.LastError)
	}
	var stack string
	for _, l := range logs.records(t) {
		if l["panic"] == "probe exploded" {
			stack, _ = l["stack"].(string)
		}
	}
	if !strings.Contains(stack, "panicProber") {
		t.Errorf("panic not logged with its stack: %q", stack)
	}
}

func TestNewCheckerReportsAllErrors(t *testing.T) {
	t.Parallel()
	hc := check("http")
	hc.Rise, hc.Path = 0, "x"
	_, err := NewChecker(CheckerOptions{Pool: "p", Check: hc, Targets: []Target{{Address: "a:1"}}})
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 3 {
		t.Fatalf("error %v: want the 3 problems (rise, path, nil backend) joined", err)
	}
}

// TestCheckerEndsEjection: a backend ejected while its check passes stays
// ejected (a check that passed all along says nothing new); once its check
// fails and recovers, the recovery ends the ejection and logs "backend up",
// or, with uneject_on_active_pass false, logs that it stays ejected and
// until when.
func TestCheckerEndsEjection(t *testing.T) {
	t.Parallel()
	for _, uneject := range []bool{true, false} {
		t.Run("uneject="+strconv.FormatBool(uneject), func(t *testing.T) {
			t.Parallel()
			srv := startHTTP(t, 200)
			b := &backend{}
			cfg := passive(1, 100, time.Hour)
			cfg.UnejectOnActivePass = uneject
			var logs logLines
			ej := NewEjector(EjectorOptions{Pool: "web", Config: cfg, Targets: []Ejectable{b},
				Addresses: []string{srv.addr}, Logger: logs.logger()})
			rec := newRecorder()
			c, err := NewChecker(CheckerOptions{Pool: "web", Check: check("http"), Targets: []Target{{Address: srv.addr, Backend: b}},
				Logger: logs.logger(), OnCheck: rec.onCheck, OnChange: rec.onChange, Ejector: ej})
			if err != nil {
				t.Fatal(err)
			}
			startChecker(t, c)
			waitFor(t, 5*time.Second, "first up", func() bool { return rec.count(0, "up") == 1 })

			ej.Failure(0)
			oks := rec.count(0, "ok")
			waitFor(t, 5*time.Second, "more passing checks", func() bool { return rec.count(0, "ok") >= oks+5 })
			if !b.ejected.Load() {
				t.Fatal("checks that kept passing ended the ejection")
			}

			srv.status.Store(503)
			waitFor(t, 5*time.Second, "down", func() bool { return rec.count(0, "down") == 1 })
			srv.status.Store(200)
			waitFor(t, 5*time.Second, "second up", func() bool { return rec.count(0, "up") == 2 })
			if b.ejected.Load() == uneject {
				t.Fatalf("after the recovery: ejected %v, want %v", b.ejected.Load(), !uneject)
			}
			var last map[string]any
			for _, l := range logs.records(t) {
				if l["msg"] != "backend down" && l["msg"] != "backend ejected" {
					last = l
				}
			}
			until, _ := ej.EjectedUntil(0)
			switch {
			case uneject && (last["msg"] != "backend up" || !strings.Contains(last["reason"].(string), "passive ejection ended")):
				t.Errorf("recovery line %v", last)
			case !uneject && (last["msg"] != "backend passed its checks, stays ejected" || last["until"] != until.Format(time.RFC3339)):
				t.Errorf("recovery line %v, want until %s", last, until.Format(time.RFC3339))
			}
		})
	}
}
