package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type staticBackends struct{}

func (staticBackends) EachBackend(fn func(pool, backend string, up bool, inFlight int64, ejectedUntil time.Time)) {
	fn("api", "10.0.0.1:80", true, 3, time.Time{})
	fn("api", "10.0.0.2:80", false, 0, time.Unix(1767225600, 0))
}

func TestCodeClass(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status int
		want   string
	}{
		{100, "1xx"}, {200, "2xx"}, {204, "2xx"}, {302, "3xx"}, {404, "4xx"}, {499, "4xx"}, {503, "5xx"}, {0, "1xx"}, {999, "5xx"},
	} {
		if got := CodeClasses[CodeClass(tc.status)]; got != tc.want {
			t.Errorf("CodeClass(%d) = %s, want %s", tc.status, got, tc.want)
		}
	}
}

// TestAdmin serves the admin endpoints on 127.0.0.1 and checks each one,
// including backend state read at scrape time.
func TestAdmin(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := New(reg, "v1.2.3")
	m.SetBackendSource(staticBackends{})
	m.RequestsTotal.WithLabelValues("public", "api", "10.0.0.1:80", "2xx").Add(7)
	var ready atomic.Bool
	a, err := NewAdmin(AdminOptions{
		Bind: "127.0.0.1:0", Gatherer: reg,
		Ready:  ready.Load,
		Status: func() any { return map[string]string{"hello": "world"} },
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = a.Shutdown(ctx)
	})
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + a.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
	if code, _ := get("/readyz"); code != 503 {
		t.Errorf("/readyz before ready: %d, want 503", code)
	}
	ready.Store(true)
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz when ready: %d, want 200", code)
	}
	code, body := get("/status")
	var st map[string]string
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st["hello"] != "world" {
		t.Errorf("/status %d %q", code, body)
	}
	_, body = get("/metrics")
	for _, want := range []string{
		`frontdoor_requests_total{backend="10.0.0.1:80",code="2xx",listener="public",pool="api"} 7`,
		`frontdoor_backend_up{backend="10.0.0.1:80",pool="api"} 1`,
		`frontdoor_backend_up{backend="10.0.0.2:80",pool="api"} 0`,
		`frontdoor_backend_in_flight{backend="10.0.0.1:80",pool="api"} 3`,
		`frontdoor_backend_ejected_until_seconds{backend="10.0.0.1:80",pool="api"} 0`,
		`frontdoor_backend_ejected_until_seconds{backend="10.0.0.2:80",pool="api"} 1.7672256e+09`,
		`frontdoor_build_info{goversion="go`,
		`# HELP frontdoor_requests_total `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func ExampleCodeClass() {
	for _, status := range []int{200, 404, 503} {
		fmt.Println(status, CodeClasses[CodeClass(status)])
	}
	// Output:
	// 200 2xx
	// 404 4xx
	// 503 5xx
}
