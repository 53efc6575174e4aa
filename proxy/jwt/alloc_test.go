//go:build !race

package jwt

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"

	jwtlib "github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"frontdoor/config"
)

// reader re-reads one raw request into a reused fasthttp.Request, as the
// server does for every request on a connection.
type reader struct {
	raw []byte
	rd  *bytes.Reader
	br  *bufio.Reader
	req fasthttp.Request
}

func newReader(raw string) *reader {
	r := &reader{raw: []byte(raw)}
	r.rd = bytes.NewReader(r.raw)
	r.br = bufio.NewReader(r.rd)
	return r
}

func (r *reader) next(tb testing.TB) *fasthttp.Request {
	r.rd.Reset(r.raw)
	r.br.Reset(r.rd)
	r.req.Reset()
	if err := r.req.Read(r.br); err != nil {
		tb.Fatal(err)
	}
	return &r.req
}

func TestApplyFastCacheHitAllocatesNothing(t *testing.T) {
	k := keys(t)
	rich := with(goodClaims("alice"), "roles", []any{"a", "b"}, "admin", true, "n", 42)
	tok := sign(t, jwtlib.SigningMethodHS256, "", k.hmac, rich)
	secret := writeFile(t, t.TempDir(), "secret", k.hmac)
	const head = "GET /v1/x HTTP/1.1\r\nHost: api.test\r\nUser-Agent: test\r\nAccept: */*\r\n" +
		"X-User-ID: forged\r\nx_admin: forged\r\nx-roles: forged\r\n"

	cases := []struct {
		name string
		mod  func(pc *config.JWTPolicy)
		raw  string
	}{
		{"authorization", func(pc *config.JWTPolicy) {}, head + "Authorization: Bearer " + tok + "\r\n\r\n"},
		{"authorization stripped", func(pc *config.JWTPolicy) { pc.StripAuthorization = true },
			head + "Authorization: Bearer " + tok + "\r\n\r\n"},
		{"cookie stripped", func(pc *config.JWTPolicy) {
			pc.TokenFrom = config.HashKey{Source: "cookie", Name: "session"}
			pc.StripAuthorization = true
		}, head + "Cookie: a=1; session=" + tok + "\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pc := basePolicy("alloc")
			pc.HMACSecretFile = secret
			pc.Algorithms = []string{"HS256"}
			tc.mod(&pc)
			p := mustNew(t, pc, Options{})
			rd := newReader(tc.raw)
			run := func() {
				if r := p.ApplyFast(rd.next(t), testNow); r != Valid {
					t.Fatalf("ApplyFast = %v", r)
				}
			}
			run() // verify and cache; grow buffers
			if n := testing.AllocsPerRun(200, run); n != 0 {
				t.Errorf("ApplyFast cache hit: %v allocs/op, want 0", n)
			}
			if got := string(rd.req.Header.Peek("X-User-ID")); got != "alice" {
				t.Errorf("X-User-ID %q", got)
			}
			if got := string(rd.req.Header.Peek("X-Roles")); got != `["a","b"]` {
				t.Errorf("X-Roles %q", got)
			}
		})
	}
}

func TestRejectionsAllocateNothing(t *testing.T) {
	p := hmacPolicy(t, "rej", nil)
	var req fasthttp.Request
	big := "Bearer " + strings.Repeat("a", 9000)
	for _, c := range []struct {
		auth string
		want Reason
	}{{"", Missing}, {"Basic eA==", Missing}, {big, TooLarge}} {
		run := func() {
			req.Header.Del("Authorization")
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			r := p.ApplyFast(&req, testNow)
			if r != c.want {
				t.Fatalf("ApplyFast = %v, want %v", r, c.want)
			}
			// What the caller sends with the 401: constant strings.
			if r.WWWAuthenticate() == "" || r.Description() == "" {
				t.Fatalf("%v: no WWW-Authenticate or description", r)
			}
		}
		run()
		if n := testing.AllocsPerRun(200, run); n != 0 {
			t.Errorf("%v rejection: %v allocs/op, want 0", c.want, n)
		}
	}
}

func TestApplyHTTPCacheHitAllocs(t *testing.T) {
	k := keys(t)
	p := hmacPolicy(t, "h2", nil)
	tok := sign(t, jwtlib.SigningMethodHS256, "", k.hmac, goodClaims("alice"))
	r := &http.Request{Header: http.Header{}}
	run := func() {
		r.Header["Authorization"] = []string{"Bearer " + tok}
		if got := p.ApplyHTTP(r, testNow); got != Valid {
			t.Fatalf("ApplyHTTP = %v", got)
		}
	}
	run()
	auth := []string{"Bearer " + tok}
	run = func() {
		r.Header["Authorization"] = auth
		if got := p.ApplyHTTP(r, testNow); got != Valid {
			t.Fatalf("ApplyHTTP = %v", got)
		}
	}
	// One []string for the single claim header set (sub).
	if n := testing.AllocsPerRun(200, run); n > 1 {
		t.Errorf("ApplyHTTP cache hit: %v allocs/op, want <= 1", n)
	}
}
