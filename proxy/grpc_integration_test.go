package proxy

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	grpclib "google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/valyala/fasthttp"
)

// startGRPCBackend runs a grpc-go server with the health service; every
// answer carries the header x-backend: name.
func startGRPCBackend(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpclib.NewServer(grpclib.UnaryInterceptor(func(ctx context.Context, req any, _ *grpclib.UnaryServerInfo, h grpclib.UnaryHandler) (any, error) {
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

// TestGRPCThroughHTTPListener sends gRPC (h2c, prior knowledge) to the same
// port as HTTP/1.1 and checks per-call balancing from one client connection,
// the grpc health check, and gRPC-shaped errors for unrouted calls.
func TestGRPCThroughHTTPListener(t *testing.T) {
	t.Parallel()
	a, b, c := startGRPCBackend(t, "a"), startGRPCBackend(t, "b"), startGRPCBackend(t, "c")
	web := startBackend(t, "web")
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  path_prefix = "/grpc.health.v1.Health/"
  pool = "grpc"
  [[listener.route]]
  pool = "web"
`+poolTOML("grpc", "protocol = \"h2c\"\n[pool.grpc.health]\ncheck = \"grpc\"\ninterval = \"1s\"", a, b, c)+
		poolTOML("web", `health = { check = "none" }`, web.addr), nil)

	conn, err := grpclib.NewClient(p.Addr("web").String(), grpclib.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	seen := map[string]int{}
	for range 300 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var hdr metadata.MD
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpclib.Header(&hdr))
		cancel()
		if err != nil {
			t.Fatalf("Check through frontdoor: %v", err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("status %v", resp.GetStatus())
		}
		if v := hdr.Get("x-backend"); len(v) == 1 {
			seen[v[0]]++
		}
	}
	for _, name := range []string{"a", "b", "c"} {
		if n := seen[name]; n < 90 || n > 110 {
			t.Errorf("backend %s served %d of 300 calls from one connection, want 100 ±10%% (all: %v)", name, n, seen)
		}
	}
	if got := metricValue(t, p.reg, "frontdoor_requests_total", map[string]string{"listener": "web", "pool": "grpc", "code": "2xx"}); got != 300 {
		t.Errorf("requests_total for gRPC = %v, want 300", got)
	}

	// A call to a route whose pool speaks HTTP/1.1 is not routed for gRPC.
	err = conn.Invoke(context.Background(), "/other.Service/Method", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("unrouted call: %v, want UNIMPLEMENTED", err)
	}
	// HTTP/1.1 on the same port still works.
	resp, err := get(t, &fasthttp.Client{}, p.url(t, "web", "/"))
	if err != nil || resp.StatusCode() != 200 || string(resp.Body()) != "web" {
		t.Errorf("HTTP/1.1 beside gRPC: %v %v", err, resp)
	}
}

// TestGRPCRequestIDSameRuleAsHTTP sends the same traceparent and X-Request-ID
// pairs as HTTP/1.1 requests and as gRPC calls to one listener: both engines
// must settle on the same ID, and IDs they make up must come from the one
// generator of the Proxy (same 16-digit prefix).
func TestGRPCRequestIDSameRuleAsHTTP(t *testing.T) {
	t.Parallel()
	g := startGRPCBackend(t, "g")
	web := startBackend(t, "web")
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  path_prefix = "/grpc.health.v1.Health/"
  pool = "grpc"
  [[listener.route]]
  pool = "web"
`+poolTOML("grpc", "protocol = \"h2c\"\nhealth = { check = \"none\" }", g)+
		poolTOML("web", `health = { check = "none" }`, web.addr), nil)
	conn, err := grpclib.NewClient(p.Addr("web").String(), grpclib.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := healthpb.NewHealthClient(conn)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name        string
		traceparent string
		xRequestID  string
		generated   bool
	}{
		{"traceparent and x-request-id", tp, "req-1", false},
		{"x-request-id", "", "req-1", false},
		{"x-request-id with a quote", "", `req"1`, true},
		{"x-request-id of 129 characters", "", strings.Repeat("i", 129), true},
		{"nothing", "", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var hdr []string
			if tc.traceparent != "" {
				hdr = append(hdr, "traceparent", tc.traceparent)
			}
			if tc.xRequestID != "" {
				hdr = append(hdr, "x-request-id", tc.xRequestID)
			}
			resp, err := get(t, &fasthttp.Client{}, p.url(t, "web", "/"), hdr...)
			if err != nil {
				t.Fatal(err)
			}
			httpID := string(resp.Header.Peek("X-Request-ID"))

			ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), hdr...), 5*time.Second)
			defer cancel()
			var md metadata.MD
			if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpclib.Header(&md)); err != nil {
				t.Fatal(err)
			}
			var grpcID string
			if v := md.Get("x-request-id"); len(v) == 1 {
				grpcID = v[0]
			}
			if tc.generated {
				if len(httpID) != 32 || len(grpcID) != 32 || httpID[:16] != grpcID[:16] || httpID == grpcID {
					t.Errorf("new IDs: HTTP %q, gRPC %q; want two IDs of one generator", httpID, grpcID)
				}
				return
			}
			if httpID == "" || grpcID != httpID {
				t.Errorf("HTTP settled on %q, gRPC on %q", httpID, grpcID)
			}
		})
	}
}

