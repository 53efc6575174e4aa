package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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

	"frontdoor/proxy"
)

// binPath is the frontdoor binary TestMain builds for the integration tests.
var binPath string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "frontdoor-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binPath = filepath.Join(dir, "frontdoor")
	args := []string{"build", "-o", binPath, "-ldflags", "-X main.version=test"}
	if raceBuild {
		args = append(args, "-race")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "the integration tests build the daemon and need the go command:", err)
		return 1
	}
	cmd := exec.Command(goBin, append(args, ".")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// proc is a frontdoor daemon the test started, with its stderr collected.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	cfg  string // config file path
	mu   sync.Mutex
	log  []string // stderr lines so far
	more chan struct{}
	done chan struct{} // closed when the process exited
	err  error         // Wait's result, valid after done
}

// startDaemon runs the binary on the config file at cfg, with extra
// environment variables, and stops it (SIGKILL) when the test ends if it is
// still running.
func startDaemon(t *testing.T, cfg string, env ...string) *proc {
	t.Helper()
	cmd := exec.Command(binPath, "-config", cfg)
	cmd.Env = append(os.Environ(), env...)
	return startCmd(t, cfg, cmd)
}

// startCmd starts cmd, a daemon prepared by the caller (binary, arguments,
// environment, extra files), as startDaemon does.
func startCmd(t *testing.T, cfg string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{t: t, cfg: cfg, more: make(chan struct{}, 1), done: make(chan struct{}), cmd: cmd}
	var stderr io.ReadCloser
	for try := 0; ; try++ {
		p.cmd.Stdout = io.Discard
		var err error
		if stderr, err = p.cmd.StderrPipe(); err != nil {
			t.Fatal(err)
		}
		err = p.cmd.Start()
		if err == nil {
			break
		}
		// A binary the test just wrote can be busy for a moment: another
		// goroutine's fork may still hold the written file open in a
		// child that has not exec'd yet (golang/go#22315). Start again
		// with a fresh Cmd.
		if !errors.Is(err, syscall.ETXTBSY) || try == 20 {
			t.Fatalf("start %s: %v", p.cmd.Path, err)
		}
		time.Sleep(20 * time.Millisecond)
		next := exec.Command(p.cmd.Path, p.cmd.Args[1:]...)
		next.Env, next.Dir, next.ExtraFiles, next.SysProcAttr = p.cmd.Env, p.cmd.Dir, p.cmd.ExtraFiles, p.cmd.SysProcAttr
		p.cmd = next
	}
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.log = append(p.log, sc.Text())
			p.mu.Unlock()
			select {
			case p.more <- struct{}{}:
			default:
			}
		}
	}()
	go func() {
		<-collected
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
		if t.Failed() {
			t.Logf("daemon stderr:\n%s", p.stderr())
		}
	})
	return p
}

func (p *proc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.log, "\n")
}

// lines returns the stderr lines that match re.
func (p *proc) lines(re *regexp.Regexp) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, l := range p.log {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// waitLog waits for a stderr line matching re and returns its submatches.
func (p *proc) waitLog(re *regexp.Regexp, d time.Duration) []string {
	p.t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		for _, l := range p.log {
			if m := re.FindStringSubmatch(l); m != nil {
				p.mu.Unlock()
				return m
			}
		}
		p.mu.Unlock()
		select {
		case <-p.more:
		case <-p.done:
			// One last look: the line may have come with the exit.
			if m := p.lines(re); len(m) > 0 {
				return re.FindStringSubmatch(m[0])
			}
			p.t.Fatalf("daemon exited (%v) before logging %s", p.err, re)
		case <-deadline.C:
			p.t.Fatalf("no log line matching %s after %v", re, d)
		}
	}
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// stop sends SIGTERM and requires a clean exit (status 0) within d.
func (p *proc) stop(d time.Duration) {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Fatalf("daemon still running %v after SIGTERM", d)
	}
	if p.err != nil {
		p.t.Fatalf("daemon exit: %v", p.err)
	}
}

var (
	adminRe    = regexp.MustCompile(`msg="admin listening" addr=(\S+)`)
	raceRe     = regexp.MustCompile(`DATA RACE|panic:|fatal error:`)
	levelError = regexp.MustCompile(`level=ERROR`)
)

