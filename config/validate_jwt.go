package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Algorithms a JWT policy may allow, by kind.
var (
	hmacAlgs       = []string{"HS256", "HS384", "HS512"}
	asymmetricAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

// jwt checks one [jwt.NAME] policy, including that the key files it names
// exist and are readable now.
func (v *validator) jwt(name string, j *JWTPolicy) {
	p := joinKey("jwt", name)
	if !isName(name) {
		v.add(p, "bad jwt policy name %q: %s", name, nameCharsHint)
	}

	var sources []string
	for _, s := range []struct{ key, val string }{
		{"jwks_file", j.JWKSFile}, {"jwks_url", j.JWKSURL},
		{"public_key_file", j.PublicKeyFile}, {"hmac_secret_file", j.HMACSecretFile},
	} {
		if s.val != "" {
			sources = append(sources, s.key)
		}
	}
	switch len(sources) {
	case 0:
		v.add(p, "policy has no key source; set one of jwks_file, jwks_url, public_key_file or hmac_secret_file")
	case 1:
	default:
		v.add(p+"."+sources[1], "policy has several key sources (%s); keep exactly one", strings.Join(sources, ", "))
	}
	for _, f := range []struct{ key, val string }{
		{"jwks_file", j.JWKSFile}, {"public_key_file", j.PublicKeyFile}, {"hmac_secret_file", j.HMACSecretFile},
	} {
		if f.val == "" {
			continue
		}
		if msg := checkReadable(f.val); msg != "" {
			v.add(p+"."+f.key, "%s", msg)
		} else if f.key == "hmac_secret_file" {
			v.hmacSecret(p+"."+f.key, f.val, j.Algorithms)
		}
	}
	if j.JWKSURL != "" {
		if msg := checkJWKSURL(j.JWKSURL); msg != "" {
			v.add(p+".jwks_url", "%s", msg)
		}
		v.positiveDuration(p+".jwks_refresh", j.JWKSRefresh)
	}

	v.algorithms(p, j)

	if j.TokenFrom.Source != sourceHeader && j.TokenFrom.Source != sourceCookie {
		v.add(p+".token_from", `token_from %q must be "header:NAME" or "cookie:NAME", e.g. "header:Authorization"`, j.TokenFrom.String())
	}
	if j.Leeway.Duration < 0 {
		v.add(p+".leeway", "leeway %s must not be negative; use 0s for none or a duration %s", j.Leeway, durationExample)
	}
	v.positiveInt(p+".max_token_bytes", j.MaxTokenBytes)
	if j.CacheSize < -1 {
		v.add(p+".cache_size", "cache_size %d must be -1 (no cache), 0 (default 10000) or more", j.CacheSize)
	}
	v.positiveDuration(p+".cache_ttl", j.CacheTTL)
	for i, a := range j.Audiences {
		if a == "" {
			v.add(indexKey(p+".audiences", i), "empty audience; remove it")
		}
	}
	for i, c := range j.RequiredClaims {
		if c == "" {
			v.add(indexKey(p+".required_claims", i), "empty claim name; remove it")
		}
	}
	headers := make(map[string]string)
	for _, claim := range sortedNames(j.ForwardClaims) {
		h := j.ForwardClaims[claim]
		cp := joinKey(p+".forward_claims", claim)
		switch {
		case claim == "":
			v.add(cp, "empty claim name")
		case !isToken(h):
			v.add(cp, "bad header name %q: use letters, digits and '-', e.g. \"X-User-ID\"", h)
		case reservedForwardHeader(h, j.TokenFrom):
			v.add(cp, "header %q cannot carry a claim: it frames the request or carries the token; use a header of your own such as \"X-User-ID\"", h)
		case headers[strings.ToLower(h)] != "":
			v.add(cp, "header %q is already set from claim %q; forward each claim to its own header", h, headers[strings.ToLower(h)])
		default:
			headers[strings.ToLower(h)] = claim
		}
	}
}

// algorithms checks a policy's algorithm list against its key source.
func (v *validator) algorithms(p string, j *JWTPolicy) {
	ap := p + ".algorithms"
	if len(j.Algorithms) == 0 {
		v.add(ap, `no algorithms; list at least one, e.g. ["RS256", "ES256", "EdDSA"]`)
		return
	}
	var hmac, asym string
	for i, a := range j.Algorithms {
		switch {
		case strings.EqualFold(a, "none"):
			v.add(indexKey(ap, i), `algorithm "none" is never allowed: it accepts unsigned tokens; remove it`)
		case slices.Contains(hmacAlgs, a):
			if hmac == "" {
				hmac = a
			}
		case slices.Contains(asymmetricAlgs, a):
			if asym == "" {
				asym = a
			}
		default:
			v.add(indexKey(ap, i), "%s", enumMsg("algorithm", a, slices.Concat(asymmetricAlgs, hmacAlgs)))
		}
	}
	switch {
	case hmac != "" && asym != "":
		v.add(ap, "algorithms mix HMAC (%s) and public-key (%s) algorithms, which invites key-confusion attacks; keep one kind", hmac, asym)
	case hmac != "" && j.HMACSecretFile == "":
		v.add(ap, "%s needs hmac_secret_file as the key source; with keys from jwks or a public key use RS*, PS*, ES* or EdDSA", hmac)
	case asym != "" && j.HMACSecretFile != "":
		v.add(ap, `hmac_secret_file needs HMAC algorithms; set algorithms = ["HS256"]`)
	}
}

// checkJWKSURL requires https, or http to a loopback host.
func checkJWKSURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Sprintf("bad jwks_url %q: use an https:// URL", raw)
	}
	if u.Scheme == "https" {
		return ""
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return ""
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		return ""
	}
	return fmt.Sprintf("jwks_url %q uses plain http to a non-loopback host; use https (http is allowed only to 127.0.0.1, ::1 or localhost)", raw)
}

