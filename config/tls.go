package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
)

// ListenerTLS is the [listener.tls] table of an http listener: TLS
// termination with certificates chosen by SNI.
type ListenerTLS struct {
	// Certificates are PEM certificate chains and their keys, at least one.
	// A handshake gets the certificate whose SANs match the client's
	// server name (an exact name before a wildcard, the first listed
	// first); the first one is the default.
	Certificates []Certificate `toml:"certificates"`
	// UnknownSNI says what a client without SNI, or with a name no
	// certificate covers, gets: "default" (the first certificate, the
	// default) or "refuse" (the handshake fails with unrecognized_name).
	UnknownSNI string `toml:"unknown_sni"`
	// MinVersion is the lowest TLS version accepted: "1.2" (default) or
	// "1.3".
	MinVersion string `toml:"min_version"`
	// ALPN lists the application protocols offered, in order of
	// preference, from "h2" and "http/1.1". Default ["h2", "http/1.1"].
	ALPN []string `toml:"alpn"`
	// TicketKeysFile holds session ticket keys, one a line, each 32 random
	// bytes in base64 (`openssl rand -base64 32`); the first encrypts new
	// tickets, all decrypt. Instances sharing the file resume each other's
	// sessions. Default "": random keys per process, rotated every 24
	// hours and valid for 7 days (crypto/tls's own rotation), kept across
	// reloads.
	TicketKeysFile string `toml:"ticket_keys_file"`
	// ClientCAFile, when set, is a PEM bundle of the CAs client
	// certificates must chain to (mTLS). Default "": no client certificates.
	ClientCAFile string `toml:"client_ca_file"`
	// ClientAuth is "require" (default with ClientCAFile: a handshake
	// without a valid client certificate fails) or "verify_if_given" (a
	// client may send none; one it sends must be valid).
	ClientAuth string `toml:"client_auth"`
	// ForwardClientCert maps parts of a verified client certificate
	// ("subject", "sans", "fingerprint") to the request header that
	// carries them to the backend. Incoming copies of these headers are
	// always removed first, on every listener. Default with ClientCAFile:
	// { subject = "X-Client-Cert-Subject", sans = "X-Client-Cert-SANs" }.
	ForwardClientCert map[string]string `toml:"forward_client_cert"`
	// HSTS, when set, is the Strict-Transport-Security value added to
	// every answer, e.g. "max-age=31536000". Default "": none.
	HSTS string `toml:"hsts"`
	// HandshakeTimeout bounds the TLS handshake, from the first byte of
	// the ClientHello to the end of the handshake. Default 10s.
	HandshakeTimeout Duration `toml:"handshake_timeout"`
}

// Certificate is one { cert_file, key_file } pair of [listener.tls].
type Certificate struct {
	// CertFile is the PEM certificate chain, leaf first. Required.
	CertFile string `toml:"cert_file"`
	// KeyFile is the PEM private key of the leaf. Required.
	KeyFile string `toml:"key_file"`
}

// SNIRoute is one [[listener.sni_route]] of a tcp listener: connections
// whose ClientHello names ServerName go to Pool, still encrypted.
type SNIRoute struct {
	// ServerName is an exact name ("db.example.com") or a wildcard
	// ("*.example.com": one or more labels in front of the suffix).
	// Required.
	ServerName string `toml:"server_name"`
	// Pool names a [pool.NAME] table. Required.
	Pool string `toml:"pool"`
}

// PoolTLS is a pool's tls = { ... } setting: TLS to its backends.
type PoolTLS struct {
	// ServerName is the name sent as SNI and checked against the backend's
	// certificate. Default "": the backend address's host (an IP address
	// is checked against the certificate's IP SANs).
	ServerName string `toml:"server_name"`
	// CAFile is a PEM bundle of the CAs backend certificates must chain
	// to. Default "": the system's roots.
	CAFile string `toml:"ca_file"`
	// CertFile and KeyFile, both or neither, are the client certificate
	// presented to backends that ask for one (mTLS). Default "": none.
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// InsecureSkipVerify turns certificate verification off: anyone on
	// the path can then read and change the traffic. Default false.
	InsecureSkipVerify bool `toml:"insecure_skip_verify"`
}

