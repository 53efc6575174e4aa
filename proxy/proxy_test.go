package proxy

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

const listenerTOML = `
[admin]
bind = "off"
[log]
access = "off"
[[listener]]
name = "web"
bind = "127.0.0.1:0"
`

func TestRoundRobinReachesEveryBackend(t *testing.T) {
	t.Parallel()
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "demo"
`+poolTOML("demo", `[pool.demo.health]
check = "tcp"
interval = "1s"`, a.addr, b.addr, c.addr), nil)
	client := &fasthttp.Client{}
	seen := map[string]int{}
	for range 30 {
		resp, err := get(t, client, p.url(t, "web", "/hello"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode() != 200 {
			t.Fatalf("status %d", resp.StatusCode())
		}
		seen[string(resp.Body())]++
	}
	for _, n := range []string{"a", "b", "c"} {
		if seen[n] != 10 {
			t.Errorf("backend %s got %d of 30 requests, want 10 (all: %v)", n, seen[n], seen)
		}
	}
	if got := metricValue(t, p.reg, "frontdoor_requests_total", map[string]string{"listener": "web", "pool": "demo", "code": "2xx"}); got != 30 {
		t.Errorf("requests_total 2xx = %v, want 30", got)
	}
}

func TestRoutingByHostAndLongestPrefix(t *testing.T) {
	t.Parallel()
	api, v2, wild, def := startBackend(t, "api"), startBackend(t, "v2"), startBackend(t, "wild"), startBackend(t, "default")
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  host = "api.example.com"
  path_prefix = "/v1/"
  pool = "api"
  [[listener.route]]
  host = "api.example.com"
  path_prefix = "/v1/beta/"
  pool = "v2"
  [[listener.route]]
  host = "*.example.com"
  pool = "wild"
  [[listener.route]]
  path_prefix = "/"
  pool = "def"
`+poolTOML("api", `health = { check = "none" }`, api.addr)+
		poolTOML("v2", `health = { check = "none" }`, v2.addr)+
		poolTOML("wild", `health = { check = "none" }`, wild.addr)+
		poolTOML("def", `health = { check = "none" }`, def.addr), nil)
	client := &fasthttp.Client{}
	cases := []struct {
		name, host, path, want string
	}{
		{"exact host, prefix", "api.example.com", "/v1/users", "api"},
		{"exact host with port, case", "API.example.com:8080", "/v1/users", "api"},
		{"longest prefix wins", "api.example.com", "/v1/beta/x", "v2"},
		{"exact host, no prefix match falls to wildcard", "api.example.com", "/other", "wild"},
		{"wildcard", "www.example.com", "/", "wild"},
		{"wildcard needs a subdomain", "example.com", "/", "default"},
		{"no host", "other.org", "/x", "default"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := fasthttp.AcquireRequest()
			defer fasthttp.ReleaseRequest(req)
			req.SetRequestURI(p.url(t, "web", tc.path))
			req.Header.SetHost(tc.host)
			req.UseHostHeader = true
			var resp fasthttp.Response
			if err := client.DoTimeout(req, &resp, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if got := string(resp.Body()); got != tc.want {
				t.Errorf("host %s path %s reached %q, want %q", tc.host, tc.path, got, tc.want)
			}
		})
	}
}

