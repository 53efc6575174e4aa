package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// upgradeConfig serves listener web (http) and l4 (tcp) from backend b,
// health-checked, so that a new process that accepted before its first
// round of checks would answer 503.
func upgradeConfig(b string) string {
	return fmt.Sprintf(`
[global]
drain_timeout = "10s"

[admin]
bind = "127.0.0.1:0"

[log]
access = "off"

[[listener]]
name = "web"
bind = "127.0.0.1:0"
  [[listener.route]]
  pool = "app"

[[listener]]
name = "l4"
bind = "127.0.0.1:0"
mode = "tcp"
pool = "app"

[pool.app]
backends = [{ address = %q }]
  [pool.app.health]
  check = "http"
  path = "/healthz"
  interval = "200ms"
  timeout = "150ms"
  rise = 1
  fall = 5
`, b)
}

// copyBinary copies the daemon under test into dir, so that a test can
// replace the file the way an upgrade does (a new file renamed over it).
func copyBinary(t *testing.T, dir, src string) string {
	t.Helper()
	dst := filepath.Join(dir, "frontdoor")
	installFile(t, dst, src)
	return dst
}

// installFile puts a copy of src at dst through a rename, as install(1)
// and package managers do: a running process keeps its old file.
func installFile(t *testing.T, dst, src string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// loadLoop is a bounded load loop: workers send GETs until stop is closed or
// the deadline passes, each request at most once more on a new connection
// when retry is set.
type loadLoop struct {
	ok, failed, non2xx, dialErrs, retried atomic.Int64
	mu                                    sync.Mutex
	errs                                  []string
	stop                                  chan struct{}
	wg                                    sync.WaitGroup
}

func (l *loadLoop) fail(kind string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) < 10 {
		l.errs = append(l.errs, kind+": "+err.Error())
	}
}

// rawGet sends one GET on a new connection to addr with Connection: close
// and returns the status code. A dial error is reported apart: it is a
// lost connection attempt.
func rawGet(addr string) (code int, dialErr, err error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err, nil
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"); err != nil {
		return 0, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil, err
}

// run starts workers against targets, round robin: "keepalive:ADDR" uses a
// keep-alive client (net/http retries an idempotent request that meets a
// connection the server closed at a request boundary), "new:ADDR" one new
// connection a request.
func (l *loadLoop) run(targets []string, workers int, d time.Duration, retry bool) {
	l.stop = make(chan struct{})
	deadline := time.Now().Add(d)
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			kind, addr, _ := strings.Cut(targets[w%len(targets)], ":")
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1}}
			defer client.CloseIdleConnections()
			for n := 0; n < 20000 && time.Now().Before(deadline); n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				for attempt := 0; ; attempt++ {
					var code int
					var dialErr, err error
					if kind == "keepalive" {
						var resp *http.Response
						resp, err = client.Get("http://" + addr + "/")
						if err == nil {
							_, err = io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							code = resp.StatusCode
						}
					} else {
						code, dialErr, err = rawGet(addr)
					}
					if dialErr != nil {
						l.dialErrs.Add(1)
						l.fail("dial "+addr, dialErr)
						break
					}
					if err != nil {
						if retry && attempt == 0 {
							l.retried.Add(1)
							continue
						}
						l.failed.Add(1)
						l.fail(kind+" "+addr, err)
						break
					}
					if code/100 != 2 {
						l.non2xx.Add(1)
						l.fail(kind+" "+addr, fmt.Errorf("status %d", code))
					} else {
						l.ok.Add(1)
					}
					break
				}
			}
		}()
	}
}

func (l *loadLoop) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	t.Logf("load: %d ok, %d failed, %d non-2xx, %d dial errors, %d retried", l.ok.Load(), l.failed.Load(), l.non2xx.Load(), l.dialErrs.Load(), l.retried.Load())
	if l.failed.Load()+l.non2xx.Load()+l.dialErrs.Load() > 0 {
		t.Errorf("load saw failures: %q", l.errs)
	}
	if l.ok.Load() == 0 {
		t.Error("load: no request succeeded")
	}
}

var handedOverRe = regexp.MustCompile(`msg="upgrade: the new process serves; draining this one" pid=(\d+)`)

