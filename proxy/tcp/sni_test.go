package tcp

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"frontdoor/internal/loopback"
	"frontdoor/internal/splice"
	"frontdoor/internal/testpki"
	"frontdoor/metrics"
)

// tlsEcho runs a TLS server for names that echoes what it reads, and
// returns its address and the server certificate's serial.
func tlsEcho(t testing.TB, ca *testpki.CA, names ...string) (string, string) {
	t.Helper()
	pair := ca.Issue(t, testpki.Leaf{Names: names})
	cfg := pair.ServerConfig()
	addr := loopback.Serve(t, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		_ = tc.SetDeadline(time.Now().Add(time.Minute))
		_, _ = io.Copy(tc, tc)
		_ = tc.CloseWrite()
	})
	return addr, pair.Leaf.SerialNumber.String()
}

// startSNI serves SNI routes to pools of one backend each; def is the
// default backend ("" for none).
func startSNI(t testing.TB, opts Options, def string, routes ...string) (string, *metrics.Metrics) {
	t.Helper()
	if opts.Listener == nil {
		opts.Listener = listen(t)
	}
	opts.Name = "sni"
	engineFor(t, &opts)
	opts.Metrics = metrics.New(prometheus.NewRegistry(), "test")
	for i := 0; i+1 < len(routes); i += 2 {
		opts.SNIRoutes = append(opts.SNIRoutes, SNIRoute{ServerName: routes[i], Upstream: &Upstream{PoolName: routes[i], Pool: newPool(t, routes[i+1])}})
	}
	var up *Upstream
	if def != "" {
		up = &Upstream{PoolName: "default", Pool: newPool(t, def)}
	}
	s := NewServer(opts, up)
	go func() { _ = s.Serve() }()
	t.Cleanup(func() { _ = s.Close() })
	return opts.Listener.Addr().String(), opts.Metrics
}

// sniDial shakes hands through addr for name and returns the backend
// certificate's serial and the echo of msg.
func sniDial(t testing.TB, addr, name string, pool *testpki.CA, msg string) (string, string, error) {
	t.Helper()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{ServerName: name, RootCAs: pool.Pool, InsecureSkipVerify: name == ""}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	tc := c.(*tls.Conn)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(tc, msg); err != nil {
		return "", "", err
	}
	_ = tc.CloseWrite()
	got, err := io.ReadAll(tc)
	return tc.ConnectionState().PeerCertificates[0].SerialNumber.String(), string(got), err
}

func TestSNIRouting(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "sni CA")
	a, serialA := tlsEcho(t, ca, "a.example.com")
	b, serialB := tlsEcho(t, ca, "b.example.com", "x.b.example.com", "deep.example.com")
	c, serialC := tlsEcho(t, ca, "y.x.b.example.com")
	def, serialDef := tlsEcho(t, ca, "other.test", "unknown.test")
	addr, m := startSNI(t, Options{}, def, "a.example.com", a, "*.example.com", b, "*.x.b.example.com", c)
	for _, tc := range []struct{ name, want string }{
		{"a.example.com", serialA},
		{"A.EXAMPLE.com", serialA},     // names compare without case
		{"b.example.com", serialB},     // wildcard
		{"deep.example.com", serialB},  // wildcard
		{"x.b.example.com", serialB},   // wildcard, any depth
		{"y.x.b.example.com", serialC}, // the longer wildcard wins
		{"unknown.test", serialDef},    // no route: the default pool
		{"", serialDef},                // no SNI: the default pool
	} {
		serial, echo, err := sniDial(t, addr, tc.name, ca, "hello "+tc.name)
		if err != nil {
			t.Errorf("%q: %v", tc.name, err)
			continue
		}
		if serial != tc.want || echo != "hello "+tc.name {
			t.Errorf("%q reached certificate %s (want %s), echo %q", tc.name, serial, tc.want, echo)
		}
	}
	if v := value(m.TLS.Handshakes.WithLabelValues("sni", "1.3", "ok")); v != 8 {
		t.Errorf("routed %v hellos", v)
	}

	// Without a default pool, an unknown name is closed and counted.
	addr2, m2 := startSNI(t, Options{}, "", "a.example.com", a)
	if _, _, err := sniDial(t, addr2, "b.example.com", ca, "x"); err == nil {
		t.Error("unknown name without a default pool was served")
	}
	eventually(t, "unknown_sni counted", func() bool {
		return value(m2.TLS.HandshakeErrors.WithLabelValues("sni", "unknown_sni")) == 1 &&
			value(m2.TLS.Handshakes.WithLabelValues("sni", "1.3", "error")) == 1
	})
}

