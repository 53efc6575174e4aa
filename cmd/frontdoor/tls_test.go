package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"frontdoor/internal/testpki"
)

// tlsDaemonConfig is a config with one TLS listener "web" serving cert and
// key (and tlsExtra in [listener.tls]) in front of backend.
func tlsDaemonConfig(cert, key, tlsExtra, backend string) string {
	return fmt.Sprintf(`[admin]
bind = "127.0.0.1:0"
[log]
access = "off"
[[listener]]
name = "web"
bind = "127.0.0.1:0"
  [[listener.route]]
  pool = "app"
  [listener.tls]
  certificates = [{ cert_file = %q, key_file = %q }]
%s
[pool.app]
backends = [{ address = %q }]
health = { check = "none" }
`, cert, key, tlsExtra, backend)
}

// installPair writes p as cert and key, each replaced by a rename.
func installPair(t *testing.T, p *testpki.Pair, cert, key string) {
	t.Helper()
	writeConfig(t, cert, string(p.CertPEM))
	writeConfig(t, key, string(p.KeyPEM))
}

// TestCheckCertificates: -check validates certificate pairs (file and
// reason), expiry (expired: error; within 14 days: warning) and that each
// route host is covered by a certificate.
func TestCheckCertificates(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "check CA")
	good := ca.Issue(t, testpki.Leaf{Names: []string{"example.com"}, NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	soon := ca.Issue(t, testpki.Leaf{Names: []string{"example.com"}, NotAfter: time.Now().Add(5 * 24 * time.Hour)})
	expired := ca.Issue(t, testpki.Leaf{Names: []string{"example.com"}, NotAfter: time.Now().Add(-time.Hour)})
	other := ca.Issue(t, testpki.Leaf{Names: []string{"other.test"}, NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := func(name string, pair *testpki.Pair, key string, host string) string {
		text := tlsDaemonConfig(pair.CertFile, key, "", "127.0.0.1:9")
		if host != "" {
			text = strings.Replace(text, `  pool = "app"`, "  host = \""+host+"\"\n  pool = \"app\"", 1)
		}
		return write(name, text)
	}
	for _, tc := range []struct {
		name, file string
		code       int
		stdout     string
		stderr     string
	}{
		{"good", cfg("good.toml", good, good.KeyFile, "example.com"), 0, "config OK\n", ""},
		{"expires soon", cfg("soon.toml", soon, soon.KeyFile, ""), 0, "config OK\n",
			`warning: .*soon.toml: listener\[0\]\.tls\.certificates\[0\]: certificate .* \(CN=example.com,O=frontdoor tests\) expires at .*, in [45] days`},
		{"expired", cfg("expired.toml", expired, expired.KeyFile, ""), 1, "",
			`expired.toml: listener\[0\]\.tls\.certificates\[0\]: certificate .* expired at .*; renew it`},
		{"mismatched pair", cfg("pair.toml", good, other.KeyFile, ""), 1, "",
			`pair.toml:\d+: listener\[0\]\.tls\.certificates\[0\]: certificate .* with key .*: tls: private key does not match public key`},
		{"host not covered", cfg("host.toml", good, good.KeyFile, "api.other.test"), 1, "",
			`host.toml:\d+: listener\[0\]\.route\[0\]\.host: no certificate of this listener covers host "api.other.test"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(binPath, "-check", "-config", tc.file)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || stdout.String() != tc.stdout {
				t.Errorf("exit %d, stdout %q; want %d, %q\nstderr:\n%s", code, stdout.String(), tc.code, tc.stdout, stderr.String())
			}
			if tc.stderr == "" && stderr.Len() > 0 || tc.stderr != "" && !regexpMatch(tc.stderr, stderr.String()) {
				t.Errorf("stderr %q, want it to match %s", stderr.String(), tc.stderr)
			}
		})
	}
}

// TestTLSCertRotationUnderLoad swaps the listener's certificate 20 times
// with SIGHUP while clients make new TLS connections and reuse kept ones:
// no request fails, and the first handshake after each reload sees the
// new certificate. A reload with a mismatched pair fails, and the last good
// certificate keeps serving.
func TestTLSCertRotationUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs the daemon under load")
	}
	t.Parallel()
	const reloads = 20
	ca := testpki.NewCA(t, "rotation CA")
	b := startBackend(t, "b0")
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "site.pem"), filepath.Join(dir, "site.key")
	installPair(t, ca.Issue(t, testpki.Leaf{Names: []string{"example.com"}}), cert, key)
	cfgPath := filepath.Join(dir, "frontdoor.toml")
	writeConfig(t, cfgPath, tlsDaemonConfig(cert, key, "", b.addr))
	d := startDaemon(t, cfgPath)
	admin, addr := d.started("web")

	clientCfg := &tls.Config{RootCAs: ca.Pool, ServerName: "example.com"}
	var ok, failed atomic.Int64
	var firstErr atomic.Pointer[string]
	fail := func(err error) {
		if failed.Add(1) == 1 {
			s := err.Error()
			firstErr.Store(&s)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 4 {
		keep := i%2 == 0 // half keep connections open, half shake hands per request
		wg.Go(func() {
			tr := &http.Transport{
				DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					dd := tls.Dialer{Config: clientCfg.Clone()}
					return dd.DialContext(ctx, "tcp", addr)
				},
				DisableKeepAlives: !keep,
			}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for n := 0; n < 100000 && ctx.Err() == nil; n++ {
				resp, err := c.Get("https://example.com/load")
				if err != nil {
					if ctx.Err() == nil {
						fail(err)
					}
					continue
				}
				body, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || string(body) != "b0" {
					fail(fmt.Errorf("%d %q %v", resp.StatusCode, body, err))
					continue
				}
				ok.Add(1)
			}
		})
	}
	serial := func() string {
		c, err := tls.Dial("tcp", addr, clientCfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	waitFor(t, 10*time.Second, "load running", func() bool { return ok.Load() > 50 })
	const success = `frontdoor_config_reloads_total{result="success"}`
	for step := 1; step <= reloads; step++ {
		next := ca.Issue(t, testpki.Leaf{Names: []string{"example.com"}})
		installPair(t, next, cert, key)
		d.signal(syscall.SIGHUP)
		waitMetric(t, admin, success, float64(step), 10*time.Second)
		if got := serial(); got != next.Leaf.SerialNumber.String() {
			t.Fatalf("reload %d: new handshakes get certificate %s, want %s", step, got, next.Leaf.SerialNumber)
		}
		served := ok.Load()
		waitFor(t, 10*time.Second, "requests between reloads", func() bool { return ok.Load() > served+20 })
	}
	// A mismatched pair fails the reload; the last certificate serves on.
	last := serial()
	writeConfig(t, key, string(ca.Issue(t, testpki.Leaf{Names: []string{"example.com"}}).KeyPEM))
	d.signal(syscall.SIGHUP)
	waitMetric(t, admin, `frontdoor_config_reloads_total{result="failure"}`, 1, 10*time.Second)
	if got := serial(); got != last {
		t.Errorf("after a failed reload: certificate %s, want %s", got, last)
	}
	d.waitLog(regexpMust(`reload failed.*`+regexpQuote(cert)+`.*private key does not match public key`), 5*time.Second)
	cancel()
	wg.Wait()
	t.Logf("%d requests over %d reloads, %d failed", ok.Load(), reloads, failed.Load())
	if n := failed.Load(); n > 0 {
		t.Errorf("%d requests failed during certificate reloads; first: %s", n, *firstErr.Load())
	}
	d.stop(10 * time.Second)
	d.noRaces()
}

// TestTicketKeysAcrossProcesses: two frontdoor processes sharing a
// ticket_keys_file resume each other's TLS sessions; Python's ssl module
// is the client. A third process with other keys does not.
func TestTicketKeysAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	t.Parallel()
	ca := testpki.NewCA(t, "ticket CA")
	pair := ca.Issue(t, testpki.Leaf{Names: []string{"example.com"}})
	b := startBackend(t, "b0")
	dir := t.TempDir()
	shared, others := filepath.Join(dir, "tickets.key"), filepath.Join(dir, "others.key")
	writeConfig(t, shared, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n# an older key, still decrypting\nZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=\n")
	writeConfig(t, others, "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=\n")
	var addrs []string
	for i, keys := range []string{shared, shared, others} {
		cfgPath := filepath.Join(dir, fmt.Sprintf("fd%d.toml", i))
		writeConfig(t, cfgPath, tlsDaemonConfig(pair.CertFile, pair.KeyFile, fmt.Sprintf("  ticket_keys_file = %q", keys), b.addr))
		_, addr := startDaemon(t, cfgPath).started("web")
		addrs = append(addrs, addr)
	}
	script := `
import socket, ssl, sys
ca, first, *rest = sys.argv[1:]
for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ctx.maximum_version = version
    def fetch(addr, session=None):
        host, port = addr.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="example.com", session=session) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
                body = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    body += chunk
                assert body.startswith(b"HTTP/1.1 200") and body.endswith(b"b0"), body
                return s.session, s.session_reused
    session, reused = fetch(first)
    out = [version.name, str(reused)]
    for addr in rest:
        out.append(str(fetch(addr, session)[1]))
    print(" ".join(out))
`
	out, err := exec.Command(py, "-c", script, ca.File, addrs[0], addrs[1], addrs[2]).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	// First connection: full handshake; to the second process: resumed;
	// to the third (other keys): full handshake.
	if got, want := strings.TrimSpace(string(out)), "TLSv1_3 False True False\nTLSv1_2 False True False"; got != want {
		t.Errorf("python ssl said:\n%s\nwant:\n%s", got, want)
	}
}

func regexpMatch(re, s string) bool       { return regexp.MustCompile(re).MatchString(s) }
func regexpMust(re string) *regexp.Regexp { return regexp.MustCompile(re) }
func regexpQuote(s string) string         { return regexp.QuoteMeta(s) }
