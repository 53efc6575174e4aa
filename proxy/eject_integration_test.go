package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// syncBuffer is a log sink safe for the proxy's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines decodes every JSON log line written so far.
func (b *syncBuffer) lines(t testing.TB) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(b.buf.String()) {
		m := map[string]any{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// backendStatus returns the /status entry of addr in pool.
func backendStatus(t testing.TB, p *testProxy, pool, addr string) BackendStatus {
	t.Helper()
	for _, ps := range p.Status(ConfigStatus{}).Pools {
		for _, b := range ps.Backends {
			if ps.Name == pool && b.Address == addr {
				return b
			}
		}
	}
	t.Fatalf("no backend %s in pool %s", addr, pool)
	return BackendStatus{}
}

// TestEjectedBackendBackOnRecovery: a backend that was stopped, ejected by
// its failed connects (for a minute) and marked down by its tcp check takes
// traffic again within rise x interval (+ one interval) of its restart: the
// check's recovery ends the ejection. While ejected, /status and the
// ejected_until gauge say until when; the log says "backend up" once it is.
func TestEjectedBackendBackOnRecovery(t *testing.T) {
	t.Parallel()
	bs := []*testBackend{startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")}
	const interval, rise = 200 * time.Millisecond, 2
	var logs syncBuffer
	p := startProxyWith(t, listenerTOML+`
  [[listener.route]]
  pool = "web"
`+poolTOML("web", fmt.Sprintf(`retries = 2
[pool.web.health]
check = "tcp"
interval = "%s"
timeout = "100ms"
fall = 2
rise = %d
[pool.web.passive]
consecutive_failures = 3
base_ejection = "1m"`, interval, rise), bs[0].addr, bs[1].addr, bs[2].addr),
		Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failed atomic.Int64
	client := &fasthttp.Client{}
	wg.Go(func() {
		for n := 0; n < 100000; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if resp, err := get(t, client, p.url(t, "web", "/")); err != nil || resp.StatusCode() != 200 {
				failed.Add(1)
			}
			time.Sleep(time.Millisecond)
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
	}()

	addr := bs[1].addr
	bs[1].stop()
	waitFor(t, 5*time.Second, "stopped backend ejected", func() bool { return backendStatus(t, p, "web", addr).Ejected })
	st := backendStatus(t, p, "web", addr)
	if d := time.Until(st.EjectedUntil); d < 50*time.Second || d > time.Minute {
		t.Errorf("ejected_until %v is %v away, want about 1m", st.EjectedUntil, d)
	}
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if want := `"ejected_until":"` + st.EjectedUntil.Format(time.RFC3339Nano) + `"`; !bytes.Contains(raw, []byte(want)) {
		t.Errorf("/status entry %s lacks %s", raw, want)
	}
	labels := map[string]string{"pool": "web", "backend": addr}
	if got, want := metricValue(t, p.reg, "frontdoor_backend_ejected_until_seconds", labels), float64(st.EjectedUntil.UnixNano())/1e9; got < want-1 || got > want+1 {
		t.Errorf("frontdoor_backend_ejected_until_seconds = %v, want %v", got, want)
	}
	be := p.gen.Load().pools["web"].ups[1].be
	waitFor(t, 5*time.Second, "stopped backend marked down by its check", func() bool { return !be.Healthy() })

	restarted := time.Now()
	back := startBackendOn(t, "b", addr)
	waitFor(t, 5*time.Second, "restarted backend takes traffic", func() bool { return back.hits.Load() > 0 })
	up := time.Since(restarted)
	t.Logf("traffic again %v after the restart (rise x interval = %v)", up.Round(time.Millisecond), rise*interval)
	if limit := rise*interval + interval; up > limit {
		t.Errorf("restarted backend took traffic after %v, want within %v", up, limit)
	}
	if st := backendStatus(t, p, "web", addr); st.Ejected || !st.EjectedUntil.IsZero() || st.State != "up" {
		t.Errorf("after the recovery: /status %+v", st)
	}
	if got := metricValue(t, p.reg, "frontdoor_backend_ejected_until_seconds", labels); got != 0 {
		t.Errorf("frontdoor_backend_ejected_until_seconds = %v after the recovery, want 0", got)
	}
	if got := metricValue(t, p.reg, "frontdoor_backend_up", labels); got != 1 {
		t.Errorf("frontdoor_backend_up = %v after the recovery, want 1", got)
	}
	var ups []map[string]any // since its ejection
	for _, l := range logs.lines(t) {
		switch {
		case l["backend"] != addr:
		case l["msg"] == "backend ejected":
			ups = nil
		case l["msg"] == "backend up":
			ups = append(ups, l)
		}
	}
	if len(ups) != 1 || !strings.Contains(fmt.Sprint(ups[0]["reason"]), "passive ejection ended") {
		t.Errorf(`"backend up" lines for the restarted backend: %v; want one that says the ejection ended`, ups)
	}
	if failed.Load() != 0 {
		t.Errorf("%d requests failed", failed.Load())
	}
}

// TestHungBackendEjectedByTimeouts: a backend that accepts connections but
// answers nothing passes its tcp check; its response timeouts (504) eject
// it, unless count_timeouts is false.
func TestHungBackendEjectedByTimeouts(t *testing.T) {
	t.Parallel()
	for _, count := range []bool{true, false} {
		t.Run(fmt.Sprintf("count_timeouts=%v", count), func(t *testing.T) {
			t.Parallel()
			good, hung := startBackend(t, "good"), startBackend(t, "hung")
			hung.delay.Store(int64(time.Second))
			p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "web"
`+poolTOML("web", fmt.Sprintf(`response_timeout = "100ms"
[pool.web.health]
check = "tcp"
interval = "100ms"
timeout = "50ms"
[pool.web.passive]
consecutive_failures = 3
base_ejection = "1m"
count_timeouts = %v`, count), good.addr, hung.addr), nil)
			client := &fasthttp.Client{}
			timeouts := 0
			for range 12 {
				resp, err := get(t, client, p.url(t, "web", "/"))
				if err != nil {
					t.Fatal(err)
				}
				switch resp.StatusCode() {
				case 200:
				case 504:
					timeouts++
				default:
					t.Fatalf("status %d", resp.StatusCode())
				}
			}
			st := backendStatus(t, p, "web", hung.addr)
			if st.Ejected != count {
				t.Errorf("after %d timeouts: ejected %v, want %v", timeouts, st.Ejected, count)
			}
			if want := 6; !count && timeouts != want {
				t.Errorf("%d timeouts, want %d (every other request)", timeouts, want)
			}
			if want := 3; count && timeouts != want {
				t.Errorf("%d timeouts, want %d (then it is ejected)", timeouts, want)
			}
			if got := metricValue(t, p.reg, "frontdoor_upstream_errors_total", map[string]string{"backend": hung.addr, "reason": "timeout"}); got != float64(timeouts) {
				t.Errorf("upstream_errors_total{reason=timeout} = %v, want %d", got, timeouts)
			}
		})
	}
}

// TestFailureStatuses: 501s from one URL (which a client can provoke) eject
// nothing under the default failure_statuses, though every 5xx still counts
// in upstream_errors_total; 500s eject.
func TestFailureStatuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, path, extra string
		status            int
		wantEjected       bool
	}{
		{name: "501 by default", path: "/status/501", status: 501},
		{name: "500 by default", path: "/status/500", status: 500, wantEjected: true},
		{name: "501 listed", path: "/status/501", extra: `failure_statuses = "500-599"`, status: 501, wantEjected: true},
		{name: "500 not listed", path: "/status/500", extra: `failure_statuses = "502-504"`, status: 500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, b := startBackend(t, "a"), startBackend(t, "b")
			p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "web"
`+poolTOML("web", `retries = 0
[pool.web.health]
check = "tcp"
interval = "100ms"
timeout = "50ms"
[pool.web.passive]
consecutive_failures = 3
base_ejection = "1m"
`+tc.extra, a.addr, b.addr), nil)
			client := &fasthttp.Client{}
			const n = 20
			for range n {
				resp, err := get(t, client, p.url(t, "web", tc.path))
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode() != tc.status {
					t.Fatalf("status %d, want %d", resp.StatusCode(), tc.status)
				}
			}
			ejected := backendStatus(t, p, "web", a.addr).Ejected || backendStatus(t, p, "web", b.addr).Ejected
			if ejected != tc.wantEjected {
				t.Errorf("after %d answers %d: a backend ejected %v, want %v", n, tc.status, ejected, tc.wantEjected)
			}
			if got := metricValue(t, p.reg, "frontdoor_passive_ejections_total", map[string]string{"pool": "web"}); (got > 0) != tc.wantEjected {
				t.Errorf("passive_ejections_total = %v", got)
			}
			if got := metricValue(t, p.reg, "frontdoor_upstream_errors_total", map[string]string{"pool": "web", "reason": "status_5xx"}); got != n {
				t.Errorf("upstream_errors_total{reason=status_5xx} = %v, want %d (every 5xx)", got, n)
			}
		})
	}
}
