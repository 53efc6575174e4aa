package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"frontdoor/config"
)

// TLS to backends (pool tls = { ... }).
//
// The event loop speaks plain TCP only, so a pool with tls is not
// loopable (loop_handoff.go): a request routed to it moves its connection
// to the goroutine engine, whose HostClient dials through
// poolBackend.dialTLS. Health checks of the pool go over TLS too (the
// health package gets the same tls.Config).
//
// For the HTTP/2 engine (h2c pools with tls, gRPC over TLS): the engine
// takes the pool backend's config with backendTLS (ALPN h2 is set for
// h2c pools) and connects with poolBackend.dialTLS, which takes a slot of
// the backend's connection budget, connects, shakes hands under
// connect_timeout and gives the slot back when the connection closes. A
// failed handshake wraps errBackendTLS, which classifyUpstreamError
// counts as a connect failure (502, retried, passive ejection).

// errBackendTLS marks a failed TLS handshake with a backend.
var errBackendTLS = errors.New("proxy: backend TLS handshake failed")

// backendTLSConfig builds the client tls.Config of a pool's tls setting,
// reading its CA bundle and client certificate again (a reload rotates
// them), or returns nil when the pool has no tls. The config has no
// ServerName: backendTLS sets the backend's.
func backendTLSConfig(pc *config.Pool) (*tls.Config, []certInfo, error) {
	t := pc.TLS
	if t == nil {
		return nil, nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // the operator's explicit choice, documented as unsafe
		ClientSessionCache: tls.NewLRUClientSessionCache(0),
	}
	// ALPN: h2 to gRPC backends (h2c pools), HTTP/1.1 to the others.
	if pc.Protocol == "h2c" {
		cfg.NextProtos = []string{"h2"}
	} else {
		cfg.NextProtos = []string{"http/1.1"}
	}
	var certs []certInfo
	var errs []error
	if t.CAFile != "" {
		pool, err := config.LoadCertPool(t.CAFile)
		if err != nil {
			errs = append(errs, err)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		pair, err := config.LoadCertPair(t.CertFile, t.KeyFile)
		if err != nil {
			errs = append(errs, err)
		} else {
			cfg.Certificates = []tls.Certificate{pair}
			certs = append(certs, certInfo{source: "pool/" + pc.Name, file: t.CertFile, subject: pair.Leaf.Subject.String(), notAfter: pair.Leaf.NotAfter})
		}
	}
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("pool %s: tls: %w", pc.Name, errors.Join(errs...))
	}
	return cfg, certs, nil
}

// backendTLS returns the config for one backend of a pool: base with the
// pool's server_name, or else the backend address's host, as ServerName.
func backendTLS(base *tls.Config, serverName, addr string) *tls.Config {
	if base == nil {
		return nil
	}
	cfg := base.Clone()
	cfg.ServerName = serverName
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	return cfg
}

// dialTLS connects to the backend over TLS with the config last set by
// an Apply (u.tlsCfg): it connects and shakes hands, both under
// connect_timeout; ctx may cut it short. The caller holds a slot of the
// backend's connection budget (takeConn): on an error it gives the slot
// back itself; on success the connection's Close gives it back.
func (u *poolBackend) dialTLS(ctx context.Context) (net.Conn, error) {
	cfg := u.tlsCfg.Load()
	if cfg == nil {
		return nil, fmt.Errorf("dial backend %s: %w: no TLS config", u.be.Address(), errBackendTLS)
	}
	deadline := time.Now().Add(u.connectTimeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	d := net.Dialer{KeepAlive: -1}
	c, err := d.DialContext(ctx, "tcp", u.be.Address())
	if err != nil {
		return nil, err // a *net.OpError "dial": a connect failure
	}
	bc := &budgetConn{Conn: c, u: u}
	tc := tls.Client(bc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close() // not bc: the caller gives the slot back
		return nil, fmt.Errorf("tls handshake with backend %s: %w: %w", u.be.Address(), errBackendTLS, err)
	}
	return tc, nil
}

// healthTLS is the config of a pool's health checks over TLS: the pool's,
// with its server_name (the checker names each backend when it is empty)
// and ALPN for the check's protocol.
func healthTLS(base *tls.Config, pc *config.Pool) *tls.Config {
	if base == nil {
		return nil
	}
	cfg := base.Clone()
	cfg.ServerName = pc.TLS.ServerName
	cfg.ClientSessionCache = nil
	switch pc.Health.Check {
	case "grpc":
		cfg.NextProtos = []string{"h2"}
	case "http":
		cfg.NextProtos = []string{"http/1.1"}
	default:
		cfg.NextProtos = nil
	}
	return cfg
}
