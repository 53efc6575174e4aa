package grpc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	grpclib "google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"frontdoor/balancer"
	"frontdoor/config"
	"frontdoor/proxy/internal/requestid"
)

// md returns outgoing metadata exercising ASCII and binary values.
func echoMD(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx,
		"x-echo-text", "hello, world",
		"x-echo-bin", string([]byte{0, 1, 2, 0xfe, 0xff}),
	)
}

func checkEcho(t *testing.T, header, trailer metadata.MD) {
	t.Helper()
	if got := header.Get("x-echo-text"); len(got) != 1 || got[0] != "hello, world" {
		t.Errorf("header x-echo-text = %q", got)
	}
	if got := header.Get("x-echo-bin"); len(got) != 1 || got[0] != string([]byte{0, 1, 2, 0xfe, 0xff}) {
		t.Errorf("header x-echo-bin = %q", got)
	}
	if got := trailer.Get("x-trailer-text"); len(got) != 1 || got[0] != "hello, world" {
		t.Errorf("trailer x-trailer-text = %q", got)
	}
	if got := trailer.Get("x-trailer-bin"); len(got) != 1 || got[0] != string([]byte{0, 1, 2, 0xfe, 0xff}) {
		t.Errorf("trailer x-trailer-bin = %q", got)
	}
	if len(header.Get("x-backend")) != 1 {
		t.Errorf("header x-backend missing: %v", header)
	}
}

func TestPassthrough(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{backends: 2})
	tests := []struct {
		name string
		run  func(t *testing.T, ctx context.Context)
	}{
		{"unary", func(t *testing.T, ctx context.Context) {
			var header, trailer metadata.MD
			resp, err := unary(echoMD(ctx), f.cc, methodUnary, []byte("ping"), grpclib.Header(&header), grpclib.Trailer(&trailer))
			if err != nil {
				t.Fatal(err)
			}
			if string(resp) != "ping" {
				t.Errorf("resp = %q", resp)
			}
			checkEcho(t, header, trailer)
		}},
		{"server streaming", func(t *testing.T, ctx context.Context) {
			cs, err := f.cc.NewStream(echoMD(ctx), &descServer, methodServer, raw)
			if err != nil {
				t.Fatal(err)
			}
			req := []byte("100")
			if err := cs.SendMsg(&req); err != nil {
				t.Fatal(err)
			}
			if err := cs.CloseSend(); err != nil {
				t.Fatal(err)
			}
			header, err := cs.Header()
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; ; i++ {
				var m []byte
				err := cs.RecvMsg(&m)
				if errors.Is(err, io.EOF) {
					if i != 100 {
						t.Errorf("got %d messages, want 100", i)
					}
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if want := "msg-" + strconv.Itoa(i); string(m) != want {
					t.Fatalf("message %d = %q, want %q", i, m, want)
				}
			}
			checkEcho(t, header, cs.Trailer())
		}},
		{"client streaming", func(t *testing.T, ctx context.Context) {
			cs, err := f.cc.NewStream(echoMD(ctx), &descClient, methodClient, raw)
			if err != nil {
				t.Fatal(err)
			}
			for range 50 {
				m := bytes.Repeat([]byte("x"), 1000)
				if err := cs.SendMsg(&m); err != nil {
					t.Fatal(err)
				}
			}
			if err := cs.CloseSend(); err != nil {
				t.Fatal(err)
			}
			var resp []byte
			if err := cs.RecvMsg(&resp); err != nil {
				t.Fatal(err)
			}
			if string(resp) != "50/50000" {
				t.Errorf("resp = %q, want 50/50000", resp)
			}
			header, _ := cs.Header()
			checkEcho(t, header, cs.Trailer())
		}},
		{"bidi, client waits for headers first", func(t *testing.T, ctx context.Context) {
			cs, err := f.cc.NewStream(echoMD(ctx), &descBidi, methodBidi, raw)
			if err != nil {
				t.Fatal(err)
			}
			// The backend sends its headers before reading anything; they
			// must arrive before the client sends a message.
			header, err := cs.Header()
			if err != nil {
				t.Fatal(err)
			}
			for i := range 50 {
				m := []byte("ping " + strconv.Itoa(i))
				if err := cs.SendMsg(&m); err != nil {
					t.Fatal(err)
				}
				var got []byte
				if err := cs.RecvMsg(&got); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, m) {
					t.Fatalf("echo %d = %q", i, got)
				}
			}
			if err := cs.CloseSend(); err != nil {
				t.Fatal(err)
			}
			var m []byte
			if err := cs.RecvMsg(&m); !errors.Is(err, io.EOF) {
				t.Fatalf("end of stream: %v", err)
			}
			checkEcho(t, header, cs.Trailer())
		}},
		{"health check and watch (protobuf)", func(t *testing.T, ctx context.Context) {
			hc := healthpb.NewHealthClient(f.cc)
			resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("status = %v", resp.GetStatus())
			}
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			w, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{})
			if err != nil {
				t.Fatal(err)
			}
			first, err := w.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("watch status = %v", first.GetStatus())
			}
			_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"})
			if codeOf(err) != codes.NotFound {
				t.Errorf("unknown service: %v, want NotFound", err)
			}
		}},
		{"large messages both ways", func(t *testing.T, ctx context.Context) {
			big := make([]byte, 4<<20+123)
			for i := range big {
				big[i] = byte(i * 7)
			}
			resp, err := unary(ctx, f.cc, methodUnary, big)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(resp, big) {
				t.Errorf("echo of %d bytes came back as %d different bytes", len(big), len(resp))
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, testCtx(t))
		})
	}
}