// TLS settings' values and defaults.
const (
	TLSUnknownSNIDefault    = "default"
	TLSUnknownSNIRefuse     = "refuse"
	TLSClientRequire        = "require"
	TLSClientIfGiven        = "verify_if_given"
	defaultTLSMinVersion    = "1.2"
	defaultHandshakeTimeout = 10 * time.Second
	// CertExpiryWarning is how close to its expiry a certificate makes
	// -check and the process log warn.
	CertExpiryWarning = 14 * 24 * time.Hour
)

var (
	defaultALPN              = []string{"h2", "http/1.1"}
	defaultForwardClientCert = map[string]string{"subject": "X-Client-Cert-Subject", "sans": "X-Client-Cert-SANs"}
	clientCertParts          = []string{"fingerprint", "sans", "subject"}
)

// TLSVersion returns the crypto/tls version of a min_version value ("1.2"
// or "1.3"), or 0.
func TLSVersion(s string) uint16 {
	switch s {
	case "1.2":
		return tls.VersionTLS12
	case "1.3":
		return tls.VersionTLS13
	}
	return 0
}

// tlsDefaults fills the defaults of a listener's [listener.tls] and a
// pool's tls, and resolves their file names against dir; p is the
// listener's path. It returns copies: the decoded values are not changed.
func tlsListenerDefaults(l *Listener, p, dir string, set map[string]bool) {
	if l.SNIRoutes != nil {
		l.SNIRoutes = slices.Clone(l.SNIRoutes)
	}
	if l.TLS == nil {
		return
	}
	t := *l.TLS
	t.Certificates = slices.Clone(t.Certificates)
	for i := range t.Certificates {
		t.Certificates[i].CertFile = resolve(dir, t.Certificates[i].CertFile)
		t.Certificates[i].KeyFile = resolve(dir, t.Certificates[i].KeyFile)
	}
	if t.UnknownSNI == "" {
		t.UnknownSNI = TLSUnknownSNIDefault
	}
	if t.MinVersion == "" {
		t.MinVersion = defaultTLSMinVersion
	}
	if !set[p+".tls.alpn"] {
		t.ALPN = slices.Clone(defaultALPN)
	} else {
		t.ALPN = slices.Clone(t.ALPN)
	}
	t.TicketKeysFile = resolve(dir, t.TicketKeysFile)
	t.ClientCAFile = resolve(dir, t.ClientCAFile)
	if t.ClientCAFile != "" {
		if t.ClientAuth == "" {
			t.ClientAuth = TLSClientRequire
		}
		if !set[p+".tls.forward_client_cert"] {
			t.ForwardClientCert = defaultForwardClientCert
		}
	}
	t.ForwardClientCert = cloneMap(t.ForwardClientCert)
	if !set[p+".tls.handshake_timeout"] {
		t.HandshakeTimeout.Duration = defaultHandshakeTimeout
	}
	l.TLS = &t
}

