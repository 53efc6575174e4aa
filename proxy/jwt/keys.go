package jwt

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// minRSABits is the smallest RSA modulus accepted for signature checks.
const minRSABits = 2048

// minHMACBytes is the smallest HMAC secret accepted (RFC 7518 section 3.2:
// at least the hash size; 32 bytes for HS256). HS384 and HS512 need 48 and
// 64 bytes; a shorter secret is never used with them (hmacMin).
const minHMACBytes = 32

// hmacMin is the smallest secret an HS algorithm may use (its hash size).
func hmacMin(alg string) int {
	switch alg {
	case "HS384":
		return 48
	case "HS512":
		return 64
	}
	return minHMACBytes
}

// keyKind is what an algorithm needs and what a key is: the pairing of the
// two is the whole of "the key type must match the algorithm".
type keyKind uint8

const (
	kindNone keyKind = iota
	kindRSA
	kindP256
	kindP384
	kindP521
	kindEd25519
	kindHMAC
)

func (k keyKind) String() string {
	switch k {
	case kindRSA:
		return "RSA"
	case kindP256:
		return "EC P-256"
	case kindP384:
		return "EC P-384"
	case kindP521:
		return "EC P-521"
	case kindEd25519:
		return "Ed25519"
	case kindHMAC:
		return "HMAC secret"
	}
	return "unsupported"
}

// algKind returns the key kind an algorithm verifies with, or kindNone for
// anything this package does not accept ("none" included).
func algKind(alg string) keyKind {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		return kindRSA
	case "ES256":
		return kindP256
	case "ES384":
		return kindP384
	case "ES512":
		return kindP521
	case "EdDSA":
		return kindEd25519
	case "HS256", "HS384", "HS512":
		return kindHMAC
	}
	return kindNone
}

// verifyKey is one key of a key set, ready for jwt's Verify.
type verifyKey struct {
	kid  string
	alg  string // the JWK's "alg"; "" allows every algorithm of kind
	kind keyKind
	key  any // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or []byte
}

// keySet is an immutable set of keys; fp identifies its content, so a
// verified-token cache entry can tell whether the keys that verified it are
// still the ones in use. The empty set has fp 0.
type keySet struct {
	keys []verifyKey
	fp   uint64
}

// errors returned by the key function; they are mapped to a Reason.
var (
	errUnknownKey   = errors.New("jwt: no key for this token")
	errKeyMismatch  = errors.New("jwt: algorithm does not fit the key")
	errBadAlgorithm = errors.New("jwt: algorithm not allowed")
	errCrit         = errors.New("jwt: crit header not supported")
	errBadKid       = errors.New("jwt: kid is not a string")
)

// lookup selects the key for a token with the given kid (hasKid false when
// the header has none) and alg. The kid selects; the algorithm must then fit
// the selected key's kind and its own alg.
func (ks *keySet) lookup(kid string, hasKid bool, alg string) (any, error) {
	want := algKind(alg)
	found := false
	if hasKid {
		for i := range ks.keys {
			k := &ks.keys[i]
			if k.kid != kid {
				continue
			}
			found = true
			if k.fits(alg, want) {
				return k.key, nil
			}
		}
	}
	if !found {
		// Without a (matching) kid only a set of exactly one key without a
		// kid of its own, or any single key for a kid-less token, is used.
		if len(ks.keys) != 1 || (hasKid && ks.keys[0].kid != "") {
			return nil, errUnknownKey
		}
		if k := &ks.keys[0]; k.fits(alg, want) {
			return k.key, nil
		}
	}
	return nil, errKeyMismatch
}

func (k *verifyKey) fits(alg string, want keyKind) bool {
	if want == kindNone || k.kind != want || (k.alg != "" && k.alg != alg) {
		return false
	}
	if b, ok := k.key.([]byte); ok && len(b) < hmacMin(alg) {
		return false
	}
	return true
}

