package tcp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startHAProxy runs haproxy in the foreground with cfg until the test ends
// and waits for every address in wait to accept connections.
func startHAProxy(t *testing.T, cfg string, wait ...string) {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy is not installed")
	}
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	for _, a := range wait {
		eventually(t, "haproxy to listen on "+a, func() bool {
			c, err := net.Dial("tcp", a)
			if err == nil {
				_ = c.Close()
			}
			return err == nil
		})
	}
}

const haproxyDefaults = `global
    nbthread 1
defaults
    timeout connect 2s
    timeout client 10s
    timeout server 10s
`

// TestHAProxyAcceptsOurHeaders: HAProxy with accept-proxy reports the
// client address the engine's v1 and v2 headers carry.
func TestHAProxyAcceptsOurHeaders(t *testing.T) {
	t.Parallel()
	fe := closedAddr(t)
	startHAProxy(t, haproxyDefaults+fmt.Sprintf(`
frontend fe
    mode http
    bind %s accept-proxy
    http-request return status 200 content-type text/plain lf-string "%%[src] %%[src_port] %%[dst] %%[dst_port]"
`, fe), fe)
	tests := []struct {
		version, claim, want string
	}{
		{ProxyV1, "PROXY TCP4 192.0.2.7 198.51.100.1 1234 443\r\n", "192.0.2.7 1234 198.51.100.1 443"},
		{ProxyV2, "PROXY TCP4 192.0.2.7 198.51.100.1 1234 443\r\n", "192.0.2.7 1234 198.51.100.1 443"},
		{ProxyV1, "PROXY TCP6 2001:db8::7 2001:db8::1 1234 443\r\n", "2001:db8::7 1234 2001:db8::1 443"},
		{ProxyV2, "PROXY TCP6 2001:db8::7 2001:db8::1 1234 443\r\n", "2001:db8::7 1234 2001:db8::1 443"},
	}
	for _, tc := range tests {
		t.Run(tc.version+" "+tc.want, func(t *testing.T) {
			t.Parallel()
			// The client claims an address with its own header; the engine
			// passes it on in SendProxy's format.
			p := startProxy(t, Options{AcceptProxy: true}, &Upstream{Pool: newPool(t, fe), SendProxy: tc.version})
			c := dial(t, p.addr)
			_, _ = io.WriteString(c, tc.claim+"GET / HTTP/1.0\r\n\r\n")
			resp, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if _, body, _ := strings.Cut(string(resp), "\r\n\r\n"); body != tc.want {
				t.Fatalf("haproxy saw %q, want %q\n%s", body, tc.want, resp)
			}
		})
	}
}

// TestOurParserAcceptsHAProxy: the engine with accept_proxy reads what
// HAProxy's send-proxy and send-proxy-v2 write.
func TestOurParserAcceptsHAProxy(t *testing.T) {
	t.Parallel()
	// The backend reports the v1 header the engine sends it.
	backend := serveBackend(t, func(c *net.TCPConn) {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return
		}
		_, _ = io.WriteString(c, line)
	})
	v1ln, v2ln := listen(t), listen(t)
	for _, ln := range []*net.TCPListener{v1ln, v2ln} {
		startProxy(t, Options{Listener: ln, AcceptProxy: true, ProxyHeaderTimeout: 2 * time.Second},
			&Upstream{Pool: newPool(t, backend), SendProxy: ProxyV1})
	}
	fe1, fe2 := closedAddr(t), closedAddr(t)
	startHAProxy(t, haproxyDefaults+fmt.Sprintf(`
listen v1
    mode tcp
    bind %s
    server s %s send-proxy
listen v2
    mode tcp
    bind %s
    server s %s send-proxy-v2
`, fe1, v1ln.Addr(), fe2, v2ln.Addr()), fe1, fe2)
	for _, fe := range []string{fe1, fe2} {
		c := dial(t, fe)
		_, _ = c.Write([]byte("x")) // haproxy connects to the server on the first byte
		got, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("via %s: %v", fe, err)
		}
		want := fmt.Sprintf("PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n", c.LocalAddr().(*net.TCPAddr).Port, c.RemoteAddr().(*net.TCPAddr).Port)
		if got != want {
			t.Errorf("via %s the backend got %q, want %q", fe, got, want)
		}
	}
}
