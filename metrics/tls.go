package metrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TLS holds the TLS families: handshakes on http listeners with
// [listener.tls], ClientHellos read by tcp listeners with sni_route, and
// the certificates of the running config.
type TLS struct {
	// Handshakes counts TLS handshakes by listener, version ("1.3",
	// "1.2", ..., "unknown" when no ClientHello was read) and result
	// ("ok", "error"). On a tcp listener with sni_route it counts
	// ClientHellos routed ("ok") or refused ("error"): frontdoor does
	// not finish those handshakes.
	Handshakes *prometheus.CounterVec // listener, version, result
	// HandshakeErrors counts failed handshakes by listener and reason
	// (see the README's TLS section for the reasons).
	HandshakeErrors *prometheus.CounterVec // listener, reason
	// Resumed counts handshakes that resumed a session (a ticket), by
	// listener: their share of Handshakes{result="ok"} is the resumption
	// rate.
	Resumed *prometheus.CounterVec // listener

	certs certCollector
}

// CertificateSource reports the certificates of the running config at
// scrape time. EachCertificate calls fn once per certificate with where
// it is used ("listener/NAME" or "pool/NAME"), its file, its leaf's
// subject and its expiry.
type CertificateSource interface {
	EachCertificate(fn func(source, file, subject string, notAfter time.Time))
}

func newTLS() TLS {
	return TLS{
		Handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "tls", Name: "handshakes_total",
			Help: "TLS handshakes by listener, version and result (ok, error); on tcp listeners with sni_route, ClientHellos routed or refused.",
		}, []string{"listener", "version", "result"}),
		HandshakeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "tls", Name: "handshake_errors_total",
			Help: "Failed TLS handshakes by listener and reason (not_tls, bad_hello, oversized, truncated, timeout, unknown_sni, version, alpn, no_client_cert, bad_client_cert, client_alert, other).",
		}, []string{"listener", "reason"}),
		Resumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "tls", Name: "resumed_total",
			Help: "TLS handshakes that resumed a session, by listener.",
		}, []string{"listener"}),
		certs: certCollector{expiry: prometheus.NewDesc(namespace+"_tls_certificate_expiry_seconds",
			"Seconds until the certificate expires (negative once expired), by where it is used (listener/NAME, pool/NAME), file and subject.",
			[]string{"source", "file", "subject"}, nil)},
	}
}

func (t *TLS) collectors() []prometheus.Collector {
	return []prometheus.Collector{t.Handshakes, t.HandshakeErrors, t.Resumed, &t.certs}
}

// SetCertificateSource makes tls_certificate_expiry_seconds report src
// from the next scrape on. Call it whenever a new runtime is published.
func (m *Metrics) SetCertificateSource(src CertificateSource) { m.TLS.certs.src.Store(&src) }

// certCollector computes the seconds to expiry at scrape time.
type certCollector struct {
	expiry *prometheus.Desc
	src    atomic.Pointer[CertificateSource]
	now    func() time.Time // tests; nil: time.Now
}

func (c *certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.expiry }

func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.src.Load()
	if p == nil || *p == nil {
		return
	}
	now := time.Now()
	if c.now != nil {
		now = c.now()
	}
	seen := map[[3]string]bool{}
	(*p).EachCertificate(func(source, file, subject string, notAfter time.Time) {
		k := [3]string{source, file, subject}
		if seen[k] {
			return
		}
		seen[k] = true
		ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, notAfter.Sub(now).Seconds(), source, file, subject)
	})
}