// newKeySet computes the fingerprint of keys and returns the set.
func newKeySet(keys []verifyKey) (*keySet, error) {
	if len(keys) == 0 {
		return &keySet{}, nil
	}
	h := sha256.New()
	var n [8]byte
	for i := range keys {
		k := &keys[i]
		var material []byte
		switch key := k.key.(type) {
		case []byte:
			material = key
		default:
			der, err := x509.MarshalPKIXPublicKey(key)
			if err != nil {
				return nil, fmt.Errorf("fingerprint key %q: %w", k.kid, err)
			}
			material = der
		}
		for _, part := range [][]byte{[]byte(k.kid), []byte(k.alg), {byte(k.kind)}, material} {
			binary.BigEndian.PutUint64(n[:], uint64(len(part)))
			h.Write(n[:])
			h.Write(part)
		}
	}
	fp := binary.BigEndian.Uint64(h.Sum(nil))
	if fp == 0 {
		fp = 1
	}
	return &keySet{keys: keys, fp: fp}, nil
}

// classifyKey returns the kind of a public key or secret, or an error saying
// why it cannot be used.
func classifyKey(key any) (keyKind, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return kindNone, fmt.Errorf("RSA key of %d bits is too small (minimum %d)", k.N.BitLen(), minRSABits)
		}
		return kindRSA, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return kindP256, nil
		case elliptic.P384():
			return kindP384, nil
		case elliptic.P521():
			return kindP521, nil
		}
		return kindNone, fmt.Errorf("EC curve %s is not supported", k.Curve.Params().Name)
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return kindNone, errors.New("Ed25519 key has the wrong size")
		}
		return kindEd25519, nil
	case []byte:
		if len(k) < minHMACBytes {
			return kindNone, fmt.Errorf("HMAC secret of %d bytes is too short (minimum %d)", len(k), minHMACBytes)
		}
		return kindHMAC, nil
	}
	return kindNone, fmt.Errorf("key type %T is not supported", key)
}

// usable reports whether some allowed algorithm can use k.
func usable(k verifyKey, algs []string) bool {
	for _, a := range algs {
		if k.fits(a, algKind(a)) {
			return true
		}
	}
	return false
}

// keyIssue is a key skipped while loading a JWKS, with why.
type keyIssue struct {
	kid string
	err error
	// hard is true for a key that is present but broken (bad encoding, too
	// small); false for one that is merely not for us (unsupported kty,
	// use "enc", no allowed algorithm fits).
	hard bool
}

// parseJWKS parses a JWK Set and returns the keys usable with algs. Keys with
// an unsupported kty, use "enc", or no fitting algorithm are skipped; broken
// keys are reported with hard set. Private keys are reduced to their public
// part. It never returns an error together with keys: err means the document
// itself is not a JWK Set.
func parseJWKS(data []byte, algs []string) ([]verifyKey, []keyIssue, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("decode JWK set: %w", err)
	}
	if doc.Keys == nil {
		return nil, nil, errors.New("decode JWK set: no \"keys\" array")
	}
	var keys []verifyKey
	var issues []keyIssue
	for i, raw := range doc.Keys {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(raw); err != nil {
			issues = append(issues, keyIssue{
				kid:  fmt.Sprintf("#%d", i),
				err:  err,
				hard: !errors.Is(err, jose.ErrUnsupportedKeyType),
			})
			continue
		}
		if jwk.Use != "" && jwk.Use != "sig" {
			issues = append(issues, keyIssue{kid: jwk.KeyID, err: fmt.Errorf("use %q is not sig", jwk.Use)})
			continue
		}
		key := jwk.Key
		if !jwk.IsPublic() {
			if _, sym := key.([]byte); !sym {
				key = jwk.Public().Key
			}
		}
		kind, err := classifyKey(key)
		if err != nil {
			issues = append(issues, keyIssue{kid: jwk.KeyID, err: err, hard: true})
			continue
		}
		if jwk.Algorithm != "" && algKind(jwk.Algorithm) != kind {
			issues = append(issues, keyIssue{kid: jwk.KeyID, err: fmt.Errorf("alg %q does not fit a %s key", jwk.Algorithm, kind), hard: true})
			continue
		}
		if b, ok := key.([]byte); ok {
			key = bytes.Clone(b)
		}
		vk := verifyKey{kid: jwk.KeyID, alg: jwk.Algorithm, kind: kind, key: key}
		if !usable(vk, algs) {
			issues = append(issues, keyIssue{kid: jwk.KeyID, err: fmt.Errorf("no allowed algorithm verifies with a %s key", kind)})
			continue
		}
		keys = append(keys, vk)
	}
	return keys, issues, nil
}

