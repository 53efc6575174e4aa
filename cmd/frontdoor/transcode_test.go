package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"frontdoor/internal/transcodetest"
)

// transcodeConfig is a config whose route transcodes to a gRPC backend at
// addr with the descriptor set pb (relative names are relative to the
// config file).
func transcodeConfig(pb, addr string) string {
	return fmt.Sprintf(`[admin]
bind = "127.0.0.1:0"

[[listener]]
name = "web"
bind = "127.0.0.1:0"
  [[listener.route]]
  pool = "books"
  transcode = { descriptor_set = %q, services = ["bookstore.v1.Bookstore", "broken.v1.Broken"] }

[pool.books]
protocol = "h2c"
backends = [{ address = %q }]
  [pool.books.health]
  check = "none"
`, pb, addr)
}

// TestCheckTranscode: -check reads the descriptor sets of transcoding
// routes and reports what is wrong in them, conflicting bindings
// included, at the route's line.
func TestCheckTranscode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	both := transcodetest.Protoc(t, "bookstore.proto", "broken.proto")
	if err := os.Rename(both, filepath.Join(dir, "api.pb")); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "frontdoor.toml")
	if err := os.WriteFile(cfg, []byte(transcodeConfig("api.pb", "127.0.0.1:1")), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binPath, "-check", "-config", cfg)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("-check: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	prefix := regexp.QuoteMeta(cfg+":9: listener[0].route[0].transcode: descriptor set "+filepath.Join(dir, "api.pb")+": ") + "broken.v1.Broken."
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	want := []string{"BadTemplate: .*must be the last segment", "NoSuchField: .*no field", "BadBody: .*is not a field",
		"BadResponseBody: .*is not a field"}
	if len(lines) != len(want)+1 {
		t.Fatalf("stderr:\n%s", stderr.String())
	}
	for i, w := range want {
		if !regexp.MustCompile("^" + prefix + w).MatchString(lines[i]) {
			t.Errorf("line %d = %q, want %s", i+1, lines[i], w)
		}
	}
	if !strings.Contains(lines[len(want)], "conflicting bindings: GET /v1/items/{name} of broken.v1.Broken.First and GET /v1/items/{id} of broken.v1.Broken.Second") {
		t.Errorf("no conflict reported: %q", lines[len(want)])
	}
	// Without the broken service the same set is fine.
	if err := os.WriteFile(cfg, []byte(strings.Replace(transcodeConfig("api.pb", "127.0.0.1:1"), `, "broken.v1.Broken"`, "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(binPath, "-check", "-config", cfg).CombinedOutput(); err != nil || string(out) != "config OK\n" {
		t.Errorf("-check of a good set: %v %s", err, out)
	}
}

// TestReloadTranscode: SIGHUP reads the descriptor set again; a broken one
// fails the reload with the file and the reason, and the running config
// serves on.
func TestReloadTranscode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pb := filepath.Join(dir, "api.pb")
	good, err := os.ReadFile(transcodetest.DescriptorSet(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pb, good, 0o644); err != nil {
		t.Fatal(err)
	}
	be := transcodetest.StartBackend(t, pb)
	cfg := filepath.Join(dir, "frontdoor.toml")
	text := strings.Replace(transcodeConfig("api.pb", be.Addr), `, "broken.v1.Broken"`, "", 1)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfg)
	_, addr := d.started("web")
	get := func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/v1/shelves/3", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	if s := get(); s != 200 {
		t.Fatalf("transcoded GET: %d", s)
	}
	if err := os.WriteFile(pb, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.signal(syscall.SIGHUP)
	d.waitLog(regexp.MustCompile(`reload failed; the previous config keeps serving.*listener\[0\]\.route\[0\]\.transcode: descriptor set .*api\.pb is not a FileDescriptorSet`), 10*time.Second)
	if s := get(); s != 200 {
		t.Errorf("after a failed reload: %d", s)
	}
	if err := os.WriteFile(pb, good, 0o644); err != nil {
		t.Fatal(err)
	}
	d.signal(syscall.SIGHUP)
	d.waitLog(regexp.MustCompile(`msg="config reloaded"`), 10*time.Second)
	if s := get(); s != 200 {
		t.Errorf("after the reload: %d", s)
	}
	d.stop(10 * time.Second)
	d.noRaces()
}
