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

// heldRequest sends GET /hold through the proxy in the background.
func heldRequest(addr string) <-chan error {
	done := make(chan error, 1)
	go func() {
		code, body, err := get(addr, "/hold")
		if err == nil && (code != http.StatusOK || body != "b0") {
			err = &unexpected{code, body}
		}
		done <- err
	}()
	return done
}

type unexpected struct {
	code int
	body string
}

func (u *unexpected) Error() string { return http.StatusText(u.code) + " " + u.body }

// TestDrainOnSIGTERM: after SIGTERM the daemon refuses new connections,
// reports not ready, lets the request in flight finish, and exits 0.
func TestDrainOnSIGTERM(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b0")
	cfgPath := filepath.Join(t.TempDir(), "frontdoor.toml")
	writeConfig(t, cfgPath, simpleConfig(b.addr, ""))
	d := startDaemon(t, cfgPath)
	admin, addr := d.started("web")
	if code, _ := adminGet(t, admin, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz %d before the drain", code)
	}
	inFlight := heldRequest(addr)
	waitFor(t, 10*time.Second, "the request to reach the backend", func() bool { return b.held.Load() == 1 })

	d.signal(syscall.SIGTERM)
	d.waitLog(regexp.MustCompile(`msg=draining signal=terminated`), 10*time.Second)
	waitFor(t, 10*time.Second, "the listener to stop accepting", func() bool { return refused(addr) })
	if code, _ := adminGet(t, admin, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz %d during the drain, want 503", code)
	}
	select {
	case <-d.done:
		t.Fatal("daemon exited with a request in flight")
	default:
	}
	close(b.release)
	if err := <-inFlight; err != nil {
		t.Errorf("request in flight during the drain: %v", err)
	}
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatal("daemon still running 15s after its last request finished")
	}
	if d.err != nil {
		t.Errorf("daemon exit: %v", d.err)
	}
	d.noRaces()
}

// TestSecondSIGTERMCutsDrainShort: a second SIGTERM during the drain closes
// what is open and exits at once, long before drain_timeout.
func TestSecondSIGTERMCutsDrainShort(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b0")
	defer close(b.release)
	cfgPath := filepath.Join(t.TempDir(), "frontdoor.toml")
	writeConfig(t, cfgPath, strings.Replace(simpleConfig(b.addr, ""), `drain_timeout = "5s"`, `drain_timeout = "5m"`, 1))
	d := startDaemon(t, cfgPath)
	_, addr := d.started("web")
	inFlight := heldRequest(addr)
	waitFor(t, 10*time.Second, "the request to reach the backend", func() bool { return b.held.Load() == 1 })

	d.signal(syscall.SIGTERM)
	d.waitLog(regexp.MustCompile(`msg=draining`), 10*time.Second)
	start := time.Now()
	d.signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		t.Fatal("daemon still draining 20s after a second SIGTERM (drain_timeout is 5m)")
	}
	if d.err != nil {
		t.Errorf("daemon exit: %v", d.err)
	}
	d.waitLog(regexp.MustCompile(`msg="second stop signal`), time.Second)
	if err := <-inFlight; err == nil {
		t.Error("the held request succeeded; the second SIGTERM should have cut it off")
	}
	t.Logf("exited %v after the second SIGTERM", time.Since(start).Round(time.Millisecond))
	d.noRaces()
}

// TestSIGUSR1ReopensAccessLog: after logrotate moves the access log and
// frontdoor gets SIGUSR1, new lines go to a new file at the configured path.
func TestSIGUSR1ReopensAccessLog(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b0")
	dir := t.TempDir()
	logPath := filepath.Join(dir, "access.log")
	cfgPath := filepath.Join(dir, "frontdoor.toml")
	writeConfig(t, cfgPath, strings.Replace(simpleConfig(b.addr, ""), `access = "off"`, `access = "`+logPath+`"`, 1))
	d := startDaemon(t, cfgPath)
	_, addr := d.started("web")
	request := func(path string) {
		t.Helper()
		if code, _, err := get(addr, path); err != nil || code != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, code, err)
		}
	}
	contains := func(file, s string) func() bool {
		return func() bool {
			data, _ := os.ReadFile(file)
			return strings.Contains(string(data), s)
		}
	}
	request("/before-rotation")
	waitFor(t, 10*time.Second, "the first access log line", contains(logPath, "/before-rotation"))
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	d.signal(syscall.SIGUSR1)
	d.waitLog(regexp.MustCompile(`msg="access log reopened"`), 10*time.Second)
	request("/after-rotation")
	waitFor(t, 10*time.Second, "a line in the new access log", contains(logPath, "/after-rotation"))
	if contains(logPath+".1", "/after-rotation")() {
		t.Error("a line written after SIGUSR1 went to the rotated file")
	}
	d.stop(15 * time.Second)
	d.noRaces()
}