func tlsPoolDefaults(pl *Pool, dir string) {
	if pl.TLS == nil {
		return
	}
	t := *pl.TLS
	t.CAFile = resolve(dir, t.CAFile)
	t.CertFile = resolve(dir, t.CertFile)
	t.KeyFile = resolve(dir, t.KeyFile)
	pl.TLS = &t
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// listenerTLS checks [listener.tls] of listener l at path p.
func (v *validator) listenerTLS(p string, l *Listener) {
	t := l.TLS
	if t == nil {
		return
	}
	tp := p + ".tls"
	if l.Mode == modeTCP {
		v.add(tp, `tls terminates TLS on http listeners; a tcp listener passes TLS through as it is: remove [listener.tls], and route by server name with [[listener.sni_route]] if needed`)
		return
	}
	if len(t.Certificates) == 0 {
		v.add(tp+".certificates", `no certificates; add certificates = [{ cert_file = "site.pem", key_file = "site.key" }]`)
	}
	var leaves []*x509.Certificate
	for i, c := range t.Certificates {
		cp := indexKey(tp+".certificates", i)
		leaf, msg := checkCertPair(c.CertFile, c.KeyFile)
		if msg != "" {
			v.add(cp, "%s", msg)
			continue
		}
		leaves = append(leaves, leaf)
	}
	switch t.UnknownSNI {
	case TLSUnknownSNIDefault, TLSUnknownSNIRefuse:
	default:
		v.add(tp+".unknown_sni", "%s", enumMsg("unknown_sni", t.UnknownSNI, []string{TLSUnknownSNIDefault, TLSUnknownSNIRefuse}))
	}
	if TLSVersion(t.MinVersion) == 0 {
		v.add(tp+".min_version", "%s", enumMsg("min_version", t.MinVersion, []string{"1.2", "1.3"}))
	}
	if len(t.ALPN) == 0 {
		v.add(tp+".alpn", `alpn is empty; offer at least one of "h2" and "http/1.1"`)
	}
	for j, a := range t.ALPN {
		switch {
		case a != "h2" && a != "http/1.1":
			v.add(indexKey(tp+".alpn", j), "%s", enumMsg("ALPN protocol", a, []string{"h2", "http/1.1"}))
		case slices.Index(t.ALPN, a) < j:
			v.add(indexKey(tp+".alpn", j), "%q is listed twice", a)
		}
	}
	if f := t.TicketKeysFile; f != "" {
		if msg := checkReadable(f); msg != "" {
			v.add(tp+".ticket_keys_file", "%s", msg)
		} else if data, err := os.ReadFile(f); err == nil {
			if _, err := ParseTicketKeys(data); err != nil {
				v.add(tp+".ticket_keys_file", "%s: %s", f, err)
			}
		}
	}
	if t.ClientCAFile == "" {
		if t.ClientAuth != "" {
			v.add(tp+".client_auth", "client_auth needs client_ca_file, the CAs client certificates are checked against; add it or remove client_auth")
		}
		if len(t.ForwardClientCert) > 0 {
			v.add(tp+".forward_client_cert", "forward_client_cert needs client_ca_file: without it no client certificate is asked for; add it or remove forward_client_cert")
		}
	} else {
		if _, msg := readCertPool(t.ClientCAFile); msg != "" {
			v.add(tp+".client_ca_file", "%s", msg)
		}
		switch t.ClientAuth {
		case TLSClientRequire, TLSClientIfGiven:
		default:
			v.add(tp+".client_auth", "%s", enumMsg("client_auth", t.ClientAuth, []string{TLSClientRequire, TLSClientIfGiven}))
		}
	}
	seen := map[string]string{}
	for _, part := range sortedNames(t.ForwardClientCert) {
		h := t.ForwardClientCert[part]
		hp := joinKey(tp+".forward_client_cert", part)
		if !slices.Contains(clientCertParts, part) {
			v.add(hp, "unknown client certificate part %q; use %s", part, strings.Join(clientCertParts, ", "))
		}
		if !isToken(h) {
			v.add(hp, "bad header name %q", h)
		} else if other, dup := seen[strings.ToLower(h)]; dup {
			v.add(hp, "header %q also carries %q; give each part its own header", h, other)
		} else {
			seen[strings.ToLower(h)] = part
		}
	}
	if strings.ContainsAny(t.HSTS, "\r\n") {
		v.add(tp+".hsts", "hsts must be one line, e.g. \"max-age=31536000\"")
	}
	v.positiveDuration(tp+".handshake_timeout", t.HandshakeTimeout)
	// Every host a route names must be covered by a certificate, or its
	// clients would be handed one for another name.
	if len(leaves) == len(t.Certificates) {
		for j, r := range l.Routes {
			if r.Host == "" || checkHostPattern(r.Host) != "" {
				continue
			}
			if !certsCover(leaves, r.Host) {
				v.add(indexKey(p+".route", j)+".host", "no certificate of this listener covers host %q: clients asking for it would get %s; add a certificate whose SANs include it (or a wildcard over it)",
					r.Host, unknownSNIOutcome(t.UnknownSNI))
			}
		}
	}
	for j, r := range l.Routes {
		if r.RedirectHTTPS {
			v.add(indexKey(p+".route", j)+".redirect_https", "redirect_https on a TLS listener would send clients to the address they already use; put it on the plain listener (:80)")
		}
	}
}

func unknownSNIOutcome(mode string) string {
	if mode == TLSUnknownSNIRefuse {
		return "a refused handshake"
	}
	return "the first certificate, for other names"
}

// sniRoutes checks the [[listener.sni_route]] tables of listener l.
func (v *validator) sniRoutes(c *Config, p string, l *Listener) {
	if len(l.SNIRoutes) == 0 {
		return
	}
	if l.Mode != modeTCP {
		v.add(indexKey(p+".sni_route", 0), `sni_route is for tcp listeners (TLS passthrough); an http listener with [listener.tls] routes by host with [[listener.route]]`)
		return
	}
	seen := map[string]string{}
	for j, r := range l.SNIRoutes {
		rp := indexKey(p+".sni_route", j)
		name := strings.ToLower(strings.TrimSuffix(r.ServerName, "."))
		switch {
		case r.ServerName == "":
			v.add(rp+".server_name", `sni_route has no server_name; set server_name = "db.example.com" or "*.example.com"`)
		case isIP(name) || checkHostPattern(name) != "":
			v.add(rp+".server_name", `bad server_name %q: use an exact DNS name such as "db.example.com" or a wildcard such as "*.example.com" (clients never send an IP address as SNI)`, r.ServerName)
		default:
			if first, dup := seen[name]; dup {
				v.add(rp+".server_name", "duplicate server_name %q (also %s)", r.ServerName, v.at(first))
			} else {
				seen[name] = rp
			}
		}
		v.poolRef(c, rp+".pool", r.Pool, "sni_route")
	}
}

// poolTLS checks a pool's tls setting.
func (v *validator) poolTLS(p string, pl *Pool, usedByTCP string) {
	t := pl.TLS
	if t == nil {
		return
	}
	tp := p + ".tls"
	if usedByTCP != "" {
		v.add(tp, "%scopies bytes as they are (TLS passes through end to end); remove tls or use a separate pool", usedByTCP)
	}
	if t.ServerName != "" && !isHostname(t.ServerName) && !isIP(t.ServerName) {
		v.add(tp+".server_name", "bad server_name %q: use the DNS name the backends' certificates carry", t.ServerName)
	}
	if t.CAFile != "" {
		if _, msg := readCertPool(t.CAFile); msg != "" {
			v.add(tp+".ca_file", "%s", msg)
		}
	}
	switch {
	case (t.CertFile == "") != (t.KeyFile == ""):
		v.add(tp, "cert_file and key_file go together: set both for a client certificate, or neither")
	case t.CertFile != "":
		if _, msg := checkCertPair(t.CertFile, t.KeyFile); msg != "" {
			v.add(tp+".cert_file", "%s", msg)
		}
	}
	if t.InsecureSkipVerify && (t.CAFile != "" || t.ServerName != "") {
		v.add(tp+".insecure_skip_verify", "insecure_skip_verify turns verification off, so ca_file and server_name would be ignored; remove one or the other")
	}
}

// checkCertPair loads a certificate chain and its key and returns the leaf,
// or a message naming the file and what is wrong.
func checkCertPair(certFile, keyFile string) (*x509.Certificate, string) {
	switch {
	case certFile == "":
		return nil, `certificate has no cert_file; set cert_file = "site.pem"`
	case keyFile == "":
		return nil, `certificate has no key_file; set key_file = "site.key"`
	}
	if msg := checkReadable(certFile); msg != "" {
		return nil, msg
	}
	if msg := checkReadable(keyFile); msg != "" {
		return nil, msg
	}
	pair, err := LoadCertPair(certFile, keyFile)
	if err != nil {
		return nil, err.Error()
	}
	return pair.Leaf, ""
}

// LoadCertPair reads a PEM certificate chain and its private key, checks
// that they belong together, and returns them with Leaf parsed. Errors
// name the file and the reason.
func LoadCertPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("read certificate %s: %s", certFile, pathErr(err))
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("read key %s: %s", keyFile, pathErr(err))
	}
	if b, _ := pem.Decode(certPEM); b == nil || b.Type != "CERTIFICATE" {
		return tls.Certificate{}, fmt.Errorf("certificate %s: no PEM CERTIFICATE block", certFile)
	}
	if b, _ := pem.Decode(keyPEM); b == nil || !strings.HasSuffix(b.Type, "PRIVATE KEY") {
		return tls.Certificate{}, fmt.Errorf("key %s: no PEM PRIVATE KEY block", keyFile)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate %s with key %s: %w", certFile, keyFile, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("certificate %s: %w", certFile, err)
		}
	}
	return pair, nil
}