// processAlive reports whether pid runs (a zombie does not).
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// killAtEnd kills (SIGKILL) the processes in pids that still run when the
// test ends: the daemons the test's daemon started.
func killAtEnd(t *testing.T, mu *sync.Mutex, pids *[]int) {
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, pid := range *pids {
			if processAlive(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}

// TestUpgradeUnderLoad upgrades the binary 5 times (SIGUSR2) under a
// bounded load of keep-alive and new-connection requests through an http
// and a tcp listener: no connection is refused or reset and every answer is
// 2xx. Keep-alive clients are net/http's, which resend an idempotent
// request that meets a connection the draining process closed at a request
// boundary; no other retry is allowed. A long request in flight at the
// first upgrade finishes on the old process.
func TestUpgradeUnderLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := copyBinary(t, dir, binPath)
	b := startBackend(t, "b1")
	cfg := filepath.Join(dir, "frontdoor.toml")
	writeConfig(t, cfg, upgradeConfig(b.addr))
	cmd := execCommand(bin, cfg)
	p := startCmd(t, cfg, cmd)
	var mu sync.Mutex
	pids := []int{}
	killAtEnd(t, &mu, &pids)
	admin, web := p.started("web")
	_, l4 := p.started("l4")
	waitFor(t, 10*time.Second, "/readyz", func() bool { c, _ := adminGet(t, admin, "/readyz"); return c == 200 })
	if code, body, err := get(web, "/"); err != nil || code != 200 || body != "b1" {
		t.Fatalf("before the upgrade: %d %q %v", code, body, err)
	}

	// A long request held by the backend until after the first handover.
	held := make(chan error, 1)
	go func() {
		code, body, err := get(web, "/hold")
		if err == nil && (code != 200 || body != "b1") {
			err = fmt.Errorf("status %d body %q", code, body)
		}
		held <- err
	}()
	waitFor(t, 10*time.Second, "the held request at the backend", func() bool { return b.held.Load() == 1 })

	l := &loadLoop{}
	l.run([]string{"keepalive:" + web, "new:" + web, "keepalive:" + web, "new:" + l4}, 8, 10*time.Second, false)
	pid := p.cmd.Process.Pid
	for i := range 5 {
		time.Sleep(300 * time.Millisecond) // load on each process
		if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
			t.Fatalf("SIGUSR2 to %d: %v", pid, err)
		}
		waitFor(t, 40*time.Second, fmt.Sprintf("upgrade %d", i+1), func() bool { return len(p.lines(handedOverRe)) == i+1 })
		m := handedOverRe.FindStringSubmatch(p.lines(handedOverRe)[i])
		next, _ := strconv.Atoi(m[1])
		mu.Lock()
		pids = append(pids, next)
		mu.Unlock()
		if i == 0 {
			// The old process drains; its held request finishes there.
			time.Sleep(200 * time.Millisecond)
			close(b.release)
			if err := <-held; err != nil {
				t.Errorf("long request in flight during the upgrade: %v", err)
			}
		}
		pid = next
	}
	l.finish(t)
	if code, _, err := get(web, "/"); err != nil || code != 200 {
		t.Fatalf("after 5 upgrades: %d %v", code, err)
	}
	if code, _ := adminGet(t, admin, "/readyz"); code != 200 {
		t.Errorf("admin /readyz after 5 upgrades: %d", code)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Every process has exited once the stderr pipe they share closes.
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("daemons still running 30s after the last SIGTERM")
	}
	if p.err != nil {
		t.Errorf("first process: %v", p.err)
	}
	if e := p.lines(levelError); len(e) > 0 {
		t.Errorf("errors logged: %q", e)
	}
	p.noRaces()
}

// TestUpgradeFailureKeepsServing points SIGUSR2 at a binary that exits 1,
// then at a config that does not load: each time the old process serves on
// and logs why.
func TestUpgradeFailureKeepsServing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := copyBinary(t, dir, binPath)
	b := startBackend(t, "b1")
	cfg := filepath.Join(dir, "frontdoor.toml")
	good := upgradeConfig(b.addr)
	writeConfig(t, cfg, good)
	p := startCmd(t, cfg, execCommand(bin, cfg))
	admin, web := p.started("web")
	waitFor(t, 10*time.Second, "/readyz", func() bool { c, _ := adminGet(t, admin, "/readyz"); return c == 200 })

	failed := regexp.MustCompile(`msg="upgrade failed; this process keeps serving" err="new process \d+ exited before it was ready: exit status 1"`)
	broken := filepath.Join(dir, "broken")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho broken binary >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	installFile(t, bin, broken)
	p.signal(syscall.SIGUSR2)
	p.waitLog(failed, 40*time.Second)
	if code, body, err := get(web, "/"); err != nil || code != 200 || body != "b1" {
		t.Fatalf("after a failed upgrade (binary): %d %q %v", code, body, err)
	}

	installFile(t, bin, binPath)
	writeConfig(t, cfg, good+"\nunknown_key = 1\n")
	p.signal(syscall.SIGUSR2)
	waitFor(t, 40*time.Second, "a second failed upgrade", func() bool { return len(p.lines(failed)) == 2 })
	if code, body, err := get(web, "/"); err != nil || code != 200 || body != "b1" {
		t.Fatalf("after a failed upgrade (config): %d %q %v", code, body, err)
	}
	p.stop(30 * time.Second)
	p.noRaces()
}

