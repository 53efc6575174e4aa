package proxy

import (
	"context"
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