// TestGRPCAccessLogBytes checks that a gRPC call's access log line counts
// its body bytes: the health check request is an empty message (5 bytes
// with its prefix), the SERVING answer 2 bytes of protobuf plus 5.
func TestGRPCAccessLogBytes(t *testing.T) {
	t.Parallel()
	g := startGRPCBackend(t, "g")
	logPath := filepath.Join(t.TempDir(), "access.log")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	access, err := NewAccessLog(ctx, logPath, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "grpc"
`+poolTOML("grpc", "protocol = \"h2c\"\nhealth = { check = \"none\" }", g), access)
	conn, err := grpclib.NewClient(p.Addr("web").String(), grpclib.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	callCtx, callCancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "x-request-id", "count-my-bytes"), 5*time.Second)
	defer callCancel()
	if _, err := healthpb.NewHealthClient(conn).Check(callCtx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	var line string
	waitFor(t, 5*time.Second, "the call's access log line", func() bool {
		data, _ := os.ReadFile(logPath)
		line = strings.TrimSpace(string(data))
		return strings.Contains(line, "count-my-bytes")
	})
	for _, want := range []string{`"grpc_status":0`, `"bytes_in":5,`, `"bytes_out":7,`} {
		if !strings.Contains(line, want) {
			t.Errorf("access log line lacks %s:\n%s", want, line)
		}
	}
}

// grpcClient dials the proxy's listener with prior-knowledge h2c.
func grpcClient(t *testing.T, p *testProxy, listener string) healthpb.HealthClient {
	t.Helper()
	conn, err := grpclib.NewClient(p.Addr(listener).String(), grpclib.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn)
}

func check(client healthpb.HealthClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// TestGRPCPassiveEjection checks that [pool.X.passive] applies to gRPC
// calls: a backend whose connects fail is ejected after
// consecutive_failures calls, and calls then go to the live one only.
func TestGRPCPassiveEjection(t *testing.T) {
	t.Parallel()
	dead, live := refusingAddr(t), startGRPCBackend(t, "live")
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "grpc"
`+poolTOML("grpc", `protocol = "h2c"
retries = 0
health = { check = "none" }
[pool.grpc.passive]
consecutive_failures = 2
base_ejection = "60s"`, dead, live), nil)
	client := grpcClient(t, p, "web")
	failed := 0
	for range 10 {
		if err := check(client); err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("call failed with %v, want UNAVAILABLE", err)
			}
			failed++
		}
	}
	if failed != 2 {
		t.Errorf("%d of 10 calls failed, want 2 (then the dead backend is ejected)", failed)
	}
	if got := metricValue(t, p.reg, "frontdoor_passive_ejections_total", map[string]string{"pool": "grpc", "backend": dead}); got != 1 {
		t.Errorf("passive_ejections_total = %v, want 1", got)
	}
}

