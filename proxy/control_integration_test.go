package proxy

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"frontdoor/metrics"
)

// Runtime control (ControlBackend, the admin write endpoints) with real
// backends and real HTTP on 127.0.0.1. The token and the HTTP side are
// tested in metrics and, end to end, in cmd/frontdoor's TestCtl.

// controlPool is pool "demo" over backends (address or {address,weight}
// tables), round robin, no retry (a failure would show), check "none".
func controlPool(backends ...string) string {
	return listenerTOML + reloadRoute + "[pool.demo]\nretries = 0\nbackends = [" + strings.Join(backends, ", ") +
		"]\n[pool.demo.health]\ncheck = \"none\"\n"
}

func addrTOML(addr string, weight int) string {
	return fmt.Sprintf("{ address = %q, weight = %d }", addr, weight)
}

// control runs one command and fails the test on an error.
func control(t *testing.T, p *testProxy, addr string, c metrics.BackendCommand) BackendChange {
	t.Helper()
	res, err := p.ControlBackend("demo", addr, c)
	if err != nil {
		t.Fatalf("%s %+v: %v", addr, c, err)
	}
	return res.(BackendChange)
}

var drainCmd = metrics.BackendCommand{Op: metrics.OpState, State: "drain"}

// share sends n requests one after the other and counts the answers by
// backend name; any failure fails the test.
func share(t *testing.T, p *testProxy, n int) map[string]int {
	t.Helper()
	c := &fasthttp.Client{}
	got := map[string]int{}
	for range n {
		resp, err := get(t, c, p.url(t, "web", "/"))
		if err != nil || resp.StatusCode() != 200 {
			t.Fatalf("request: %v %v", err, resp.StatusCode())
		}
		got[string(resp.Body())]++
	}
	return got
}

// TestDrainUnderLoad drains a backend while four clients send requests
// through the proxy: no request fails, the requests a had in flight finish,
// and a gets no new request afterwards. maint keeps it out, ready brings it
// back.
func TestDrainUnderLoad(t *testing.T) {
	t.Parallel()
	a, b := startBackend(t, "a"), startBackend(t, "b")
	a.delay.Store(int64(150 * time.Millisecond)) // so that a has requests in flight
	p := startProxy(t, controlPool(addrTOML(a.addr, 1), addrTOML(b.addr, 1)), nil)

	var failed, sent atomic.Int64
	var failures sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &fasthttp.Client{}
			// Bounded: 3000 requests per client at most, or until stop.
			for range 3000 {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := get(t, c, p.url(t, "web", "/"))
				sent.Add(1)
				if err != nil || resp.StatusCode() != 200 {
					failed.Add(1)
					failures.Store(fmt.Sprint(err, resp.StatusCode()), true)
				}
			}
		}()
	}
	finish := func() {
		close(stop)
		wg.Wait()
	}
	defer func() {
		select {
		case <-stop:
		default:
			finish()
		}
	}()
	be := p.gen.Load().pools["demo"].ups[0].be
	waitFor(t, 5*time.Second, "requests in flight on a", func() bool { return be.InFlight() > 0 })

	ch := control(t, p, a.addr, drainCmd)
	if !ch.Changed || ch.After.AdminState != "drain" || ch.After.Serving || ch.After.State != "up" {
		t.Fatalf("drain: %+v", ch)
	}
	if ch.Before.InFlight == 0 {
		t.Fatal("no request in flight on a when it was drained")
	}
	// Its requests in flight finish (they are answered 200: counted below).
	waitFor(t, 5*time.Second, "a's requests in flight to finish", func() bool { return be.InFlight() == 0 })
	hitsAfterDrain := a.hits.Load()
	sentAtDrain := sent.Load()
	waitFor(t, 10*time.Second, "200 more requests", func() bool { return sent.Load() >= sentAtDrain+200 })

	// maint: still out.
	if ch := control(t, p, a.addr, metrics.BackendCommand{Op: metrics.OpState, State: "maint"}); ch.After.AdminState != "maint" || ch.After.Serving {
		t.Fatalf("maint: %+v", ch)
	}
	sentAtMaint := sent.Load()
	waitFor(t, 10*time.Second, "100 more requests", func() bool { return sent.Load() >= sentAtMaint+100 })
	if got := a.hits.Load(); got != hitsAfterDrain {
		t.Errorf("a got %d new requests while drained or in maint", got-hitsAfterDrain)
	}
	st := p.Status(ConfigStatus{})
	if c := st.Pools[0].Counts; c.Maint != 1 || c.Ready != 1 || c.Serving != 1 || c.Up != 2 {
		t.Errorf("pool counts %+v, want 1 maint, 1 ready, 1 serving, 2 up", c)
	}

	// ready: back in rotation.
	if ch := control(t, p, a.addr, metrics.BackendCommand{Op: metrics.OpState, State: "ready"}); ch.After.AdminState != "ready" || !ch.After.Serving {
		t.Fatalf("ready: %+v", ch)
	}
	waitFor(t, 10*time.Second, "a to get requests again", func() bool { return a.hits.Load() > hitsAfterDrain })
	finish()
	if n := failed.Load(); n != 0 {
		var msgs []string
		failures.Range(func(k, _ any) bool { msgs = append(msgs, k.(string)); return true })
		t.Errorf("%d of %d requests failed: %v", n, sent.Load(), msgs)
	}
}

