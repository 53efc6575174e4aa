package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"net/http"
	"strings"
	"testing"

	jwtlib "github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"frontdoor/config"
)

// benchPolicy is a jwks_file policy with an RSA, an EC, an Ed25519 and an
// HMAC key, forwarding sub, roles and admin.
func benchPolicy(b *testing.B, cacheSize int) *Policy {
	b.Helper()
	k := keys(b)
	dir := b.TempDir()
	pc := basePolicy("bench")
	pc.JWKSFile = writeFile(b, dir, "jwks.json", jwksJSON(b,
		jwk{kid: "rsa1", key: &k.rsa.PublicKey},
		jwk{kid: "ec1", key: &k.ec.PublicKey},
		jwk{kid: "ed1", key: k.ed.Public()},
		jwk{kid: "hs1", key: k.hmac},
	))
	pc.Algorithms = []string{"RS256", "ES256", "EdDSA", "HS256"}
	pc.CacheSize = cacheSize
	return mustNew(b, pc, Options{})
}

type benchToken struct {
	alg string
	tok string
}

func benchTokens(b *testing.B) []benchToken {
	k := keys(b)
	c := with(goodClaims("alice"), "roles", []any{"a", "b"}, "admin", true)
	return []benchToken{
		{"RS256", sign(b, jwtlib.SigningMethodRS256, "rsa1", k.rsa, c)},
		{"ES256", sign(b, jwtlib.SigningMethodES256, "ec1", k.ec, c)},
		{"EdDSA", sign(b, jwtlib.SigningMethodEdDSA, "ed1", k.ed, c)},
		{"HS256", sign(b, jwtlib.SigningMethodHS256, "hs1", k.hmac, c)},
	}
}

func benchRequest(tok string) *fasthttp.Request {
	req := &fasthttp.Request{}
	req.SetRequestURI("http://api.test/v1/x")
	req.Header.Set("User-Agent", "bench")
	req.Header.Set("Accept", "*/*")
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-User-ID", "forged")
	return req
}

// BenchmarkApplyFastCached is the steady state of a route with a JWT policy:
// a repeated token, forged headers removed, three claim headers set.
func BenchmarkApplyFastCached(b *testing.B) {
	p := benchPolicy(b, config.JWTPolicy{}.CacheSize)
	for _, bt := range benchTokens(b) {
		b.Run(bt.alg, func(b *testing.B) {
			req := benchRequest(bt.tok)
			if r := p.ApplyFast(req, testNow); r != Valid {
				b.Fatal(r)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if p.ApplyFast(req, testNow) != Valid {
					b.Fatal("rejected")
				}
			}
		})
	}
}

func BenchmarkApplyFastCachedParallel(b *testing.B) {
	p := benchPolicy(b, 0)
	toks := benchTokens(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		reqs := make([]*fasthttp.Request, len(toks))
		for i, bt := range toks {
			reqs[i] = benchRequest(bt.tok)
			p.ApplyFast(reqs[i], testNow)
		}
		i := 0
		for pb.Next() {
			if p.ApplyFast(reqs[i%len(reqs)], testNow) != Valid {
				b.Error("rejected")
				return
			}
			i++
		}
	})
}

// BenchmarkApplyHTTPCached is the gRPC (net/http) path on a cache hit.
func BenchmarkApplyHTTPCached(b *testing.B) {
	p := benchPolicy(b, 0)
	bt := benchTokens(b)[0]
	auth := []string{"Bearer " + bt.tok}
	r := benchHTTPRequest(auth)
	p.ApplyHTTP(r, testNow)
	b.ReportAllocs()
	for b.Loop() {
		r.Header["Authorization"] = auth
		if p.ApplyHTTP(r, testNow) != Valid {
			b.Fatal("rejected")
		}
	}
}

// BenchmarkVerifyUncached is a first-seen token: parse, key lookup,
// signature, claims, claim headers (cache disabled).
func BenchmarkVerifyUncached(b *testing.B) {
	p := benchPolicy(b, -1)
	for _, bt := range benchTokens(b) {
		b.Run(bt.alg, func(b *testing.B) {
			req := benchRequest(bt.tok)
			b.ReportAllocs()
			for b.Loop() {
				if p.ApplyFast(req, testNow) != Valid {
					b.Fatal("rejected")
				}
			}
		})
	}
}

// BenchmarkCryptoBaseline is the bare signature check on the same signing
// input (hash included), the floor under BenchmarkVerifyUncached.
func BenchmarkCryptoBaseline(b *testing.B) {
	k := keys(b)
	for _, bt := range benchTokens(b) {
		i := strings.LastIndexByte(bt.tok, '.')
		input := []byte(bt.tok[:i])
		sig, err := base64.RawURLEncoding.DecodeString(bt.tok[i+1:])
		if err != nil {
			b.Fatal(err)
		}
		var verify func() bool
		switch bt.alg {
		case "RS256":
			verify = func() bool {
				h := sha256.Sum256(input)
				return rsa.VerifyPKCS1v15(&k.rsa.PublicKey, crypto.SHA256, h[:], sig) == nil
			}
		case "ES256":
			r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
			verify = func() bool {
				h := sha256.Sum256(input)
				return ecdsa.Verify(&k.ec.PublicKey, h[:], r, s)
			}
		case "EdDSA":
			pub := k.ed.Public().(ed25519.PublicKey)
			verify = func() bool { return ed25519.Verify(pub, input, sig) }
		case "HS256":
			verify = func() bool {
				m := hmac.New(sha256.New, k.hmac)
				m.Write(input)
				return hmac.Equal(m.Sum(nil), sig)
			}
		}
		b.Run(bt.alg, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !verify() {
					b.Fatal("signature does not verify")
				}
			}
		})
	}
}

func benchHTTPRequest(auth []string) *http.Request {
	return &http.Request{Header: http.Header{"Authorization": auth, "X-User-Id": {"forged"}}}
}