func execCommand(bin, cfg string) *exec.Cmd {
	cmd := exec.Command(bin, "-config", cfg)
	cmd.Env = os.Environ()
	return cmd
}

// TestUpgradeTakesSocketsByName upgrades to a config that drops listener
// l4 and adds listener extra: the new process takes web's and the admin
// listener's sockets, closes l4's and binds extra's.
func TestUpgradeTakesSocketsByName(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := copyBinary(t, dir, binPath)
	b := startBackend(t, "b1")
	cfg := filepath.Join(dir, "frontdoor.toml")
	writeConfig(t, cfg, upgradeConfig(b.addr))
	p := startCmd(t, cfg, execCommand(bin, cfg))
	var mu sync.Mutex
	pids := []int{}
	killAtEnd(t, &mu, &pids)
	admin, web := p.started("web")
	_, l4 := p.started("l4")

	extra := freePort(t)
	next := strings.Replace(upgradeConfig(b.addr), `
[[listener]]
name = "l4"
bind = "127.0.0.1:0"
mode = "tcp"
pool = "app"
`, fmt.Sprintf(`
[[listener]]
name = "extra"
bind = %q
  [[listener.route]]
  pool = "app"
`, extra), 1)
	writeConfig(t, cfg, next)
	p.signal(syscall.SIGUSR2)
	m := p.waitLog(handedOverRe, 40*time.Second)
	pid, _ := strconv.Atoi(m[1])
	mu.Lock()
	pids = append(pids, pid)
	mu.Unlock()
	p.waitLog(regexp.MustCompile(`msg="closing an inherited socket the config no longer has" name=l4`), 10*time.Second)
	for _, name := range []string{"web", adminFDName} {
		p.waitLog(regexp.MustCompile(`msg="inherited listening socket" name=`+regexp.QuoteMeta(name)+` `), 10*time.Second)
	}
	for _, addr := range []string{web, extra} {
		if code, body, err := get(addr, "/"); err != nil || code != 200 || body != "b1" {
			t.Errorf("%s after the upgrade: %d %q %v", addr, code, body, err)
		}
	}
	if code, _ := adminGet(t, admin, "/readyz"); code != 200 {
		t.Errorf("admin /readyz after the upgrade: %d", code)
	}
	// l4's socket closes with the old process, once its drain is over.
	waitFor(t, 20*time.Second, "l4 refused", func() bool { return refused(l4) })
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("daemons still running 30s after SIGTERM")
	}
	p.noRaces()
}

func TestInheritedTake(t *testing.T) {
	t.Parallel()
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		return ln
	}
	a, b := listen(), listen()
	for _, tc := range []struct {
		name, take, bind string
		want             net.Listener
	}{
		{name: "by name, port 0", take: "a", bind: "127.0.0.1:0", want: a},
		{name: "by name and address", take: "a", bind: a.Addr().String(), want: a},
		{name: "renamed, same address", take: "c", bind: b.Addr().String(), want: b},
		{name: "name on another address", take: "a", bind: b.Addr().String(), want: b},
		{name: "nothing", take: "c", bind: "127.0.0.1:0", want: nil},
		{name: "other host", take: "a", bind: "127.0.0.2:" + strconv.Itoa(a.Addr().(*net.TCPAddr).Port), want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inh := &inherited{lns: map[string]net.Listener{"a": a, "b": b}}
			if got := inh.take(tc.take, tc.bind); got != tc.want {
				t.Errorf("take(%q, %q) = %v, want %v", tc.take, tc.bind, got, tc.want)
			}
		})
	}
}