// readCertPool reads a PEM bundle of CA certificates, or says what is
// wrong with it.
func readCertPool(name string) (*x509.CertPool, string) {
	if msg := checkReadable(name); msg != "" {
		return nil, msg
	}
	pool, err := LoadCertPool(name)
	if err != nil {
		return nil, err.Error()
	}
	return pool, ""
}

// LoadCertPool reads a PEM bundle of CA certificates; an error names the
// file and the reason.
func LoadCertPool(name string) (*x509.CertPool, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle %s: %s", name, pathErr(err))
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA bundle %s: certificate %d: %w", name, n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("CA bundle %s: no PEM CERTIFICATE block", name)
	}
	return pool, nil
}

// ParseTicketKeys reads a ticket_keys_file: one key a line, 32 bytes in
// base64; blank lines and lines starting with '#' are skipped. The first
// key encrypts.
func ParseTicketKeys(data []byte) ([][32]byte, error) {
	var keys [][32]byte
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(string(line))
		if err != nil {
			return nil, fmt.Errorf("line %d: not base64; make a key with: openssl rand -base64 32", i+1)
		}
		if len(raw) != 32 {
			return nil, fmt.Errorf("line %d: a key is 32 bytes, this one %d; make a key with: openssl rand -base64 32", i+1, len(raw))
		}
		keys = append(keys, [32]byte(raw))
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys; put one a line, made with: openssl rand -base64 32")
	}
	return keys, nil
}

