package health

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// scriptServer is a raw HTTP/1.1 server on 127.0.0.1 that answers every
// request with the bytes respond returns, and records what it got.
type scriptServer struct {
	addr  string
	conns atomic.Int64 // connections accepted
	reqs  atomic.Int64 // requests read

	mu    sync.Mutex
	heads []string // request heads, in order
}

// startScript starts a scriptServer. With closeAfter it closes each
// connection after its first answer, without saying so in the response.
func startScript(t testing.TB, respond string, closeAfter bool) *scriptServer {
	t.Helper()
	ln := listen(t)
	s := &scriptServer{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Go(func() { s.serve(c, respond, closeAfter) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range open {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

func (s *scriptServer) serve(c net.Conn, respond string, closeAfter bool) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
		}
		s.mu.Lock()
		s.heads = append(s.heads, head.String())
		s.mu.Unlock()
		s.reqs.Add(1)
		if _, err := c.Write([]byte(respond)); err != nil || closeAfter {
			return
		}
	}
}

func (s *scriptServer) lastHead() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.heads) == 0 {
		return ""
	}
	return s.heads[len(s.heads)-1]
}

// probeN runs n probes of p, failing the test on the first error.
func probeN(t *testing.T, p prober, n int) {
	t.Helper()
	for i := range n {
		if err := p.probe(context.Background()); err != nil {
			t.Fatalf("probe %d: %v", i+1, err)
		}
	}
}

const ok200 = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"

// TestHTTPProbeConnections: how many connections a series of probes makes,
// by what the backend says and does.
func TestHTTPProbeConnections(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		respond    string
		closeAfter bool
		wantConns  int64 // for 4 probes
	}{
		{name: "kept alive", respond: ok200, wantConns: 1},
		{name: "connection close", respond: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", closeAfter: true, wantConns: 4},
		{name: "closed without notice: retried", respond: ok200, closeAfter: true, wantConns: 4},
		{name: "body to the close", respond: "HTTP/1.0 200 OK\r\n\r\nbody", closeAfter: true, wantConns: 4},
		{name: "bytes past the response", respond: ok200 + "junk", wantConns: 4},
		{name: "chunked kept alive", respond: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nok\n\r\n0\r\n\r\n", wantConns: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startScript(t, tc.respond, tc.closeAfter)
			hc := check("http")
			p := newHTTPProber(&hc, srv.addr)
			defer p.close()
			for i := range 4 {
				if err := p.probe(context.Background()); err != nil {
					t.Fatalf("probe %d: %v", i+1, err)
				}
				if tc.closeAfter {
					// Let the backend's close reach the kept connection,
					// so that the next probe meets it.
					waitFor(t, 5*time.Second, "backend done", func() bool { return srv.reqs.Load() == int64(i+1) })
					time.Sleep(5 * time.Millisecond)
				}
			}
			if got := srv.conns.Load(); got != tc.wantConns {
				t.Errorf("%d connections for 4 probes, want %d", got, tc.wantConns)
			}
			if got := srv.reqs.Load(); got != 4 {
				t.Errorf("%d requests for 4 probes, want 4", got)
			}
		})
	}
}

