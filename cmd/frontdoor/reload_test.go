package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"frontdoor/internal/loopback"
	"frontdoor/proxy"
)

// plan is one config of the reload test: which backends the pool has, with
// which weights and strategy, and whether the second listener exists.
type plan struct {
	backends []*backend
	weights  []int
	strategy string
	extra    bool
	echo     []string // tcp pool "echo"
	echoW    []int
}

var strategies = [...]string{"round_robin", "least_conn", "consistent_hash"}

// planFor returns the config of reload step. b[0] is in every config (so a
// request always has a backend); the others come and go in runs of three or
// more steps, weights change on every step, the strategy every step, and the
// second listener is added and removed every five steps. The tcp listener's
// pool keeps echo[0] and loses and regains echo[1] every four steps.
func planFor(step int, b []*backend, echo []string) plan {
	p := plan{strategy: strategies[step%len(strategies)], extra: step/5%2 == 1}
	for k, e := range echo {
		if k > 0 && step/4%2 == 1 {
			continue
		}
		p.echo = append(p.echo, e)
		p.echoW = append(p.echoW, 1+(step+k)%3)
	}
	for k, be := range b {
		if k > 0 && step/(k+2)%2 == 1 {
			continue
		}
		p.backends = append(p.backends, be)
		p.weights = append(p.weights, 1+(step+k)%4)
	}
	return p
}

func (p plan) toml(extraAddr, tcpAddr string) string {
	var s strings.Builder
	s.WriteString(`
[global]
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
`)
	if p.extra {
		fmt.Fprintf(&s, `
[[listener]]
name = "extra"
bind = %q
  [[listener.route]]
  pool = "app"
`, extraAddr)
	}
	fmt.Fprintf(&s, `
[[listener]]
name = "l4"
bind = %q
mode = "tcp"
pool = "echo"

[pool.echo]
backends = [
`, tcpAddr)
	for i, a := range p.echo {
		fmt.Fprintf(&s, "  { address = %q, weight = %d },\n", a, p.echoW[i])
	}
	s.WriteString(`]
  [pool.echo.health]
  check = "tcp"
  interval = "300ms"
  timeout = "250ms"
  rise = 1
  fall = 5
`)
	fmt.Fprintf(&s, `
[pool.app]
strategy = %q
retries = 0
backends = [
`, p.strategy)
	for i, b := range p.backends {
		fmt.Fprintf(&s, "  { address = %q, weight = %d },\n", b.addr, p.weights[i])
	}
	s.WriteString(`]
  [pool.app.health]
  check = "http"
  path = "/healthz"
  interval = "300ms"
  timeout = "250ms"
  rise = 1
  fall = 5
`)
	return s.String()
}

// matches reports whether pools app and echo in st have exactly p's
// backends and weights.
func (p plan) matches(st proxy.Status) bool {
	var app []string
	for _, b := range p.backends {
		app = append(app, b.addr)
	}
	found := 0
	for _, ps := range st.Pools {
		addrs, weights := app, p.weights
		switch {
		case ps.Name == "app" && ps.Strategy == p.strategy:
		case ps.Name == "echo":
			addrs, weights = p.echo, p.echoW
		default:
			continue
		}
		if len(ps.Backends) != len(addrs) {
			return false
		}
		for i, bs := range ps.Backends {
			if bs.Address != addrs[i] || bs.Weight != weights[i] {
				return false
			}
		}
		found++
	}
	return found == 2
}

// load is a bounded load generator against one listener: keep-alive
// workers that each use one connection for their whole run (so a reload
// that dropped an open client connection fails them), and workers that open
// a new connection for every request (so a reload that refused or reset a
// connection fails them). Every answer must be a 200 from a backend.
type load struct {
	ok        atomic.Int64
	failed    atomic.Int64
	kaConns   atomic.Int64
	kaDone    atomic.Int64 // keep-alive workers that ended on their first connection
	mu        sync.Mutex
	failures  []string
	wg        sync.WaitGroup
	cancel    context.CancelFunc
	newConnsN atomic.Int64
	tcpOK     atomic.Int64 // echo exchanges through the tcp listener
	tcpDone   atomic.Int64 // persistent tcp sessions that lasted the whole run
}

