package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"frontdoor/config"
	"frontdoor/internal/testpki"
)

// tlsPKI is a test PKI: a server CA with a certificate for example.com and
// *.example.com, one for other.test, and a client CA with a client.
type tlsPKI struct {
	ca, clientCA  *testpki.CA
	site, other   *testpki.Pair
	client, rogue *testpki.Pair
}

func newTLSPKI(t testing.TB) *tlsPKI {
	t.Helper()
	ca := testpki.NewCA(t, "frontdoor test CA")
	cca := testpki.NewCA(t, "frontdoor client CA")
	rogueCA := testpki.NewCA(t, "rogue CA")
	return &tlsPKI{
		ca: ca, clientCA: cca,
		site:   ca.Issue(t, testpki.Leaf{Names: []string{"example.com", "*.example.com"}}),
		other:  ca.Issue(t, testpki.Leaf{Names: []string{"other.test", "127.0.0.1"}}),
		client: cca.Issue(t, testpki.Leaf{Names: []string{"svc.internal"}, CommonName: "svc-a", URIs: []string{"spiffe://test/svc-a"}, Client: true}),
		rogue:  rogueCA.Issue(t, testpki.Leaf{Names: []string{"svc.internal"}, CommonName: "svc-a", Client: true}),
	}
}

// listenerTLS renders a [listener.tls] table serving site then other,
// with extra keys.
func (k *tlsPKI) listenerTLS(extra string) string {
	return fmt.Sprintf(`  [listener.tls]
  certificates = [
    { cert_file = %q, key_file = %q },
    { cert_file = %q, key_file = %q },
  ]
%s
`, k.site.CertFile, k.site.KeyFile, k.other.CertFile, k.other.KeyFile, extra)
}

// clientConfig returns a client tls.Config trusting the test CA.
func (k *tlsPKI) clientConfig(serverName string) *tls.Config {
	return &tls.Config{RootCAs: k.ca.Pool, ServerName: serverName}
}

// tlsClient is an HTTP/1.1-only client over TLS to addr whatever the URL's
// host, with cfg.
func tlsClient(addr string, cfg *tls.Config) *http.Client {
	if cfg.NextProtos == nil {
		cfg.NextProtos = []string{"http/1.1"}
	}
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				d := tls.Dialer{Config: cfg}
				return d.DialContext(ctx, "tcp", addr)
			},
			TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}, // no h2
		},
	}
}

