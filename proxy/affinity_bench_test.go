package proxy

import (
	"testing"

	"github.com/valyala/fasthttp"

	"frontdoor/balancer"
	"frontdoor/config"
)

// BenchmarkAffinity measures the affinity stage of one request (route, then
// respond) at 3, 16 and 256 backends: a cookie naming an up backend, a
// request without the cookie (the answer sets it), and an MCP session value
// (MAC check, header rewrite, re-wrap of the answer).
func BenchmarkAffinity(b *testing.B) {
	for _, n := range []int{3, 16, 256} {
		members := make([]balancer.Member, n)
		for i := range members {
			be := balancer.NewBackend("10.0.0." + itoaTest(i+1) + ":8080")
			be.SetHealthy(true)
			members[i] = balancer.Member{Backend: be, Weight: 1}
		}
		cookie := newAffinity("api", config.HashKey{Source: "cookie", Name: "fd"}, nil, members)
		session := newAffinity("mcp", config.HashKey{Source: "header", Name: "Mcp-Session-Id"}, nil, members)
		wrapped := func() []byte {
			resp := &fasthttp.Response{}
			resp.Header.Set("Mcp-Session-Id", "4f1c2d9e-7b1a-4e55-9c3e-2b8f0a6d1e77")
			session.respond(resp, n-1, &affinityState{pin: -1})
			return append([]byte(nil), resp.Header.Peek("Mcp-Session-Id")...)
		}()
		for _, bc := range []struct {
			name string
			a    *affinity
			hdr  string
			val  []byte
		}{
			{"cookie_pinned", cookie, "Cookie", []byte("fd=" + string(cookie.tokens[n-1]))},
			{"cookie_new", cookie, "", nil},
			{"session", session, "Mcp-Session-Id", wrapped},
		} {
			b.Run(bc.name+"/backends="+itoaTest(n), func(b *testing.B) {
				var req fasthttp.Request
				var resp fasthttp.Response
				b.ReportAllocs()
				for b.Loop() {
					req.Header.Reset()
					resp.Header.Reset()
					if bc.hdr != "" {
						req.Header.SetBytesV(bc.hdr, bc.val)
					}
					st := affinityState{pin: -1}
					if why := bc.a.route(&req, &st); why != "" {
						b.Fatal(why)
					}
					if bc.a == session {
						resp.Header.Set("Mcp-Session-Id", "4f1c2d9e-7b1a-4e55-9c3e-2b8f0a6d1e77")
					}
					bc.a.respond(&resp, n-1, &st)
				}
			})
		}
	}
}