// TestSNIBadInput: what is not a ClientHello is closed clearly and counted,
// and the listener keeps routing.
func TestSNIBadInput(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "sni CA")
	a, _ := tlsEcho(t, ca, "a.example.com")
	addr, m := startSNI(t, Options{HelloTimeout: 300 * time.Millisecond}, a, "a.example.com", a)
	hello := captureHello(t, &tls.Config{ServerName: "a.example.com"})
	huge := append([]byte{22, 3, 1, 0x40, 0, 1, 0, 0x5f, 0xfc}, make([]byte, 0x4000-4)...)
	for _, tc := range []struct {
		name   string
		send   []byte
		close  bool
		reason string
	}{
		{"plain HTTP", []byte("GET / HTTP/1.1\r\n\r\n"), false, "not_tls"},
		{"garbage", []byte{0, 1, 2, 3, 4, 5, 6}, false, "not_tls"},
		{"truncated", hello[:40], true, "truncated"},
		{"slow", hello[:40], false, "timeout"},
		{"oversized", huge, false, "oversized"},
	} {
		c := dial(t, addr)
		start := time.Now()
		_, _ = c.Write(tc.send)
		if tc.close {
			_ = c.CloseWrite()
		}
		got, err := io.ReadAll(c)
		if len(got) > 0 || (err != nil && !strings.Contains(err.Error(), "reset")) {
			t.Errorf("%s: got %q, %v", tc.name, got, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: closed after %v", tc.name, d)
		}
		eventually(t, tc.reason+" counted", func() bool {
			return value(m.TLS.HandshakeErrors.WithLabelValues("sni", tc.reason)) >= 1
		})
	}
	if _, echo, err := sniDial(t, addr, "a.example.com", ca, "still"); err != nil || echo != "still" {
		t.Errorf("after bad input: %q, %v", echo, err)
	}
}

// prefixed reads from r (which buffered c) before c.
type prefixed struct {
	net.Conn
	r io.Reader
}

func (p *prefixed) Read(b []byte) (int, error) { return p.r.Read(b) }

// TestSNISendProxy: PROXY protocol still works with SNI routes: the
// header from the balancer in front is read before the ClientHello, and
// send_proxy writes one to the backend before it.
func TestSNISendProxy(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "sni CA")
	pair := ca.Issue(t, testpki.Leaf{Names: []string{"a.example.com"}})
	got := make(chan string, 1)
	backend := loopback.Serve(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		line, _ := br.ReadString('\n')
		got <- line
		tc := tls.Server(&prefixed{Conn: c, r: br}, pair.ServerConfig())
		_, _ = io.Copy(tc, tc)
		_ = tc.CloseWrite()
	})
	opts := Options{AcceptProxy: true, Listener: listen(t), Name: "sni", Metrics: metrics.New(prometheus.NewRegistry(), "test")}
	opts.SNIRoutes = []SNIRoute{{ServerName: "a.example.com", Upstream: &Upstream{PoolName: "a", Pool: newPool(t, backend), SendProxy: ProxyV1}}}
	srv := NewServer(opts, nil)
	go func() { _ = srv.Serve() }()
	t.Cleanup(func() { _ = srv.Close() })

	c := dial(t, opts.Listener.Addr().String())
	_, _ = io.WriteString(c, "PROXY TCP4 192.0.2.7 198.51.100.1 4321 443\r\n")
	tc := tls.Client(c, &tls.Config{ServerName: "a.example.com", RootCAs: ca.Pool})
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(tc, "ping"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(tc, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q, %v", buf, err)
	}
	if line := <-got; line != "PROXY TCP4 192.0.2.7 198.51.100.1 4321 443\r\n" {
		t.Errorf("backend got PROXY header %q", line)
	}
}