// TestHTTPProbeRequestBytes: the request is what fasthttp's HostClient sent.
func TestHTTPProbeRequestBytes(t *testing.T) {
	t.Parallel()
	srv := startScript(t, ok200, false)
	tests := []struct {
		name, method, path, host string
		want                     string
	}{
		{name: "GET", method: "GET", path: "/healthz",
			want: "GET /healthz HTTP/1.1\r\nUser-Agent: frontdoor-health\r\nHost: " + srv.addr + "\r\n\r\n"},
		{name: "HEAD with host", method: "HEAD", path: "/", host: "svc.internal",
			want: "HEAD / HTTP/1.1\r\nUser-Agent: frontdoor-health\r\nHost: svc.internal\r\n\r\n"},
		{name: "POST has an empty body", method: "POST", path: "/check?x=1",
			want: "POST /check?x=1 HTTP/1.1\r\nUser-Agent: frontdoor-health\r\nHost: " + srv.addr + "\r\nContent-Length: 0\r\n\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hc := check("http")
			hc.Method, hc.Path, hc.Host = tc.method, tc.path, tc.host
			p := newHTTPProber(&hc, srv.addr)
			defer p.close()
			err := p.probe(context.Background())
			if tc.method == "HEAD" && err != nil {
				// The canned answer has a body, which a HEAD response
				// has not; only the request is looked at here.
				err = nil
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := srv.lastHead(); got != tc.want {
				t.Errorf("request\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

// TestHTTPProbeErrors: what /status shows for a failing backend.
func TestHTTPProbeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		respond string
		want    string
	}{
		{name: "status out of range", respond: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
			want: "http GET /healthz: health: backend reports unhealthy: status 503, want 200-399"},
		{name: "not HTTP", respond: "SSH-2.0-OpenSSH_9\r\n", want: `http GET /healthz: malformed response status line "SSH-2.0-OpenSSH_9"`},
		{name: "closed mid-response", respond: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok", want: "unexpected EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startScript(t, tc.respond, true)
			hc := check("http")
			p := newHTTPProber(&hc, srv.addr)
			defer p.close()
			err := p.probe(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}

	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		addr := closedAddr(t)
		hc := check("http")
		p := newHTTPProber(&hc, addr)
		defer p.close()
		err := p.probe(context.Background())
		if want := "http GET /healthz: dial tcp " + addr + ": connect: connection refused"; err == nil || err.Error() != want {
			t.Errorf("err %v, want %q", err, want)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("err %v, want ECONNREFUSED", err)
		}
	})
}

// listenFull returns the address of a listening socket that never accepts
// and whose queue is full, so that a connect to it stays in SYN_SENT.
func listenFull(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)
	// Fill the accept queue (one connection for backlog 0, a second to be
	// sure); the connects after that get no SYN-ACK.
	for range 2 {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			t.Cleanup(func() { _ = c.Close() })
		}
	}
	return addr
}

// TestTCPProbeTimeout: a connect that gets no answer fails by the timeout,
// on the probe's own goroutine and in the engine, and leaves no socket open.
// (Not parallel: it counts the process's open files.)
func TestTCPProbeTimeout(t *testing.T) {
	addr := listenFull(t)
	fds := openFiles(t)
	p := newTCPProber(addr, 150*time.Millisecond)
	for range 2 {
		start := time.Now()
		err := p.probe(context.Background())
		if d := time.Since(start); !errors.Is(err, ErrTimeout) || d < 150*time.Millisecond || d > time.Second {
			t.Fatalf("probe: %v after %s, want ErrTimeout after about 150ms", err, d)
		}
		if want := "health: check timed out after 150ms: dial tcp " + addr + ": i/o timeout"; err.Error() != want {
			t.Errorf("err %q, want %q", err, want)
		}
	}
	p.close()
	if n := openFiles(t); n > fds {
		t.Errorf("%d open files after the probes, %d before", n, fds)
	}

	hc := check("tcp")
	hc.Timeout.Duration, hc.Interval.Duration, hc.Fall = 100*time.Millisecond, 150*time.Millisecond, 1
	b := &backend{}
	b.healthy.Store(true)
	c, rec := newTestChecker(t, hc, Target{Address: addr, Backend: b, Healthy: true})
	startChecker(t, c)
	waitFor(t, 5*time.Second, "down", func() bool { return rec.count(0, "down") == 1 })
	if st := c.Status()[0]; !strings.Contains(st.LastError, "check timed out after 100ms") {
		t.Errorf("last error %q, want the timeout", st.LastError)
	}
}

// openFiles counts this process's open descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	return len(ents)
}

// TestTCPProbeReset: a tcp check reuses one socket and ends each connection
// with a reset, so neither side keeps a TIME_WAIT socket. (Not parallel: it
// counts the process's open files.)
func TestTCPProbeReset(t *testing.T) {
	ln := listen(t)
	defer ln.Close()
	var accepted atomic.Int64
	// After each close the count of open files is back.
	closeAccepted(ln, func() { accepted.Add(1) })
	p := newTCPProber(ln.Addr().String(), time.Second)
	defer p.close()
	port := ln.Addr().(*net.TCPAddr).Port
	waits := timeWaits(t, port)
	probeN(t, p, 1)
	waitFor(t, 5*time.Second, "accept", func() bool { return accepted.Load() == 1 })
	fds := openFiles(t)
	probeN(t, p, 50)
	waitFor(t, 5*time.Second, "accepts", func() bool { return accepted.Load() == 51 })
	if n := openFiles(t); n != fds {
		t.Errorf("%d open files after 50 more probes, %d before: the socket is not reused", n, fds)
	}
	if n := timeWaits(t, port) - waits; n > 0 {
		t.Errorf("%d new TIME_WAIT sockets to or from port %d, want none (connections reset)", n, port)
	}
}

// timeWaits counts IPv4 TCP sockets in TIME_WAIT with port at either end.
func timeWaits(t *testing.T, port int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skip(err)
	}
	hexPort := strings.ToUpper(strconv.FormatInt(int64(port), 16))
	for len(hexPort) < 4 {
		hexPort = "0" + hexPort
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[3] == "06" && (strings.HasSuffix(f[1], ":"+hexPort) || strings.HasSuffix(f[2], ":"+hexPort)) {
			n++
		}
	}
	return n
}