func TestNoRouteIs404WithRequestID(t *testing.T) {
	t.Parallel()
	a := startBackend(t, "a")
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  path_prefix = "/api/"
  pool = "demo"
`+poolTOML("demo", `health = { check = "none" }`, a.addr), nil)
	resp, err := get(t, &fasthttp.Client{}, p.url(t, "web", "/nothing"))
	if err != nil {
		t.Fatal(err)
	}
	id := string(resp.Header.Peek("X-Request-ID"))
	if resp.StatusCode() != 404 || len(id) != 32 {
		t.Fatalf("status %d, X-Request-ID %q; want 404 and a 32-digit ID", resp.StatusCode(), id)
	}
	if !strings.Contains(string(resp.Body()), id) || strings.Count(string(resp.Body()), "\n") != 1 {
		t.Errorf("body %q should be one line naming the request ID", resp.Body())
	}
}

func TestHeadersForwarded(t *testing.T) {
	t.Parallel()
	a := startBackend(t, "a")
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "demo"
`+poolTOML("demo", `health = { check = "none" }`, a.addr), nil)
	client := &fasthttp.Client{}

	t.Run("hop-by-hop removed, forwarded headers set, host kept", func(t *testing.T) {
		resp, err := get(t, client, p.url(t, "web", "/hop"),
			"Connection", "X-Drop-Me", "X-Drop-Me", "secret", "Keep-Alive", "timeout=5",
			"TE", "trailers", "Proxy-Authorization", "Basic x", "X-Forwarded-For", "203.0.113.9",
			"Host", "shop.example.com")
		if err != nil {
			t.Fatal(err)
		}
		hdr := strings.ToLower(a.header())
		for _, gone := range []string{"x-drop-me", "keep-alive", "\nte:", "proxy-authorization"} {
			if strings.Contains(hdr, gone) {
				t.Errorf("backend saw hop-by-hop %q in:\n%s", gone, hdr)
			}
		}
		for _, want := range []string{"x-forwarded-for: 127.0.0.1\r\n", "x-forwarded-proto: http", "x-forwarded-host: shop.example.com", "host: shop.example.com"} {
			if !strings.Contains(hdr, want) {
				t.Errorf("backend did not see %q in:\n%s", want, hdr)
			}
		}
		if v := resp.Header.Peek("X-Secret"); len(v) != 0 {
			t.Errorf("client saw response hop-by-hop header X-Secret named by Connection")
		}
		if v := resp.Header.Peek("Keep-Alive"); len(v) != 0 {
			t.Errorf("client saw Keep-Alive %q", v)
		}
	})

	t.Run("request ID generated and passed both ways", func(t *testing.T) {
		resp, err := get(t, client, p.url(t, "web", "/"))
		if err != nil {
			t.Fatal(err)
		}
		id := string(resp.Header.Peek("X-Request-ID"))
		if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
			t.Fatalf("X-Request-ID %q is not 32 hex digits", id)
		}
		if !strings.Contains(strings.ToLower(a.header()), "x-request-id: "+id) {
			t.Errorf("backend did not see X-Request-ID %s in:\n%s", id, a.header())
		}
	})
	t.Run("incoming X-Request-ID kept", func(t *testing.T) {
		resp, err := get(t, client, p.url(t, "web", "/"), "X-Request-ID", "abc-123")
		if err != nil {
			t.Fatal(err)
		}
		if got := string(resp.Header.Peek("X-Request-ID")); got != "abc-123" {
			t.Errorf("X-Request-ID %q, want abc-123", got)
		}
	})
	t.Run("unsafe X-Request-ID replaced", func(t *testing.T) {
		resp, err := get(t, client, p.url(t, "web", "/"), "X-Request-ID", `evil"id`)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(resp.Header.Peek("X-Request-ID")); len(got) != 32 {
			t.Errorf("X-Request-ID %q, want a new 32-digit ID", got)
		}
	})
	t.Run("traceparent trace-id wins", func(t *testing.T) {
		tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		resp, err := get(t, client, p.url(t, "web", "/"), "traceparent", tp, "X-Request-ID", "other")
		if err != nil {
			t.Fatal(err)
		}
		if got := string(resp.Header.Peek("X-Request-ID")); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("X-Request-ID %q, want the trace-id", got)
		}
		if !strings.Contains(strings.ToLower(a.header()), "traceparent: "+tp) {
			t.Errorf("backend did not get traceparent unchanged:\n%s", a.header())
		}
	})
}

