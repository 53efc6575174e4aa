package health

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc/credentials"

	"frontdoor/config"
)

// Checks of a pool whose backends speak TLS (CheckerOptions.TLS). They run
// on a goroutine per target with the standard library, not on the
// engine's raw sockets: tcp shakes hands (so a backend with a bad or
// expired certificate is down, as its traffic would fail), http sends its
// request over a kept TLS connection, grpc uses grpc-go's TLS credentials.

// tlsFor returns cfg with ServerName set to address's host when cfg has
// none.
func tlsFor(cfg *tls.Config, address string) *tls.Config {
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(address); err == nil {
			cfg.ServerName = host
		}
	}
	return cfg
}

// newTLSProber returns the prober of check kind hc.Check against address
// over TLS with cfg.
func newTLSProber(hc *config.HealthCheck, address string, cfg *tls.Config) prober {
	cfg = tlsFor(cfg, address)
	switch hc.Check {
	case "tcp":
		return &tlsHandshakeProber{address: address, cfg: cfg, timeout: hc.Timeout.Duration}
	case "http":
		return newHTTPSProber(hc, address, cfg)
	case "grpc":
		return newGRPCProberWith(hc, address, credentials.NewTLS(cfg))
	}
	panic("health: no TLS prober for check " + hc.Check)
}

// tlsHandshakeProber connects and shakes hands, then closes.
type tlsHandshakeProber struct {
	address string
	cfg     *tls.Config
	timeout time.Duration
}

func (p *tlsHandshakeProber) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	d := tls.Dialer{Config: p.cfg}
	c, err := d.DialContext(ctx, "tcp", p.address)
	if err != nil {
		return timeoutErr(fmt.Errorf("tls connect %s: %w", p.address, err), p.timeout)
	}
	return c.Close()
}

func (p *tlsHandshakeProber) close() {}

// httpsProber sends the check's request with net/http over TLS, one
// kept-alive connection per backend.
type httpsProber struct {
	client    *http.Client
	transport *http.Transport
	method    string
	url, host string
	low, high int
	timeout   time.Duration
}

func newHTTPSProber(hc *config.HealthCheck, address string, cfg *tls.Config) *httpsProber {
	host := hc.Host
	if host == "" {
		host = address
	}
	cfg.NextProtos = []string{"http/1.1"}
	tr := &http.Transport{
		TLSClientConfig:     cfg,
		DialContext:         (&net.Dialer{KeepAlive: -1}).DialContext,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
		IdleConnTimeout:     2 * hc.Interval.Duration,
	}
	method := hc.Method
	if method == "" {
		method = http.MethodGet
	}
	return &httpsProber{
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		transport: tr,
		method:    method,
		url:       "https://" + address + hc.Path,
		host:      host,
		low:       hc.ExpectStatus.Low,
		high:      hc.ExpectStatus.High,
		timeout:   hc.Timeout.Duration,
	}
}

func (p *httpsProber) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, p.method, p.url, nil)
	if err != nil {
		return err
	}
	req.Host = p.host
	req.Header.Set("User-Agent", "frontdoor-health")
	resp, err := p.client.Do(req)
	if err != nil {
		return timeoutErr(fmt.Errorf("%s %s: %w", p.method, p.url, err), p.timeout)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxHealthBody))
	_ = resp.Body.Close()
	if resp.StatusCode < p.low || resp.StatusCode > p.high {
		return fmt.Errorf("%s %s: %w: status %d", p.method, p.url, ErrUnhealthy, resp.StatusCode)
	}
	return nil
}

func (p *httpsProber) close() { p.transport.CloseIdleConnections() }