// TestWeightChangesShare: a runtime weight changes the round-robin share at
// once; weight 0 holds the backend out (and ready does not undo it).
func TestWeightChangesShare(t *testing.T) {
	t.Parallel()
	a, b := startBackend(t, "a"), startBackend(t, "b")
	p := startProxy(t, controlPool(addrTOML(a.addr, 1), addrTOML(b.addr, 1)), nil)
	if got := share(t, p, 200); got["a"] != 100 || got["b"] != 100 {
		t.Fatalf("before: %v, want 100/100", got)
	}
	ch := control(t, p, a.addr, metrics.BackendCommand{Op: metrics.OpWeight, Weight: 3})
	if !ch.Changed || ch.Before.Weight != 1 || ch.After.Weight != 3 || ch.After.ConfiguredWeight != 1 {
		t.Fatalf("weight 3: %+v", ch)
	}
	if got := share(t, p, 400); got["a"] != 300 || got["b"] != 100 {
		t.Fatalf("weight 3:1: %v, want 300/100", got)
	}
	if got := metricValue(t, p.reg, "frontdoor_backend_weight", map[string]string{"pool": "demo", "backend": a.addr}); got != 3 {
		t.Errorf("frontdoor_backend_weight of a = %v, want 3", got)
	}
	if ch := control(t, p, a.addr, metrics.BackendCommand{Op: metrics.OpWeight, Weight: 0}); ch.After.Weight != 0 || ch.After.Serving {
		t.Fatalf("weight 0: %+v", ch)
	}
	control(t, p, a.addr, metrics.BackendCommand{Op: metrics.OpState, State: "ready"})
	if got := share(t, p, 100); got["a"] != 0 {
		t.Fatalf("weight 0 (after ready): a got %d of 100", got["a"])
	}
	control(t, p, a.addr, metrics.BackendCommand{Op: metrics.OpWeight, Weight: 1})
	if got := share(t, p, 200); got["a"] != 100 || got["b"] != 100 {
		t.Fatalf("weight back to 1: %v, want 100/100", got)
	}
}

// TestControlSurvivesReload: drain and a runtime weight survive a reload of
// the same pool (SIGHUP with an unchanged file); a reload that edits the
// backend's weight drops the runtime weight; a backend a reload removes
// loses its state (added back, it is ready).
func TestControlSurvivesReload(t *testing.T) {
	t.Parallel()
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	cfg := controlPool(addrTOML(a.addr, 1), addrTOML(b.addr, 1), addrTOML(c.addr, 1))
	p := startProxy(t, cfg, nil)
	control(t, p, a.addr, drainCmd)
	control(t, p, b.addr, metrics.BackendCommand{Op: metrics.OpWeight, Weight: 3})

	if err := reloadApply(t, p, cfg); err != nil {
		t.Fatal(err)
	}
	if st := backendStatus(t, p, "demo", a.addr); st.AdminState != "drain" || st.Serving {
		t.Errorf("a after a reload: %+v, want drain", st)
	}
	if st := backendStatus(t, p, "demo", b.addr); st.Weight != 3 {
		t.Errorf("b after a reload: weight %d, want 3", st.Weight)
	}
	for state, want := range map[string]float64{"drain": 1, "ready": 0, "maint": 0} {
		if got := metricValue(t, p.reg, "frontdoor_backend_admin_state", map[string]string{"pool": "demo", "backend": a.addr, "state": state}); got != want {
			t.Errorf("frontdoor_backend_admin_state{state=%q} of a after a reload = %v, want %v", state, got, want)
		}
	}
	// The pool the new runtime picks from has b at 3 (the spread of a's
	// share over b and c is round robin's business, not checked here).
	if got := memberWeights(p); got != [3]int{1, 3, 1} {
		t.Errorf("after a reload: member weights %v, want [1 3 1]", got)
	}
	if got := share(t, p, 400); got["a"] != 0 {
		t.Errorf("after a reload: drained a got %d of 400", got["a"])
	}

	// The file now gives b weight 2: the file wins.
	if err := reloadApply(t, p, controlPool(addrTOML(a.addr, 1), addrTOML(b.addr, 2), addrTOML(c.addr, 1))); err != nil {
		t.Fatal(err)
	}
	if st := backendStatus(t, p, "demo", b.addr); st.Weight != 2 || st.ConfiguredWeight != 2 {
		t.Errorf("b after its weight changed in the file: %+v, want 2", st)
	}
	if got := memberWeights(p); got != [3]int{1, 2, 1} {
		t.Errorf("after the weight edit: member weights %v, want [1 2 1]", got)
	}

	// Removed, then added back: a's drain is gone with it.
	if err := reloadApply(t, p, controlPool(addrTOML(b.addr, 2), addrTOML(c.addr, 1))); err != nil {
		t.Fatal(err)
	}
	if err := reloadApply(t, p, controlPool(addrTOML(a.addr, 1), addrTOML(b.addr, 2), addrTOML(c.addr, 1))); err != nil {
		t.Fatal(err)
	}
	if st := backendStatus(t, p, "demo", a.addr); st.AdminState != "ready" || !st.Serving {
		t.Errorf("a removed and added back: %+v, want ready and serving", st)
	}
}