const (
	reloadDrain      = 5 * time.Second // drain_timeout of the reload test's config
	keepAliveWorkers = 2
	newConnWorkers   = 2
	maxNewConns      = 8000 // per worker: stays far below the ephemeral port range
)

func startLoad(addr, tcpAddr string, limit time.Duration) *load {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	l := &load{cancel: cancel}
	for i := range keepAliveWorkers {
		// The first keep-alive client asks for slow answers, so reloads
		// land while its requests are in flight.
		req := kaRequest
		if i == 0 {
			req = slowRequest
		}
		l.wg.Go(func() { l.keepAlive(ctx, addr, req) })
	}
	for range newConnWorkers {
		l.wg.Go(func() { l.newConns(ctx, addr) })
	}
	l.wg.Go(func() { l.tcpSession(ctx, tcpAddr) })
	l.wg.Go(func() { l.tcpConns(ctx, tcpAddr) })
	return l
}

// echo sends one line through the tcp listener and checks that an echo
// backend sent it back.
func (l *load) echo(conn net.Conn, br *bufio.Reader, n int) error {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	msg := "ping " + strconv.Itoa(n) + "\n"
	if _, err := io.WriteString(conn, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	line, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if !strings.HasPrefix(line, "e") || !strings.HasSuffix(line, " "+msg) {
		return fmt.Errorf("echo %q for %q", line, msg)
	}
	l.tcpOK.Add(1)
	return nil
}

// tcpSession keeps one session through the tcp listener for the whole run.
// A reload hands the tcp listener to a new tcp.Server, and the old one's
// sessions go on until they end (proxy/tcplistener.go): a reload must never
// cut a session, also not drain_timeout after it (the run outlasts that).
func (l *load) tcpSession(ctx context.Context, addr string) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		l.fail("tcp dial: %v", err)
		return
	}
	defer conn.Close()
	opened := time.Now()
	br := bufio.NewReader(conn)
	for n := 0; ctx.Err() == nil; n++ {
		if err := l.echo(conn, br, n); err != nil {
			l.fail("tcp session cut after %v: %v", time.Since(opened).Round(time.Millisecond), err)
			return
		}
	}
	l.tcpDone.Add(1)
}

// tcpConns opens a new session through the tcp listener for every exchange.
func (l *load) tcpConns(ctx context.Context, addr string) {
	for i := 0; i < maxNewConns && ctx.Err() == nil; i++ {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			l.fail("tcp dial: %v", err)
			continue
		}
		if err := l.echo(conn, bufio.NewReader(conn), i); err != nil {
			l.fail("tcp connection %d: %v", i, err)
		}
		_ = conn.Close()
	}
}

func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

func (l *load) fail(format string, args ...any) {
	l.failed.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) < 10 {
		l.failures = append(l.failures, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
	}
}

const (
	kaRequest    = "GET /load HTTP/1.1\r\nHost: app.test\r\nUser-Agent: reload-test\r\n\r\n"
	slowRequest  = "GET /slow HTTP/1.1\r\nHost: app.test\r\nUser-Agent: reload-test\r\n\r\n"
	closeRequest = "GET /load HTTP/1.1\r\nHost: app.test\r\nUser-Agent: reload-test\r\nConnection: close\r\n\r\n"
)

// exchange writes req on conn and reads one response; it returns whether
// the server kept the connection open.
func (l *load) exchange(conn net.Conn, br *bufio.Reader, req string) (kept bool, err error) {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		return false, fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return false, fmt.Errorf("read response: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return false, fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "b") {
		return !resp.Close, fmt.Errorf("status %d body %q", resp.StatusCode, body)
	}
	return !resp.Close, nil
}