// started waits until the daemon logged its admin address and the address
// of listener name, and returns both.
func (p *proc) started(name string) (admin, addr string) {
	p.t.Helper()
	admin = p.waitLog(adminRe, 30*time.Second)[1]
	re := regexp.MustCompile(`msg=listening listener=` + regexp.QuoteMeta(name) + ` mode=\S+ addr=(\S+)`)
	addr = p.waitLog(re, 10*time.Second)[1]
	return admin, addr
}

// noRaces fails the test if the daemon reported a data race or a panic.
func (p *proc) noRaces() {
	p.t.Helper()
	if l := p.lines(raceRe); len(l) > 0 {
		p.t.Errorf("daemon reported %q", l[0])
	}
}

// writeConfig replaces the file at path the way an editor or a config
// management tool does: write a temporary file beside it, then rename.
func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// adminClient talks to the admin listener. Its requests are short: the
// admin listener is on loopback and answers from memory.
var adminClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}}

func adminGet(t *testing.T, admin, path string) (int, string) {
	t.Helper()
	resp, err := adminClient.Get("http://" + admin + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

func status(t *testing.T, admin string) proxy.Status {
	t.Helper()
	code, body := adminGet(t, admin, "/status")
	if code != http.StatusOK {
		t.Fatalf("/status: %d %s", code, body)
	}
	var st proxy.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status: %v\n%s", err, body)
	}
	return st
}

// metric returns the value of the sample written exactly as series (name
// and labels in exposition order, e.g. `frontdoor_config_reloads_total{result="success"}`)
// in a /metrics body, and whether it is there.
func metric(body, series string) (float64, bool) {
	for line := range strings.Lines(body) {
		rest, ok := strings.CutPrefix(line, series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		return v, err == nil
	}
	return 0, false
}

func scrape(t *testing.T, admin string) string {
	t.Helper()
	code, body := adminGet(t, admin, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	return body
}

// waitMetric polls /metrics until series has value want.
func waitMetric(t *testing.T, admin, series string, want float64, d time.Duration) {
	t.Helper()
	waitFor(t, d, fmt.Sprintf("%s == %v", series, want), func() bool {
		v, _ := metric(scrape(t, admin), series)
		return v == want
	})
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// backend is a real HTTP server on 127.0.0.1 that answers every path but
// /healthz with its name (/slow after 40ms, /hold when the test closes
// release), and counts the client connections that carried
// proxied requests.
type backend struct {
	name  string
	addr  string
	srv   *http.Server
	hits  atomic.Int64
	mu    sync.Mutex
	conns map[int64]bool // ids of connections that carried non-health requests

	held    atomic.Int64  // /hold requests that arrived
	release chan struct{} // closing it answers every /hold request
}

type connIDKey struct{}

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, addr: ln.Addr().String(), conns: map[int64]bool{}, release: make(chan struct{})}
	var nextID atomic.Int64
	b.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, connIDKey{}, nextID.Add(1))
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" {
				_, _ = io.WriteString(w, "ok\n")
				return
			}
			if r.URL.Path == "/hold" {
				// Held until the test releases it (or the client leaves).
				b.held.Add(1)
				select {
				case <-b.release:
				case <-r.Context().Done():
					return
				}
			}
			if r.URL.Path == "/big" {
				// bigBody bytes with a Content-Length: a spliced answer.
				w.Header().Set("Content-Length", strconv.Itoa(bigBody))
				_, _ = w.Write(bigPattern())
				return
			}
			if r.URL.Path == "/slow" {
				// Long enough that reloads land while requests are in
				// flight on the old runtime.
				time.Sleep(40 * time.Millisecond)
			}
			b.hits.Add(1)
			id, _ := r.Context().Value(connIDKey{}).(int64)
			b.mu.Lock()
			b.conns[id] = true
			b.mu.Unlock()
			_, _ = io.WriteString(w, b.name)
		}),
	}
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(func() { _ = b.srv.Close() })
	return b
}

func (b *backend) connCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

// get sends one request on a new connection and returns status and body.
func get(addr, path string) (int, string, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// refused reports whether a connection to addr is refused.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		_ = c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// freePort returns a 127.0.0.1 address that was free a moment ago, for a
// listener a reload adds (port 0 cannot name the same socket twice). It is
// below the ephemeral port range, so the test's own client connections
// cannot take it meanwhile.
func freePort(t *testing.T) string {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	for range 100 {
		port := 10000 + rand.IntN(max(low-10000, 1000))
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		return addr
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}
