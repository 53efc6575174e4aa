package proxy

import (
	"fmt"
	"strings"
	"testing"

	grpclib "google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"frontdoor/internal/testpki"
	"frontdoor/internal/transcodetest"
)

// TestTranscodeTLSBackend: a transcoding route whose pool has tls reaches
// its gRPC backend over TLS (ALPN h2), verified against the pool's CA.
func TestTranscodeTLSBackend(t *testing.T) {
	t.Parallel()
	pb := transcodetest.DescriptorSet(t)
	ca := testpki.NewCA(t, "backends")
	pair := ca.Issue(t, testpki.Leaf{Names: []string{"books.internal"}})
	be := transcodetest.StartBackendOn(t, pb, "127.0.0.1:0", grpclib.Creds(credentials.NewTLS(pair.ServerConfig())))
	tlsPool := fmt.Sprintf("tls = { ca_file = %q, server_name = \"books.internal\" }\n", ca.File)
	p := startProxy(t, transcodeTOML(pb, "", tlsPool, be.Addr), nil)
	r := tcDo(t, p, "GET", "/v1/shelves/7", "")
	if r.status != 200 || !strings.Contains(string(r.body), `"name":"shelves/7"`) {
		t.Fatalf("over TLS: %d %s", r.status, r.body)
	}
	if n := be.Calls.Load(); n != 1 {
		t.Errorf("the backend saw %d calls, want 1", n)
	}

	// A backend whose certificate the pool's CA did not sign is a
	// connect failure: 502, and no call reaches it.
	other := testpki.NewCA(t, "other").Issue(t, testpki.Leaf{Names: []string{"books.internal"}})
	rogue := transcodetest.StartBackendOn(t, pb, "127.0.0.1:0", grpclib.Creds(credentials.NewTLS(other.ServerConfig())))
	p2 := startProxy(t, transcodeTOML(pb, "", tlsPool, rogue.Addr), nil)
	if r := tcDo(t, p2, "GET", "/v1/shelves/7", ""); r.status != 502 {
		t.Errorf("to an unverified backend: %d %s, want 502", r.status, r.body)
	}
	if n := rogue.Calls.Load(); n != 0 {
		t.Errorf("the unverified backend saw %d calls", n)
	}
}
