package jwt

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	jwtlib "github.com/golang-jwt/jwt/v5"

	"frontdoor/config"
)

func selfSigned(t *testing.T, pub, priv any) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "auth.test"},
		NotBefore:    testNow.Add(-time.Hour),
		NotAfter:     testNow.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestKeySources(t *testing.T) {
	t.Parallel()
	k := keys(t)
	dir := t.TempDir()
	g := goodClaims("u")
	rsTok := sign(t, jwtlib.SigningMethodRS256, "", k.rsa, g)
	esTok := sign(t, jwtlib.SigningMethodES256, "", k.ec, g)
	edTok := sign(t, jwtlib.SigningMethodEdDSA, "", k.ed, g)
	hsTok := sign(t, jwtlib.SigningMethodHS256, "", k.hmac, g)
	hs512Tok := sign(t, jwtlib.SigningMethodHS512, "", k.hmac, g)

	privJWK, err := json.Marshal(jose.JSONWebKey{Key: k.ec, KeyID: "priv"})
	if err != nil {
		t.Fatal(err)
	}
	octJWK, err := json.Marshal(jose.JSONWebKey{Key: k.hmac, KeyID: "oct", Algorithm: "HS256"})
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)})
	ecCert := selfSigned(t, &k.ec.PublicKey, k.ec)
	rsaCert := selfSigned(t, &k.rsa.PublicKey, k.rsa)

	cases := []struct {
		name string
		set  func(pc *config.JWTPolicy)
		tok  string
		want Reason
	}{
		{"pem pkix rsa", func(pc *config.JWTPolicy) {
			pc.PublicKeyFile = writeFile(t, dir, "pkix.pem", pemPublic(t, &k.rsa.PublicKey))
		}, rsTok, Valid},
		{"pem pkcs1 rsa", func(pc *config.JWTPolicy) { pc.PublicKeyFile = writeFile(t, dir, "pkcs1.pem", pkcs1) }, rsTok, Valid},
		{"pem ec", func(pc *config.JWTPolicy) {
			pc.PublicKeyFile = writeFile(t, dir, "ec.pem", pemPublic(t, &k.ec.PublicKey))
		}, esTok, Valid},
		{"pem ed25519", func(pc *config.JWTPolicy) {
			pc.PublicKeyFile = writeFile(t, dir, "ed.pem", pemPublic(t, k.ed.Public()))
		}, edTok, Valid},
		{"pem certificate", func(pc *config.JWTPolicy) { pc.PublicKeyFile = writeFile(t, dir, "ec.crt", ecCert) }, esTok, Valid},
		{"pem certificate chain", func(pc *config.JWTPolicy) {
			pc.PublicKeyFile = writeFile(t, dir, "chain.crt", append(append([]byte{}, ecCert...), rsaCert...))
		}, esTok, Valid},
		{"pem ec key rejects rsa token", func(pc *config.JWTPolicy) {
			pc.PublicKeyFile = writeFile(t, dir, "ec2.pem", pemPublic(t, &k.ec.PublicKey))
		}, rsTok, BadAlgorithm},
		{"hmac without newline", func(pc *config.JWTPolicy) {
			pc.HMACSecretFile = writeFile(t, dir, "s1", k.hmac)
			pc.Algorithms = []string{"HS256"}
		}, hsTok, Valid},
		{"hmac crlf", func(pc *config.JWTPolicy) {
			pc.HMACSecretFile = writeFile(t, dir, "s2", append(append([]byte{}, k.hmac...), '\r', '\n'))
			pc.Algorithms = []string{"HS256", "HS512"}
		}, hsTok, Valid},
		{"hmac 32 bytes never used for HS512", func(pc *config.JWTPolicy) {
			pc.HMACSecretFile = writeFile(t, dir, "s4", k.hmac)
			pc.Algorithms = []string{"HS256", "HS512"}
		}, hs512Tok, BadAlgorithm},
		{"hmac two newlines keep one", func(pc *config.JWTPolicy) {
			pc.HMACSecretFile = writeFile(t, dir, "s3", append(append([]byte{}, k.hmac...), '\n', '\n'))
			pc.Algorithms = []string{"HS256"}
		}, hsTok, BadSignature},
		{"jwks private key used as public", func(pc *config.JWTPolicy) {
			pc.JWKSFile = writeFile(t, dir, "priv.json", []byte(`{"keys":[`+string(privJWK)+`]}`))
		}, sign(t, jwtlib.SigningMethodES256, "priv", k.ec, g), Valid},
		{"jwks oct key", func(pc *config.JWTPolicy) {
			pc.JWKSFile = writeFile(t, dir, "oct.json", []byte(`{"keys":[`+string(octJWK)+`]}`))
			pc.Algorithms = []string{"HS256", "RS256"}
		}, sign(t, jwtlib.SigningMethodHS256, "oct", k.hmac, g), Valid},
		{"jwks unknown kty skipped", func(pc *config.JWTPolicy) {
			pc.JWKSFile = writeFile(t, dir, "kty.json", []byte(`{"keys":[{"kty":"XYZ","kid":"z"},`+string(jwksJSON(t, jwk{kid: "a", key: &k.rsa.PublicKey}))[9:]))
		}, sign(t, jwtlib.SigningMethodRS256, "a", k.rsa, g), Valid},
		{"jwks enc key skipped", func(pc *config.JWTPolicy) {
			pc.JWKSFile = writeFile(t, dir, "enc.json", []byte(`{"keys":[{"kty":"EC","use":"enc","kid":"e","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},`+string(jwksJSON(t, jwk{kid: "a", key: &k.rsa.PublicKey}))[9:]))
		}, sign(t, jwtlib.SigningMethodRS256, "e", k.rsa, g), UnknownKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pc := basePolicy("src")
			pc.ForwardClaims = nil
			tc.set(&pc)
			p := mustNew(t, pc, Options{})
			if got := applyBearer(p, tc.tok, testNow); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	k := keys(t)
	dir := t.TempDir()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(k.ec)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := writeFile(t, dir, "rsa.pem", pemPublic(t, &k.rsa.PublicKey))
	secret := writeFile(t, dir, "secret", k.hmac)

	cases := []struct {
		name    string
		set     func(pc *config.JWTPolicy)
		mention string
	}{
		{"no key source", func(pc *config.JWTPolicy) {}, "exactly one"},
		{"two key sources", func(pc *config.JWTPolicy) { pc.PublicKeyFile = rsaPEM; pc.HMACSecretFile = secret }, "exactly one"},
		{"jwks file missing", func(pc *config.JWTPolicy) { pc.JWKSFile = dir + "/nope.json" }, "nope.json"},
		{"jwks not json", func(pc *config.JWTPolicy) { pc.JWKSFile = writeFile(t, dir, "bad.json", []byte("{")) }, "bad.json"},
		{"jwks without keys", func(pc *config.JWTPolicy) { pc.JWKSFile = writeFile(t, dir, "empty.json", []byte(`{"keys":[]}`)) }, "no key usable"},
		{"jwks broken key", func(pc *config.JWTPolicy) {
			pc.JWKSFile = writeFile(t, dir, "broken.json", []byte(`{"keys":[{"kty":"EC","kid":"b","crv":"P-256","x":"AA","y":"AA"}]}`))
		}, "key #0"},
		{"jwks alg does not fit key", func(pc *config.JWTPolicy) {
			pc.JWKSFile = writeFile(t, dir, "alg.json", jwksJSON(t, jwk{kid: "r", alg: "HS256", key: &k.rsa.PublicKey}))
		}, "does not fit"},
		{"jwks small rsa", func(pc *config.JWTPolicy) {
			pc.JWKSFile = writeFile(t, dir, "small.json", jwksJSON(t, jwk{kid: "s", key: &small.PublicKey}))
		}, "too small"},
		{"jwks only keys for other algorithms", func(pc *config.JWTPolicy) {
			pc.JWKSFile = writeFile(t, dir, "ec384.json", jwksJSON(t, jwk{kid: "e", key: &k.ec384.PublicKey}))
		}, "no key usable"},
		{"pem missing", func(pc *config.JWTPolicy) { pc.PublicKeyFile = dir + "/nope.pem" }, "nope.pem"},
		{"pem empty", func(pc *config.JWTPolicy) { pc.PublicKeyFile = writeFile(t, dir, "empty.pem", []byte("hello")) }, "no PEM"},
		{"pem private key", func(pc *config.JWTPolicy) {
			pc.PublicKeyFile = writeFile(t, dir, "priv.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))
		}, "private key"},
		{"pem two keys", func(pc *config.JWTPolicy) {
			pc.PublicKeyFile = writeFile(t, dir, "two.pem", append(pemPublic(t, &k.rsa.PublicKey), pemPublic(t, &k.ec.PublicKey)...))
		}, "more than one key"},
		{"pem garbage block", func(pc *config.JWTPolicy) {
			pc.PublicKeyFile = writeFile(t, dir, "garbage.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("x")}))
		}, "parse PUBLIC KEY"},
		{"pem small rsa", func(pc *config.JWTPolicy) {
			pc.PublicKeyFile = writeFile(t, dir, "small.pem", pemPublic(t, &small.PublicKey))
		}, "too small"},
		{"pem rsa with only HS256", func(pc *config.JWTPolicy) { pc.PublicKeyFile = rsaPEM; pc.Algorithms = []string{"HS256"} }, "verifies none"},
		{"hmac missing", func(pc *config.JWTPolicy) { pc.HMACSecretFile = dir + "/nope"; pc.Algorithms = []string{"HS256"} }, "nope"},
		{"hmac short", func(pc *config.JWTPolicy) {
			pc.HMACSecretFile = writeFile(t, dir, "short", []byte("secret\n"))
			pc.Algorithms = []string{"HS256"}
		}, "too short"},
		{"hmac without HS algorithm", func(pc *config.JWTPolicy) { pc.HMACSecretFile = secret }, "HS256"},
		{"hmac too short for HS512", func(pc *config.JWTPolicy) { pc.HMACSecretFile = secret; pc.Algorithms = []string{"HS512"} }, "HS512 64"},
		{"alg none", func(pc *config.JWTPolicy) { pc.PublicKeyFile = rsaPEM; pc.Algorithms = []string{"RS256", "none"} }, `"none"`},
		{"unknown alg", func(pc *config.JWTPolicy) { pc.PublicKeyFile = rsaPEM; pc.Algorithms = []string{"RS1"} }, `"RS1"`},
		{"forward to Authorization", func(pc *config.JWTPolicy) {
			pc.PublicKeyFile = rsaPEM
			pc.ForwardClaims = map[string]string{"sub": "authorization"}
		}, "may not be set"},
		{"forward to Host", func(pc *config.JWTPolicy) {
			pc.PublicKeyFile = rsaPEM
			pc.ForwardClaims = map[string]string{"sub": "Host"}
		}, "may not be set"},
		{"forward to token header", func(pc *config.JWTPolicy) {
			pc.PublicKeyFile = rsaPEM
			pc.TokenFrom = config.HashKey{Source: "header", Name: "X-Token"}
			pc.ForwardClaims = map[string]string{"sub": "x_token"}
		}, "token is read"},
		{"forward twice to one header", func(pc *config.JWTPolicy) {
			pc.PublicKeyFile = rsaPEM
			pc.ForwardClaims = map[string]string{"sub": "X-User-ID", "uid": "x_user_id"}
		}, "already set"},
		{"forward to bad name", func(pc *config.JWTPolicy) {
			pc.PublicKeyFile = rsaPEM
			pc.ForwardClaims = map[string]string{"sub": "X User"}
		}, "invalid header name"},
		{"token from query", func(pc *config.JWTPolicy) {
			pc.PublicKeyFile = rsaPEM
			pc.TokenFrom = config.HashKey{Source: "query", Name: "t"}
		}, "token_from"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pc := basePolicy("bad")
			pc.ForwardClaims = nil
			tc.set(&pc)
			p, err := New(&pc, Options{})
			if err == nil {
				t.Fatalf("New succeeded (%d keys)", keyCount(p))
			}
			if !strings.Contains(err.Error(), tc.mention) || !strings.Contains(err.Error(), `"bad"`) {
				t.Errorf("error %q does not mention %q and the policy name", err, tc.mention)
			}
		})
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New(nil) succeeded")
	}
}

func TestLookup(t *testing.T) {
	t.Parallel()
	k := keys(t)
	one, _ := newKeySet([]verifyKey{{kid: "a", kind: kindRSA, key: &k.rsa.PublicKey}})
	anon, _ := newKeySet([]verifyKey{{kind: kindRSA, key: &k.rsa.PublicKey}})
	two, _ := newKeySet([]verifyKey{
		{kid: "a", kind: kindRSA, key: &k.rsa.PublicKey},
		{kid: "a", kind: kindP256, key: &k.ec.PublicKey},
	})
	empty, _ := newKeySet(nil)
	cases := []struct {
		name   string
		ks     *keySet
		kid    string
		hasKid bool
		alg    string
		want   error
	}{
		{"kid match", one, "a", true, "RS256", nil},
		{"kid mismatch named key", one, "b", true, "RS256", errUnknownKey},
		{"no kid single key", one, "", false, "RS256", nil},
		{"kid against anonymous single key", anon, "z", true, "RS256", nil},
		{"wrong kind", one, "a", true, "ES256", errKeyMismatch},
		{"none", one, "a", true, "none", errKeyMismatch},
		{"same kid two kinds picks by alg", two, "a", true, "ES256", nil},
		{"no kid two keys", two, "", false, "RS256", errUnknownKey},
		{"empty set", empty, "a", true, "RS256", errUnknownKey},
		{"empty set no kid", empty, "", false, "RS256", errUnknownKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key, err := tc.ks.lookup(tc.kid, tc.hasKid, tc.alg)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if err == nil && algKind(tc.alg) != mustKind(t, key) {
				t.Fatalf("key of kind %v for %s", mustKind(t, key), tc.alg)
			}
		})
	}
	if one.fp == 0 || one.fp == two.fp || one.fp == anon.fp || empty.fp != 0 {
		t.Errorf("fingerprints: one %x two %x anon %x empty %x", one.fp, two.fp, anon.fp, empty.fp)
	}
}

func mustKind(t *testing.T, key any) keyKind {
	kind, err := classifyKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return kind
}
