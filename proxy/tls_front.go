package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"frontdoor/config"
	"frontdoor/metrics"
	"frontdoor/proxy/tcp"
)

// TLS termination on http listeners ([listener.tls]).
//
// A TLS listener has no event loop (the loop works on raw descriptors):
// fasthttp's server accepts its connections and the first Read of each
// (sniffConn.Read) runs the handshake on the connection's goroutine.
// frontdoor reads the ClientHello itself first, with tcp.ParseClientHello
// under handshake_timeout, so that garbage, truncated, slow and oversized
// hellos end clearly and are counted by reason; crypto/tls then gets the
// hello replayed and finishes the handshake. A connection whose ALPN is h2
// goes to the listener's HTTP/2 entry point (connListener.h2); any other
// is served by the goroutine engine over the *tls.Conn.
//
// Everything read from the files is built into a tlsFront when a config
// is applied; a reload builds a new one beside the old (a bad pair fails
// the reload and the old one keeps serving) and swaps it in. Connections
// keep the front they shook hands with.

// tlsFront is an http listener's TLS as one config built it. Immutable
// once built; safe for concurrent use.
type tlsFront struct {
	cfg *tls.Config
	// Certificates by lower-case SAN: exact names, and wildcards by their
	// suffix (".example.com" for "*.example.com"); def is the default
	// for unknown names, nil with unknown_sni = "refuse".
	exact, wild map[string]*tls.Certificate
	def         *tls.Certificate
	timeout     time.Duration
	minVersion  uint16
	alpn        []string
	// ident names the headers that carry a verified client certificate
	// (forward_client_cert); requireCert: client_auth = "require".
	ident       identHeaders
	requireCert bool
	// ticketFile: the ticket keys came from ticket_keys_file, not from the
	// auto-rotated keys a reload carries over.
	ticketFile bool
	certs      []certInfo
}

// identHeaders are the header names of forward_client_cert; nil: not sent.
type identHeaders struct{ subject, sans, fingerprint []byte }

func (h *identHeaders) any() bool { return h.subject != nil || h.sans != nil || h.fingerprint != nil }

// certInfo is one certificate of the running config, for
// tls_certificate_expiry_seconds.
type certInfo struct {
	source, file, subject string
	notAfter              time.Time
}

