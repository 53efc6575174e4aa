package jwt

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	jose "github.com/go-jose/go-jose/v4"
	jwtlib "github.com/golang-jwt/jwt/v5"

	"frontdoor/config"
)

// testNow is the fixed clock of most tests.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testKeys are generated once per test binary: RSA 2048 is slow under -race.
type testKeys struct {
	rsa   *rsa.PrivateKey
	ec    *ecdsa.PrivateKey
	ec384 *ecdsa.PrivateKey
	ed    ed25519.PrivateKey
	hmac  []byte
}

var keysOnce = sync.OnceValue(func() *testKeys {
	k := &testKeys{}
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	if k.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		panic(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
	k.hmac = make([]byte, 32)
	if _, err = rand.Read(k.hmac); err != nil {
		panic(err)
	}
	// The secret file loader drops one trailing "\n": a random secret that
	// ended in one (1 run in 256) read back as 31 bytes and failed the tests.
	k.hmac[len(k.hmac)-1] |= 0x80
	return k
})

// otherRSA is a second RSA key, made only by the tests that need it.
var otherRSA = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func keys(tb testing.TB) *testKeys {
	tb.Helper()
	return keysOnce()
}

// sign makes a token with method m, optional kid and the given claims.
func sign(tb testing.TB, m jwtlib.SigningMethod, kid string, key any, claims jwtlib.MapClaims) string {
	tb.Helper()
	t := jwtlib.NewWithClaims(m, claims)
	if kid != "" {
		t.Header["kid"] = kid
	}
	s, err := t.SignedString(key)
	if err != nil {
		tb.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

// signHeader is sign with extra header fields.
func signHeader(tb testing.TB, m jwtlib.SigningMethod, header map[string]any, key any, claims jwtlib.MapClaims) string {
	tb.Helper()
	t := jwtlib.NewWithClaims(m, claims)
	for k, v := range header {
		t.Header[k] = v
	}
	s, err := t.SignedString(key)
	if err != nil {
		tb.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

// goodClaims are claims every test policy accepts at testNow.
func goodClaims(sub string) jwtlib.MapClaims {
	return jwtlib.MapClaims{
		"iss": "https://auth.test/",
		"aud": "api",
		"sub": sub,
		"iat": testNow.Add(-time.Minute).Unix(),
		"nbf": testNow.Add(-time.Minute).Unix(),
		"exp": testNow.Add(time.Hour).Unix(),
	}
}

func with(c jwtlib.MapClaims, kv ...any) jwtlib.MapClaims {
	out := jwtlib.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(out, k)
			continue
		}
		out[k] = kv[i+1]
	}
	return out
}

// jwk is one public key for a JWKS document.
type jwk struct {
	kid, alg string
	key      any
}

func jwksJSON(tb testing.TB, ks ...jwk) []byte {
	tb.Helper()
	var set jose.JSONWebKeySet
	for _, k := range ks {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.key, KeyID: k.kid, Algorithm: k.alg, Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		tb.Fatalf("marshal jwks: %v", err)
	}
	return b
}

func writeFile(tb testing.TB, dir, name string, data []byte) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	// Write then rename, as an operator's tooling would.
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		tb.Fatal(err)
	}
	return p
}

func pemPublic(tb testing.TB, pub any) []byte {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// basePolicy is a policy as config.Load would leave it (defaults applied);
// the key source is set by the caller.
func basePolicy(name string) config.JWTPolicy {
	return config.JWTPolicy{
		Name:           name,
		Issuer:         "https://auth.test/",
		Audiences:      []string{"api", "admin"},
		Algorithms:     []string{"RS256", "ES256", "EdDSA"},
		Leeway:         config.Duration{Duration: 30 * time.Second},
		RequiredClaims: []string{"sub"},
		ForwardClaims: map[string]string{
			"sub":   "X-User-ID",
			"roles": "X-Roles",
			"admin": "X-Admin",
			"n":     "X-N",
			"note":  "X-Note",
		},
		MaxTokenBytes: 8192,
		CacheSize:     1000,
		CacheTTL:      config.Duration{Duration: 5 * time.Minute},
		JWKSRefresh:   config.Duration{Duration: 5 * time.Minute},
	}
}

func mustNew(tb testing.TB, pc config.JWTPolicy, opts Options) *Policy {
	tb.Helper()
	p, err := New(&pc, opts)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return p
}

// keyCount is how many keys p verifies with now (0 while a jwks_url has
// never been fetched successfully).
func keyCount(p *Policy) int { return len(p.keys.Load().keys) }

func hashOf(s string) uint64 { return xxhash.Sum64String(s) }