// certsCover reports whether one of the certificates is valid for host: a
// DNS SAN equal to it or a wildcard SAN over it (one label), or an IP SAN.
// A wildcard host is covered by the same wildcard only.
func certsCover(leaves []*x509.Certificate, host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if ip, err := netip.ParseAddr(host); err == nil {
		for _, c := range leaves {
			for _, a := range c.IPAddresses {
				if b, ok := netip.AddrFromSlice(a); ok && b.Unmap() == ip.Unmap() {
					return true
				}
			}
		}
		return false
	}
	for _, c := range leaves {
		for _, n := range c.DNSNames {
			if MatchServerName(strings.ToLower(n), host) {
				return true
			}
		}
	}
	return false
}

// MatchServerName reports whether a certificate name (exact, or a
// "*.suffix" wildcard over exactly one label, as RFC 6125 6.4.3) matches
// name. Both must be lower case. A wildcard name matches only the same
// wildcard.
func MatchServerName(pattern, name string) bool {
	if pattern == name {
		return true
	}
	suffix, ok := strings.CutPrefix(pattern, "*")
	if !ok || !strings.HasPrefix(suffix, ".") || strings.HasPrefix(name, "*") {
		return false
	}
	label, ok := strings.CutSuffix(name, suffix)
	return ok && label != "" && !strings.Contains(label, ".")
}

// CertNote is a remark about one certificate of a config: where it is
// written and when it expires.
type CertNote struct {
	// Key is the TOML path of the certificate entry.
	Key string
	// File is the certificate file.
	File string
	// Subject is the leaf's subject, NotAfter its expiry.
	Subject  string
	NotAfter time.Time
}

// Certificates lists every certificate a loaded config names (listener
// certificates and pool client certificates) with its expiry, in file
// order. A certificate that cannot be read (changed since Load) is left
// out.
func Certificates(c *Config) []CertNote {
	var out []CertNote
	add := func(key, certFile, keyFile string) {
		pair, err := LoadCertPair(certFile, keyFile)
		if err != nil {
			return
		}
		out = append(out, CertNote{Key: key, File: certFile, Subject: pair.Leaf.Subject.String(), NotAfter: pair.Leaf.NotAfter})
	}
	for i := range c.Listeners {
		if t := c.Listeners[i].TLS; t != nil {
			for j, cert := range t.Certificates {
				add(indexKey(indexKey("listener", i)+".tls.certificates", j), cert.CertFile, cert.KeyFile)
			}
		}
	}
	for _, name := range sortedNames(c.Pools) {
		if t := c.Pools[name].TLS; t != nil && t.CertFile != "" {
			add(joinKey("pool", name)+".tls.cert_file", t.CertFile, t.KeyFile)
		}
	}
	return out
}

// sniRoutesUse reports whether a sni_route of l names pool.
func sniRoutesUse(l *Listener, pool string) bool {
	for _, r := range l.SNIRoutes {
		if r.Pool == pool {
			return true
		}
	}
	return false
}
