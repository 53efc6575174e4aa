package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	grpclib "google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// grpc-go's interop cases report failures through grpclog's Fatal, which
// exits the process. The test binary's logger turns Fatal into a panic of
// interopFailure, which runInterop recovers into t.Fatal. It is set in init,
// before any goroutine of gRPC can read the logger. Everything else logs as
// grpc-go's default does: errors to stderr.
func init() {
	grpclog.SetLoggerV2(interopLogger{grpclog.NewLoggerV2(io.Discard, io.Discard, os.Stderr)})
}

type interopFailure struct{ msg string }

type interopLogger struct{ grpclog.LoggerV2 }

func (interopLogger) Fatal(args ...any) { panic(interopFailure{fmt.Sprint(args...)}) }
func (interopLogger) Fatalf(format string, args ...any) {
	panic(interopFailure{fmt.Sprintf(format, args...)})
}
func (interopLogger) Fatalln(args ...any) { panic(interopFailure{fmt.Sprintln(args...)}) }

// runInterop runs one interop case and fails t with its message.
func runInterop(t *testing.T, run func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(interopFailure)
			if !ok {
				panic(r)
			}
			t.Fatal(f.msg)
		}
	}()
	run()
}

// startInteropServer runs grpc-go's interop test server on 127.0.0.1 and
// counts the unary calls it served.
func startInteropServer(t *testing.T) (addr string, unary *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unary = new(atomic.Int64)
	srv := grpclib.NewServer(grpclib.UnaryInterceptor(func(ctx context.Context, req any, _ *grpclib.UnaryServerInfo, h grpclib.UnaryHandler) (any, error) {
		unary.Add(1)
		return h(ctx, req)
	}))
	testgrpc.RegisterTestServiceServer(srv, interop.NewTestServer())
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), unary
}