func TestBackendStatuses(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{backends: 1})
	tests := []struct {
		name   string
		method string
		code   codes.Code
		msg    string
	}{
		{"not found", methodUnary, codes.NotFound, "no such thing"},
		{"permission denied", methodUnary, codes.PermissionDenied, "go away"},
		{"internal, message needing escapes", methodUnary, codes.Internal, "100% broken: ünïcödé\nline two"},
		{"resource exhausted, empty message", methodUnary, codes.ResourceExhausted, ""},
		{"unavailable from the backend itself", methodUnary, codes.Unavailable, "backend says so"},
		{"aborted after streaming", methodServer, codes.Aborted, "stopped after 3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := metadata.AppendToOutgoingContext(testCtx(t),
				"x-status", strconv.Itoa(int(tc.code)), "x-status-msg-bin", tc.msg, "x-echo-k", "v")
			var err error
			var trailer metadata.MD
			if tc.method == methodUnary {
				_, err = unary(ctx, f.cc, methodUnary, []byte("x"), grpclib.Trailer(&trailer))
			} else {
				cs, serr := f.cc.NewStream(ctx, &descServer, methodServer, raw)
				if serr != nil {
					t.Fatal(serr)
				}
				req := []byte("3")
				_ = cs.SendMsg(&req)
				_ = cs.CloseSend()
				n := 0
				for {
					var m []byte
					if err = cs.RecvMsg(&m); err != nil {
						break
					}
					n++
				}
				if n != 3 {
					t.Errorf("got %d messages before the status, want 3", n)
				}
				trailer = cs.Trailer()
			}
			st := status.Convert(err)
			if st.Code() != tc.code || st.Message() != tc.msg {
				t.Errorf("got %v %q, want %v %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
			if got := trailer.Get("x-trailer-k"); len(got) != 1 || got[0] != "v" {
				t.Errorf("custom trailer with an error status = %q", got)
			}
		})
	}
}

