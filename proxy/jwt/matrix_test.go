package jwt

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	jwtlib "github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"frontdoor/config"
)

// matrixPolicies builds the policies of the token matrix from real keys
// written to a temp dir.
func matrixPolicies(t *testing.T) map[string]*Policy {
	t.Helper()
	k := keys(t)
	dir := t.TempDir()
	jwks := writeFile(t, dir, "jwks.json", jwksJSON(t,
		jwk{kid: "rsa1", key: &k.rsa.PublicKey},
		jwk{kid: "ec1", key: &k.ec.PublicKey},
		jwk{kid: "ed1", alg: "EdDSA", key: k.ed.Public()},
	))
	secret := writeFile(t, dir, "secret", append(append([]byte{}, k.hmac...), '\n'))
	pemFile := writeFile(t, dir, "rsa.pem", pemPublic(t, &k.rsa.PublicKey))

	pols := map[string]*Policy{}
	multi := basePolicy("multi")
	multi.JWKSFile = jwks
	pols["multi"] = mustNew(t, multi, Options{})

	hm := basePolicy("hmac")
	hm.HMACSecretFile = secret
	hm.Algorithms = []string{"HS256"}
	pols["hmac"] = mustNew(t, hm, Options{})

	pm := basePolicy("pem")
	pm.PublicKeyFile = pemFile
	pm.Algorithms = []string{"RS256"}
	pols["pem"] = mustNew(t, pm, Options{})

	pmhs := pm
	pmhs.Name = "pemhs"
	pmhs.Algorithms = []string{"RS256", "HS256"}
	pols["pemhs"] = mustNew(t, pmhs, Options{})

	ck := hm
	ck.Name = "cookie"
	ck.TokenFrom = config.HashKey{Source: "cookie", Name: "session"}
	ck.StripAuthorization = true
	pols["cookie"] = mustNew(t, ck, Options{})

	xt := hm
	xt.Name = "xtoken"
	xt.TokenFrom = config.HashKey{Source: "header", Name: "x-token"}
	xt.StripAuthorization = true
	pols["xtoken"] = mustNew(t, xt, Options{})
	return pols
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// replaceSeg replaces segment i of a compact token.
func replaceSeg(tok string, i int, seg string) string {
	parts := strings.Split(tok, ".")
	parts[i] = seg
	return strings.Join(parts, ".")
}

type matrixCase struct {
	name   string
	pol    string
	auth   string // full Authorization value; "" = none
	auth2  string // a second Authorization header
	cookie string // Cookie header
	xtoken string // X-Token header
	want   Reason
	sub    string // X-User-ID expected on Valid
	extra  map[string]string
}

func matrixCases(t *testing.T) []matrixCase {
	k := keys(t)
	g := goodClaims("alice")
	rich := with(g, "roles", []any{"a", "b"}, "admin", true, "n", 42)
	rs := func(c jwtlib.MapClaims) string { return sign(t, jwtlib.SigningMethodRS256, "rsa1", k.rsa, c) }
	bearer := func(s string) string { return "Bearer " + s }
	validRS := rs(g)
	pemBytes := pemPublic(t, &k.rsa.PublicKey)
	noneTok := func(kid string) string {
		return sign(t, jwtlib.SigningMethodNone, kid, jwtlib.UnsafeAllowNoneSignatureType, g)
	}
	confusion := sign(t, jwtlib.SigningMethodHS256, "", pemBytes, g)
	confusionKid := sign(t, jwtlib.SigningMethodHS256, "rsa1", pemBytes, g)

	return []matrixCase{
		{name: "valid RS256", pol: "multi", auth: bearer(rs(rich)), want: Valid, sub: "alice",
			extra: map[string]string{"X-Roles": `["a","b"]`, "X-Admin": "true", "X-N": "42"}},
		{name: "valid ES256", pol: "multi", auth: bearer(sign(t, jwtlib.SigningMethodES256, "ec1", k.ec, g)), want: Valid, sub: "alice"},
		{name: "valid EdDSA", pol: "multi", auth: bearer(sign(t, jwtlib.SigningMethodEdDSA, "ed1", k.ed, g)), want: Valid, sub: "alice"},
		{name: "valid HS256 no kid single key", pol: "hmac", auth: bearer(sign(t, jwtlib.SigningMethodHS256, "", k.hmac, rich)), want: Valid, sub: "alice",
			extra: map[string]string{"X-Roles": `["a","b"]`, "X-Admin": "true"}},
		{name: "valid HS256 any kid single key", pol: "hmac", auth: bearer(sign(t, jwtlib.SigningMethodHS256, "whatever", k.hmac, g)), want: Valid, sub: "alice"},
		{name: "valid RS256 from PEM", pol: "pem", auth: bearer(sign(t, jwtlib.SigningMethodRS256, "", k.rsa, g)), want: Valid, sub: "alice"},
		{name: "valid lowercase scheme", pol: "multi", auth: "bearer   " + validRS + " ", want: Valid, sub: "alice"},
		{name: "valid aud array", pol: "multi", auth: bearer(rs(with(g, "aud", []any{"x", "admin"}))), want: Valid, sub: "alice"},
		{name: "valid expired within leeway", pol: "multi", auth: bearer(rs(with(g, "exp", testNow.Add(-10*time.Second).Unix()))), want: Valid, sub: "alice"},
		{name: "valid empty sub", pol: "multi", auth: bearer(rs(with(g, "sub", ""))), want: Valid, sub: ""},
		{name: "valid unicode sub", pol: "multi", auth: bearer(rs(with(g, "sub", "zoë"))), want: Valid, sub: "zoë"},
		{name: "valid cookie", pol: "cookie", cookie: "a=1; session=" + sign(t, jwtlib.SigningMethodHS256, "", k.hmac, g) + "; b=2", want: Valid, sub: "alice"},
		{name: "valid x-token", pol: "xtoken", xtoken: sign(t, jwtlib.SigningMethodHS256, "", k.hmac, g), want: Valid, sub: "alice"},

		{name: "expired", pol: "multi", auth: bearer(rs(with(g, "exp", testNow.Add(-time.Hour).Unix()))), want: Expired},
		{name: "not yet valid", pol: "multi", auth: bearer(rs(with(g, "nbf", testNow.Add(time.Hour).Unix()))), want: NotYetValid},
		{name: "issued in the future", pol: "multi", auth: bearer(rs(with(g, "iat", testNow.Add(time.Hour).Unix()))), want: NotYetValid},
		{name: "wrong issuer", pol: "multi", auth: bearer(rs(with(g, "iss", "https://evil.test/"))), want: WrongIssuer},
		{name: "missing issuer", pol: "multi", auth: bearer(rs(with(g, "iss", nil))), want: WrongIssuer},
		{name: "wrong audience", pol: "multi", auth: bearer(rs(with(g, "aud", "other"))), want: WrongAudience},
		{name: "missing audience", pol: "multi", auth: bearer(rs(with(g, "aud", nil))), want: WrongAudience},
		{name: "exp not a number", pol: "multi", auth: bearer(rs(with(g, "exp", "tomorrow"))), want: Malformed},
		{name: "missing required claim", pol: "multi", auth: bearer(rs(with(g, "sub", nil))), want: MissingClaim},
		{name: "null required claim", pol: "multi", auth: bearer(rs(with(g, "sub", []any(nil)))), want: MissingClaim},
		{name: "claim with CRLF", pol: "multi", auth: bearer(rs(with(g, "note", "x\r\nX-Admin: true"))), want: BadClaim},

		{name: "bad signature other key", pol: "multi", auth: bearer(sign(t, jwtlib.SigningMethodRS256, "rsa1", otherRSA(), g)), want: BadSignature},
		{name: "bad signature tampered claims", pol: "multi", auth: bearer(replaceSeg(validRS, 1, strings.Split(rs(goodClaims("root")), ".")[1])), want: BadSignature},
		{name: "bad signature HS256", pol: "hmac", auth: bearer(sign(t, jwtlib.SigningMethodHS256, "", []byte("0123456789abcdef0123456789abcdef"), g)), want: BadSignature},
		{name: "alg none", pol: "multi", auth: bearer(noneTok("rsa1")), want: BadAlgorithm},
		{name: "alg none no kid hmac", pol: "hmac", auth: bearer(noneTok("")), want: BadAlgorithm},
		{name: "HS256 with RSA PEM as secret", pol: "pem", auth: bearer(confusion), want: BadAlgorithm},
		{name: "HS256 with RSA PEM as secret, HS256 allowed", pol: "pemhs", auth: bearer(confusion), want: BadAlgorithm},
		{name: "HS256 with RSA PEM as secret, kid of RSA key", pol: "multi", auth: bearer(confusionKid), want: BadAlgorithm},
		{name: "kid selects EC key for RS256", pol: "multi", auth: bearer(sign(t, jwtlib.SigningMethodRS256, "ec1", k.rsa, g)), want: BadAlgorithm},
		{name: "JWK alg pins EdDSA", pol: "multi", auth: bearer(sign(t, jwtlib.SigningMethodES256, "ed1", k.ec, g)), want: BadAlgorithm},
		{name: "PS256 not allowed", pol: "multi", auth: bearer(sign(t, jwtlib.SigningMethodPS256, "rsa1", k.rsa, g)), want: BadAlgorithm},
		{name: "ES384 not allowed", pol: "multi", auth: bearer(sign(t, jwtlib.SigningMethodES384, "ec1", k.ec384, g)), want: BadAlgorithm},
		{name: "unknown alg", pol: "multi", auth: bearer(replaceSeg(validRS, 0, b64(`{"alg":"XX256","kid":"rsa1"}`))), want: BadAlgorithm},
		{name: "alg missing", pol: "multi", auth: bearer(replaceSeg(validRS, 0, b64(`{"kid":"rsa1"}`))), want: Malformed},
		{name: "unknown kid", pol: "multi", auth: bearer(sign(t, jwtlib.SigningMethodRS256, "nope", k.rsa, g)), want: UnknownKey},
		{name: "no kid several keys", pol: "multi", auth: bearer(sign(t, jwtlib.SigningMethodRS256, "", k.rsa, g)), want: UnknownKey},
		{name: "kid not a string", pol: "multi", auth: bearer(signHeader(t, jwtlib.SigningMethodRS256, map[string]any{"kid": 7}, k.rsa, g)), want: Malformed},
		{name: "crit header", pol: "multi", auth: bearer(signHeader(t, jwtlib.SigningMethodRS256, map[string]any{"kid": "rsa1", "crit": []string{"exp"}}, k.rsa, g)), want: CritHeader},
		{name: "two segments", pol: "multi", auth: bearer(validRS[:strings.LastIndexByte(validRS, '.')]), want: Malformed},
		{name: "four segments", pol: "multi", auth: bearer(validRS + ".x"), want: Malformed},
		{name: "bad base64 header", pol: "multi", auth: bearer(replaceSeg(validRS, 0, "e@J%")), want: Malformed},
		{name: "bad base64 signature", pol: "multi", auth: bearer(replaceSeg(validRS, 2, "!!!")), want: Malformed},
		{name: "padded signature", pol: "multi", auth: bearer(validRS + "=="), want: Malformed},
		{name: "not json", pol: "multi", auth: bearer(replaceSeg(validRS, 1, b64("{nope"))), want: Malformed},
		{name: "oversized", pol: "multi", auth: bearer(strings.Repeat("a", 8193)), want: TooLarge},
		{name: "missing", pol: "multi", want: Missing},
		{name: "basic scheme", pol: "multi", auth: "Basic YWxpY2U6cHc=", want: Missing},
		{name: "bearer without token", pol: "multi", auth: "Bearer   ", want: Missing},
		{name: "token without scheme", pol: "multi", auth: validRS, want: Missing},
		{name: "cookie missing", pol: "cookie", cookie: "a=1", auth: bearer(validRS), want: Missing},
		{name: "two Authorization headers", pol: "multi", auth: bearer(validRS), auth2: bearer(rs(goodClaims("root"))), want: Malformed},
		{name: "two token cookies", pol: "cookie", cookie: "session=" + sign(t, jwtlib.SigningMethodHS256, "", k.hmac, g) + "; session=x", want: Malformed},
		{name: "x-token wrong key", pol: "xtoken", xtoken: validRS, want: BadAlgorithm},
	}
}

// forged headers every request carries; none may survive.
var forged = [][2]string{
	{"X-User-ID", "forged"},
	{"x-user-id", "forged-lower"},
	{"X_User_Id", "forged-underscore"},
	{"X-ADMIN", "true"},
	{"X-Note", "forged-note"},
}

func fastRequest(tc matrixCase) *fasthttp.Request {
	req := &fasthttp.Request{}
	req.SetRequestURI("http://api.test/v1/x")
	for _, f := range forged {
		req.Header.Add(f[0], f[1])
	}
	if tc.auth != "" {
		req.Header.Set("Authorization", tc.auth)
	}
	if tc.auth2 != "" {
		req.Header.Add("Authorization", tc.auth2)
	}
	if tc.cookie != "" {
		req.Header.Set("Cookie", tc.cookie)
	}
	if tc.xtoken != "" {
		req.Header.Set("X-Token", tc.xtoken)
	}
	return req
}

func httpRequest(t *testing.T, tc matrixCase) *http.Request {
	r, err := http.NewRequest(http.MethodPost, "http://api.test/pkg.Svc/Call", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range forged {
		r.Header[f[0]] = append(r.Header[f[0]], f[1]) // raw keys, as a hand-built map may hold
	}
	if tc.auth != "" {
		r.Header.Set("Authorization", tc.auth)
	}
	if tc.auth2 != "" {
		r.Header.Add("Authorization", tc.auth2)
	}
	if tc.cookie != "" {
		r.Header.Set("Cookie", tc.cookie)
	}
	if tc.xtoken != "" {
		r.Header.Set("X-Token", tc.xtoken)
	}
	return r
}

// fastHeaders returns every header value of req by lower-cased name.
func fastHeaders(req *fasthttp.Request) map[string][]string {
	out := map[string][]string{}
	for k, v := range req.Header.All() {
		n := strings.ToLower(strings.ReplaceAll(string(k), "_", "-"))
		out[n] = append(out[n], string(v))
	}
	return out
}

func httpHeaders(r *http.Request) map[string][]string {
	out := map[string][]string{}
	for k, vs := range r.Header {
		n := strings.ToLower(strings.ReplaceAll(k, "_", "-"))
		out[n] = append(out[n], vs...)
	}
	return out
}

func TestTokenMatrix(t *testing.T) {
	t.Parallel()
	pols := matrixPolicies(t)
	for _, tc := range matrixCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := pols[tc.pol]
			// Twice: the second run of a valid token is a cache hit and
			// must give the same result.
			for round := range 2 {
				req := fastRequest(tc)
				got := p.ApplyFast(req, testNow)
				if got != tc.want {
					t.Fatalf("round %d ApplyFast = %v, want %v", round, got, tc.want)
				}
				checkHeaders(t, "ApplyFast", tc, p, fastHeaders(req))

				hr := httpRequest(t, tc)
				if got := p.ApplyHTTP(hr, testNow); got != tc.want {
					t.Fatalf("round %d ApplyHTTP = %v, want %v", round, got, tc.want)
				}
				checkHeaders(t, "ApplyHTTP", tc, p, httpHeaders(hr))
			}
			if tc.want == Valid {
				return
			}
			wantWWW := `Bearer error="invalid_token", error_description="` + tc.want.Description() + `"`
			if tc.want == Missing {
				wantWWW = "Bearer"
			}
			if www := tc.want.WWWAuthenticate(); www != wantWWW {
				t.Errorf("WWW-Authenticate %q, want %q", www, wantWWW)
			}
			if d := tc.want.Description(); d == "" || strings.ContainsAny(d, "\"\\\r\n") {
				t.Errorf("description %q is empty or not a safe one-line quoted-string", d)
			}
		})
	}
}