func (l *load) keepAlive(ctx context.Context, addr, req string) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		l.fail("keep-alive dial: %v", err)
		return
	}
	defer conn.Close()
	l.kaConns.Add(1)
	br := bufio.NewReader(conn)
	for ctx.Err() == nil {
		kept, err := l.exchange(conn, br, req)
		if err != nil {
			l.fail("keep-alive request %d: %v", l.ok.Load(), err)
		} else {
			l.ok.Add(1)
		}
		if !kept {
			l.fail("keep-alive connection closed by the proxy after %d requests", l.ok.Load())
			return
		}
	}
	l.kaDone.Add(1)
}

func (l *load) newConns(ctx context.Context, addr string) {
	for i := 0; i < maxNewConns && ctx.Err() == nil; i++ {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			l.fail("dial: %v", err)
			continue
		}
		l.newConnsN.Add(1)
		if _, err := l.exchange(conn, bufio.NewReader(conn), closeRequest); err != nil {
			l.fail("new-connection request: %v", err)
		} else {
			l.ok.Add(1)
		}
		_ = conn.Close()
	}
}

// waitServed waits until the load got n more successful answers than from,
// which paces the reloads by traffic rather than by the clock.
func (l *load) waitServed(t *testing.T, from, n int64) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("%d more answers", n), func() bool {
		return l.ok.Load()-from >= n || l.failed.Load() > 0
	})
}