func TestStoppedBackend(t *testing.T) {
	t.Parallel()
	dead := refusingAddr(t) // a port with nothing listening behind it
	live := startBackend(t, "live")

	t.Run("no retries: 502 with request ID, fast", func(t *testing.T) {
		p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "dead"
`+poolTOML("dead", "retries = 0\nconnect_timeout = \"1s\"\nhealth = { check = \"none\" }", dead), nil)
		start := time.Now()
		resp, err := get(t, &fasthttp.Client{}, p.url(t, "web", "/"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode() != 502 || len(resp.Header.Peek("X-Request-ID")) == 0 {
			t.Fatalf("status %d, want 502 with X-Request-ID", resp.StatusCode())
		}
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Errorf("took %v, want within the connect timeout", d)
		}
		if got := metricValue(t, p.reg, "frontdoor_upstream_errors_total", map[string]string{"pool": "dead", "reason": "connect"}); got != 1 {
			t.Errorf("upstream_errors_total{reason=connect} = %v, want 1", got)
		}
	})
	t.Run("retried on the live backend", func(t *testing.T) {
		p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "mixed"
`+poolTOML("mixed", "retries = 1\nhealth = { check = \"none\" }", dead, live.addr), nil)
		client := &fasthttp.Client{}
		for range 10 {
			resp, err := get(t, client, p.url(t, "web", "/"))
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode() != 200 || string(resp.Body()) != "live" {
				t.Fatalf("status %d body %q, want 200 from live", resp.StatusCode(), resp.Body())
			}
		}
		if got := metricValue(t, p.reg, "frontdoor_retries_total", map[string]string{"pool": "mixed"}); got < 1 {
			t.Errorf("retries_total = %v, want at least 1", got)
		}
	})
	t.Run("every backend down: 503 with Retry-After at once", func(t *testing.T) {
		p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "down"
`+poolTOML("down", "[pool.down.health]\ncheck = \"tcp\"\ninterval = \"1s\"", dead), nil)
		start := time.Now()
		resp, err := get(t, &fasthttp.Client{}, p.url(t, "web", "/"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode() != 503 || string(resp.Header.Peek("Retry-After")) == "" {
			t.Fatalf("status %d Retry-After %q, want 503 with Retry-After", resp.StatusCode(), resp.Header.Peek("Retry-After"))
		}
		if d := time.Since(start); d > 200*time.Millisecond {
			t.Errorf("503 took %v, want milliseconds", d)
		}
	})
}

func TestBackendTimeoutIs504(t *testing.T) {
	t.Parallel()
	a := startBackend(t, "a")
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "demo"
`+poolTOML("demo", "response_timeout = \"100ms\"\nhealth = { check = \"none\" }", a.addr), nil)
	resp, err := get(t, &fasthttp.Client{}, p.url(t, "web", "/slow"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != 504 {
		t.Fatalf("status %d, want 504", resp.StatusCode())
	}
}

// TestMalformedRequests sends raw bytes: an oversized header block gets 431,
// a garbage request line 400, and the listener keeps serving.
func TestMalformedRequests(t *testing.T) {
	t.Parallel()
	a := startBackend(t, "a")
	dir := t.TempDir()
	logPath := filepath.Join(dir, "access.log")
	ctx, cancel := context.WithCancel(context.Background())
	access, err := NewAccessLog(ctx, logPath, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, listenerTOML+`max_header_bytes = 4096
  [[listener.route]]
  pool = "demo"
`+poolTOML("demo", `health = { check = "none" }`, a.addr), access)
	addr := p.Addr("web").String()
	raw := func(req string) string {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("read status line: %v", err)
		}
		return line
	}
	big := "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8000) + "\r\n\r\n"
	if got := raw(big); !strings.Contains(got, " 431 ") {
		t.Errorf("oversized header: %q, want 431", got)
	}
	if got := raw("GARBAGE\r\n\r\n"); !strings.Contains(got, " 400 ") {
		t.Errorf("garbage request line: %q, want 400", got)
	}
	if got := raw("GET / HTTP/1.1\r\nHost: x\r\n\r\n"); !strings.Contains(got, " 200 ") {
		t.Errorf("after bad requests: %q, want 200", got)
	}
	cancel()
	<-access.Done()
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	log := string(data)
	for _, want := range []string{`"status":431`, `"status":400`, `"status":200`} {
		if !strings.Contains(log, want) {
			t.Errorf("access log lacks %s:\n%s", want, log)
		}
	}
}

func TestAccessLogLine(t *testing.T) {
	t.Parallel()
	a := startBackend(t, "a")
	logPath := filepath.Join(t.TempDir(), "access.log")
	ctx, cancel := context.WithCancel(context.Background())
	access, err := NewAccessLog(ctx, logPath, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "demo"
`+poolTOML("demo", `health = { check = "none" }`, a.addr), access)
	if _, err := get(t, &fasthttp.Client{}, p.url(t, "web", "/some/path?q=1"), "X-Request-ID", "grep-me-42"); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-access.Done()
	data, _ := os.ReadFile(logPath)
	line := strings.TrimSpace(string(data))
	for _, want := range []string{`"request_id":"grep-me-42"`, `"listener":"web"`, `"method":"GET"`, `"path":"/some/path"`, `"status":200`, `"backend":"` + a.addr + `"`, `"bytes_out":1`} {
		if !strings.Contains(line, want) {
			t.Errorf("access log line lacks %s:\n%s", want, line)
		}
	}
}
