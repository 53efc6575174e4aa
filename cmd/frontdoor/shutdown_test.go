package main

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestShutdownDelay: with global.shutdown_delay, SIGTERM turns /readyz to
// 503 at once while the listeners go on serving for the delay; then the
// drain starts and the daemon exits 0.
func TestShutdownDelay(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b0")
	cfgPath := filepath.Join(t.TempDir(), "frontdoor.toml")
	writeConfig(t, cfgPath, strings.Replace(simpleConfig(b.addr, ""), `drain_timeout = "5s"`, "drain_timeout = \"5s\"\nshutdown_delay = \"1500ms\"", 1))
	d := startDaemon(t, cfgPath)
	admin, addr := d.started("web")
	d.signal(syscall.SIGTERM)
	start := time.Now()
	d.waitLog(regexp.MustCompile(`not ready, still serving`), 5*time.Second)
	if code, _ := adminGet(t, admin, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz %d during shutdown_delay, want 503", code)
	}
	served := 0
	for time.Since(start) < time.Second {
		if code, body, err := get(addr, "/"); err == nil && code == http.StatusOK && body == "b0" {
			served++
		} else {
			t.Fatalf("request %v into the delay: %d %q %v", time.Since(start), code, body, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if served == 0 {
		t.Fatal("no request served during shutdown_delay")
	}
	waitFor(t, 10*time.Second, "the listener to stop after the delay", func() bool { return refused(addr) })
	if took := time.Since(start); took < 1400*time.Millisecond {
		t.Errorf("the listener stopped %v after SIGTERM, before shutdown_delay", took)
	}
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Fatal("daemon still running after the delay and drain")
	}
	if d.err != nil {
		t.Errorf("daemon exit: %v", d.err)
	}
}

// TestReloadMovesAdminAndAccessLog: a reload that changes admin.bind moves
// the admin listener, one that changes log.access moves the access log;
// one that turns the access log off fails with a message and changes
// nothing (both were kept silently before, and reported as reloaded).
func TestReloadMovesAdminAndAccessLog(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b0")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "frontdoor.toml")
	logA, logB := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	adminA, adminB := freePort(t), freePort(t)
	conf := func(admin, access string) string {
		c := simpleConfig(b.addr, "")
		c = strings.Replace(c, `bind = "127.0.0.1:0"`, `bind = "`+admin+`"`, 1)
		return strings.Replace(c, `access = "off"`, `access = "`+access+`"`, 1)
	}
	writeConfig(t, cfgPath, conf(adminA, logA))
	d := startDaemon(t, cfgPath)
	_, addr := d.started("web")
	if code, _, err := get(addr, "/before"); err != nil || code != http.StatusOK {
		t.Fatalf("first request: %d %v", code, err)
	}

	writeConfig(t, cfgPath, conf(adminB, logB))
	d.signal(syscall.SIGHUP)
	d.waitLog(regexp.MustCompile(`msg="config reloaded"`), 10*time.Second)
	if code, _ := adminGet(t, adminB, "/healthz"); code != http.StatusOK {
		t.Errorf("admin on the new bind: %d", code)
	}
	waitFor(t, 5*time.Second, "the old admin bind to close", func() bool { return refused(adminA) })
	if code, _, err := get(addr, "/after"); err != nil || code != http.StatusOK {
		t.Fatalf("request after the reload: %d %v", code, err)
	}
	waitFor(t, 5*time.Second, "the request's line in the new access log", func() bool {
		data, _ := os.ReadFile(logB)
		return strings.Contains(string(data), `"path":"/after"`)
	})
	if data, _ := os.ReadFile(logA); !strings.Contains(string(data), `"path":"/before"`) || strings.Contains(string(data), `"path":"/after"`) {
		t.Errorf("old access log holds %q, want /before only", data)
	}

	writeConfig(t, cfgPath, conf(adminB, "off"))
	d.signal(syscall.SIGHUP)
	d.waitLog(regexp.MustCompile(`reload failed.*turning the access log on or off takes a restart`), 10*time.Second)
	waitMetric(t, adminB, "frontdoor_config_last_reload_successful", 0, 5*time.Second)
	d.signal(syscall.SIGTERM)
	<-d.done
	d.noRaces()
}