// TestHitlessReloadUnderLoad is the acceptance test of issue 5: 50 SIGHUP
// reloads of the real daemon, changing weights and strategies, adding and
// removing backends and a listener, while keep-alive and
// connection-per-request clients run over http, and a long session and
// session-per-exchange clients over a tcp listener. No request may fail, no connection may
// be refused, reset or closed, and state that must survive a reload does.
func TestHitlessReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs the daemon under load for ~15s")
	}
	const reloads = 50
	var bs []*backend
	for i := range 5 {
		bs = append(bs, startBackend(t, fmt.Sprintf("b%d", i)))
	}
	echo := []string{loopback.Echo(t, "e0"), loopback.Echo(t, "e1")}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "frontdoor.toml")
	extraAddr, tcpAddr := freePort(t), freePort(t)
	cur := planFor(0, bs, echo)
	writeConfig(t, cfgPath, cur.toml(extraAddr, tcpAddr))

	d := startDaemon(t, cfgPath)
	admin, addr := d.started("web")
	waitFor(t, 15*time.Second, "every backend up", func() bool {
		st := status(t, admin)
		for _, ps := range st.Pools {
			for _, b := range ps.Backends {
				if b.State != "up" {
					return false
				}
			}
		}
		return true
	})

	start := time.Now()
	ld := startLoad(addr, tcpAddr, 60*time.Second)
	defer ld.stop()
	ld.waitServed(t, 0, 200)

	const success = `frontdoor_config_reloads_total{result="success"}`
	firstReload := time.Now()
	for step := 1; step <= reloads && ld.failed.Load() == 0; step++ {
		next := planFor(step, bs, echo)
		before := status(t, admin)
		served := ld.ok.Load()
		writeConfig(t, cfgPath, next.toml(extraAddr, tcpAddr))
		d.signal(syscall.SIGHUP)
		waitMetric(t, admin, success, float64(step), 10*time.Second)
		after := status(t, admin)
		if !next.matches(after) {
			t.Fatalf("reload %d: /status does not show the new pool: %+v", step, after.Pools)
		}
		keptUp(t, step, before, after)
		if code, body := adminGet(t, admin, "/readyz"); code != http.StatusOK {
			t.Fatalf("reload %d: /readyz %d %q right after the reload; a load balancer in front would drop this instance", step, code, body)
		}
		switch {
		case next.extra && !cur.extra:
			code, body, err := get(extraAddr, "/load")
			if err != nil || code != http.StatusOK {
				t.Fatalf("reload %d added listener extra on %s: %d %q %v", step, extraAddr, code, body, err)
			}
		case !next.extra && cur.extra:
			waitFor(t, 10*time.Second, "removed listener extra to close", func() bool { return refused(extraAddr) })
		}
		cur = next
		ld.waitServed(t, served, 100)
	}

	// A burst: three rewrites and SIGHUPs back to back. Coalescing may merge
	// them, but the file as last written must win.
	base, _ := metric(scrape(t, admin), success)
	var last plan
	for step := reloads + 1; step <= reloads+3; step++ {
		last = planFor(step, bs, echo)
		writeConfig(t, cfgPath, last.toml(extraAddr, tcpAddr))
		d.signal(syscall.SIGHUP)
	}
	waitFor(t, 10*time.Second, "the last file of the burst applied", func() bool { return last.matches(status(t, admin)) })
	ld.waitServed(t, ld.ok.Load(), 200)
	// The long tcp session must outlive drain_timeout after the first
	// reload: that is when a server replaced by a reload would cut it.
	// The property is about time passing.
	if left := reloadDrain + time.Second - time.Since(firstReload); left > 0 {
		time.Sleep(left)
	}
	ld.stop()
	elapsed := time.Since(start)

	body := scrape(t, admin)
	burst, _ := metric(body, success)
	if n := burst - base; n < 1 || n > 3 {
		t.Errorf("burst of 3 SIGHUPs made %v reloads, want 1 to 3", n)
	}
	if v, _ := metric(body, `frontdoor_config_reloads_total{result="failure"}`); v != 0 {
		t.Errorf("%v reloads failed", v)
	}
	t.Logf("%d reloads + a burst of 3 (%v applied) in %v: %d http answers, %d new connections, %d keep-alive connections, %d tcp echoes, 0 failures wanted, %d failed",
		reloads, burst-base, elapsed.Round(time.Millisecond), ld.ok.Load(), ld.newConnsN.Load(), ld.kaConns.Load(), ld.tcpOK.Load(), ld.failed.Load())
	for _, f := range ld.failures {
		t.Errorf("failed: %s", f)
	}
	if ld.failed.Load() > 0 {
		t.Fatalf("%d requests failed during reloads", ld.failed.Load())
	}
	if got := ld.kaDone.Load(); got != keepAliveWorkers {
		t.Errorf("%d of %d keep-alive clients kept their one connection through every reload", got, keepAliveWorkers)
	}
	if ld.tcpDone.Load() != 1 {
		t.Error("the long tcp session did not last the whole run on one connection")
	}
	for _, b := range bs {
		t.Logf("backend %s: %d requests over %d connections from the proxy", b.name, b.hits.Load(), b.connCount())
		if b.hits.Load() == 0 {
			t.Errorf("backend %s never got traffic", b.name)
		}
	}
	// b0 is in every config with the same connection settings, so its
	// upstream connection pool must survive every reload: a pool rebuilt per
	// reload would open at least one new connection per reload.
	if n := bs[0].connCount(); n >= reloads {
		t.Errorf("backend b0 served proxied requests over %d connections across %d reloads; its pooled connections did not survive", n, reloads)
	}
	d.stop(15 * time.Second)
	d.noRaces()
	if errs := d.lines(levelError); len(errs) > 0 {
		t.Errorf("daemon logged errors: %q", errs)
	}
}

// keptUp fails the test if a backend that was up before a reload and is
// still configured after it is not up right after it: health state is kept
// by address.
func keptUp(t *testing.T, step int, before, after proxy.Status) {
	t.Helper()
	was := map[string]string{}
	for _, ps := range before.Pools {
		for _, b := range ps.Backends {
			was[ps.Name+"|"+b.Address] = b.State
		}
	}
	for _, ps := range after.Pools {
		for _, b := range ps.Backends {
			if was[ps.Name+"|"+b.Address] == "up" && b.State != "up" {
				t.Errorf("reload %d: backend %s was up before and is %s right after", step, b.Address, b.State)
			}
		}
	}
}
