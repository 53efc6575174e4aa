package main

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// simpleConfig is a one-pool config on one listener, with health checks off
// so that a backend takes traffic the moment a reload names it. extra is
// inserted before the pool table.
func simpleConfig(backend, extra string) string {
	return `[global]
drain_timeout = "5s"

[admin]
bind = "127.0.0.1:0"

[log]
access = "off"

[[listener]]
name = "web"
bind = "127.0.0.1:0"
  [[listener.route]]
  pool = "app"
` + extra + `
[pool.app]
retries = 0
backends = [{ address = "` + backend + `" }]
  [pool.app.health]
  check = "none"
`
}

// lineOf returns the 1-based line of the first line of text containing s.
func lineOf(t *testing.T, text, s string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%q not in config", s)
	return 0
}

// TestReloadFailureKeepsServing: a file that fails validation, then one
// that validates but cannot be applied (its new listener's port is taken),
// leave the old config serving, untouched; each failure shows in the log
// with its line, in /status and in the metrics. A good file then applies and
// clears the failure.
func TestReloadFailureKeepsServing(t *testing.T) {
	t.Parallel()
	b0, b1 := startBackend(t, "b0"), startBackend(t, "b1")
	cfgPath := filepath.Join(t.TempDir(), "frontdoor.toml")
	writeConfig(t, cfgPath, simpleConfig(b0.addr, ""))
	d := startDaemon(t, cfgPath)
	admin, addr := d.started("web")
	answeredBy := func(want string) {
		t.Helper()
		code, body, err := get(addr, "/x")
		if err != nil || code != http.StatusOK || body != want {
			t.Fatalf("GET via the proxy: %d %q %v; want 200 from %s", code, body, err, want)
		}
	}
	answeredBy("b0")
	const (
		okSeries   = `frontdoor_config_reloads_total{result="success"}`
		failSeries = `frontdoor_config_reloads_total{result="failure"}`
		gauge      = `frontdoor_config_last_reload_successful`
	)
	m := scrape(t, admin)
	for series, want := range map[string]float64{okSeries: 0, failSeries: 0, gauge: 1} {
		if v, ok := metric(m, series); !ok || v != want {
			t.Fatalf("at start %s = %v (present %v), want %v", series, v, ok, want)
		}
	}

	// 1. Validation errors: an unknown key and a bad duration, in a file
	// that also moves the pool to b1.
	bad := strings.Replace(simpleConfig(b1.addr, ""), `drain_timeout = "5s"`, `drain_timeout = "5 seconds"`, 1)
	bad = strings.Replace(bad, "retries = 0", "retries = 0\nretry_everything = true", 1)
	writeConfig(t, cfgPath, bad)
	d.signal(syscall.SIGHUP)
	waitMetric(t, admin, failSeries, 1, 10*time.Second)
	wantLines := []int{lineOf(t, bad, "drain_timeout"), lineOf(t, bad, "retry_everything")}
	logged := d.lines(regexp.MustCompile(`level=ERROR msg="reload failed; the previous config keeps serving"`))
	if len(logged) != len(wantLines) {
		t.Fatalf("logged %d reload errors, want %d: %q", len(logged), len(wantLines), logged)
	}
	st := status(t, admin)
	if st.Config.LastReloadSuccessful || len(st.Config.LastErrors) != len(wantLines) {
		t.Fatalf("/status config after a failed reload: %+v", st.Config)
	}
	for i, line := range wantLines {
		loc := "frontdoor.toml:" + strconv.Itoa(line) + ": "
		if !strings.Contains(logged[i], loc) {
			t.Errorf("log line %q does not name %s", logged[i], loc)
		}
		if !strings.Contains(st.Config.LastErrors[i], loc) {
			t.Errorf("/status error %q does not name %s", st.Config.LastErrors[i], loc)
		}
	}
	m = scrape(t, admin)
	if v, _ := metric(m, gauge); v != 0 {
		t.Errorf("%s = %v after a failed reload, want 0", gauge, v)
	}
	answeredBy("b0")

	// 2. A valid file that cannot be applied: its new listener's port is
	// taken. Nothing of it may take effect, not even the pool change.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	extra := fmt.Sprintf("\n[[listener]]\nname = \"extra\"\nbind = %q\n  [[listener.route]]\n  pool = \"app\"\n", taken.Addr())
	writeConfig(t, cfgPath, simpleConfig(b1.addr, extra))
	d.signal(syscall.SIGHUP)
	waitMetric(t, admin, failSeries, 2, 10*time.Second)
	d.waitLog(regexp.MustCompile(`level=ERROR msg="reload failed.*listener extra: bind `+regexp.QuoteMeta(taken.Addr().String())), 5*time.Second)
	st = status(t, admin)
	if st.Config.LastReloadSuccessful || len(st.Config.LastErrors) != 1 || !strings.Contains(st.Config.LastErrors[0], "listener extra") {
		t.Fatalf("/status config after a failed apply: %+v", st.Config)
	}
	if len(st.Listeners) != 1 || st.Pools[0].Backends[0].Address != b0.addr {
		t.Fatalf("a failed apply changed the runtime: listeners %+v pools %+v", st.Listeners, st.Pools)
	}
	answeredBy("b0")

	// 3. A good file applies and clears the failure. It also changes a
	// limit of the kept listener, which applies at once.
	writeConfig(t, cfgPath, strings.Replace(simpleConfig(b1.addr, ""), "bind = \"127.0.0.1:0\"\n  [[listener.route]]", "bind = \"127.0.0.1:0\"\nmax_body_bytes = 1000\n  [[listener.route]]", 1))
	d.signal(syscall.SIGHUP)
	waitMetric(t, admin, okSeries, 1, 10*time.Second)
	m = scrape(t, admin)
	if v, _ := metric(m, gauge); v != 1 {
		t.Errorf("%s = %v after a good reload, want 1", gauge, v)
	}
	if v, _ := metric(m, `frontdoor_config_last_reload_success_timestamp_seconds`); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last success timestamp %v is not recent", v)
	}
	st = status(t, admin)
	if !st.Config.LastReloadSuccessful || len(st.Config.LastErrors) != 0 {
		t.Errorf("/status config after a good reload: %+v", st.Config)
	}
	answeredBy("b1")
	// The kept listener's new limit applies without a restart.
	resp, err := http.Post("http://"+addr+"/x", "application/octet-stream", strings.NewReader(strings.Repeat("x", 2000)))
	if err != nil {
		t.Fatalf("POST via the proxy: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("POST of 2000 bytes after max_body_bytes = 1000 was reloaded: %d, want 413", resp.StatusCode)
	}
	d.stop(15 * time.Second)
	d.noRaces()
}
