package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestPlan(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		listens  []string
		names    []string
		n, base  int
		want     []backend
		wantFail bool
	}{
		{name: "default three", base: 9001, want: []backend{
			{"backend-1", "127.0.0.1:9001"}, {"backend-2", "127.0.0.1:9002"}, {"backend-3", "127.0.0.1:9003"}}},
		{name: "n and base", n: 2, base: 7000, want: []backend{
			{"backend-1", "127.0.0.1:7000"}, {"backend-2", "127.0.0.1:7001"}}},
		{name: "pairs", listens: []string{"127.0.0.1:1", "127.0.0.1:2"}, names: []string{"a"}, want: []backend{
			{"a", "127.0.0.1:1"}, {"backend-2", "127.0.0.1:2"}}},
		{name: "non loopback", listens: []string{"0.0.0.0:9001"}, wantFail: true},
		{name: "ipv6", listens: []string{"[::1]:9001"}, wantFail: true},
		{name: "both forms", listens: []string{"127.0.0.1:1"}, n: 2, wantFail: true},
		{name: "too many names", listens: []string{"127.0.0.1:1"}, names: []string{"a", "b"}, wantFail: true},
		{name: "port overflow", n: 3, base: 65534, wantFail: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := plan(tc.listens, tc.names, tc.n, tc.base)
			if tc.wantFail {
				if err == nil {
					t.Fatalf("plan = %v, want error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("plan = %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("plan[%d] = %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestHandler(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newServer("b1")
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown() })
	c := &fasthttp.HostClient{Addr: ln.Addr().String()}

	tests := []struct {
		name, method, uri, reqID string
		code                     int
		body                     string
		bodyLen                  int
	}{
		{name: "healthz", method: "GET", uri: "/healthz", code: 200, body: "ok\n"},
		{name: "echo", method: "POST", uri: "/a/b?x=1", reqID: "abc-1", code: 200, body: "b1 POST /a/b\n"},
		{name: "size small", method: "GET", uri: "/size?bytes=10", code: 200, bodyLen: 10},
		{name: "size zero", method: "GET", uri: "/size?bytes=0", code: 200, bodyLen: 0},
		{name: "size large", method: "GET", uri: "/size?bytes=200000", code: 200, bodyLen: 200000},
		{name: "size bad", method: "GET", uri: "/size?bytes=x", code: 400, bodyLen: -1},
		{name: "slow", method: "GET", uri: "/slow?ms=20", code: 200, body: "b1 GET /slow\n"},
		{name: "slow bad", method: "GET", uri: "/slow?ms=999999", code: 400, bodyLen: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + ln.Addr().String() + tc.uri)
			req.Header.SetMethod(tc.method)
			if tc.reqID != "" {
				req.Header.Set("X-Request-ID", tc.reqID)
			}
			start := time.Now()
			if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode() != tc.code {
				t.Fatalf("status %d, want %d", resp.StatusCode(), tc.code)
			}
			if got := string(resp.Header.Peek("X-Backend")); got != "b1" {
				t.Errorf("X-Backend %q, want b1", got)
			}
			if got := string(resp.Header.Peek("X-Request-ID")); got != tc.reqID {
				t.Errorf("X-Request-ID %q, want %q", got, tc.reqID)
			}
			switch {
			case tc.body != "":
				if got := string(resp.Body()); got != tc.body {
					t.Errorf("body %q, want %q", got, tc.body)
				}
			case tc.bodyLen >= 0:
				b := resp.Body()
				if len(b) != tc.bodyLen || strings.Trim(string(b), "x") != "" {
					t.Errorf("body of %d bytes, want %d bytes of x", len(b), tc.bodyLen)
				}
			}
			if tc.name == "slow" && time.Since(start) < 20*time.Millisecond {
				t.Errorf("slow answered after %v, want >= 20ms", time.Since(start))
			}
		})
	}
}
