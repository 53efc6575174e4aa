package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	grpclib "google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// TestH2CancelledStreamsGiveTheWindowBack: answer bytes a backend sent for
// a stream whose client went away before taking them are credited to the
// backend connection. Without that, each cancelled stream kept up to a
// stream window (256 KiB) of the connection's 1 MiB, and after a few the
// one connection allowed here took no DATA at all: every later call on it
// hung.
func TestH2CancelledStreamsGiveTheWindowBack(t *testing.T) {
	t.Parallel()
	addr, _ := startInteropServer(t)
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "interop"
`+poolTOML("interop", "protocol = \"h2c\"\nhealth = { check = \"none\" }\nmax_connections_per_backend = 1", addr), nil)
	cc, err := grpclib.NewClient(p.Addr("web").String(), grpclib.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	tc := testgrpc.NewTestServiceClient(cc)
	big := &testgrpc.StreamingOutputCallRequest{}
	for range 8 {
		big.ResponseParameters = append(big.ResponseParameters, &testgrpc.ResponseParameters{Size: 256 << 10})
	}
	for i := range 12 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := tc.StreamingOutputCall(ctx, big)
		if err == nil {
			_, err = st.Recv()
		}
		if err != nil {
			cancel()
			t.Fatalf("stream %d: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond) // the backend fills the windows
		cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 64 << 10})
	if err != nil || len(resp.GetPayload().GetBody()) != 64<<10 {
		t.Fatalf("a call after 12 cancelled streams: %v", err)
	}
}

// TestH2AbandonedUploadsGiveTheWindowBack: request bytes a client sent for
// a stream that ended before they went to the backend are credited to the
// client's connection. The backend here answers after reading 1 KiB of the
// body and opens a window of only 16 KiB a stream, so frontdoor holds most
// of each 240 KiB upload when the stream ends. Without the credit each such
// stream kept that much of the client connection's 1 MiB window, and after
// a few the client could send no body on its connection at all.
func TestH2AbandonedUploadsGiveTheWindowBack(t *testing.T) {
	t.Parallel()
	backend := startH2CHandler(t, &http.HTTP2Config{MaxReceiveBufferPerStream: 16 << 10, MaxReceiveBufferPerConnection: 64 << 10},
		func(w http.ResponseWriter, r *http.Request) {
			// The first KiB, then an answer without the rest, once the
			// upload filled the windows.
			if _, err := io.ReadFull(r.Body, make([]byte, 1024)); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			time.Sleep(30 * time.Millisecond)
			w.WriteHeader(http.StatusAccepted)
		})
	access, readLog := testAccessLog(t)
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "early"
`+poolTOML("early", "protocol = \"h2c\"\nhealth = { check = \"none\" }", backend), access)
	client := h2cHTTPClient(t)
	body := make([]byte, 240<<10)
	for i := range 10 {
		resp, err := client.Post(p.url(t, "web", "/upload"), "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("upload %d: %d\n%s", i, resp.StatusCode, readLog())
		}
	}
}

// trailerBody is a request body that sets its request's trailer X-Sum when
// it is read to the end, as net/http wants.
type trailerBody struct {
	r   io.Reader
	req *http.Request
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.req.Trailer.Set("X-Sum", "all-there")
	}
	return n, err
}

// TestH2RequestTrailersFollowTheBody: a client's trailers go to the backend
// after the whole body, even when most of the body still waits in
// frontdoor for the backend's window (16 KiB a stream here) as they
// arrive; they used to go out at once, ending the stream before the body,
// which the backend then read cut short. (Go's server keeps only trailers
// the request declared in a Trailer header, which frontdoor removes as
// hop-by-hop, so the test checks the body, not the trailer's value.)
func TestH2RequestTrailersFollowTheBody(t *testing.T) {
	t.Parallel()
	backend := startH2CHandler(t, &http.HTTP2Config{MaxReceiveBufferPerStream: 16 << 10},
		func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(30 * time.Millisecond) // the body and trailers wait in frontdoor
			n, err := io.Copy(io.Discard, r.Body)
			w.Header().Set("X-Got", fmt.Sprintf("%d %v", n, err))
		})
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "trailers"
`+poolTOML("trailers", "protocol = \"h2c\"\nhealth = { check = \"none\" }", backend), nil)
	client := h2cHTTPClient(t)
	for i := range 3 {
		req, _ := http.NewRequest("POST", p.url(t, "web", "/up"), nil)
		req.Body = io.NopCloser(&trailerBody{r: bytes.NewReader(make([]byte, 200<<10)), req: req})
		req.ContentLength = -1
		req.Trailer = http.Header{"X-Sum": nil}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		resp.Body.Close()
		if got, want := resp.Header.Get("X-Got"), `204800 <nil>`; resp.StatusCode != 200 || got != want {
			t.Fatalf("upload %d: %d, backend got %s, want %s", i, resp.StatusCode, got, want)
		}
	}
}

// startH2CHandler serves h over HTTP/2 with prior knowledge (h2c) on
// 127.0.0.1 with cfg's windows, until the test ends, and returns the
// address.
func startH2CHandler(t *testing.T, cfg *http.HTTP2Config, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protocols, HTTP2: cfg, Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}