// TestGRPCRetryBudget checks that gRPC retries draw on the pool's retry
// budget, shared with HTTP/1.1: with the budget spent (retries in flight
// held at its floor of 3), a call whose connect fails is not retried; once
// they end it is. Calls leave the pool's counters as they found them.
func TestGRPCRetryBudget(t *testing.T) {
	t.Parallel()
	dead, live := refusingAddr(t), startGRPCBackend(t, "live")
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "grpc"
`+poolTOML("grpc", `protocol = "h2c"
retries = 1
health = { check = "none" }
passive = { consecutive_failures = 0 }`, dead, live), nil)
	pr := p.gen.Load().pools["grpc"]
	client := grpcClient(t, p, "web")
	calls := func() (failed int) {
		for range 6 {
			if err := check(client); err != nil {
				if status.Code(err) != codes.Unavailable {
					t.Fatalf("call failed with %v, want UNAVAILABLE", err)
				}
				failed++
			}
		}
		return failed
	}
	pr.retrying.Add(3) // other requests' retries in flight: the budget is spent
	if failed := calls(); failed == 0 {
		t.Error("with the retry budget spent, every call was retried")
	}
	pr.retrying.Add(-3)
	if failed := calls(); failed != 0 {
		t.Errorf("with the retry budget free, %d of 6 calls failed", failed)
	}
	// Observe (and with it the end of the call) may trail the client's
	// answer by a moment.
	waitFor(t, 5*time.Second, "the pool's counters back at zero", func() bool {
		return pr.active.Load() == 0 && pr.retrying.Load() == 0
	})
}

// TestGRPCConnectionBudget checks that the h2c transport draws on the same
// max_connections_per_backend budget as the HTTP/1.1 engines: with the only
// connection of one backend held elsewhere, calls picked for it fail
// UNAVAILABLE (reason limit) without retries, and the other backend's
// HTTP/2 connection counts in its budget.
func TestGRPCConnectionBudget(t *testing.T) {
	t.Parallel()
	a, b := startGRPCBackend(t, "a"), startGRPCBackend(t, "b")
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "grpc"
`+poolTOML("grpc", `protocol = "h2c"
retries = 0
max_connections_per_backend = 1
health = { check = "none" }
passive = { consecutive_failures = 0 }`, a, b), nil)
	ups := p.gen.Load().pools["grpc"].ups
	if !ups[0].takeConn() { // held by another engine
		t.Fatal("the budget of backend a is full before any call")
	}
	client := grpcClient(t, p, "web")
	failed := 0
	for range 6 {
		if err := check(client); err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("call failed with %v, want UNAVAILABLE", err)
			}
			failed++
		}
	}
	if failed != 3 {
		t.Errorf("%d of 6 calls failed, want 3 (round robin, backend a at its limit)", failed)
	}
	if got := metricValue(t, p.reg, "frontdoor_upstream_errors_total", map[string]string{"pool": "grpc", "backend": a, "reason": "limit"}); got != 3 {
		t.Errorf("upstream_errors_total{reason=limit} = %v, want 3", got)
	}
	if n := ups[1].conns.Load(); n != 1 {
		t.Errorf("backend b's budget counts %d connections, want 1 (the h2c transport's)", n)
	}
	// With the connection given back, a's calls dial and succeed.
	ups[0].giveConn()
	for range 4 {
		if err := check(client); err != nil {
			t.Fatalf("after the budget was freed: %v", err)
		}
	}
	if n := ups[0].conns.Load(); n != 1 {
		t.Errorf("backend a's budget counts %d connections, want 1", n)
	}
}