func TestDeadlines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		clientTimeout   time.Duration
		responseTimeout time.Duration
		wantMsg         string // "" when grpc-go's own deadline may win the race
	}{
		{"client grpc-timeout", 300 * time.Millisecond, 0, ""},
		{"route response timeout", 0, 200 * time.Millisecond, "frontdoor: backend response timeout"},
		{"smaller grpc-timeout wins over response timeout", 200 * time.Millisecond, 10 * time.Second, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, fixtureOpts{backends: 1, route: &Route{ResponseTimeout: tc.responseTimeout}})
			ctx := testCtx(t)
			if tc.clientTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.clientTimeout)
				defer cancel()
			}
			start := time.Now()
			_, err := unary(metadata.AppendToOutgoingContext(ctx, "x-sleep", "1"), f.cc, methodUnary, []byte("x"))
			elapsed := time.Since(start)
			if codeOf(err) != codes.DeadlineExceeded {
				t.Fatalf("err = %v, want DeadlineExceeded", err)
			}
			if tc.wantMsg != "" && status.Convert(err).Message() != tc.wantMsg {
				t.Errorf("message = %q, want %q", status.Convert(err).Message(), tc.wantMsg)
			}
			if elapsed > 3*time.Second {
				t.Errorf("took %v", elapsed)
			}
			select {
			case cerr := <-f.backends[0].cancelled:
				if cerr == nil {
					t.Error("backend context ended without error")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("backend never saw its context end")
			}
		})
	}
}

func TestResponseTimeoutSparesLongStreams(t *testing.T) {
	t.Parallel()
	// A server stream that answered at once may outlive the response
	// timeout: it bounds the wait for response headers, not the stream.
	f := newFixture(t, fixtureOpts{backends: 1, route: &Route{ResponseTimeout: 100 * time.Millisecond}})
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	cs, err := f.cc.NewStream(metadata.AppendToOutgoingContext(ctx, "x-sleep", "1"), &descServer, methodServer, raw)
	if err != nil {
		t.Fatal(err)
	}
	req := []byte("1")
	if err := cs.SendMsg(&req); err != nil {
		t.Fatal(err)
	}
	var m []byte
	if err := cs.RecvMsg(&m); err != nil {
		t.Fatal(err)
	}
	// Still open well past the response timeout: the stream is cut only
	// when the client cancels it.
	stop := time.Now().Add(400 * time.Millisecond)
	for time.Now().Before(stop) {
		select {
		case err := <-f.backends[0].cancelled:
			t.Fatalf("stream ended after %v: %v", 400*time.Millisecond-time.Until(stop), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	select {
	case <-f.backends[0].cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("backend never saw the cancel")
	}
}

func TestCancelPropagates(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{backends: 1})
	tests := []struct {
		name   string
		method string
	}{
		{"unary", methodUnary},
		{"server stream", methodServer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(testCtx(t), "x-sleep", "1"))
			errc := make(chan error, 1)
			go func() {
				if tc.method == methodUnary {
					_, err := unary(ctx, f.cc, methodUnary, []byte("x"))
					errc <- err
					return
				}
				cs, err := f.cc.NewStream(ctx, &descServer, methodServer, raw)
				if err == nil {
					req := []byte("0")
					_ = cs.SendMsg(&req)
					var m []byte
					err = cs.RecvMsg(&m)
				}
				errc <- err
			}()
			select {
			case <-f.backends[0].started:
			case <-time.After(5 * time.Second):
				t.Fatal("call never reached the backend")
			}
			cancel()
			if err := <-errc; codeOf(err) != codes.Canceled {
				t.Errorf("client err = %v, want Canceled", err)
			}
			select {
			case err := <-f.backends[0].cancelled:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("backend saw %v, want context.Canceled", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("backend never saw the cancel")
			}
		})
	}
}

func TestRoundRobinPerCall(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{backends: 3})
	// One client connection, 300 calls: every call is balanced on its own.
	for i := range 300 {
		if _, err := unary(testCtx(t), f.cc, methodUnary, []byte("x")); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	for _, b := range f.backends {
		if n := b.calls.Load(); n < 90 || n > 110 {
			t.Errorf("backend %s got %d calls, want 100 ± 10%%", b.name, n)
		}
	}
}

func TestBackendStopsMidStream(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{backends: 3})
	ctx := testCtx(t)
	cs, err := f.cc.NewStream(ctx, &descBidi, methodBidi, raw)
	if err != nil {
		t.Fatal(err)
	}
	header, err := cs.Header()
	if err != nil {
		t.Fatal(err)
	}
	var victim *testBackend
	for _, b := range f.backends {
		if header.Get("x-backend")[0] == b.name {
			victim = b
		}
	}
	m := []byte("one")
	if err := cs.SendMsg(&m); err != nil {
		t.Fatal(err)
	}
	if err := cs.RecvMsg(&m); err != nil {
		t.Fatal(err)
	}
	// The backend dies; health checks would mark it down.
	victim.srv.Stop()
	victim.backend.SetHealthy(false)
	var got []byte
	err = cs.RecvMsg(&got)
	if codeOf(err) != codes.Unavailable {
		t.Fatalf("stream ended with %v, want Unavailable", err)
	}
	for i := range 30 {
		var header metadata.MD
		if _, err := unary(ctx, f.cc, methodUnary, []byte("x"), grpclib.Header(&header)); err != nil {
			t.Fatalf("call %d after the stop: %v", i, err)
		}
		if header.Get("x-backend")[0] == victim.name {
			t.Fatalf("call %d went to the stopped backend", i)
		}
	}
}

func TestConnectFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		retries  int
		wantFail bool
	}{
		{"retried on another backend", 1, false},
		{"no retries", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var outcomes []Outcome
			f := newFixture(t, fixtureOpts{backends: 2, route: &Route{
				Retries:        tc.retries,
				ConnectTimeout: time.Second,
				Observe: func(o *Outcome) {
					mu.Lock()
					outcomes = append(outcomes, *o)
					mu.Unlock()
				},
			}})
			// A backend still marked up whose process is gone: connects
			// are refused before any byte of the call is sent.
			f.backends[0].srv.Stop()
			ctx := testCtx(t)
			failed := 0
			for range 10 {
				_, err := unary(ctx, f.cc, methodUnary, []byte("x"))
				switch {
				case err == nil:
				case codeOf(err) == codes.Unavailable && status.Convert(err).Message() == "frontdoor: backend connect failed":
					failed++
				default:
					t.Fatalf("unexpected error %v", err)
				}
			}
			if tc.wantFail != (failed > 0) {
				t.Errorf("%d of 10 calls failed; want failures: %v", failed, tc.wantFail)
			}
			mu.Lock()
			defer mu.Unlock()
			retried := 0
			for _, o := range outcomes {
				retried += o.Retries
				if o.Reason == "" && (o.Backend != 1 || o.GRPCStatus != 0 || o.HTTPStatus != 200) {
					t.Errorf("successful outcome %+v", o)
				}
				if o.Reason == ReasonConnect && (o.GRPCStatus != int(codes.Unavailable) || o.Backend != 0) {
					t.Errorf("failed outcome %+v", o)
				}
			}
			if tc.retries > 0 && retried == 0 {
				t.Error("no outcome counted a retry")
			}
		})
	}
}