// loadJWKSFile reads a JWKS file strictly: any broken key is an error, and
// so is a set with no usable key.
func loadJWKSFile(path string, algs []string) ([]verifyKey, []keyIssue, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read jwks_file: %w", err)
	}
	keys, issues, err := parseJWKS(data, algs)
	if err != nil {
		return nil, nil, fmt.Errorf("jwks_file %s: %w", path, err)
	}
	var errs []error
	for _, is := range issues {
		if is.hard {
			errs = append(errs, fmt.Errorf("jwks_file %s: key %s: %w", path, is.kid, is.err))
		}
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	if len(keys) == 0 {
		return nil, nil, fmt.Errorf("jwks_file %s: no key usable with algorithms %s", path, strings.Join(algs, ", "))
	}
	return keys, issues, nil
}

// loadPEMFile reads one public key: a PUBLIC KEY (PKIX: RSA, EC or Ed25519),
// an RSA PUBLIC KEY (PKCS#1) or a CERTIFICATE block. Certificates after the
// first block (a chain) are ignored; a second key, a private key or any
// other block type is an error.
func loadPEMFile(path string, algs []string) (verifyKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return verifyKey{}, fmt.Errorf("read public_key_file: %w", err)
	}
	var key any
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		var k any
		switch block.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			if key != nil {
				continue // the rest of a chain
			}
			var cert *x509.Certificate
			cert, err = x509.ParseCertificate(block.Bytes)
			if err == nil {
				k = cert.PublicKey
			}
		default:
			if strings.Contains(block.Type, "PRIVATE KEY") {
				return verifyKey{}, fmt.Errorf("public_key_file %s: holds a private key (%s); give the public key or certificate only", path, block.Type)
			}
			return verifyKey{}, fmt.Errorf("public_key_file %s: unsupported PEM block %q", path, block.Type)
		}
		if err != nil {
			return verifyKey{}, fmt.Errorf("public_key_file %s: parse %s: %w", path, block.Type, err)
		}
		if key != nil {
			return verifyKey{}, fmt.Errorf("public_key_file %s: holds more than one key; use jwks_file with a kid per key", path)
		}
		key = k
	}
	if key == nil {
		return verifyKey{}, fmt.Errorf("public_key_file %s: no PEM public key or certificate found", path)
	}
	kind, err := classifyKey(key)
	if err != nil {
		return verifyKey{}, fmt.Errorf("public_key_file %s: %w", path, err)
	}
	vk := verifyKey{kind: kind, key: key}
	if kind == kindHMAC || !usable(vk, algs) {
		return verifyKey{}, fmt.Errorf("public_key_file %s: a %s key verifies none of the algorithms %s", path, kind, strings.Join(algs, ", "))
	}
	return vk, nil
}

// loadHMACFile reads a raw secret; one trailing "\n" (or "\r\n") is ignored.
func loadHMACFile(path string, algs []string) (verifyKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return verifyKey{}, fmt.Errorf("read hmac_secret_file: %w", err)
	}
	if n := len(data); n > 0 && data[n-1] == '\n' {
		data = data[:n-1]
		if n := len(data); n > 0 && data[n-1] == '\r' {
			data = data[:n-1]
		}
	}
	if _, err := classifyKey(data); err != nil {
		return verifyKey{}, fmt.Errorf("hmac_secret_file %s: %w", path, err)
	}
	vk := verifyKey{kind: kindHMAC, key: data}
	if !usable(vk, algs) {
		return verifyKey{}, fmt.Errorf("hmac_secret_file %s: a secret of %d bytes fits none of the algorithms %s (HS256 needs 32 bytes, HS384 48, HS512 64)", path, len(data), strings.Join(algs, ", "))
	}
	return vk, nil
}

// defaultAlgorithms is used when a policy lists none.
func defaultAlgorithms() []string { return []string{"RS256", "ES256", "EdDSA"} }

// checkAlgorithms rejects unknown names and "none"; it returns a sorted,
// de-duplicated copy.
func checkAlgorithms(algs []string) ([]string, error) {
	if len(algs) == 0 {
		return defaultAlgorithms(), nil
	}
	var errs []error
	out := make([]string, 0, len(algs))
	for _, a := range algs {
		if algKind(a) == kindNone {
			errs = append(errs, fmt.Errorf("algorithm %q is not supported (want RS256/384/512, PS256/384/512, ES256/384/512, EdDSA, HS256/384/512)", a))
			continue
		}
		out = append(out, a)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
