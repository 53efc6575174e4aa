//go:build !race

package grpc

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"frontdoor/config"
	"frontdoor/metrics"
	"frontdoor/proxy/internal/requestid"
)

// The per-call work frontdoor adds on top of net/http's HTTP/2 server and
// transport allocates nothing.
func TestZeroAllocs(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry(), "test")
	r := &http.Request{
		RemoteAddr: "10.1.2.3:4567",
		URL:        &url.URL{Path: "/pkg.Service/Method"},
		Header: http.Header{
			"Content-Type": {"application/grpc+proto"},
			"X-User-Id":    {"alice"},
			"X-Request-Id": {"req-1"},
			"Grpc-Timeout": {"250m"},
		},
	}
	ids := requestid.New()
	states := map[string]*routeState{}
	for _, on := range []config.HashKey{{Source: "source_ip"}, {Source: "header", Name: "x-user-id"}, {Source: "path"}, {Source: "header", Name: "x-missing"}} {
		states[on.Source+":"+on.Name] = newRouteState(&Route{PoolName: "p", HashOn: on}, m)
	}
	tests := []struct {
		name string
		fn   func()
	}{
		{"parseTimeout", func() { _, _ = parseTimeout(r.Header[hdrGRPCTimeout][0]) }},
		{"parseStatus", func() { _ = parseStatus(statusValues[14]) }},
		{"isGRPC", func() { _ = isGRPC(r.Header[hdrContentType]) }},
		{"trailerKey", func() { _, _ = trailerKey(hdrGRPCStatus), trailerKey(hdrGRPCDetails) }},
		{"requestID from the client", func() { _ = requestID(r.Header, ids) }},
		{"classify index", func() { _ = errIndex(ReasonConnect) }},
	}
	for name, st := range states {
		tests = append(tests, struct {
			name string
			fn   func()
		}{"key " + name, func() { _ = st.key(r) }})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tc.fn); n != 0 {
				t.Errorf("%s: %v allocs per run, want 0", tc.name, n)
			}
		})
	}
}