func TestFrontdoorStatuses(t *testing.T) {
	t.Parallel()
	down := newFixture(t, fixtureOpts{backends: 2})
	for _, b := range down.backends {
		b.backend.SetHealthy(false)
	}
	auth := newFixture(t, fixtureOpts{backends: 1, route: &Route{
		Authorize: func(r *http.Request) (bool, string) {
			if r.Header.Get("Authorization") != "Bearer good" {
				return false, `Bearer error="invalid_token"`
			}
			r.Header.Set("X-User-Id", "alice")
			return true, ""
		},
	}})
	tests := []struct {
		name   string
		f      *fixture
		method string
		md     []string
		code   codes.Code
		msg    string
	}{
		{"no route", down, methodNoRoute, nil, codes.Unimplemented, "frontdoor: no route"},
		{"no healthy backend", down, methodUnary, nil, codes.Unavailable, "frontdoor: no healthy backend"},
		{"no token", auth, methodUnary, nil, codes.Unauthenticated, "frontdoor: unauthenticated"},
		{"bad token", auth, methodUnary, []string{"authorization", "Bearer bad"}, codes.Unauthenticated, "frontdoor: unauthenticated"},
		{"good token", auth, methodUnary, []string{"authorization", "Bearer good"}, codes.OK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := metadata.AppendToOutgoingContext(testCtx(t), tc.md...)
			var header, trailer metadata.MD
			_, err := unary(ctx, tc.f.cc, tc.method, []byte("x"), grpclib.Header(&header), grpclib.Trailer(&trailer))
			st := status.Convert(err)
			if st.Code() != tc.code || st.Message() != tc.msg {
				t.Fatalf("got %v %q, want %v %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
			if tc.code != codes.OK {
				// Trailers-only: grpc-go reports that HEADERS frame's
				// metadata as trailers.
				if len(header) != 0 {
					t.Errorf("header %v on a trailers-only answer", header)
				}
				header = trailer
			}
			if len(header.Get("x-request-id")) != 1 {
				t.Errorf("no x-request-id in %v", header)
			}
			if tc.code == codes.Unauthenticated {
				if got := header.Get("www-authenticate"); len(got) != 1 || got[0] != `Bearer error="invalid_token"` {
					t.Errorf("www-authenticate = %q", got)
				}
			}
			if tc.code == codes.OK {
				if got := header.Get("seen-x-user-id"); len(got) != 1 || got[0] != "alice" {
					t.Errorf("backend saw x-user-id %q, want the header Authorize set", got)
				}
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	ids := requestid.New()
	var first [requestid.Len]byte
	prefix := string(ids.Next(&first)[:16])
	f := newFixture(t, fixtureOpts{backends: 1, options: Options{RequestIDs: ids}})
	tests := []struct {
		name string
		md   []string
		want string // "" = any 32 hex digits
	}{
		{"client's own", []string{"x-request-id", "req-123"}, "req-123"},
		{"from traceparent", []string{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "4bf92f3577b34da6a3ce929d0e0e4736"},
		// The rule of requestid.Pick, as for HTTP/1.1: traceparent first,
		// then a safe X-Request-ID, else a new ID.
		{"traceparent wins over x-request-id", []string{"x-request-id", "req-123", "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"x-request-id with a quote is replaced", []string{"x-request-id", `req"1`}, ""},
		{"x-request-id with a space is replaced", []string{"x-request-id", "req 1"}, ""},
		{"x-request-id over 128 characters is replaced", []string{"x-request-id", strings.Repeat("i", 129)}, ""},
		{"x-request-id of 128 characters is kept", []string{"x-request-id", strings.Repeat("i", 128)}, strings.Repeat("i", 128)},
		{"generated", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var header metadata.MD
			ctx := metadata.AppendToOutgoingContext(testCtx(t), tc.md...)
			if _, err := unary(ctx, f.cc, methodUnary, []byte("x"), grpclib.Header(&header)); err != nil {
				t.Fatal(err)
			}
			seen, back := header.Get("seen-x-request-id"), header.Get("x-request-id")
			if len(seen) != 1 || len(back) != 1 || seen[0] != back[0] {
				t.Fatalf("backend saw %q, client got %q", seen, back)
			}
			if tc.want != "" && back[0] != tc.want {
				t.Errorf("id = %q, want %q", back[0], tc.want)
			}
			if tc.want == "" && (len(back[0]) != requestid.Len || back[0][:16] != prefix) {
				t.Errorf("generated id %q is not one of Options.RequestIDs' (%s...)", back[0], prefix)
			}
		})
	}
}

func TestNotGRPC(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{backends: 1})
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: &protocols}, Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections) // after the parallel subtests, before the server shuts down
	tests := []struct {
		name        string
		method      string
		contentType string
		status      int
	}{
		{"GET", http.MethodGet, "", http.StatusMethodNotAllowed},
		{"POST text", http.MethodPost, "text/plain", http.StatusUnsupportedMediaType},
		{"POST grpc-web", http.MethodPost, "application/grpc-web", http.StatusUnsupportedMediaType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(tc.method, "http://"+f.addr+"/fd.test.Echo/Unary", strings.NewReader("hi"))
			if err != nil {
				t.Fatal(err)
			}
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != tc.status || resp.ProtoMajor != 2 {
				t.Errorf("got %s %d, want HTTP/2 %d", resp.Proto, resp.StatusCode, tc.status)
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || !strings.HasPrefix(string(body), "frontdoor: ") {
				t.Errorf("body %q (%s), want a one-line text error", body, resp.Header.Get("Content-Type"))
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id")
			}
		})
	}
	if n := f.backends[0].calls.Load(); n != 0 {
		t.Errorf("backend got %d calls", n)
	}
}

func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{backends: 1})
	ctx := testCtx(t)
	cs, err := f.cc.NewStream(ctx, &descBidi, methodBidi, raw)
	if err != nil {
		t.Fatal(err)
	}
	m := []byte("before")
	if err := cs.SendMsg(&m); err != nil {
		t.Fatal(err)
	}
	if err := cs.RecvMsg(&m); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- f.srv.Shutdown(sctx)
	}()
	// The open stream keeps working while the server drains.
	for i := range 5 {
		m := []byte("during " + strconv.Itoa(i))
		if err := cs.SendMsg(&m); err != nil {
			t.Fatal(err)
		}
		var got []byte
		if err := cs.RecvMsg(&got); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a stream still open", err)
	default:
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := cs.RecvMsg(&m); !errors.Is(err, io.EOF) {
		t.Fatalf("stream end: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("Shutdown did not return after the last stream ended")
	}
	// New calls are refused now.
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := unary(cctx, f.cc, methodUnary, []byte("x")); err == nil {
		t.Error("call after Shutdown succeeded")
	}
}

func TestServeConnAfterShutdown(t *testing.T) {
	t.Parallel()
	srv := NewServer(Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown of an idle server: %v", err)
	}
	a, b := net.Pipe()
	defer a.Close()
	done := make(chan struct{})
	go func() {
		srv.ServeConn(b)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn after Shutdown did not return")
	}
	if _, err := a.Write([]byte("PRI")); err == nil {
		t.Error("connection still open after ServeConn returned")
	}
}

func TestNotHTTP2Preface(t *testing.T) {
	t.Parallel()
	_, addr := serveFrontdoor(t, Options{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 64))
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read %d bytes, err %v; want the connection closed without a reply", n, err)
	}
}

func TestConsistentHashOnMetadata(t *testing.T) {
	t.Parallel()
	backends := []*testBackend{startBackend(t, "b0"), startBackend(t, "b1"), startBackend(t, "b2")}
	members := make([]balancer.Member, len(backends))
	for i, b := range backends {
		members[i] = balancer.Member{Backend: b.backend, Weight: 1}
	}
	pool, err := balancer.NewPool(members, balancer.Options{Strategy: balancer.ConsistentHash})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOpts{route: &Route{Pool: pool, HashOn: config.HashKey{Source: "header", Name: "X-User-ID"}}})
	seen := map[string]bool{}
	for u := range 30 {
		user := "user-" + strconv.Itoa(u)
		first := ""
		for range 5 {
			var header metadata.MD
			ctx := metadata.AppendToOutgoingContext(testCtx(t), "x-user-id", user)
			if _, err := unary(ctx, f.cc, methodUnary, []byte("x"), grpclib.Header(&header)); err != nil {
				t.Fatal(err)
			}
			got := header.Get("x-backend")[0]
			if first == "" {
				first = got
			} else if got != first {
				t.Fatalf("%s went to %s, then to %s", user, first, got)
			}
		}
		seen[first] = true
	}
	if len(seen) != 3 {
		t.Errorf("30 users landed on %d backends, want all 3", len(seen))
	}
}
