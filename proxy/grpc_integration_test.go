package proxy

import (
	"context"
	"net"
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
