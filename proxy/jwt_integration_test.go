package proxy

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jwtlib "github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"
)

// TestJWTRoute runs a route with a JWT policy through the real proxy: a
// valid token reaches the backend with its claim header, a forged claim
// header never does, and bad or missing tokens get 401 with the RFC 6750
// WWW-Authenticate header.
func TestJWTRoute(t *testing.T) {
	t.Parallel()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startBackend(t, "a")
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  path_prefix = "/private/"
  pool = "demo"
  jwt = "users"
  [[listener.route]]
  pool = "demo"
`+poolTOML("demo", `health = { check = "none" }`, a.addr)+`
[jwt.users]
public_key_file = "`+keyFile+`"
issuer = "https://auth.test/"
audiences = ["api"]
algorithms = ["EdDSA"]
forward_claims = { sub = "X-User-ID" }
`, nil)
	token := func(claims jwtlib.MapClaims) string {
		s, err := jwtlib.NewWithClaims(jwtlib.SigningMethodEdDSA, claims).SignedString(priv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := time.Now()
	good := token(jwtlib.MapClaims{"sub": "alice", "iss": "https://auth.test/", "aud": "api", "exp": now.Add(time.Hour).Unix()})
	expired := token(jwtlib.MapClaims{"sub": "alice", "iss": "https://auth.test/", "aud": "api", "exp": now.Add(-time.Hour).Unix()})
	client := &fasthttp.Client{}
	cases := []struct {
		name, path, authz string
		status            int
		wwwAuth           string
	}{
		{"valid token", "/private/x", "Bearer " + good, 200, ""},
		{"expired", "/private/x", "Bearer " + expired, 401, `error="invalid_token"`},
		{"garbage", "/private/x", "Bearer abc.def", 401, `error="invalid_token"`},
		{"missing", "/private/x", "", 401, "Bearer"},
		{"public route needs none", "/public", "", 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hdr := []string{"X-User-ID", "mallory"}
			if tc.authz != "" {
				hdr = append(hdr, "Authorization", tc.authz)
			}
			resp, err := get(t, client, p.url(t, "web", tc.path), hdr...)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode() != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode(), tc.status, resp.Body())
			}
			if got := string(resp.Header.Peek("WWW-Authenticate")); !strings.Contains(got, tc.wwwAuth) {
				t.Errorf("WWW-Authenticate %q, want it to contain %q", got, tc.wwwAuth)
			}
			if tc.status == 401 && len(resp.Header.Peek("X-Request-ID")) == 0 {
				t.Errorf("401 without X-Request-ID")
			}
		})
	}
	// The last request to reach the backend on the private route carried
	// alice's verified identity, never the forged one.
	if _, err := get(t, client, p.url(t, "web", "/private/y"), "X-User-ID", "mallory", "Authorization", "Bearer "+good); err != nil {
		t.Fatal(err)
	}
	hdr := strings.ToLower(a.header())
	if !strings.Contains(hdr, "x-user-id: alice") || strings.Contains(hdr, "mallory") {
		t.Errorf("backend headers:\n%s\nwant x-user-id: alice and no mallory", hdr)
	}
	// A route without a policy drops the claim header too.
	if _, err := get(t, client, p.url(t, "web", "/public"), "X-User-ID", "mallory"); err != nil {
		t.Fatal(err)
	}
	if hdr := strings.ToLower(a.header()); strings.Contains(hdr, "x-user-id") {
		t.Errorf("public route forwarded a client's X-User-ID:\n%s", hdr)
	}
	if got := metricValue(t, p.reg, "frontdoor_jwt_rejected_total", map[string]string{"policy": "users", "reason": "expired"}); got != 1 {
		t.Errorf("jwt_rejected_total{reason=expired} = %v, want 1", got)
	}
}
