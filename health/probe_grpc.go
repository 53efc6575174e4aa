package health

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"frontdoor/config"
)

// grpcProber calls grpc.health.v1.Health/Check over one h2c ClientConn kept
// open for the Checker's life; SERVING passes.
type grpcProber struct {
	conn    *grpc.ClientConn
	client  grpc_health_v1.HealthClient
	req     *grpc_health_v1.HealthCheckRequest
	timeout time.Duration
	err     error // set when the ClientConn could not be created
}

func newGRPCProber(hc *config.HealthCheck, address string) *grpcProber {
	return newGRPCProberWith(hc, address, insecure.NewCredentials())
}

// newGRPCProberWith is newGRPCProber with the transport credentials given
// (TLS: probe_tls.go).
func newGRPCProberWith(hc *config.HealthCheck, address string, creds credentials.TransportCredentials) *grpcProber {
	p := &grpcProber{
		req:     &grpc_health_v1.HealthCheckRequest{Service: hc.Service},
		timeout: hc.Timeout.Duration,
	}
	interval := hc.Interval.Duration
	// Reconnect at least once per interval, so a backend that comes back is
	// seen by the next check rather than after grpc's default backoff (up
	// to 120s).
	bo := backoff.DefaultConfig
	bo.BaseDelay = min(bo.BaseDelay, interval)
	bo.MaxDelay = interval
	conn, err := grpc.NewClient("passthrough:///"+address,
		grpc.WithTransportCredentials(creds),
		// A connection attempt may outlive one probe's deadline and serve
		// the next probe.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: max(p.timeout, interval)}),
		grpc.WithUserAgent("frontdoor-health"),
		grpc.WithDisableServiceConfig(),
	)
	if err != nil {
		p.err = fmt.Errorf("grpc client for %s: %w", address, err)
		return p
	}
	p.conn = conn
	p.client = grpc_health_v1.NewHealthClient(conn)
	return p
}

func (p *grpcProber) probe(ctx context.Context) error {
	if p.err != nil {
		return p.err
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	resp, err := p.client.Check(ctx, p.req)
	if err != nil {
		if status.Code(err) == codes.DeadlineExceeded {
			err = fmt.Errorf("%w after %s: %w", ErrTimeout, p.timeout, err)
		}
		return fmt.Errorf("grpc health check %q: %w", p.req.GetService(), err)
	}
	if s := resp.GetStatus(); s != grpc_health_v1.HealthCheckResponse_SERVING {
		return fmt.Errorf("grpc health check %q: %w: %s", p.req.GetService(), ErrUnhealthy, s)
	}
	return nil
}

func (p *grpcProber) close() {
	if p.conn != nil {
		_ = p.conn.Close()
	}
}
