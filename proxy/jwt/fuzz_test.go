package jwt

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	jwtlib "github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"
)

// FuzzVerify drives the token path with arbitrary tokens, and with arbitrary
// header and claims JSON signed by a real HS256 key (so the claim checks
// and header forwarding see fuzzed input past the signature). Invariants: no
// panic; a known Reason; a Valid token verifies independently with the
// test's keys; no forwarded header value carries a control character;
// ApplyFast and ApplyHTTP agree. Run it with
//
//	go test -run '^$' -fuzz FuzzVerify -fuzztime 20s ./proxy/jwt/
func FuzzVerify(f *testing.F) {
	k := keys(f)
	dir := f.TempDir()
	pc := basePolicy("fuzz")
	pc.JWKSFile = writeFile(f, dir, "jwks.json", jwksJSON(f,
		jwk{kid: "rsa1", key: &k.rsa.PublicKey},
		jwk{kid: "ec1", key: &k.ec.PublicKey},
		jwk{kid: "ed1", key: k.ed.Public()},
		jwk{kid: "hs1", key: k.hmac},
	))
	pc.Algorithms = []string{"RS256", "ES256", "EdDSA", "HS256"}
	pc.CacheSize = 64
	p, err := New(&pc, Options{})
	if err != nil {
		f.Fatal(err)
	}
	verifyKeys := map[string]any{"rsa1": &k.rsa.PublicKey, "ec1": &k.ec.PublicKey, "ed1": k.ed.Public(), "hs1": k.hmac}

	g := with(goodClaims("alice"), "roles", []any{"a"}, "note", "n")
	seeds := []string{
		sign(f, jwtlib.SigningMethodRS256, "rsa1", k.rsa, g),
		sign(f, jwtlib.SigningMethodES256, "ec1", k.ec, g),
		sign(f, jwtlib.SigningMethodEdDSA, "ed1", k.ed, g),
		sign(f, jwtlib.SigningMethodHS256, "hs1", k.hmac, g),
		sign(f, jwtlib.SigningMethodNone, "rsa1", jwtlib.UnsafeAllowNoneSignatureType, g),
		"", ".", "..", "a.b", "a.b.c", "a.b.c.d.e", "eyJhbGciOiJIUzI1NiJ9..", strings.Repeat("A", 9000),
	}
	for i, s := range seeds {
		f.Add(s, `{"alg":"HS256","kid":"hs1"}`, `{"sub":"s`+string(rune('a'+i))+`","iss":"https://auth.test/","aud":"api"}`)
	}
	f.Add("", `{"alg":"HS256","kid":"hs1","crit":["b64"],"b64":false}`, `{"sub":"x"}`)
	f.Add("", `{"alg":"HS256"}`, `{"sub":{"a":[1,2,"\u0000"]},"iss":"https://auth.test/","aud":["x","api"],"exp":1e30}`)
	f.Add("", `{"alg":"HS256","kid":"hs1"}`, `{"sub":"a","iss":"https://auth.test/","aud":"api","note":"a\u007fb","exp":"1"}`)

	now := testNow
	hmacB64 := func(input string) string {
		m := hmac.New(sha256.New, k.hmac)
		m.Write([]byte(input))
		return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	f.Fuzz(func(t *testing.T, raw, header, claims string) {
		signed := b64(header) + "." + b64(claims)
		signed += "." + hmacB64(signed)
		for _, tok := range []string{raw, signed} {
			var req fasthttp.Request
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("X-User-ID", "forged")
			got := p.ApplyFast(&req, now)
			if got >= numReasons {
				t.Fatalf("reason %d out of range", got)
			}
			if got == Valid {
				checkIndependently(t, tok, verifyKeys, now)
			}
			for key, v := range req.Header.All() {
				if !isForwardName(p.forward, key) {
					continue // the fuzzer's own Authorization, for one
				}
				if got != Valid && string(v) == "forged" {
					t.Fatalf("forged %s survived", key)
				}
				for _, c := range v {
					if (c < 0x20 && c != '\t') || c == 0x7f {
						t.Fatalf("forwarded header %s carries control byte %#x", key, c)
					}
				}
			}
			// ApplyHTTP must agree when the header value round-tripped.
			if string(req.Header.Peek("Authorization")) == "Bearer "+tok || got == Valid {
				r := &http.Request{Header: http.Header{"Authorization": {"Bearer " + tok}}}
				if h := p.ApplyHTTP(r, now); h != got && strings.IndexFunc(tok, func(r rune) bool { return r < 0x20 }) < 0 {
					t.Fatalf("ApplyHTTP %v, ApplyFast %v", h, got)
				}
			}
		}
	})
}

// checkIndependently verifies tok with jwt directly, without this package's
// key selection, cache or claim checks beyond the library's.
func checkIndependently(t *testing.T, tok string, keys map[string]any, now time.Time) {
	t.Helper()
	_, err := jwtlib.Parse(tok, func(tk *jwtlib.Token) (any, error) {
		kid, _ := tk.Header["kid"].(string)
		return keys[kid], nil
	}, jwtlib.WithValidMethods([]string{"RS256", "ES256", "EdDSA", "HS256"}),
		jwtlib.WithTimeFunc(func() time.Time { return now }),
		jwtlib.WithLeeway(30*time.Second), jwtlib.WithJSONNumber())
	if err != nil {
		t.Fatalf("accepted a token that does not verify independently: %v", err)
	}
}

// FuzzJWKS feeds arbitrary documents to the JWK Set parser: no panic, and
// every key it returns fits an allowed algorithm.
func FuzzJWKS(f *testing.F) {
	k := keys(f)
	f.Add(string(jwksJSON(f, jwk{kid: "a", key: &k.rsa.PublicKey}, jwk{kid: "b", key: &k.ec.PublicKey}, jwk{kid: "c", key: k.ed.Public()})))
	f.Add(`{"keys":[{"kty":"oct","k":"AAAA"},{"kty":"XYZ"},{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`)
	f.Add(`{"keys":null}`)
	algs := []string{"ES256", "EdDSA", "HS256", "RS256"}
	f.Fuzz(func(t *testing.T, doc string) {
		keys, _, err := parseJWKS([]byte(doc), algs)
		if err != nil && len(keys) > 0 {
			t.Fatal("keys returned with an error")
		}
		for _, vk := range keys {
			if !usable(vk, algs) {
				t.Fatalf("key %q of kind %v unusable", vk.kid, vk.kind)
			}
			if _, err := newKeySet([]verifyKey{vk}); err != nil {
				t.Fatal(err)
			}
		}
	})
}