// buildTLSFront reads the files of lc's [listener.tls] and builds its
// front. prev, the listener's current front, lends its automatically
// rotated session ticket keys, so that a reload does not end resumption.
// Errors name the listener, the file and the reason.
func buildTLSFront(lc *config.Listener, prev *tlsFront) (*tlsFront, error) {
	tc := lc.TLS
	f := &tlsFront{
		exact:       map[string]*tls.Certificate{},
		wild:        map[string]*tls.Certificate{},
		timeout:     tc.HandshakeTimeout.Duration,
		minVersion:  config.TLSVersion(tc.MinVersion),
		alpn:        append([]string(nil), tc.ALPN...),
		requireCert: tc.ClientAuth == config.TLSClientRequire,
		ticketFile:  tc.TicketKeysFile != "",
	}
	var errs []error
	for i, cc := range tc.Certificates {
		pair, err := config.LoadCertPair(cc.CertFile, cc.KeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("listener %s: tls.certificates[%d]: %w", lc.Name, i, err))
			continue
		}
		cert := &pair
		if f.def == nil && tc.UnknownSNI == config.TLSUnknownSNIDefault {
			f.def = cert
		}
		for _, n := range pair.Leaf.DNSNames {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			m, key := f.exact, n
			if s, ok := strings.CutPrefix(n, "*"); ok && strings.HasPrefix(s, ".") {
				m, key = f.wild, s
			}
			if _, taken := m[key]; !taken { // the first certificate listed wins
				m[key] = cert
			}
		}
		for _, ip := range pair.Leaf.IPAddresses {
			if _, taken := f.exact[ip.String()]; !taken {
				f.exact[ip.String()] = cert
			}
		}
		f.certs = append(f.certs, certInfo{source: "listener/" + lc.Name, file: cc.CertFile, subject: pair.Leaf.Subject.String(), notAfter: pair.Leaf.NotAfter})
	}
	var cfg *tls.Config
	if prev != nil && !prev.ticketFile && tc.TicketKeysFile == "" {
		// Clone carries the automatically rotated ticket keys over; every
		// other field is set below.
		cfg = prev.cfg.Clone()
	} else {
		cfg = &tls.Config{}
	}
	cfg.Certificates = nil
	cfg.GetCertificate = f.getCertificate
	cfg.MinVersion = f.minVersion
	cfg.NextProtos = f.alpn
	cfg.ClientAuth = tls.NoClientCert
	cfg.ClientCAs = nil
	if tc.TicketKeysFile != "" {
		data, err := os.ReadFile(tc.TicketKeysFile)
		if err == nil {
			var keys [][32]byte
			if keys, err = config.ParseTicketKeys(data); err == nil {
				cfg.SetSessionTicketKeys(keys)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("listener %s: tls.ticket_keys_file %s: %w", lc.Name, tc.TicketKeysFile, err))
		}
	}
	if tc.ClientCAFile != "" {
		pool, err := config.LoadCertPool(tc.ClientCAFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("listener %s: tls.client_ca_file: %w", lc.Name, err))
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if f.requireCert {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
		for part, h := range tc.ForwardClientCert {
			switch part {
			case "subject":
				f.ident.subject = []byte(h)
			case "sans":
				f.ident.sans = []byte(h)
			case "fingerprint":
				f.ident.fingerprint = []byte(h)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	f.cfg = cfg
	return f, nil
}

// getCertificate picks the certificate for a handshake by SNI: an exact
// name, then a wildcard over it, then the default; with no default the
// handshake fails with unrecognized_name (crypto/tls sends it when this
// returns nothing and the config holds no certificates).
func (f *tlsFront) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	raw, _ := hello.Conn.(*tlsRaw)
	if raw != nil {
		raw.reachedCert = true
	}
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name != "" {
		if c := f.exact[name]; c != nil {
			return c, nil
		}
		if i := strings.IndexByte(name, '.'); i > 0 {
			if c := f.wild[name[i:]]; c != nil {
				return c, nil
			}
		}
	}
	if raw != nil && f.def == nil {
		raw.unknownSNI = true
	}
	return f.def, nil
}

// tlsRaw is what crypto/tls reads from: the bytes read so far (the
// ClientHello) replayed, then the socket. The handshake's callbacks mark
// in it how far the handshake got, for the error reason.
type tlsRaw struct {
	replayConn
	reachedCert bool // getCertificate ran: the hello was accepted
	unknownSNI  bool // getCertificate found no certificate and refused
}

// tlsConnInfo is what a request needs of its connection's handshake: the
// identity headers of a verified client certificate.
type tlsConnInfo struct {
	ident [3]identValue
	n     int
}

type identValue struct{ name, value []byte }

// TLS versions and handshake error reasons, the labels of the TLS metrics.
const (
	tlsV10 = iota
	tlsV11
	tlsV12
	tlsV13
	tlsVUnknown
	numTLSVersions
)

var tlsVersionNames = [numTLSVersions]string{"1.0", "1.1", "1.2", "1.3", "unknown"}

const (
	tlsNotTLS = iota
	tlsBadHello
	tlsOversized
	tlsTruncated
	tlsTimeout
	tlsUnknownSNI
	tlsVersion
	tlsALPN
	tlsNoClientCert
	tlsBadClientCert
	tlsClientAlert
	tlsOther
	numTLSReasons
)

var tlsReasonNames = [numTLSReasons]string{"not_tls", "bad_hello", "oversized", "truncated", "timeout", "unknown_sni",
	"version", "alpn", "no_client_cert", "bad_client_cert", "client_alert", "other"}

// tlsStats are a listener's pre-bound TLS metric children.
type tlsStats struct {
	ok, failed [numTLSVersions]prometheus.Counter
	reasons    [numTLSReasons]prometheus.Counter
	resumed    prometheus.Counter
}

func newTLSStats(m *metrics.Metrics, listener string) *tlsStats {
	s := &tlsStats{resumed: m.TLS.Resumed.WithLabelValues(listener)}
	for v, name := range tlsVersionNames {
		s.ok[v] = m.TLS.Handshakes.WithLabelValues(listener, name, "ok")
		s.failed[v] = m.TLS.Handshakes.WithLabelValues(listener, name, "error")
	}
	for r, name := range tlsReasonNames {
		s.reasons[r] = m.TLS.HandshakeErrors.WithLabelValues(listener, name)
	}
	return s
}

func (s *tlsStats) fail(version, reason int) {
	s.failed[version].Inc()
	s.reasons[reason].Inc()
}

// tlsVersionIndex maps a protocol version to its label index.
func tlsVersionIndex(v uint16) int {
	switch v {
	case tls.VersionTLS10:
		return tlsV10
	case tls.VersionTLS11:
		return tlsV11
	case tls.VersionTLS12:
		return tlsV12
	case tls.VersionTLS13:
		return tlsV13
	}
	return tlsVUnknown
}

// helloReason maps an error of reading the ClientHello to its reason.
func helloReason(err error) int {
	var ne net.Error
	switch {
	case errors.Is(err, tcp.ErrNotTLS):
		return tlsNotTLS
	case errors.Is(err, tcp.ErrHelloTooLarge):
		return tlsOversized
	case errors.Is(err, tcp.ErrBadHello):
		return tlsBadHello
	case errors.As(err, &ne) && ne.Timeout():
		return tlsTimeout
	}
	return tlsTruncated // EOF or a reset before the hello was whole
}

// handshakeTLS runs the handshake of a connection of a TLS listener and
// makes c read and write through it. ok is false when the connection is to
// be closed (the handshake failed; counted by reason); h2: the client
// chose HTTP/2 by ALPN.
func (c *sniffConn) handshakeTLS(f *tlsFront) (ok, h2 bool) {
	st := c.l.tlsStats
	start := time.Now()
	_ = c.Conn.SetDeadline(start.Add(f.timeout))
	buf := make([]byte, 0, 1024)
	var hello tcp.ClientHello
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // grows it
		}
		n, err := c.readRaw(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		var perr error
		hello, perr = tcp.ParseClientHello(buf)
		if perr == nil {
			break
		}
		if !errors.Is(perr, tcp.ErrHelloShort) {
			st.fail(tlsVUnknown, helloReason(perr))
			return false, false
		}
		if err != nil {
			st.fail(tlsVUnknown, helloReason(err))
			return false, false
		}
	}
	offered := tlsVersionIndex(hello.MaxVersion)
	raw := &tlsRaw{replayConn: replayConn{Conn: c.Conn, buf: buf}}
	tc := tls.Server(raw, f.cfg)
	if err := tc.Handshake(); err != nil {
		st.fail(offered, f.failReason(err, raw, &hello))
		lingerClose(raw.Conn)
		return false, false
	}
	cs := tc.ConnectionState()
	st.ok[tlsVersionIndex(cs.Version)].Inc()
	if cs.DidResume {
		st.resumed.Inc()
	}
	_ = tc.SetDeadline(time.Time{})
	if c.l.readTimeout > 0 {
		_ = tc.SetReadDeadline(time.Now().Add(c.l.readTimeout))
	}
	c.Conn = tc
	c.tlsc = connInfo(&f.ident, &cs)
	return true, cs.NegotiatedProtocol == "h2"
}

// lingerAfterAlert bounds how long a connection whose handshake failed is
// kept half-closed so that the client reads the alert.
const lingerAfterAlert = 500 * time.Millisecond

// lingerClose lets the alert crypto/tls sent on a failed handshake reach
// the client: closing a socket with unread bytes (a TLS 1.3 client sends
// its request right after its Finished, before the server judged its
// certificate) sends a reset, and a reset can make the client drop the
// alert it had not read yet. So the write side is shut first (the alert,
// then a FIN) and what the client still sends is read and dropped, until
// it closes or lingerAfterAlert passes; the caller then closes.
func lingerClose(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	if tc.CloseWrite() != nil {
		return
	}
	_ = tc.SetReadDeadline(time.Now().Add(lingerAfterAlert))
	var buf [4096]byte
	for range 16 {
		if _, err := tc.Read(buf[:]); err != nil {
			return
		}
	}
}

// failReason says why a handshake that got a whole ClientHello failed.
func (f *tlsFront) failReason(err error, raw *tlsRaw, hello *tcp.ClientHello) int {
	var ne net.Error
	var op *net.OpError
	var verr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return tlsTimeout
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET):
		return tlsTruncated
	case raw.unknownSNI:
		return tlsUnknownSNI
	case hello.MaxVersion < f.minVersion:
		return tlsVersion
	case hello.ALPN != nil && !offersAny(hello.ALPN, f.alpn):
		return tlsALPN
	case errors.As(err, &verr):
		return tlsBadClientCert
	case errors.As(err, &op) && op.Op == "remote error":
		return tlsClientAlert // the client refused our certificate, say
	case f.requireCert && raw.reachedCert:
		return tlsNoClientCert
	}
	return tlsOther
}

