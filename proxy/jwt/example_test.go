package jwt_test

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	jwtlib "github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"frontdoor/config"
	"frontdoor/proxy/jwt"
)

// A policy with an HMAC secret that forwards sub as X-User-ID. A forged
// X-User-ID from the client is replaced by the verified claim; a bad token
// is answered with 401 and the reason.
func Example() {
	dir, _ := os.MkdirTemp("", "jwt-example")
	defer os.RemoveAll(dir)
	secret := []byte("an example secret of at least 32 bytes")
	path := filepath.Join(dir, "secret")
	_ = os.WriteFile(path, append(secret, '\n'), 0o600)

	pol, err := jwt.New(&config.JWTPolicy{
		Name:           "users",
		HMACSecretFile: path,
		Algorithms:     []string{"HS256"},
		Issuer:         "https://auth.example.com/",
		Audiences:      []string{"api"},
		Leeway:         config.Duration{Duration: 30 * time.Second},
		ForwardClaims:  map[string]string{"sub": "X-User-ID"},
	}, jwt.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}

	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	token := func(exp time.Time) string {
		s, _ := jwtlib.NewWithClaims(jwtlib.SigningMethodHS256, jwtlib.MapClaims{
			"iss": "https://auth.example.com/", "aud": "api", "sub": "alice", "exp": exp.Unix(),
		}).SignedString(secret)
		return s
	}

	var req fasthttp.Request
	req.Header.Set("Authorization", "Bearer "+token(now.Add(time.Hour)))
	req.Header.Set("X-User-ID", "mallory")
	r := pol.ApplyFast(&req, now)
	fmt.Println(r, string(req.Header.Peek("X-User-ID")))

	req.Header.Set("Authorization", "Bearer "+token(now.Add(-time.Hour)))
	r = pol.ApplyFast(&req, now)
	// Anything but Valid is answered 401 with this WWW-Authenticate.
	fmt.Println(r, string(req.Header.Peek("X-User-ID")) == "")
	fmt.Println(r.WWWAuthenticate())
	// Output:
	// valid alice
	// expired true
	// Bearer error="invalid_token", error_description="the token has expired"
}