func checkHeaders(t *testing.T, stage string, tc matrixCase, p *Policy, h map[string][]string) {
	t.Helper()
	for n, vs := range h {
		for _, v := range vs {
			if strings.HasPrefix(v, "forged") || (n == "x-admin" && tc.extra["X-Admin"] == "") {
				t.Errorf("%s: forged header %s: %q survived", stage, n, v)
			}
		}
	}
	if tc.want != Valid {
		if v, ok := h["x-user-id"]; ok {
			t.Errorf("%s: X-User-ID %q set on a rejected request", stage, v)
		}
		return
	}
	if got := h["x-user-id"]; len(got) != 1 || got[0] != tc.sub {
		t.Errorf("%s: X-User-ID %q, want [%q]", stage, got, tc.sub)
	}
	for k, want := range tc.extra {
		if got := h[strings.ToLower(k)]; len(got) != 1 || got[0] != want {
			t.Errorf("%s: %s %q, want [%q]", stage, k, got, want)
		}
	}
	if _, ok := h["x-note"]; ok {
		t.Errorf("%s: X-Note set though the claim is absent", stage)
	}
	if p.strip {
		if _, ok := h["x-token"]; ok {
			t.Errorf("%s: token header not stripped", stage)
		}
		for _, c := range h["cookie"] {
			if strings.Contains(c, "session=") {
				t.Errorf("%s: token cookie not stripped: %q", stage, c)
			}
			if !strings.Contains(c, "a=1") || !strings.Contains(c, "b=2") {
				t.Errorf("%s: other cookies lost: %q", stage, c)
			}
		}
	} else if tc.auth != "" {
		if _, ok := h["authorization"]; !ok {
			t.Errorf("%s: Authorization removed without strip_authorization", stage)
		}
	}
}