func offersAny(list []byte, protos []string) bool {
	for _, p := range protos {
		if tcp.OffersALPN(list, p) {
			return true
		}
	}
	return false
}

// connInfo builds the identity headers of a verified client certificate,
// once per connection; nil when there is none or none is forwarded.
func connInfo(h *identHeaders, cs *tls.ConnectionState) *tlsConnInfo {
	if !h.any() || len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	ci := &tlsConnInfo{}
	add := func(name []byte, value string) {
		if name != nil && value != "" {
			ci.ident[ci.n] = identValue{name: name, value: []byte(value)}
			ci.n++
		}
	}
	add(h.subject, leaf.Subject.String())
	add(h.sans, certSANs(leaf))
	if h.fingerprint != nil {
		sum := sha256.Sum256(leaf.Raw)
		add(h.fingerprint, hex.EncodeToString(sum[:]))
	}
	return ci
}

// certSANs lists a certificate's subject alternative names as OpenSSL
// prints them: "DNS:a.example.com, URI:spiffe://x/y, IP:10.0.0.1,
// email:a@example.com". Values cannot hold a newline (they are parsed
// from DER strings that crypto/x509 checked), so a header stays one line.
func certSANs(c *x509.Certificate) string {
	var b strings.Builder
	sep := func() {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
	}
	for _, n := range c.DNSNames {
		sep()
		b.WriteString("DNS:" + n)
	}
	for _, u := range c.URIs {
		sep()
		b.WriteString("URI:" + u.String())
	}
	for _, ip := range c.IPAddresses {
		sep()
		b.WriteString("IP:" + ip.String())
	}
	for _, e := range c.EmailAddresses {
		sep()
		b.WriteString("email:" + e)
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, b.String())
}

// buildTLSFronts builds the TLS front of every listener of cfg with
// [listener.tls], by listener key, each from the running listener's
// current one (its automatic ticket keys). Called with p.mu held.
func (p *Proxy) buildTLSFronts(cfg *config.Config) (map[string]*tlsFront, error) {
	fronts := map[string]*tlsFront{}
	var errs []error
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		if lc.Mode != "http" || lc.TLS == nil {
			continue
		}
		key := listenerKey(lc)
		var prev *tlsFront
		if l := p.http[key]; l != nil {
			prev = l.ln.tls.Load()
		}
		f, err := buildTLSFront(lc, prev)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fronts[key] = f
	}
	return fronts, errors.Join(errs...)
}

func frontCerts(fronts map[string]*tlsFront) []certInfo {
	var out []certInfo
	for _, f := range fronts {
		out = append(out, f.certs...)
	}
	return out
}

// EachCertificate reports the generation's certificates
// (metrics.CertificateSource).
func (g *generation) EachCertificate(fn func(source, file, subject string, notAfter time.Time)) {
	for _, c := range g.certs {
		fn(c.source, c.file, c.subject, c.notAfter)
	}
}