// checkReadable reports why name is not a readable regular file, or "".
func checkReadable(name string) string {
	st, err := os.Stat(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Sprintf("file %q does not exist; create it or fix the path (relative paths are relative to the config file)", name)
		}
		return fmt.Sprintf("cannot read file %q: %s", name, pathErr(err))
	}
	if !st.Mode().IsRegular() {
		return fmt.Sprintf("%q is not a regular file; name the key file itself", name)
	}
	f, err := os.Open(name)
	if err != nil {
		return fmt.Sprintf("cannot read file %q: %s; check its permissions", name, pathErr(err))
	}
	_ = f.Close()
	return ""
}

// checkWritable reports why an access log at name could not be opened, or
// "": it must not be a directory and its directory must exist.
func checkWritable(name string) string {
	if st, err := os.Stat(name); err == nil && st.IsDir() {
		return fmt.Sprintf("access log %q is a directory; name a file, or use \"stdout\" or \"off\"", name)
	}
	dir := filepath.Dir(name)
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return fmt.Sprintf("directory %q of the access log does not exist; create it, or use \"stdout\" or \"off\"", dir)
	}
	return ""
}

// pathErr returns the cause of a *fs.PathError without the path, which the
// message already names.
func pathErr(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// reservedForwardHeader reports whether a forward_claims header would clash
// with framing, hop-by-hop or the token's own header.
func reservedForwardHeader(h string, tokenFrom HashKey) bool {
	switch strings.ToLower(h) {
	case "host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer",
		"upgrade", "proxy-connection", "proxy-authorization", "authorization", "cookie", "content-type",
		"x-request-id", "traceparent":
		return true
	}
	return tokenFrom.Source == sourceHeader && strings.EqualFold(h, tokenFrom.Name)
}

// hmacSecret requires an HMAC secret at least as long as the hash of the
// strongest HMAC algorithm allowed (32, 48 or 64 bytes), as RFC 7518 3.2 asks.
func (v *validator) hmacSecret(path, file string, algs []string) {
	data, err := os.ReadFile(file)
	if err != nil {
		return // checkReadable reported it
	}
	secret := strings.TrimSuffix(string(data), "\n")
	need := 0
	for _, a := range algs {
		switch a {
		case "HS256":
			need = max(need, 32)
		case "HS384":
			need = max(need, 48)
		case "HS512":
			need = max(need, 64)
		}
	}
	if len(secret) < need {
		v.add(path, "HMAC secret in %s is %d bytes; %s needs at least %d (generate one with: head -c %d /dev/urandom > FILE)", file, len(secret), strings.Join(algs, ", "), need, need)
	}
}