// TestSNISpliceSyscalls proves SNI passthrough from the outside, as
// TestSpliceSyscalls does for plain sessions: the engine runs in a child
// under strace -c with routes to two TLS backends; 16 MiB go each way
// through a session to each, intact; the child moved them with splice(2)
// and next to no read/write calls.
func TestSNISpliceSyscalls(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace is not installed")
	}
	t.Parallel()
	ca := testpki.NewCA(t, "sni CA")
	a, serialA := tlsEcho(t, ca, "a.example.com")
	b, serialB := tlsEcho(t, ca, "b.example.com")
	summary := filepath.Join(t.TempDir(), "strace.txt")
	child := exec.Command(strace, "-f", "-qq", "-c", "-o", summary,
		"-e", "trace=splice,read,write,readv,writev,recvfrom,sendto,recvmsg,sendmsg",
		os.Args[0], "-test.run=^TestSNIEngineChild$")
	child.Env = append(os.Environ(), "FRONTDOOR_SNI_CHILD=a.example.com="+a+",*.example.com="+b)
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = child.Process.Kill()
			_ = child.Wait()
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Skipf("the engine did not start under strace (ptrace not allowed?): %v", err)
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, "listening "))

	const size = 16 << 20
	payload := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	for _, tc := range []struct{ name, serial string }{{"a.example.com", serialA}, {"b.example.com", serialB}} {
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: tc.name, RootCAs: ca.Pool})
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		if got := c.ConnectionState().PeerCertificates[0].SerialNumber.String(); got != tc.serial {
			t.Errorf("%s reached certificate %s, want %s", tc.name, got, tc.serial)
		}
		go func() {
			_, _ = c.Write(payload)
			_ = c.CloseWrite()
		}()
		echo, err := io.ReadAll(c)
		_ = c.Close()
		if err != nil || !bytes.Equal(echo, payload) {
			t.Fatalf("%s: echoed %d bytes (intact: %v), %v", tc.name, len(echo), bytes.Equal(echo, payload), err)
		}
	}
	_ = stdin.Close()
	_ = child.Wait()
	exited = true

	out, err := os.ReadFile(summary)
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for l := range strings.SplitSeq(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || f[len(f)-1] == "total" || f[len(f)-1] == "syscall" {
			continue
		}
		if n, err := strconv.Atoi(f[3]); err == nil {
			calls[f[len(f)-1]] = n
		}
	}
	rw := 0
	for name, n := range calls {
		if name != "splice" {
			rw += n
		}
	}
	t.Logf("engine syscalls for 2 sessions x 2 x 16 MiB: %v", calls)
	if calls["splice"] < 2*2*2*size/splice.PipeSize {
		t.Errorf("%d splice calls for 64 MiB", calls["splice"])
	}
	// recvfrom: the MSG_PEEK reads of two ClientHellos and the runtime's
	// own; a user-space copy of 64 MiB would take thousands of calls.
	if rw > 200 {
		t.Errorf("%d read/write-family calls: payload went through user space\n%s", rw, bytes.TrimSpace(out))
	}
}

// TestSNIEngineChild is the engine process of TestSNISpliceSyscalls.
func TestSNIEngineChild(t *testing.T) {
	spec := os.Getenv("FRONTDOOR_SNI_CHILD")
	if spec == "" {
		t.Skip("runs only as a child of another test")
	}
	var routes []string
	for r := range strings.SplitSeq(spec, ",") {
		name, addr, _ := strings.Cut(r, "=")
		routes = append(routes, name, addr)
	}
	addr, _ := startSNI(t, Options{IdleTimeout: time.Hour}, "", routes...)
	fmt.Printf("listening %s\n", addr)
	_, _ = io.Copy(io.Discard, os.Stdin)
}
