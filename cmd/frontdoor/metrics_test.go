package main

import (
	"bytes"
	"frontdoor/internal/loopback"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// metricsConfig exercises every family this build can fill from http
// traffic: a pool with a live and a dead backend (retries, upstream
// errors), health checks, and a host-only route (404s).
func metricsConfig(live, dead string) string {
	return `[admin]
bind = "127.0.0.1:0"

[log]
access = "off"

[[listener]]
name = "web"
bind = "127.0.0.1:0"
  [[listener.route]]
  host = "app.test"
  pool = "app"

[pool.app]
strategy = "consistent_hash"
hash_on = "header:X-User"
retries = 1
backends = [{ address = "` + live + `" }, { address = "` + dead + `" }]
  [pool.app.health]
  check = "none"
  [pool.app.passive]
  consecutive_failures = 0
`
}

// TestMetricsPassPromtool scrapes /metrics of the real daemon after traffic
// and reloads (so every family with labels has children) and runs
// promtool check metrics on it: it must find nothing to complain about.
func TestMetricsPassPromtool(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (make test-deps installs the prometheus package)")
	}
	live := startBackend(t, "live")
	// A port bound and never listening: refused for the whole test, and no
	// parallel test can take it (freePort's could be, and then answered).
	_, dead := loopback.Bound(t)
	cfgPath := filepath.Join(t.TempDir(), "frontdoor.toml")
	writeConfig(t, cfgPath, metricsConfig(live.addr, dead))
	d := startDaemon(t, cfgPath)
	admin, addr := d.started("web")

	// 200s (some retried off the dead backend), 404s, and one reload of
	// each result.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	codes := map[int]int{}
	for i := range 20 {
		req, _ := http.NewRequest("GET", "http://"+addr+"/x", nil)
		req.Host = "app.test"
		req.Header.Set("X-User", strings.Repeat("u", i))
		if i%5 == 4 {
			req.Host = "other.test"
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		codes[resp.StatusCode]++
	}
	if codes[200] != 16 || codes[404] != 4 {
		t.Fatalf("answers by status: %v; want 16 200s (retried off the dead backend) and 4 404s", codes)
	}
	d.signal(syscall.SIGHUP)
	waitMetric(t, admin, `frontdoor_config_reloads_total{result="success"}`, 1, 10*time.Second)
	writeConfig(t, cfgPath, "not toml")
	d.signal(syscall.SIGHUP)
	waitMetric(t, admin, `frontdoor_config_reloads_total{result="failure"}`, 1, 10*time.Second)

	body := scrape(t, admin)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || out.Len() > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out.String())
	}

	// The metric contract of DESIGN.md, as far as http traffic fills it,
	// with its labels. (tcp_bytes_total needs a tcp listener and jwt_* a
	// JWT policy; they have no children here.)
	for _, series := range []string{
		`frontdoor_requests_total{backend="` + live.addr + `",code="2xx",listener="web",pool="app"}`,
		`frontdoor_requests_total{backend="",code="4xx",listener="web",pool=""}`,
		`frontdoor_request_duration_seconds_count{backend="` + live.addr + `",listener="web",pool="app",route="app.test/"}`,
		`frontdoor_backend_up{backend="` + live.addr + `",pool="app"}`,
		`frontdoor_backend_in_flight{backend="` + dead + `",pool="app"}`,
		`frontdoor_upstream_errors_total{backend="` + dead + `",pool="app",reason="connect"}`,
		`frontdoor_retries_total{pool="app"}`,
		`frontdoor_connections_active{listener="web"}`,
		`frontdoor_connections_total{listener="web"}`,
		`frontdoor_config_reloads_total{result="success"}`,
		`frontdoor_config_reloads_total{result="failure"}`,
		`frontdoor_config_last_reload_successful`,
		`frontdoor_config_last_reload_success_timestamp_seconds`,
	} {
		if _, ok := metric(body, series); !ok {
			t.Errorf("/metrics has no %s", series)
		}
	}
	if !regexp.MustCompile(`(?m)^frontdoor_build_info\{goversion="go[^"]+",version="test"\} 1$`).MatchString(body) {
		t.Error("/metrics has no frontdoor_build_info{goversion,version=\"test\"} 1")
	}
	for _, want := range []string{`frontdoor_retries_total{pool="app"}`, `frontdoor_upstream_errors_total{backend="` + dead + `",pool="app",reason="connect"}`} {
		if v, _ := metric(body, want); v == 0 {
			t.Errorf("%s = 0; the dead backend should have been tried and retried", want)
		}
	}
	d.stop(15 * time.Second)
	d.noRaces()
}
