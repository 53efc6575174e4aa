package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	grpclib "google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"frontdoor/internal/testpki"
)

// TLS through real clients: curl, openssl s_client and grpc-go. Each test
// skips when its tool is missing (make test-deps installs them).

func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (make test-deps installs it)", name)
	}
	return p
}

// startTLSProxy runs a TLS listener "web" in front of a backend named web,
// with extra [listener.tls] keys.
func startTLSProxy(t *testing.T, k *tlsPKI, tlsExtra string) (*testProxy, *testBackend, string) {
	t.Helper()
	web := startBackend(t, "web")
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "web"
`+k.listenerTLS(tlsExtra)+poolTOML("web", `health = { check = "none" }`, web.addr), nil)
	_, port, _ := net.SplitHostPort(p.Addr("web").String())
	return p, web, port
}

func TestTLSCurl(t *testing.T) {
	curl := lookTool(t, "curl")
	t.Parallel()
	k := newTLSPKI(t)
	_, web, port := startTLSProxy(t, k, "")
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		base := []string{"-sS", "--max-time", "10", "--cacert", k.ca.File,
			"--resolve", "api.example.com:" + port + ":127.0.0.1", "-w", "\n%{http_version} %{http_code}"}
		out, err := exec.Command(curl, append(base, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	t.Run("http1.1", func(t *testing.T) {
		out := run(t, "--http1.1", "-H", "X-Forwarded-Proto: gopher", "https://api.example.com:"+port+"/hello")
		if out != "web\n1.1 200" {
			t.Errorf("curl said %q", out)
		}
		if h := web.header(); !strings.Contains(h, "X-Forwarded-Proto: https") || strings.Contains(h, "gopher") {
			t.Errorf("backend saw:\n%s", h)
		}
	})
	t.Run("http2", func(t *testing.T) {
		if out := run(t, "--http2", "https://api.example.com:"+port+"/hello"); out != "web\n2 200" {
			t.Errorf("curl said %q", out)
		}
	})
}

func TestTLSOpenSSL(t *testing.T) {
	openssl := lookTool(t, "openssl")
	t.Parallel()
	k := newTLSPKI(t)
	_, _, port := startTLSProxy(t, k, "")
	sClient := func(t *testing.T, args ...string) string {
		t.Helper()
		base := []string{"s_client", "-connect", "127.0.0.1:" + port, "-CAfile", k.ca.File, "-verify_return_error", "-ign_eof"}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, openssl, append(base, args...)...)
		cmd.Stdin = strings.NewReader("GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"SNI example.com", []string{"-servername", "api.example.com", "-alpn", "http/1.1"},
			[]string{"subject=O = frontdoor tests, CN = example.com", "ALPN protocol: http/1.1", "Verify return code: 0 (ok)", "HTTP/1.1 200 OK"}},
		{"SNI other.test", []string{"-servername", "other.test", "-alpn", "http/1.1"},
			[]string{"subject=O = frontdoor tests, CN = other.test", "Verify return code: 0 (ok)", "HTTP/1.1 200 OK"}},
		{"ALPN h2 chosen first", []string{"-servername", "example.com", "-alpn", "h2,http/1.1"},
			[]string{"subject=O = frontdoor tests, CN = example.com", "ALPN protocol: h2"}},
		{"no ALPN", []string{"-servername", "example.com"},
			[]string{"No ALPN negotiated", "HTTP/1.1 200 OK"}},
		{"TLS 1.2", []string{"-servername", "example.com", "-tls1_2", "-alpn", "http/1.1"},
			[]string{"Protocol  : TLSv1.2", "HTTP/1.1 200 OK"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := sClient(t, tc.args...)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("s_client %v: no %q in\n%s", tc.args, w, out)
				}
			}
		})
	}
}

// TestTLSOpenSSLRefusals: what openssl s_client sees of refused handshakes
// (the alert frontdoor sends).
func TestTLSOpenSSLRefusals(t *testing.T) {
	openssl := lookTool(t, "openssl")
	t.Parallel()
	k := newTLSPKI(t)
	_, _, port := startTLSProxy(t, k, fmt.Sprintf(`  unknown_sni = "refuse"
  min_version = "1.3"
  client_ca_file = %q`, k.clientCA.File))
	sClient := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		base := []string{"s_client", "-connect", "127.0.0.1:" + port, "-CAfile", k.ca.File, "-ign_eof"}
		cmd := exec.CommandContext(ctx, openssl, append(base, args...)...)
		cmd.Stdin = strings.NewReader("GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	// The alert numbers of RFC 8446 6: unrecognized_name 112,
	// protocol_version 70, certificate_required 116, unknown_ca 48.
	for _, tc := range []struct {
		name  string
		args  []string
		alert string
	}{
		{"unknown name", []string{"-servername", "nobody.test"}, "SSL alert number 112"},
		{"TLS 1.2 against min 1.3", []string{"-servername", "example.com", "-tls1_2"}, "SSL alert number 70"},
		{"no client certificate", []string{"-servername", "example.com"}, "SSL alert number 116"},
		{"client certificate of another CA", []string{"-servername", "example.com", "-cert", k.rogue.CertFile, "-key", k.rogue.KeyFile}, "SSL alert number 48"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := sClient(tc.args...)
			if !strings.Contains(out, tc.alert) || strings.Contains(out, "HTTP/1.1 200") {
				t.Errorf("s_client %v: want %q\n%s", tc.args, tc.alert, out)
			}
		})
	}
	if out := sClient("-servername", "example.com", "-cert", k.client.CertFile, "-key", k.client.KeyFile); !strings.Contains(out, "HTTP/1.1 200 OK") {
		t.Errorf("with a good client certificate:\n%s", out)
	}
}

// TestTLSGRPC: grpc-go with TLS credentials through frontdoor (ALPN h2).
func TestTLSGRPC(t *testing.T) {
	t.Parallel()
	k := newTLSPKI(t)
	plain := startGRPCBackend(t, "plain")
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  path_prefix = "/grpc.health.v1.Health/"
  pool = "grpc"
`+k.listenerTLS("")+poolTOML("grpc", "protocol = \"h2c\"\n[pool.grpc.health]\ncheck = \"grpc\"\ninterval = \"1s\"", plain), nil)
	call := func(t *testing.T, addr string) string {
		t.Helper()
		conn, err := grpclib.NewClient(addr, grpclib.WithTransportCredentials(credentials.NewTLS(k.clientConfig("grpc.example.com"))))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var hdr metadata.MD
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpclib.Header(&hdr))
		if err != nil {
			t.Fatalf("Check over TLS through frontdoor: %v", err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("status %v", resp.GetStatus())
		}
		return strings.Join(hdr.Get("x-backend"), ",")
	}
	t.Run("to an h2c backend", func(t *testing.T) {
		if got := call(t, p.Addr("web").String()); got != "plain" {
			t.Errorf("reached %q", got)
		}
		if v := metricValue(t, p.reg, "frontdoor_tls_handshakes_total", map[string]string{"listener": "web", "result": "ok"}); v < 1 {
			t.Errorf("handshakes %v", v)
		}
	})
	t.Run("to a TLS backend", func(t *testing.T) {
		backendCert := k.ca.Issue(t, testpki.Leaf{Names: []string{"grpc.internal"}})
		tlsBackend := startGRPCBackendTLS(t, "tls", backendCert)
		p2 := startProxy(t, listenerTOML+`
  [[listener.route]]
  path_prefix = "/grpc.health.v1.Health/"
  pool = "grpc"
`+k.listenerTLS("")+poolTOML("grpc", fmt.Sprintf("protocol = \"h2c\"\ntls = { ca_file = %q, server_name = \"grpc.internal\" }\n[pool.grpc.health]\ncheck = \"grpc\"\ninterval = \"1s\"", k.ca.File), tlsBackend), nil)
		if got := call(t, p2.Addr("web").String()); got != "tls" {
			t.Errorf("reached %q", got)
		}
	})
}

// startGRPCBackendTLS is startGRPCBackend over TLS with pair.
func startGRPCBackendTLS(t *testing.T, name string, pair *testpki.Pair) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpclib.NewServer(grpclib.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair.TLS}})),
		grpclib.UnaryInterceptor(func(ctx context.Context, req any, _ *grpclib.UnaryServerInfo, h grpclib.UnaryHandler) (any, error) {
			_ = grpclib.SetHeader(ctx, metadata.Pairs("x-backend", name))
			return h(ctx, req)
		}))
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}
