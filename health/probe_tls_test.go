package health

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	grpchealth "google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"

	"frontdoor/internal/testpki"
)

// TestTLSProbers checks tcp, http and grpc probes over TLS against real
// TLS servers: they pass with the right CA and fail, with the reason, when
// the backend's certificate does not verify.
func TestTLSProbers(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "health CA")
	pair := ca.Issue(t, testpki.Leaf{Names: []string{"backend.internal", "127.0.0.1"}})

	ln := listen(t)
	httpAddr := ln.Addr().String()
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || r.TLS == nil {
			w.WriteHeader(500)
		}
	})}
	go func() { _ = hs.Serve(tls.NewListener(ln, pair.ServerConfig())) }()
	t.Cleanup(func() { _ = hs.Close() })

	gln := listen(t)
	grpcAddr := gln.Addr().String()
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(pair.ServerConfig())))
	grpc_health_v1.RegisterHealthServer(gs, grpchealth.NewServer())
	go func() { _ = gs.Serve(gln) }()
	t.Cleanup(gs.Stop)

	good := &tls.Config{RootCAs: ca.Pool}
	named := &tls.Config{RootCAs: ca.Pool, ServerName: "backend.internal"}
	wrong := &tls.Config{RootCAs: testpki.NewCA(t, "other").Pool}
	for _, tc := range []struct {
		kind, addr string
		cfg        *tls.Config
		fail       string
	}{
		{"tcp", httpAddr, good, ""},
		{"tcp", httpAddr, named, ""},
		{"tcp", httpAddr, wrong, "certificate signed by unknown authority"},
		{"http", httpAddr, good, ""},
		{"http", httpAddr, wrong, "certificate signed by unknown authority"},
		{"grpc", grpcAddr, named, ""},
		{"grpc", grpcAddr, wrong, "certificate signed by unknown authority"},
	} {
		hc := check(tc.kind)
		p := newTLSProber(&hc, tc.addr, tc.cfg)
		err := p.probe(context.Background())
		p.close()
		switch {
		case tc.fail == "" && err != nil:
			t.Errorf("%s with %v: %v", tc.kind, tc.cfg.ServerName, err)
		case tc.fail != "" && (err == nil || !strings.Contains(err.Error(), tc.fail)):
			t.Errorf("%s: got %v, want an error with %q", tc.kind, err, tc.fail)
		}
	}
}
