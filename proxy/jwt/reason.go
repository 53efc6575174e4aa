package jwt

// Reason is the outcome of running a request through a Policy: Valid, or why
// the request was rejected. Its String is the reason label of
// frontdoor_jwt_rejected_total. The zero value is Valid.
type Reason uint8

// The outcomes of Policy.ApplyFast and Policy.ApplyHTTP. New values may be
// added; every one has a metric label (String) and a client-facing
// description (Description).
const (
	// Valid: the token passed every check; claim headers are set.
	Valid Reason = iota
	// Missing: no token where the policy looks for one (or an Authorization
	// header with another scheme than Bearer).
	Missing
	// Malformed: not a compact JWS (three base64url segments), bad base64
	// or JSON, or a registered claim of the wrong type.
	Malformed
	// TooLarge: the token is longer than max_token_bytes; it was not parsed.
	TooLarge
	// BadAlgorithm: alg is missing, "none", not in the allowlist, or does not
	// fit the key the kid selects.
	BadAlgorithm
	// UnknownKey: no key for the token's kid (or no kid and several keys, or
	// no keys loaded yet).
	UnknownKey
	// BadSignature: the signature does not verify with the selected key.
	BadSignature
	// Expired: exp is in the past (beyond leeway).
	Expired
	// NotYetValid: nbf or iat is in the future (beyond leeway).
	NotYetValid
	// WrongIssuer: issuer is configured and iss is missing or different.
	WrongIssuer
	// WrongAudience: audiences are configured and aud contains none of them.
	WrongAudience
	// MissingClaim: a claim of required_claims is absent or null.
	MissingClaim
	// BadClaim: a claim named in forward_claims holds a value that cannot be
	// sent as a header value (control characters).
	BadClaim
	// CritHeader: the token has a crit header; no extension is supported.
	CritHeader

	numReasons
)

// reasonInfo is a read-only table indexed by Reason; nothing writes to it.
var reasonInfo = [numReasons]struct {
	label, desc string
}{
	Valid:         {"valid", "the token is valid"},
	Missing:       {"missing", "no bearer token in the request"},
	Malformed:     {"malformed", "the token is malformed"},
	TooLarge:      {"too_large", "the token is too large"},
	BadAlgorithm:  {"bad_algorithm", "the token's signing algorithm is not accepted"},
	UnknownKey:    {"unknown_key", "the token's signing key is unknown"},
	BadSignature:  {"bad_signature", "the token's signature is invalid"},
	Expired:       {"expired", "the token has expired"},
	NotYetValid:   {"not_yet_valid", "the token is not valid yet"},
	WrongIssuer:   {"wrong_issuer", "the token's issuer is not accepted"},
	WrongAudience: {"wrong_audience", "the token's audience is not accepted"},
	MissingClaim:  {"missing_claim", "the token lacks a required claim"},
	BadClaim:      {"bad_claim", "the token has a claim that cannot be forwarded"},
	CritHeader:    {"crit_header", "the token has an unsupported critical header"},
}

// reasonWWW holds the WWW-Authenticate values sent with a 401, built once
// from reasonInfo; indexed by Reason. Read-only after construction.
var reasonWWW = func() (t [numReasons]string) {
	for r := Reason(0); r < numReasons; r++ {
		switch r {
		case Valid:
		case Missing:
			t[r] = "Bearer"
		default:
			t[r] = `Bearer error="invalid_token", error_description="` + reasonInfo[r].desc + `"`
		}
	}
	return t
}()

// String returns the metric label of r ("valid", "expired", ...), or
// "unknown" for a value outside the constants above.
func (r Reason) String() string {
	if r >= numReasons {
		return "unknown"
	}
	return reasonInfo[r].label
}

// Description returns a short lowercase sentence for error_description and
// response bodies ("the token has expired"). It never contains quotes or
// backslashes, and never echoes anything from the request.
func (r Reason) Description() string {
	if r >= numReasons {
		return "the token is not accepted"
	}
	return reasonInfo[r].desc
}

// WWWAuthenticate returns the WWW-Authenticate header value for a 401 with
// reason r (RFC 6750): "Bearer" when the request had no token, and
// `Bearer error="invalid_token", error_description="..."` otherwise. It
// returns "" for Valid. The string is constant; calling it allocates nothing.
func (r Reason) WWWAuthenticate() string {
	if r >= numReasons {
		return reasonWWW[Malformed]
	}
	return reasonWWW[r]
}
