package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"frontdoor/internal/loopback"
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

// TestDrainKeepsTCPSessionsOfEarlierConfigs: SIGTERM gives a tcp session
// drain_timeout whether it was opened before or after the last reload. A
// reload hands the tcp listener to a new server and the old one's sessions
// go on (TestHitlessReloadUnderLoad); the drain must wait for them too,
// not only for the current server's, and close them when drain_timeout
// ends.
func TestDrainKeepsTCPSessionsOfEarlierConfigs(t *testing.T) {
	t.Parallel()
	const drain = 3 * time.Second
	b := startBackend(t, "b0")
	echo := loopback.Echo(t, "e0")
	cfg := func(weight int) string {
		return strings.Replace(simpleConfig(b.addr, fmt.Sprintf(`
[[listener]]
name = "l4"
bind = "127.0.0.1:0"
mode = "tcp"
pool = "echo"

[pool.echo]
backends = [{ address = %q, weight = %d }]
  [pool.echo.health]
  check = "none"
`, echo, weight)), `drain_timeout = "5s"`, fmt.Sprintf("drain_timeout = %q", drain.String()), 1)
	}
	cfgPath := filepath.Join(t.TempDir(), "frontdoor.toml")
	writeConfig(t, cfgPath, cfg(1))
	d := startDaemon(t, cfgPath)
	admin, _ := d.started("web")
	_, l4 := d.started("l4")

	c, err := net.Dial("tcp", l4)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	say := func(msg string) error {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, msg+"\n"); err != nil {
			return err
		}
		line, err := br.ReadString('\n')
		if err == nil && line != "e0 "+msg+"\n" {
			err = fmt.Errorf("echo %q for %q", line, msg)
		}
		return err
	}
	if err := say("before the reload"); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, cfgPath, cfg(2))
	d.signal(syscall.SIGHUP)
	waitMetric(t, admin, `frontdoor_config_reloads_total{result="success"}`, 1, 10*time.Second)
	if err := say("after the reload"); err != nil {
		t.Fatalf("session closed by a reload: %v", err)
	}

	d.signal(syscall.SIGTERM)
	d.waitLog(regexp.MustCompile(`msg=draining`), 10*time.Second)
	start := time.Now()
	// The property is about time passing: a third of the drain, then the
	// session must still carry bytes and the daemon still run.
	time.Sleep(drain / 3)
	if err := say("during the drain"); err != nil {
		t.Errorf("session opened before the reload closed %v into a %v drain: %v", time.Since(start).Round(time.Millisecond), drain, err)
	}
	select {
	case <-d.done:
		t.Fatalf("daemon exited %v into a %v drain with a tcp session open", time.Since(start).Round(time.Millisecond), drain)
	default:
	}
	// At the end of the drain the session is closed and the daemon exits.
	_ = c.SetDeadline(time.Now().Add(drain + 10*time.Second))
	if n, err := br.ReadByte(); err == nil {
		t.Errorf("read %q after the drain, want the session closed", n)
	}
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatal("daemon still running 15s after drain_timeout")
	}
	if took := time.Since(start); took < drain-200*time.Millisecond {
		t.Errorf("daemon exited %v after SIGTERM, before drain_timeout (%v), with a session open", took.Round(time.Millisecond), drain)
	}
	if d.err != nil {
		t.Errorf("daemon exit: %v", d.err)
	}
	d.noRaces()
}