// memberWeights are the weights of the first three members of pool demo in
// the running runtime.
func memberWeights(p *testProxy) (w [3]int) {
	for i, m := range p.gen.Load().pools["demo"].pool.Members()[:3] {
		w[i] = m.Weight
	}
	return w
}

// TestUnejectThroughControl: an ejected backend is back at once on uneject,
// before its ejection time ends; a second uneject changes nothing.
func TestUnejectThroughControl(t *testing.T) {
	t.Parallel()
	a, b := startBackend(t, "a"), startBackend(t, "b")
	p := startProxy(t, controlPool(addrTOML(a.addr, 1), addrTOML(b.addr, 1))+
		"[pool.demo.passive]\nconsecutive_failures = 1\nbase_ejection = \"10m\"\nmax_ejection_time = \"10m\"\n", nil)
	c := &fasthttp.Client{}
	waitFor(t, 5*time.Second, "a backend ejected", func() bool {
		_, _ = get(t, c, p.url(t, "web", "/status/500"))
		return backendStatus(t, p, "demo", a.addr).Ejected
	})
	ch := control(t, p, a.addr, metrics.BackendCommand{Op: metrics.OpUneject})
	if !ch.Changed || !ch.Before.Ejected || ch.After.Ejected || !ch.After.Serving {
		t.Fatalf("uneject: %+v", ch)
	}
	if ch := control(t, p, a.addr, metrics.BackendCommand{Op: metrics.OpUneject}); ch.Changed {
		t.Fatalf("second uneject changed something: %+v", ch)
	}
	if got := share(t, p, 100); got["a"] != 50 {
		t.Errorf("after uneject: %v, want a 50 of 100", got)
	}
}

// TestControlRefusals: unknown pools and backends, and values out of range,
// are refused with the sentinel the admin server maps to 404 and 400, and
// change nothing.
func TestControlRefusals(t *testing.T) {
	t.Parallel()
	a := startBackend(t, "a")
	p := startProxy(t, controlPool(addrTOML(a.addr, 1)), nil)
	tests := []struct {
		name, pool, addr string
		cmd              metrics.BackendCommand
		want             error
		msg              string
	}{
		{"unknown pool", "nope", a.addr, drainCmd, metrics.ErrUnknownBackend, `no pool "nope"`},
		{"unknown backend", "demo", "127.0.0.1:1", drainCmd, metrics.ErrUnknownBackend, `pool demo has no backend "127.0.0.1:1"`},
		{"bad state", "demo", a.addr, metrics.BackendCommand{Op: metrics.OpState, State: "up"}, metrics.ErrBadCommand, "want ready, drain or maint"},
		{"weight too large", "demo", a.addr, metrics.BackendCommand{Op: metrics.OpWeight, Weight: 1001}, metrics.ErrBadCommand, "outside 0..1000"},
		{"negative weight", "demo", a.addr, metrics.BackendCommand{Op: metrics.OpWeight, Weight: -1}, metrics.ErrBadCommand, "outside 0..1000"},
		{"unknown op", "demo", a.addr, metrics.BackendCommand{Op: "kill"}, metrics.ErrBadCommand, `unknown command "kill"`},
	}
	for _, tc := range tests {
		_, err := p.ControlBackend(tc.pool, tc.addr, tc.cmd)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %v with %q", tc.name, err, tc.want, tc.msg)
		}
	}
	if st := backendStatus(t, p, "demo", a.addr); st.AdminState != "ready" || st.Weight != 1 || !st.Serving {
		t.Errorf("after refusals: %+v", st)
	}
}