func readAll(t testing.TB, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// handshake dials addr and shakes hands with cfg; it returns the state or
// the error (for TLS 1.3, a client certificate refused only shows on the
// first read, which it makes too).
func handshake(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	tc := c.(*tls.Conn)
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(tc, "GET /ping HTTP/1.1\r\nHost: example.com\r\n\r\n"); err != nil {
		return tc.ConnectionState(), err
	}
	if _, err := bufio.NewReader(tc).ReadString('\n'); err != nil {
		return tc.ConnectionState(), err
	}
	return tc.ConnectionState(), nil
}

func TestTLSListener(t *testing.T) {
	t.Parallel()
	k := newTLSPKI(t)
	web := startBackend(t, "web")
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  host = "example.com"
  pool = "web"
  [[listener.route]]
  host = "*.example.com"
  pool = "web"
`+k.listenerTLS(`  hsts = "max-age=31536000"`)+poolTOML("web", `health = { check = "none" }`, web.addr), nil)
	addr := p.Addr("web").String()

	t.Run("forwarded as https", func(t *testing.T) {
		resp, err := tlsClient(addr, k.clientConfig("api.example.com")).Get("https://api.example.com/x")
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); body != "web" || resp.StatusCode != 200 {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		if resp.Header.Get("Strict-Transport-Security") != "max-age=31536000" {
			t.Errorf("HSTS: %q", resp.Header.Get("Strict-Transport-Security"))
		}
		if resp.TLS.NegotiatedProtocol != "http/1.1" || resp.TLS.Version != tls.VersionTLS13 {
			t.Errorf("ALPN %q version %x", resp.TLS.NegotiatedProtocol, resp.TLS.Version)
		}
		if h := web.header(); !strings.Contains(h, "X-Forwarded-Proto: https") {
			t.Errorf("backend saw:\n%s", h)
		}
	})
	t.Run("own answers carry HSTS", func(t *testing.T) {
		resp, err := tlsClient(addr, k.clientConfig("other.test")).Get("https://other.test/") // no route: 404
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != 404 || resp.Header.Get("Strict-Transport-Security") == "" {
			t.Errorf("%d without HSTS", resp.StatusCode)
		}
	})
	for _, tc := range []struct{ sni, want string }{
		{"example.com", "example.com"},
		{"API.Example.COM", "example.com"}, // names compare without case
		{"a.example.com", "example.com"},   // wildcard
		{"other.test", "other.test"},
		{"a.b.example.com", "example.com"}, // no certificate: the default
		{"", "example.com"},                // no SNI: the default
	} {
		t.Run("SNI "+tc.sni, func(t *testing.T) {
			cfg := &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true}
			cs, err := handshake(addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := cs.PeerCertificates[0].Subject.CommonName; got != tc.want {
				t.Errorf("SNI %q got certificate %q, want %q", tc.sni, got, tc.want)
			}
		})
	}
	if v := metricValue(t, p.reg, "frontdoor_tls_handshakes_total", map[string]string{"listener": "web", "version": "1.3", "result": "ok"}); v != 8 {
		t.Errorf("handshakes_total ok 1.3 = %v", v)
	}
	if v := metricValue(t, p.reg, "frontdoor_tls_certificate_expiry_seconds", map[string]string{"source": "listener/web", "file": k.site.CertFile}); v < 3600 || v > 86400 {
		t.Errorf("certificate expiry %v seconds", v)
	}
}

func TestTLSRefusals(t *testing.T) {
	t.Parallel()
	k := newTLSPKI(t)
	web := startBackend(t, "web")
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "web"
`+k.listenerTLS(`  unknown_sni = "refuse"
  min_version = "1.3"
  alpn = ["http/1.1"]
  handshake_timeout = "300ms"`)+poolTOML("web", `health = { check = "none" }`, web.addr), nil)
	addr := p.Addr("web").String()
	reason := func(r string) float64 {
		return metricValue(t, p.reg, "frontdoor_tls_handshake_errors_total", map[string]string{"listener": "web", "reason": r})
	}
	cases := []struct {
		name   string
		cfg    *tls.Config
		reason string
		alert  string
	}{
		{"unknown name", &tls.Config{ServerName: "nobody.test", InsecureSkipVerify: true}, "unknown_sni", "unrecognized name"},
		{"no SNI", &tls.Config{InsecureSkipVerify: true}, "unknown_sni", "unrecognized name"},
		{"TLS 1.2 only", &tls.Config{ServerName: "example.com", InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}, "version", "protocol version"},
		{"h2 only", &tls.Config{ServerName: "example.com", InsecureSkipVerify: true, NextProtos: []string{"h2"}}, "alpn", "no application protocol"},
		{"our certificate refused", &tls.Config{ServerName: "example.com"}, "client_alert", ""}, // the client does not trust the test CA
	}
	for _, tc := range cases {
		_, err := handshake(addr, tc.cfg)
		if err == nil {
			t.Errorf("%s: handshake succeeded", tc.name)
			continue
		}
		if tc.alert != "" && !strings.Contains(err.Error(), tc.alert) {
			t.Errorf("%s: %v, want alert %q", tc.name, err, tc.alert)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !(reason("unknown_sni") == 2 && reason("version") == 1 && reason("alpn") == 1 && reason("client_alert") == 1) {
		if time.Now().After(deadline) {
			var got []string
			for _, r := range tlsReasonNames {
				if v := reason(r); v > 0 {
					got = append(got, fmt.Sprintf("%s=%v", r, v))
				}
			}
			t.Fatalf("refusals counted: %v; want unknown_sni=2 version=1 alpn=1 client_alert=1", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A good client still gets through.
	if _, err := handshake(addr, k.clientConfig("example.com")); err != nil {
		t.Fatal(err)
	}
}

// TestTLSBadInput sends what is not a proper ClientHello: each connection
// is closed promptly (at the latest at handshake_timeout), counted by
// reason, and the listener keeps serving.
func TestTLSBadInput(t *testing.T) {
	t.Parallel()
	k := newTLSPKI(t)
	web := startBackend(t, "web")
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "web"
`+k.listenerTLS(`  handshake_timeout = "500ms"`)+poolTOML("web", `health = { check = "none" }`, web.addr), nil)
	addr := p.Addr("web").String()
	hello := clientHelloBytes(t, "example.com")
	huge := append([]byte{22, 3, 1, 0x40, 0, 1, 0, 0x5f, 0xfc}, make([]byte, 0x4000-4)...) // announces 24 KiB
	for _, tc := range []struct {
		name   string
		send   []byte
		close  bool // half-close after sending
		reason string
	}{
		{"plain HTTP", []byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), false, "not_tls"},
		{"garbage", []byte{0x00, 0xff, 0x13, 0x37, 0x42, 0x42, 0x42, 0x42}, false, "not_tls"},
		{"truncated hello", hello[:len(hello)/2], true, "truncated"},
		{"slow hello", hello[:20], false, "timeout"},
		{"oversized hello", huge, false, "oversized"},
		{"not a hello", append([]byte{22, 3, 1, 0, 4}, 2, 0, 0, 0), false, "bad_hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := metricValue(t, p.reg, "frontdoor_tls_handshake_errors_total", map[string]string{"listener": "web", "reason": tc.reason})
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			if _, err := c.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if tc.close {
				_ = c.(*net.TCPConn).CloseWrite()
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil && !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset") {
				t.Fatalf("read: %v", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("closed after %v", d)
			}
			if len(got) > 7 { // at most a TLS alert
				t.Errorf("answered %q", got)
			}
			waitFor(t, 5*time.Second, tc.reason+" counted", func() bool {
				return metricValue(t, p.reg, "frontdoor_tls_handshake_errors_total", map[string]string{"listener": "web", "reason": tc.reason}) == before+1
			})
		})
	}
	resp, err := tlsClient(addr, k.clientConfig("example.com")).Get("https://example.com/")
	if err != nil {
		t.Fatal(err)
	}
	if readAll(t, resp) != "web" {
		t.Error("not serving after bad input")
	}
}

// clientHelloBytes returns a ClientHello as crypto/tls sends it.
func clientHelloBytes(t testing.TB, sni string) []byte {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		if err == nil {
			_ = c.Close()
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64<<10)
	n, err := io.ReadAtLeast(c, buf, 5)
	if err != nil {
		t.Fatal(err)
	}
	for need := 5 + int(buf[3])<<8 | int(buf[4]); n < need; {
		m, err := c.Read(buf[n:])
		if err != nil {
			t.Fatal(err)
		}
		n += m
	}
	return buf[:n]
}

// TestTLSClientCerts covers mTLS: refusals with the right alert, the
// verified identity forwarded, forged identity headers stripped.
func TestTLSClientCerts(t *testing.T) {
	t.Parallel()
	k := newTLSPKI(t)
	web := startBackend(t, "web")
	toml := func(auth string) string {
		return listenerTOML + `
  [[listener.route]]
  pool = "web"
` + k.listenerTLS(fmt.Sprintf(`  client_ca_file = %q
  client_auth = %q
  forward_client_cert = { subject = "X-Client-Subject", sans = "X-Client-SANs", fingerprint = "X-Client-Fingerprint" }`, k.clientCA.File, auth)) +
			`[[listener]]
name = "plain"
bind = "127.0.0.1:0"
  [[listener.route]]
  pool = "web"
` + poolTOML("web", `health = { check = "none" }`, web.addr)
	}
	p := startProxy(t, toml("require"), nil)
	addr := p.Addr("web").String()
	withCert := func(pair *testpki.Pair) *tls.Config {
		cfg := k.clientConfig("example.com")
		if pair != nil {
			// Sent whatever CAs the server names (crypto/tls would hold
			// back a certificate of another CA).
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair.TLS, nil }
		}
		return cfg
	}
	forged := func(c *http.Client, url string) *http.Response {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("X-Client-Subject", "CN=admin")
		req.Header.Set("x-client-sans", "DNS:admin")
		req.Header.Set("X-Client-Fingerprint", "00")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		return resp
	}

	for _, tc := range []struct {
		name, alert, reason string
		cfg                 *tls.Config
	}{
		{"no certificate, TLS 1.3", "certificate required", "no_client_cert", withCert(nil)},
		{"another CA, TLS 1.3", "unknown certificate authority", "bad_client_cert", withCert(k.rogue)},
	} {
		_, err := handshake(addr, tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.alert) {
			t.Errorf("%s: %v, want alert %q", tc.name, err, tc.alert)
		}
		waitFor(t, 5*time.Second, tc.reason+" counted", func() bool {
			return metricValue(t, p.reg, "frontdoor_tls_handshake_errors_total", map[string]string{"listener": "web", "reason": tc.reason}) >= 1
		})
	}
	cfg12 := withCert(nil)
	cfg12.MaxVersion = tls.VersionTLS12
	if _, err := handshake(addr, cfg12); err == nil || !strings.Contains(err.Error(), "handshake failure") {
		t.Errorf("no certificate, TLS 1.2: %v", err)
	}

	resp := forged(tlsClient(addr, withCert(k.client)), "https://example.com/")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	h := web.header()
	for _, want := range []string{"X-Client-Subject: CN=svc-a,O=frontdoor tests", "X-Client-Sans: DNS:svc.internal, URI:spiffe://test/svc-a", "X-Client-Fingerprint: "} {
		if !strings.Contains(h, want) {
			t.Errorf("backend saw no %q:\n%s", want, h)
		}
	}
	if strings.Contains(h, "admin") || strings.Count(h, "X-Client-Fingerprint") != 1 || strings.Contains(h, "X-Client-Fingerprint: 00") {
		t.Errorf("forged identity reached the backend:\n%s", h)
	}
	// Through the plain listener, the headers are stripped too.
	forged(http.DefaultClient, p.url(t, "plain", "/"))
	if h := web.header(); strings.Contains(h, "X-Client") {
		t.Errorf("forged identity reached the backend through the plain listener:\n%s", h)
	}

	// verify_if_given: no certificate is fine, and sends no identity.
	cfg := mustParse(t, toml("verify_if_given"))
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	forged(tlsClient(addr, withCert(nil)), "https://example.com/")
	if h := web.header(); strings.Contains(h, "X-Client") {
		t.Errorf("forged identity reached the backend:\n%s", h)
	}
	if _, err := handshake(addr, withCert(k.rogue)); err == nil {
		t.Error("verify_if_given accepted a certificate of another CA")
	}
}

// TestTLSReload: a reload swaps certificates for new handshakes; a bad pair
// fails the reload, naming the file, and the old certificates keep
// serving; an open connection is untouched.
func TestTLSReload(t *testing.T) {
	t.Parallel()
	k := newTLSPKI(t)
	web := startBackend(t, "web")
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "site.pem"), filepath.Join(dir, "site.key")
	install := func(p *testpki.Pair) {
		if err := os.WriteFile(cert, p.CertPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(key, p.KeyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	install(k.site)
	toml := listenerTOML + `
  [[listener.route]]
  pool = "web"
  [listener.tls]
  certificates = [{ cert_file = "` + cert + `", key_file = "` + key + `" }]
` + poolTOML("web", `health = { check = "none" }`, web.addr)
	p := startProxy(t, toml, nil)
	addr := p.Addr("web").String()
	serial := func() string {
		cs, err := handshake(addr, &tls.Config{ServerName: "example.com", InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		return cs.PeerCertificates[0].SerialNumber.String()
	}
	open := tlsClient(addr, k.clientConfig("example.com"))
	if resp, err := open.Get("https://example.com/"); err != nil {
		t.Fatal(err)
	} else {
		readAll(t, resp)
	}

	renewed := k.ca.Issue(t, testpki.Leaf{Names: []string{"example.com"}})
	install(renewed)
	if err := p.Apply(mustParse(t, toml)); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != renewed.Leaf.SerialNumber.String() {
		t.Errorf("after reload serial %s, want %s", got, renewed.Leaf.SerialNumber)
	}
	// A mismatched pair: the config loaded before the files changed, the
	// apply fails naming the files, the renewed certificate keeps serving.
	cfg := mustParse(t, toml)
	if err := os.WriteFile(key, k.other.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	err := p.Apply(cfg)
	if err == nil || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "private key does not match public key") {
		t.Errorf("apply with a bad pair: %v", err)
	}
	if got := serial(); got != renewed.Leaf.SerialNumber.String() {
		t.Errorf("after a failed reload serial %s", got)
	}
	// The connection opened before the reloads still works.
	if resp, err := open.Get("https://example.com/again"); err != nil {
		t.Fatal(err)
	} else if readAll(t, resp) != "web" {
		t.Error("open connection broken")
	}
}

func mustParse(t testing.TB, toml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(toml), "test.toml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// startTLSBackend runs an HTTPS (HTTP/1.1) backend with pair's
// certificate that answers "name tls=VERSION client=CN" and /healthz; with
// clientCA it requires a client certificate from that CA.
func startTLSBackend(t testing.TB, name string, pair *testpki.Pair, clientCA *testpki.CA) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := pair.ServerConfig()
	cfg.NextProtos = []string{"http/1.1"}
	if clientCA != nil {
		cfg.ClientCAs = clientCA.Pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cn := ""
			if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
				cn = r.TLS.PeerCertificates[0].Subject.CommonName
			}
			fmt.Fprintf(w, "%s tls=%t client=%s", name, r.TLS != nil, cn)
		}),
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go func() { _ = srv.Serve(tls.NewListener(ln, cfg)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// TestBackendTLS: pools with tls reach HTTPS backends (verified against
// ca_file by default, with a client certificate when set, checked over
// TLS), through the event loop's listener (handed to the goroutine engine)
// and a TLS listener alike; a backend whose certificate does not verify
// is never used.
func TestBackendTLS(t *testing.T) {
	t.Parallel()
	k := newTLSPKI(t)
	backendCert := k.ca.Issue(t, testpki.Leaf{Names: []string{"api.internal", "127.0.0.1"}})
	plain := startTLSBackend(t, "plain-tls", backendCert, nil)
	mtls := startTLSBackend(t, "mtls", backendCert, k.clientCA)
	stranger := startTLSBackend(t, "stranger", testpki.NewCA(t, "other CA").Issue(t, testpki.Leaf{Names: []string{"api.internal"}}), nil)
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  path_prefix = "/plain"
  pool = "plain"
  [[listener.route]]
  path_prefix = "/mtls"
  pool = "mtls"
  [[listener.route]]
  path_prefix = "/stranger"
  pool = "stranger"
  [[listener.route]]
  path_prefix = "/skip"
  pool = "skip"
[[listener]]
name = "https"
bind = "127.0.0.1:0"
  [[listener.route]]
  pool = "plain"
`+k.listenerTLS("")+
		poolTOML("plain", fmt.Sprintf("tls = { ca_file = %q, server_name = \"api.internal\" }\n[pool.plain.health]\ncheck = \"http\"\ninterval = \"200ms\"", k.ca.File), plain)+
		poolTOML("mtls", fmt.Sprintf("tls = { ca_file = %q, cert_file = %q, key_file = %q }\n[pool.mtls.health]\ncheck = \"tcp\"\ninterval = \"200ms\"", k.ca.File, k.client.CertFile, k.client.KeyFile), mtls)+
		poolTOML("stranger", fmt.Sprintf("tls = { ca_file = %q }\nretries = 0\nhealth = { check = \"none\" }", k.ca.File), stranger)+
		poolTOML("skip", "tls = { insecure_skip_verify = true }\nhealth = { check = \"none\" }", stranger), nil)

	web := p.url(t, "web", "")
	for _, tc := range []struct{ path, want string }{
		{"/plain", "plain-tls tls=true client="},
		{"/mtls", "mtls tls=true client=svc-a"}, // IP SAN checked: no server_name
		{"/skip", "stranger tls=true client="},
	} {
		for i := range 3 { // new and pooled connections
			resp, err := http.Get(web + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if body := readAll(t, resp); body != tc.want {
				t.Errorf("%s #%d: %d %q, want %q", tc.path, i, resp.StatusCode, body, tc.want)
			}
		}
	}
	resp, err := tlsClient(p.Addr("https").String(), k.clientConfig("example.com")).Get("https://example.com/")
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); body != "plain-tls tls=true client=" {
		t.Errorf("through the TLS listener: %q", body)
	}
	// Verification is on by default: a certificate of another CA fails
	// the connect (502, counted as connect).
	resp, err = http.Get(web + "/stranger")
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != 502 {
		t.Errorf("stranger: %d %q", resp.StatusCode, body)
	}
	if v := metricValue(t, p.reg, "frontdoor_upstream_errors_total", map[string]string{"pool": "stranger", "reason": "connect"}); v != 1 {
		t.Errorf("connect errors %v", v)
	}
	// The checks went over TLS: the pools are up.
	for _, pool := range []string{"plain", "mtls"} {
		if v := metricValue(t, p.reg, "frontdoor_health_checks_total", map[string]string{"pool": pool, "result": "success"}); v < 1 {
			t.Errorf("pool %s: no successful TLS check", pool)
		}
		if v := metricValue(t, p.reg, "frontdoor_health_checks_total", map[string]string{"pool": pool, "result": "failure"}); v != 0 {
			t.Errorf("pool %s: %v failed TLS checks", pool, v)
		}
	}
}

// TestSNIPassthroughConfig: a tcp listener with sni_route sends TLS
// connections by name to pools, still encrypted, and others to its pool.
func TestSNIPassthroughConfig(t *testing.T) {
	t.Parallel()
	k := newTLSPKI(t)
	a := startTLSBackend(t, "a", k.site, nil)
	b := startTLSBackend(t, "b", k.other, nil)
	p := startProxy(t, `
[admin]
bind = "off"
[log]
access = "off"
[[listener]]
name = "pass"
bind = "127.0.0.1:0"
mode = "tcp"
pool = "b"
  [[listener.sni_route]]
  server_name = "*.example.com"
  pool = "a"
`+poolTOML("a", `health = { check = "none" }`, a)+poolTOML("b", `health = { check = "none" }`, b), nil)
	addr := p.Addr("pass").String()
	for _, tc := range []struct{ sni, want string }{
		{"api.example.com", "a tls=true client="},
		{"other.test", "b tls=true client="},
	} {
		resp, err := tlsClient(addr, k.clientConfig(tc.sni)).Get("https://" + tc.sni + "/")
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); body != tc.want {
			t.Errorf("%s: %q, want %q", tc.sni, body, tc.want)
		}
	}
	if v := metricValue(t, p.reg, "frontdoor_tls_handshakes_total", map[string]string{"listener": "pass", "result": "ok"}); v != 2 {
		t.Errorf("routed %v", v)
	}
}

// TestRedirectHTTPS: the :80 half of an edge answers 308 to https, on the
// event loop and the goroutine engine alike, keeping path and query.
func TestRedirectHTTPS(t *testing.T) {
	t.Parallel()
	web := startBackend(t, "web")
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  redirect_https = true
  [[listener.route]]
  path_prefix = "/.well-known/acme-challenge/"
  pool = "web"
`+poolTOML("web", `health = { check = "none" }`, web.addr), nil)
	addr := p.Addr("web").String()
	for _, tc := range []struct{ name, req, want string }{
		{"event loop", "GET /a/b?c=d HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", "https://example.com/a/b?c=d"},
		{"goroutine engine (HTTP/1.0)", "GET /x HTTP/1.0\r\nHost: example.com\r\n\r\n", "https://example.com/x"},
		{"absolute form", "GET http://example.com/abs?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n", "https://example.com/abs?q=1"},
		{"IPv6 host", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", "https://[::1]/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
			if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != tc.want {
				t.Errorf("%d Location %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), tc.want)
			}
		})
	}
	// A longer route still reaches its pool.
	resp, err := http.Get("http://" + addr + "/.well-known/acme-challenge/token")
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); body != "web" {
		t.Errorf("ACME path: %d %q", resp.StatusCode, body)
	}
	if v := metricValue(t, p.reg, "frontdoor_requests_total", map[string]string{"listener": "web", "pool": "", "code": "3xx"}); v != 4 {
		t.Errorf("3xx counted %v", v)
	}
}

// TestTLSAcceptProxy: on a TLS listener with accept_proxy, the PROXY
// header comes first, then the handshake; its source is the client.
func TestTLSAcceptProxy(t *testing.T) {
	t.Parallel()
	k := newTLSPKI(t)
	web := startBackend(t, "web")
	p := startProxy(t, listenerTOML+`accept_proxy = true
  [[listener.route]]
  pool = "web"
`+k.listenerTLS("")+poolTOML("web", `health = { check = "none" }`, web.addr), nil)
	c, err := net.Dial("tcp", p.Addr("web").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "PROXY TCP4 192.0.2.7 198.51.100.1 4321 443\r\n"); err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, k.clientConfig("example.com"))
	if _, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); body != "web" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if h := web.header(); !strings.Contains(h, "X-Forwarded-For: 192.0.2.7") || !strings.Contains(h, "X-Forwarded-Proto: https") {
		t.Errorf("backend saw:\n%s", h)
	}
}

// TestTLSTicketKeys: sessions resume across a reload with the automatic
// keys; with ticket_keys_file, a new first key still decrypts tickets made
// under the old one while it stays in the file, and not once it is gone.
func TestTLSTicketKeys(t *testing.T) {
	t.Parallel()
	k := newTLSPKI(t)
	web := startBackend(t, "web")
	keys := filepath.Join(t.TempDir(), "tickets.key")
	const oldKey, newKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
	toml := func(extra string) string {
		return listenerTOML + `
  [[listener.route]]
  pool = "web"
` + k.listenerTLS(extra) + poolTOML("web", `health = { check = "none" }`, web.addr)
	}
	p := startProxy(t, toml(""), nil)
	addr := p.Addr("web").String()
	cache := tls.NewLRUClientSessionCache(8)
	resumed := func() bool {
		cfg := k.clientConfig("example.com")
		cfg.ClientSessionCache = cache
		cs, err := handshake(addr, cfg) // reads an answer: the ticket has arrived
		if err != nil {
			t.Fatal(err)
		}
		return cs.DidResume
	}
	if resumed() || !resumed() {
		t.Fatal("the second connection did not resume")
	}
	if err := p.Apply(mustParse(t, toml(""))); err != nil {
		t.Fatal(err)
	}
	if !resumed() {
		t.Error("a reload ended resumption with the automatic keys")
	}

	write := func(s string) {
		if err := os.WriteFile(keys, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	withFile := toml(`  ticket_keys_file = "` + keys + `"`)
	write(oldKey + "\n")
	if err := p.Apply(mustParse(t, withFile)); err != nil {
		t.Fatal(err)
	}
	resumed() // a ticket under the old key
	write(newKey + "\n" + oldKey + "\n")
	if err := p.Apply(mustParse(t, withFile)); err != nil {
		t.Fatal(err)
	}
	if !resumed() {
		t.Error("a ticket of the second key did not resume")
	}
	resumed() // now a ticket under the new key
	write(newKey + "\n")
	if err := p.Apply(mustParse(t, withFile)); err != nil {
		t.Fatal(err)
	}
	if !resumed() {
		t.Error("a ticket of the first key did not resume")
	}
	cache2 := tls.NewLRUClientSessionCache(8)
	cache = cache2
	resumed()
	write(oldKey + "\n") // the new key dropped: its tickets are void
	if err := p.Apply(mustParse(t, withFile)); err != nil {
		t.Fatal(err)
	}
	if resumed() {
		t.Error("a ticket of a removed key resumed")
	}
	if v := metricValue(t, p.reg, "frontdoor_tls_resumed_total", map[string]string{"listener": "web"}); v < 4 {
		t.Errorf("resumed_total %v", v)
	}
}
