package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"frontdoor/internal/testpki"
)

// tlsFixture holds files for the TLS cases: a pair for example.com and
// *.example.com, another for other.test, a CA, ticket keys.
type tlsFixture struct {
	site, other, expired *testpki.Pair
	ca                   *testpki.CA
	tickets, badTickets  string
}

func newTLSFixture(t *testing.T) *tlsFixture {
	ca := testpki.NewCA(t, "config test CA")
	f := &tlsFixture{
		ca:      ca,
		site:    ca.Issue(t, testpki.Leaf{Names: []string{"example.com", "*.example.com"}}),
		other:   ca.Issue(t, testpki.Leaf{Names: []string{"other.test"}}),
		expired: ca.Issue(t, testpki.Leaf{Names: []string{"old.test"}, NotAfter: time.Now().Add(-time.Hour)}),
	}
	dir := t.TempDir()
	f.tickets = filepath.Join(dir, "tickets.key")
	f.badTickets = filepath.Join(dir, "bad.key")
	write := func(name, data string) {
		if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(f.tickets, "# rotated weekly\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\nAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n")
	write(f.badTickets, "c2hvcnQ=\n")
	return f
}

// tlsListener is a config with one TLS listener carrying tlsExtra in
// [listener.tls] and routes as given.
func (f *tlsFixture) tlsListener(tlsExtra, routes string) string {
	if routes == "" {
		routes = "  [[listener.route]]\n  pool = \"api\"\n"
	}
	return `[[listener]]
name = "https"
bind = "127.0.0.1:0"
` + routes + `  [listener.tls]
  certificates = [{ cert_file = "` + f.site.CertFile + `", key_file = "` + f.site.KeyFile + `" }]
` + tlsExtra + `
[pool.api]
backends = [{ address = "127.0.0.1:9001" }]
`
}

func TestListenerTLSDefaults(t *testing.T) {
	t.Parallel()
	f := newTLSFixture(t)
	cfg, err := Parse([]byte(f.tlsListener(`  client_ca_file = "`+f.ca.File+`"
  ticket_keys_file = "`+f.tickets+`"
`, "")), "")
	if err != nil {
		t.Fatal(err)
	}
	tc := cfg.Listeners[0].TLS
	if tc.UnknownSNI != "default" || tc.MinVersion != "1.2" || strings.Join(tc.ALPN, ",") != "h2,http/1.1" ||
		tc.ClientAuth != "require" || tc.HandshakeTimeout.Duration != 10*time.Second ||
		tc.ForwardClientCert["subject"] != "X-Client-Cert-Subject" || tc.ForwardClientCert["sans"] != "X-Client-Cert-SANs" {
		t.Errorf("defaults: %+v", tc)
	}
	keys, err := ParseTicketKeys(mustRead(t, f.tickets))
	if err != nil || len(keys) != 2 || keys[1][0] != 1 {
		t.Errorf("ticket keys %v, %v", keys, err)
	}
	// Relative names are relative to the config file.
	dir := t.TempDir()
	for _, n := range []string{"a.pem", "a.key"} {
		src := f.site.CertFile
		if strings.HasSuffix(n, ".key") {
			src = f.site.KeyFile
		}
		if err := os.WriteFile(filepath.Join(dir, n), mustRead(t, src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	text := strings.Replace(f.tlsListener("", ""), `cert_file = "`+f.site.CertFile+`", key_file = "`+f.site.KeyFile+`"`, `cert_file = "a.pem", key_file = "a.key"`, 1)
	cfg, err = Parse([]byte(text), filepath.Join(dir, "frontdoor.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Listeners[0].TLS.Certificates[0].CertFile; got != filepath.Join(dir, "a.pem") {
		t.Errorf("cert_file resolved to %q", got)
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTLSErrors(t *testing.T) {
	t.Parallel()
	f := newTLSFixture(t)
	mark := func(s string) string { return s + " #<" }
	certs := func(cert, key string) string {
		return `  certificates = [{ cert_file = "` + cert + `", key_file = "` + key + `" }]`
	}
	// tlsWith replaces the certificates line.
	tlsWith := func(certLine, extra, routes string) string {
		s := f.tlsListener(extra, routes)
		return strings.Replace(s, certs(f.site.CertFile, f.site.KeyFile), certLine, 1)
	}
	missing := filepath.Join(t.TempDir(), "nope.pem")
	tcp := `[[listener]]
name = "pass"
bind = "127.0.0.1:0"
mode = "tcp"
`
	runErrCases(t, []errCase{
		{"no certificates", tlsWith(mark("  certificates = []"), "", ""), "listener[0].tls.certificates", "no certificates"},
		{"missing cert file", tlsWith(mark(certs(missing, f.site.KeyFile)), "", ""), "listener[0].tls.certificates[0]", "does not exist"},
		{"mismatched pair", tlsWith(mark(certs(f.site.CertFile, f.other.KeyFile)), "", ""), "listener[0].tls.certificates[0]",
			"certificate " + f.site.CertFile + " with key " + f.other.KeyFile + ": tls: private key does not match public key"},
		{"key is not a key", tlsWith(mark(certs(f.site.CertFile, f.site.CertFile)), "", ""), "listener[0].tls.certificates[0]", "no PEM PRIVATE KEY block"},
		{"bad unknown_sni", f.tlsListener(mark(`  unknown_sni = "drop"`), ""), "listener[0].tls.unknown_sni", "unknown unknown_sni"},
		{"bad min_version", f.tlsListener(mark(`  min_version = "1.1"`), ""), "listener[0].tls.min_version", "unknown min_version"},
		{"bad alpn", f.tlsListener(mark(`  alpn = ["h3"]`), ""), "listener[0].tls.alpn[0]", "unknown ALPN protocol"},
		{"empty alpn", f.tlsListener(mark(`  alpn = []`), ""), "listener[0].tls.alpn", "alpn is empty"},
		{"short ticket key", f.tlsListener(mark(`  ticket_keys_file = "`+f.badTickets+`"`), ""), "listener[0].tls.ticket_keys_file", "a key is 32 bytes, this one 5"},
		{"client_auth without CA", f.tlsListener(mark(`  client_auth = "require"`), ""), "listener[0].tls.client_auth", "needs client_ca_file"},
		{"bad client_auth", f.tlsListener(`  client_ca_file = "`+f.ca.File+`"`+"\n"+mark(`  client_auth = "optional"`), ""), "listener[0].tls.client_auth", "unknown client_auth"},
		{"CA file without certificates", f.tlsListener(mark(`  client_ca_file = "`+f.site.KeyFile+`"`), ""), "listener[0].tls.client_ca_file", "no PEM CERTIFICATE block"},
		{"bad client cert part", f.tlsListener(`  client_ca_file = "`+f.ca.File+`"`+"\n"+mark(`  forward_client_cert = { issuer = "X-Issuer" }`), ""),
			"listener[0].tls.forward_client_cert.issuer", "unknown client certificate part"},
		{"route host not covered", f.tlsListener("", "  [[listener.route]]\n  host = \"api.other.test\" #<\n  pool = \"api\"\n"), "listener[0].route[0].host",
			`no certificate of this listener covers host "api.other.test"`},
		{"wildcard route host needs a wildcard", f.tlsListener("", "  [[listener.route]]\n  host = \"*.a.example.com\" #<\n  pool = \"api\"\n"), "listener[0].route[0].host",
			"no certificate of this listener covers"},
		{"redirect on a TLS listener", f.tlsListener("", "  [[listener.route]]\n  redirect_https = true #<\n"), "listener[0].route[0].redirect_https", "already use"},
		{"redirect with a pool", minimal("", "  redirect_https = true #<\n", "", ""), "listener[0].route[0].redirect_https", "remove its pool"},
		{"tls on a tcp listener", tcp + "pool = \"api\"\n[listener.tls] #<\ncertificates = []\n[pool.api]\nbackends = [{ address = \"127.0.0.1:1\" }]\n",
			"listener[0].tls", "passes TLS through"},
		{"sni_route on an http listener", minimal("", "", "", "") + "[[listener.sni_route]] #<\nserver_name = \"a.test\"\npool = \"api\"\n",
			"listener[0].sni_route[0]", "sni_route is for tcp listeners"},
		{"sni_route without server_name", tcp + "[[listener.sni_route]] #<\npool = \"api\"\n[pool.api]\nbackends = [{ address = \"127.0.0.1:1\" }]\n",
			"listener[0].sni_route[0].server_name", "no server_name"},
		{"sni_route with an IP", tcp + "[[listener.sni_route]]\nserver_name = \"10.0.0.1\" #<\npool = \"api\"\n[pool.api]\nbackends = [{ address = \"127.0.0.1:1\" }]\n",
			"listener[0].sni_route[0].server_name", "never send an IP address"},
		{"sni_route duplicate", tcp + "[[listener.sni_route]]\nserver_name = \"a.test\"\npool = \"api\"\n[[listener.sni_route]]\nserver_name = \"A.test\" #<\npool = \"api\"\n[pool.api]\nbackends = [{ address = \"127.0.0.1:1\" }]\n",
			"listener[0].sni_route[1].server_name", "duplicate server_name"},
		{"sni_route to no pool", tcp + "[[listener.sni_route]]\nserver_name = \"a.test\"\npool = \"apo\" #<\n[pool.api]\nbackends = [{ address = \"127.0.0.1:1\" }]\n",
			"listener[0].sni_route[0].pool", `no pool named "apo"`},
		{"pool tls on a tcp pool", tcp + "[[listener.sni_route]]\nserver_name = \"a.test\"\npool = \"api\"\n[pool.api]\nbackends = [{ address = \"127.0.0.1:1\" }]\ntls = { server_name = \"a.test\" } #<\n",
			"pool.api.tls", "passes through end to end"},
		{"pool tls half a pair", poolCfg(mark(`tls = { cert_file = "` + f.site.CertFile + `" }`)), "pool.api.tls", "go together"},
		{"pool tls bad CA", poolCfg(mark(`tls = { ca_file = "` + missing + `" }`)), "pool.api.tls.ca_file", "does not exist"},
		{"pool tls skip with CA", poolCfg(mark(`tls = { ca_file = "` + f.ca.File + `", insecure_skip_verify = true }`)), "pool.api.tls.insecure_skip_verify", "ignored"},
	})
}

// TestTLSErrorsAtOnce: every TLS problem of a file is reported in one go.
func TestTLSErrorsAtOnce(t *testing.T) {
	t.Parallel()
	f := newTLSFixture(t)
	text := f.tlsListener(`  unknown_sni = "drop"
  min_version = "1.0"
  client_auth = "require"
`, "  [[listener.route]]\n  host = \"nowhere.test\"\n  pool = \"api\"\n")
	_, err := Parse([]byte(text), "x.toml")
	var keys []string
	for _, e := range Errors(err) {
		keys = append(keys, e.Key)
	}
	want := "listener[0].route[0].host listener[0].tls.unknown_sni listener[0].tls.min_version listener[0].tls.client_auth"
	if strings.Join(keys, " ") != want {
		t.Errorf("errors at %q, want %q:\n%v", strings.Join(keys, " "), want, err)
	}
}

func TestMatchServerName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"a.example.com", "a.example.com", true},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", ".example.com", false},
		{"*.example.com", "*.example.com", true},
		{"*.example.com", "*.a.example.com", false},
		{"a*.example.com", "ab.example.com", false},
		{"*", "a", false},
	} {
		if got := MatchServerName(tc.pattern, tc.name); got != tc.want {
			t.Errorf("MatchServerName(%q, %q) = %v", tc.pattern, tc.name, got)
		}
	}
}

func TestCertificatesExpiry(t *testing.T) {
	t.Parallel()
	f := newTLSFixture(t)
	text := strings.Replace(f.tlsListener("", ""), `" }]`, `" }, { cert_file = "`+f.expired.CertFile+`", key_file = "`+f.expired.KeyFile+`" }]`, 1)
	cfg, err := Parse([]byte(text), "")
	if err != nil {
		t.Fatal(err) // an expired certificate loads (-check refuses it)
	}
	notes := Certificates(cfg)
	if len(notes) != 2 || notes[1].Key != "listener[0].tls.certificates[1]" || notes[1].File != f.expired.CertFile ||
		!notes[1].NotAfter.Before(time.Now()) || !strings.Contains(notes[1].Subject, "old.test") {
		t.Errorf("notes: %+v", notes)
	}
}
