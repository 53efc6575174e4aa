package jwt

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/cespare/xxhash/v2"
	jwtlib "github.com/golang-jwt/jwt/v5"
)

// check returns the cache entry for a token read from a request, verifying
// it when it is not cached. tok may alias request memory; it is copied
// before it is kept.
func (p *Policy) check(tok []byte, now time.Time) (*entry, Reason) {
	ks := p.keys.Load()
	h := xxhash.Sum64(tok)
	if p.cache != nil {
		if e := p.cache.get(tok, h, ks.fp, now.UnixNano()); e != nil {
			return e, Valid
		}
	}
	return p.verifyAndStore(string(tok), h, ks, now)
}

// checkString is check for a token held as a string.
func (p *Policy) checkString(tok string, now time.Time) (*entry, Reason) {
	ks := p.keys.Load()
	h := xxhash.Sum64String(tok)
	if p.cache != nil {
		if e := p.cache.getString(tok, h, ks.fp, now.UnixNano()); e != nil {
			return e, Valid
		}
	}
	return p.verifyAndStore(tok, h, ks, now)
}

func (p *Policy) verifyAndStore(tok string, h uint64, ks *keySet, now time.Time) (*entry, Reason) {
	e, r := p.verify(tok, ks, now)
	if r == UnknownKey && p.url != "" {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
	if r != Valid {
		return nil, r
	}
	e.hash = h
	if p.cache != nil {
		p.cache.put(e, now.UnixNano())
	}
	return e, Valid
}

// verify parses and checks tok against ks at time now. It is the slow path:
// it allocates freely.
func (p *Policy) verify(tok string, ks *keySet, now time.Time) (*entry, Reason) {
	opts := []jwtlib.ParserOption{
		jwtlib.WithValidMethods(p.algs),
		jwtlib.WithJSONNumber(),
		jwtlib.WithStrictDecoding(),
		jwtlib.WithLeeway(p.leeway),
		jwtlib.WithIssuedAt(),
		jwtlib.WithTimeFunc(func() time.Time { return now }),
	}
	if p.issuer != "" {
		opts = append(opts, jwtlib.WithIssuer(p.issuer))
	}
	if len(p.auds) > 0 {
		opts = append(opts, jwtlib.WithAudience(p.auds...))
	}
	keyfunc := func(t *jwtlib.Token) (any, error) {
		if _, ok := t.Header["crit"]; ok {
			return nil, errCrit
		}
		alg := t.Method.Alg()
		if !slices.Contains(p.algs, alg) || algKind(alg) == kindNone {
			return nil, errBadAlgorithm
		}
		var kid string
		v, hasKid := t.Header["kid"]
		if hasKid {
			s, ok := v.(string)
			if !ok {
				return nil, errBadKid
			}
			kid = s
		}
		return ks.lookup(kid, hasKid, alg)
	}
	claims := jwtlib.MapClaims{}
	t, err := jwtlib.NewParser(opts...).ParseWithClaims(tok, claims, keyfunc)
	if err != nil {
		return nil, p.classify(err, t, claims)
	}
	for _, c := range p.require {
		if v, ok := claims[c]; !ok || v == nil {
			return nil, MissingClaim
		}
	}
	deadline := now.Add(p.ttl).UnixNano()
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		if d := exp.Add(p.leeway).UnixNano(); d < deadline {
			deadline = d
		}
	}
	e := &entry{token: tok, fp: ks.fp, deadline: deadline}
	if sub, ok := claims["sub"].(string); ok {
		e.sub = []byte(sub)
	}
	if len(p.forward) > 0 {
		e.values = make([][]byte, len(p.forward))
		e.str = make([]string, len(p.forward))
		for i, f := range p.forward {
			v, ok := claims[f.claim]
			if !ok || v == nil {
				continue
			}
			b, ok := claimValue(v)
			if !ok {
				return nil, BadClaim
			}
			e.values[i] = b
			e.str[i] = string(b)
		}
	}
	return e, Valid
}

// classify maps a parse error to a Reason. Key and header problems come
// first, then signature, then claims (expiry before issuer before audience).
func (p *Policy) classify(err error, t *jwtlib.Token, claims jwtlib.MapClaims) Reason {
	switch {
	case errors.Is(err, errCrit):
		return CritHeader
	case errors.Is(err, errUnknownKey):
		return UnknownKey
	case errors.Is(err, errKeyMismatch), errors.Is(err, errBadAlgorithm):
		return BadAlgorithm
	case errors.Is(err, errBadKid), errors.Is(err, jwtlib.ErrTokenMalformed):
		return Malformed
	case errors.Is(err, jwtlib.ErrTokenUnverifiable):
		// alg missing (malformed) or not a known method (bad algorithm).
		if t != nil {
			if _, ok := t.Header["alg"].(string); ok {
				return BadAlgorithm
			}
		}
		return Malformed
	case errors.Is(err, jwtlib.ErrTokenSignatureInvalid):
		// jwt reports a method outside WithValidMethods as a bad signature.
		if t == nil || t.Method == nil || !slices.Contains(p.algs, t.Method.Alg()) {
			return BadAlgorithm
		}
		return BadSignature
	case errors.Is(err, jwtlib.ErrTokenExpired):
		return Expired
	case errors.Is(err, jwtlib.ErrTokenNotValidYet), errors.Is(err, jwtlib.ErrTokenUsedBeforeIssued):
		return NotYetValid
	case errors.Is(err, jwtlib.ErrTokenInvalidIssuer):
		return WrongIssuer
	case errors.Is(err, jwtlib.ErrTokenInvalidAudience):
		return WrongAudience
	case errors.Is(err, jwtlib.ErrTokenRequiredClaimMissing):
		if p.issuer != "" {
			if s, ok := claims["iss"].(string); !ok || s == "" {
				return WrongIssuer
			}
		}
		if len(p.auds) > 0 {
			return WrongAudience
		}
		return MissingClaim
	}
	return Malformed
}

// claimValue formats a claim for a header: strings as they are, numbers as
// written in the token, booleans as true/false, arrays and objects as compact
// JSON. ok is false when the result holds bytes a header value cannot carry.
func claimValue(v any) ([]byte, bool) {
	var b []byte
	switch x := v.(type) {
	case string:
		b = []byte(x)
	case json.Number:
		b = []byte(x.String())
	case bool:
		b = strconv.AppendBool(nil, x)
	case float64:
		b = strconv.AppendFloat(nil, x, 'f', -1, 64)
	default:
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(x); err != nil {
			return nil, false
		}
		b = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	}
	if b == nil {
		b = []byte{} // present but empty: the header is set, empty
	}
	for _, c := range b {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return nil, false
		}
	}
	return b, true
}
