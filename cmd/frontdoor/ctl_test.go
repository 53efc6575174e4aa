package main

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"frontdoor/proxy"
)

// ctlConfig is pool "app" over two backends with health checks off, and
// the admin write endpoints on with the token in tokenFile.
func ctlConfig(b0, b1, tokenFile string) string {
	return `[global]
drain_timeout = "5s"

[admin]
bind = "127.0.0.1:0"
token_file = "` + tokenFile + `"

[log]
access = "off"

[[listener]]
name = "web"
bind = "127.0.0.1:0"
  [[listener.route]]
  pool = "app"

[pool.app]
retries = 0
backends = [{ address = "` + b0 + `" }, { address = "` + b1 + `" }]
  [pool.app.health]
  check = "none"
`
}

// ctl runs "frontdoor ctl args..." and returns its exit code, stdout and
// stderr.
func ctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"ctl"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run frontdoor ctl: %v", err)
	}
	return code, out.String(), errOut.String()
}

func backendIn(t *testing.T, st proxy.Status, pool, addr string) proxy.BackendStatus {
	t.Helper()
	for _, p := range st.Pools {
		for _, b := range p.Backends {
			if p.Name == pool && b.Address == addr {
				return b
			}
		}
	}
	t.Fatalf("no backend %s in pool %s in /status", addr, pool)
	return proxy.BackendStatus{}
}

// TestCtl drives a running daemon with frontdoor ctl: drain takes a backend
// out, a wrong or missing token is refused (401) with nothing changed,
// unknown backends are 404, weight and status work, the state survives a
// SIGHUP, the reload reads a new token, and ready brings the backend back.
func TestCtl(t *testing.T) {
	t.Parallel()
	b0, b1 := startBackend(t, "b0"), startBackend(t, "b1")
	dir := t.TempDir()
	tok := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tok, []byte("first-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.token")
	if err := os.WriteFile(bad, []byte("wrong-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "frontdoor.toml")
	writeConfig(t, cfgPath, ctlConfig(b0.addr, b1.addr, tok))
	d := startDaemon(t, cfgPath)
	admin, addr := d.started("web")
	run := func(want int, wantOut string, args ...string) string {
		t.Helper()
		code, out, errOut := ctl(t, append([]string{"-admin", admin}, args...)...)
		if code != want || !strings.Contains(out+errOut, wantOut) {
			t.Fatalf("frontdoor ctl %s: exit %d, stdout %q, stderr %q; want exit %d with %q", strings.Join(args, " "), code, out, errOut, want, wantOut)
		}
		return out
	}
	allFrom := func(want string) {
		t.Helper()
		for range 10 {
			code, body, err := get(addr, "/x")
			if err != nil || code != http.StatusOK || body != want {
				t.Fatalf("GET via the proxy: %d %q %v; want 200 from %s", code, body, err, want)
			}
		}
	}

	run(0, "app "+b0.addr+": state drain: admin_state ready -> drain, serving true -> false", "-token-file", tok, "drain", "app", b0.addr)
	allFrom("b1")

	// Refused writes change nothing.
	run(1, "401 Unauthorized", "-token-file", bad, "ready", "app", b0.addr)
	run(1, "need -token-file", "ready", "app", b0.addr)
	run(1, "404 Not Found: pool app has no backend", "-token-file", tok, "ready", "app", "127.0.0.1:1")
	run(1, `404 Not Found: no pool "nope"`, "-token-file", tok, "ready", "nope", b0.addr)
	run(1, "bad command", "-token-file", tok, "drain", "app")
	if b := backendIn(t, status(t, admin), "app", b0.addr); b.AdminState != "drain" {
		t.Fatalf("after refused writes: admin_state %s, want drain", b.AdminState)
	}
	// The write endpoints themselves: no token at all is 401 too.
	resp, err := adminClient.Post("http://"+admin+"/backends/app/"+b0.addr+"/state", "text/plain", strings.NewReader("ready"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("POST without a token: %d, want 401", resp.StatusCode)
	}

	run(0, "weight 1 -> 4", "-token-file", tok, "weight", "app", b1.addr, "4")
	out := run(0, "pool app: 2 backends, 1 serving", "status")
	if !regexp.MustCompile(regexp.QuoteMeta(b0.addr)+`\s+up\s+drain\s+1\s+false`).MatchString(out) ||
		!regexp.MustCompile(regexp.QuoteMeta(b1.addr)+`\s+up\s+ready\s+4 \(file 1\)\s+true`).MatchString(out) {
		t.Fatalf("ctl status:\n%s", out)
	}

	// A SIGHUP keeps the state and reads the token file again.
	if err := os.WriteFile(tok, []byte("second-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.signal(syscall.SIGHUP)
	d.waitLog(regexp.MustCompile(`msg="config reloaded"`), 10*time.Second)
	b := backendIn(t, status(t, admin), "app", b0.addr)
	if b.AdminState != "drain" {
		t.Fatalf("after SIGHUP: admin_state %s, want drain", b.AdminState)
	}
	if w := backendIn(t, status(t, admin), "app", b1.addr).Weight; w != 4 {
		t.Fatalf("after SIGHUP: weight %d, want 4", w)
	}
	allFrom("b1")
	run(1, "401 Unauthorized", "-token-file", bad, "ready", "app", b0.addr)
	run(0, "admin_state drain -> ready", "-token-file", tok, "ready", "app", b0.addr)
	run(0, "unchanged", "-token-file", tok, "uneject", "app", b0.addr)
	seen := map[string]bool{}
	for range 10 {
		_, body, err := get(addr, "/x")
		if err != nil {
			t.Fatal(err)
		}
		seen[body] = true
	}
	if !seen["b0"] {
		t.Fatalf("b0 got no request after ready: %v", seen)
	}
	d.noRaces()
}