// TestCheckerHostName: a target named by host name is resolved on connect
// (localhost may resolve to ::1 first, where nothing listens: the next
// address is tried).
func TestCheckerHostName(t *testing.T) {
	t.Parallel()
	if _, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip4", "localhost"); err != nil {
		t.Skipf("localhost does not resolve: %v", err)
	}
	for _, kind := range []string{"tcp", "http"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := startScript(t, ok200, false)
			_, port, _ := net.SplitHostPort(srv.addr)
			b := &backend{}
			c, rec := newTestChecker(t, check(kind), Target{Address: "localhost:" + port, Backend: b})
			startChecker(t, c)
			waitFor(t, 5*time.Second, "three checks", func() bool { return rec.count(0, "ok") >= 3 })
			if !b.healthy.Load() || rec.count(0, "fail") != 0 {
				t.Errorf("events %q, healthy %v: want up, no failure", rec.seq(0), b.healthy.Load())
			}
		})
	}
}

// TestCheckerEngineMany: the engine checks many targets at once; targets
// that time out do not hold up the others.
func TestCheckerEngineMany(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"tcp", "http"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			const good, bad = 30, 5
			var targets []Target
			for range good {
				targets = append(targets, Target{Address: startScript(t, ok200, false).addr, Backend: &backend{}})
			}
			for range bad {
				addr := startSilent(t).addr // http: no answer
				if kind == "tcp" {
					addr = listenFull(t) // tcp: no handshake
				}
				b := &backend{}
				b.healthy.Store(true)
				targets = append(targets, Target{Address: addr, Backend: b, Healthy: true})
			}
			hc := check(kind)
			hc.Interval.Duration, hc.Timeout.Duration, hc.Fall = 50*time.Millisecond, 300*time.Millisecond, 1
			c, rec := newTestChecker(t, hc, targets...)
			start := time.Now()
			startChecker(t, c)
			waitFor(t, 5*time.Second, "good targets checked 5 times", func() bool {
				for i := range good {
					if rec.count(i, "ok") < 5 {
						return false
					}
				}
				return true
			})
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("5 checks of each good target took %s, want about 5 intervals of 50ms", d)
			}
			waitFor(t, 5*time.Second, "bad targets down", func() bool {
				for i := good; i < good+bad; i++ {
					if rec.count(i, "down") == 0 {
						return false
					}
				}
				return true
			})
			for i := range good {
				if n := rec.count(i, "fail"); n != 0 {
					t.Errorf("target %d: %d failures (%q)", i, n, c.Status()[i].LastError)
				}
			}
			for i := good; i < good+bad; i++ {
				if st := c.Status()[i]; !strings.Contains(st.LastError, "timed out") {
					t.Errorf("target %d: last error %q, want a timeout", i, st.LastError)
				}
			}
		})
	}
}

// TestCheckerEngineStaleConnection: a backend that closes each kept
// connection after answering is still seen healthy by every check (the
// engine closes the connection when the backend does, and reconnects).
func TestCheckerEngineStaleConnection(t *testing.T) {
	t.Parallel()
	srv := startScript(t, ok200, true)
	b := &backend{}
	c, rec := newTestChecker(t, check("http"), Target{Address: srv.addr, Backend: b})
	startChecker(t, c)
	waitFor(t, 5*time.Second, "ten checks", func() bool { return rec.count(0, "ok") >= 10 })
	if n := rec.count(0, "fail"); n != 0 {
		t.Errorf("%d failed checks (%q), want none", n, c.Status()[0].LastError)
	}
	if conns, reqs := srv.conns.Load(), srv.reqs.Load(); conns < reqs {
		t.Errorf("%d connections for %d requests, want one each", conns, reqs)
	}
}

// TestCheckerEngineTransitions: rise/fall through the engine, for tcp.
func TestCheckerEngineTransitions(t *testing.T) {
	t.Parallel()
	ln := listen(t)
	addr := ln.Addr().String()
	closeAccepted(ln, nil)
	hc := check("tcp")
	hc.Rise, hc.Fall = 2, 2
	b := &backend{}
	c, rec := newTestChecker(t, hc, Target{Address: addr, Backend: b})
	startChecker(t, c)
	waitFor(t, 5*time.Second, "up", func() bool { return rec.count(0, "up") == 1 })
	_ = ln.Close()
	waitFor(t, 5*time.Second, "down", func() bool { return rec.count(0, "down") == 1 })
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	defer ln2.Close()
	waitFor(t, 5*time.Second, "up again", func() bool { return rec.count(0, "up") == 2 })
	want := regexp.MustCompile(`^ok up (ok )*fail fail down (fail )*ok ok up( ok)*$`)
	if seq := rec.seq(0); !want.MatchString(seq) {
		t.Errorf("events %q do not match %s", seq, want)
	}
	if st := c.Status()[0]; !st.Healthy || st.LastResult != "success" {
		t.Errorf("status %+v, want healthy", st)
	}
}
