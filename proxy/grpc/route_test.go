package grpc

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"frontdoor/config"
	"frontdoor/metrics"
)

func TestHashKey(t *testing.T) {
	t.Parallel()
	req := func(remote, path string, hdr ...string) *http.Request {
		r := &http.Request{RemoteAddr: remote, URL: &url.URL{Path: path}, Header: http.Header{}}
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		return r
	}
	tests := []struct {
		name     string
		on       config.HashKey
		a, b     *http.Request
		same     bool
		missings float64
	}{
		{"source ip ignores the port", config.HashKey{Source: "source_ip"},
			req("10.0.0.1:1000", "/a"), req("10.0.0.1:2000", "/b"), true, 0},
		{"source ip differs", config.HashKey{},
			req("10.0.0.1:1000", "/a"), req("10.0.0.2:1000", "/a"), false, 0},
		{"ipv6 source", config.HashKey{Source: "source_ip"},
			req("[::1]:1000", "/a"), req("[::1]:2000", "/a"), true, 0},
		{"metadata header, any case", config.HashKey{Source: "header", Name: "x-user-id"},
			req("10.0.0.1:1", "/a", "X-User-Id", "alice"), req("10.0.0.2:1", "/b", "x-user-id", "alice"), true, 0},
		{"metadata header differs", config.HashKey{Source: "header", Name: "X-User-ID"},
			req("10.0.0.1:1", "/a", "X-User-Id", "alice"), req("10.0.0.1:1", "/a", "X-User-Id", "bob"), false, 0},
		{"missing header falls back to source ip", config.HashKey{Source: "header", Name: "X-User-ID"},
			req("10.0.0.1:1", "/a"), req("10.0.0.1:2", "/b"), true, 2},
		{"method path", config.HashKey{Source: "path"},
			req("10.0.0.1:1", "/pkg.S/M"), req("10.0.0.2:1", "/pkg.S/M"), true, 0},
		{"cookie means source ip for gRPC", config.HashKey{Source: "cookie", Name: "s"},
			req("10.0.0.1:1", "/a"), req("10.0.0.1:2", "/b"), true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := metrics.New(prometheus.NewRegistry(), "test")
			st := newRouteState(&Route{PoolName: "p", HashOn: tc.on}, m)
			ka, kb := st.key(tc.a), st.key(tc.b)
			if (ka == kb) != tc.same {
				t.Errorf("keys %x and %x: same = %v, want %v", ka, kb, ka == kb, tc.same)
			}
			if got := counterValue(t, m.HashKeyMissing.WithLabelValues("p")); got != tc.missings {
				t.Errorf("hash_key_missing_total = %v, want %v", got, tc.missings)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	m := metrics.New(prometheus.NewRegistry(), "test")
	f := newFixture(t, fixtureOpts{backends: 2, route: &Route{Retries: 1}, options: Options{Metrics: m}})
	f.backends[0].srv.Stop() // refuses connections from now on
	for range 4 {
		if _, err := unary(testCtx(t), f.cc, methodUnary, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	connect := counterValue(t, m.UpstreamErrors.WithLabelValues("echo", f.backends[0].addr, ReasonConnect))
	retries := counterValue(t, m.RetriesTotal.WithLabelValues("echo"))
	if connect < 1 || connect != retries {
		t.Errorf("connect errors %v, retries %v: want equal and at least 1", connect, retries)
	}
	for _, b := range f.backends {
		b.backend.SetHealthy(false)
	}
	_, err := unary(testCtx(t), f.cc, methodUnary, []byte("x"))
	if codeOf(err) != codes.Unavailable {
		t.Fatalf("err = %v", err)
	}
	if got := counterValue(t, m.UpstreamErrors.WithLabelValues("echo", "", ReasonNoBackend)); got != 1 {
		t.Errorf("no_backend errors = %v, want 1", got)
	}
}

func TestOptionsObserve(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []Outcome
	f := newFixture(t, fixtureOpts{backends: 1, options: Options{Observe: func(o *Outcome) {
		mu.Lock()
		got = append(got, *o)
		mu.Unlock()
	}}})
	_, err := unary(metadata.AppendToOutgoingContext(testCtx(t), "x-request-id", "abc"), f.cc, methodNoRoute, nil)
	if st := status.Convert(err); st.Code() != codes.Unimplemented {
		t.Fatalf("err = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("observed %d calls, want 1", len(got))
	}
	o := got[0]
	if o.Route != nil || o.Reason != ReasonNoRoute || o.GRPCStatus != int(codes.Unimplemented) ||
		o.HTTPStatus != 200 || o.Backend != -1 || o.RequestID != "abc" || o.Duration <= 0 {
		t.Errorf("outcome %+v", o)
	}
	if !strings.HasPrefix(o.RequestID, "abc") {
		t.Errorf("request id %q", o.RequestID)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