// TestH2InteropGRPC runs grpc-go's interop client cases through frontdoor
// (one h2c connection from the client, a pool of two interop servers), then
// shows that calls from that one connection are balanced per call.
func TestH2InteropGRPC(t *testing.T) {
	t.Parallel()
	a, aCalls := startInteropServer(t)
	b, bCalls := startInteropServer(t)
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "interop"
`+poolTOML("interop", "protocol = \"h2c\"\nhealth = { check = \"none\" }", a, b), nil)
	cc, err := grpclib.NewClient(p.Addr("web").String(), grpclib.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	tc := testgrpc.NewTestServiceClient(cc)
	cases := []struct {
		name string
		run  func(ctx context.Context)
	}{
		{"empty_unary", func(ctx context.Context) { interop.DoEmptyUnaryCall(ctx, tc) }},
		{"large_unary", func(ctx context.Context) { interop.DoLargeUnaryCall(ctx, tc) }},
		{"client_streaming", func(ctx context.Context) { interop.DoClientStreaming(ctx, tc) }},
		{"server_streaming", func(ctx context.Context) { interop.DoServerStreaming(ctx, tc) }},
		{"ping_pong", func(ctx context.Context) { interop.DoPingPong(ctx, tc) }},
		{"empty_stream", func(ctx context.Context) { interop.DoEmptyStream(ctx, tc) }},
		{"timeout_on_sleeping_server", func(ctx context.Context) { interop.DoTimeoutOnSleepingServer(ctx, tc) }},
		{"cancel_after_begin", func(ctx context.Context) { interop.DoCancelAfterBegin(ctx, tc) }},
		{"cancel_after_first_response", func(ctx context.Context) { interop.DoCancelAfterFirstResponse(ctx, tc) }},
		{"custom_metadata", func(ctx context.Context) { interop.DoCustomMetadata(ctx, tc) }},
		{"status_code_and_message", func(ctx context.Context) { interop.DoStatusCodeAndMessage(ctx, tc) }},
		{"special_status_message", func(ctx context.Context) { interop.DoSpecialStatusMessage(ctx, tc) }},
		{"unimplemented_service", func(ctx context.Context) {
			interop.DoUnimplementedService(ctx, testgrpc.NewUnimplementedServiceClient(cc))
		}},
		{"unimplemented_method", func(ctx context.Context) { interop.DoUnimplementedMethod(ctx, cc) }},
	}
	// The cases share one connection and take well under a second in
	// all: run in turn, they cannot queue for -parallel slots behind
	// slower tests of the package.
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			runInterop(t, func() { c.run(ctx) })
		})
	}

	a0, b0 := aCalls.Load(), bCalls.Load()
	const calls = 20
	for range calls {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		runInterop(t, func() { interop.DoEmptyUnaryCall(ctx, tc) })
		cancel()
	}
	da, db := aCalls.Load()-a0, bCalls.Load()-b0
	if da+db != calls || da < calls/2-2 || db < calls/2-2 {
		t.Errorf("%d calls from one connection: %d went to a, %d to b; want about half each (round robin per call)", calls, da, db)
	}
}

// h2cHTTPClient is a net/http client that speaks HTTP/2 with prior
// knowledge to http:// URLs.
func h2cHTTPClient(t *testing.T) *http.Client {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protocols}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// TestH2PlainClients sends ordinary HTTP/2 requests (h2c with prior
// knowledge) from net/http, curl and h2load through frontdoor to an
// HTTP/1.1 pool, which gets them translated, and to an h2c pool, which gets
// HTTP/2 end to end.
func TestH2PlainClients(t *testing.T) {
	t.Parallel()
	h1, h2 := startHTTPBackend(t, "h1", false), startHTTPBackend(t, "h2", true)
	p := startProxy(t, h2TOML("", h1, h2), nil)
	base := "http://" + p.Addr("web").String()
	pools := []struct {
		name, prefix, proto string
	}{
		{"h1", "/h1/", "HTTP/1.1"},
		{"h2", "/h2/", "HTTP/2.0"},
	}
	// want checks one answer: status, the backend and protocol it came
	// through, its body, and a request ID the backend saw too.
	want := func(t *testing.T, status int, hdr http.Header, body, backend, proto, wantBody string) {
		t.Helper()
		if status != 200 || hdr.Get("X-Backend") != backend || hdr.Get("X-Proto") != proto || body != wantBody {
			t.Errorf("got %d, backend %q over %q, body %q; want 200 from %s over %s with %q",
				status, hdr.Get("X-Backend"), hdr.Get("X-Proto"), body, backend, proto, wantBody)
		}
		if id := hdr.Get("X-Request-Id"); id == "" || id != hdr.Get("X-Seen-Request-Id") {
			t.Errorf("X-Request-Id %q to the client, %q to the backend; want one ID for both", id, hdr.Get("X-Seen-Request-Id"))
		}
	}
	for _, pool := range pools {
		t.Run("net/http/"+pool.name, func(t *testing.T) {
			t.Parallel()
			client := h2cHTTPClient(t)
			resp, err := client.Get(base + pool.prefix + "get?x=1")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Errorf("client spoke %s, want HTTP/2", resp.Proto)
			}
			want(t, resp.StatusCode, resp.Header, string(body), pool.name, pool.proto, "GET "+pool.prefix+"get?x=1 ")

			resp, err = client.Post(base+pool.prefix+"post", "text/plain", strings.NewReader("hello"))
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			want(t, resp.StatusCode, resp.Header, string(body), pool.name, pool.proto, "POST "+pool.prefix+"post hello")
		})
		t.Run("curl/"+pool.name, func(t *testing.T) {
			t.Parallel()
			curl, err := exec.LookPath("curl")
			if err != nil {
				t.Skip("curl is not installed (apt-get install curl)")
			}
			headers := filepath.Join(t.TempDir(), "headers")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, curl, "-sS", "--http2-prior-knowledge", "--max-time", "4",
				"-D", headers, "--data-binary", "from curl", base+pool.prefix+"curl")
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("curl: %v: %s", err, stderr.Bytes())
			}
			raw, err := os.ReadFile(headers)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(raw)), "\r\n")
			proto, code, _ := strings.Cut(strings.TrimSpace(lines[0]), " ")
			if proto != "HTTP/2" {
				t.Errorf("curl's status line %q, want HTTP/2", lines[0])
			}
			status, _ := strconv.Atoi(code)
			hdr := http.Header{}
			for _, l := range lines[1:] {
				if k, v, ok := strings.Cut(l, ":"); ok {
					hdr.Add(k, strings.TrimSpace(v))
				}
			}
			want(t, status, hdr, string(out), pool.name, pool.proto, "POST "+pool.prefix+"curl from curl")
		})
		t.Run("h2load/"+pool.name, func(t *testing.T) {
			t.Parallel()
			h2load, err := exec.LookPath("h2load")
			if err != nil {
				t.Skip("h2load is not installed (apt-get install nghttp2-client)")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			var out bytes.Buffer
			cmd := exec.CommandContext(ctx, h2load, "-n", "200", "-c", "2", "-m", "8", base+pool.prefix+"load")
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				t.Fatalf("h2load: %v\n%s", err, out.String())
			}
			m := regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`).FindStringSubmatch(out.String())
			if m == nil || m[1] != "200" {
				t.Errorf("h2load: want 200 2xx answers of 200 requests:\n%s", out.String())
			}
		})
	}
}
