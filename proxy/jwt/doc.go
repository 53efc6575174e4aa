// Package jwt is frontdoor's JWT verification stage: a route that names a
// [jwt.NAME] policy runs every request through a Policy before it is
// forwarded, so the services behind frontdoor can trust the claim headers it
// sets and stay stateless.
//
// A Policy is built from a config.JWTPolicy by New. It holds the parsed keys
// (a JWKS file, a JWKS URL refreshed in the background by Run, a PEM public
// key or certificate, or an HMAC secret), the algorithm allowlist and the
// claim checks, a bounded cache of verified tokens, and pre-bound metric
// children. ApplyFast (fasthttp, HTTP/1.1) and ApplyHTTP (net/http, gRPC over
// h2c) run the stage on one request and return a Reason: Valid lets the
// request through; the caller answers anything else with 401 and the
// WWW-Authenticate header of Reason.WWWAuthenticate.
//
// Safety is by construction rather than by configuration:
//
//   - alg "none" is never accepted, whatever the allowlist says;
//   - a key verifies only the algorithms of its own type and curve (an RSA
//     public key is never used as an HMAC secret), and a JWK's own "alg"
//     narrows that further;
//   - the token's kid selects the key; without a kid the single key of the
//     set is used, and with several keys such a token is rejected;
//   - tokens longer than max_token_bytes are rejected before any parsing,
//     and tokens with a crit header are rejected (no extension is
//     understood);
//   - the headers named in forward_claims are removed from every request
//     first, whether or not it carries a valid token, including spellings
//     that differ only in case or in '-' versus '_'.
//
// Parsing and signature checks are done by github.com/golang-jwt/jwt/v5;
// JWKS documents are parsed by github.com/go-jose/go-jose/v4; PEM by the
// standard library. This package parses no key and checks no signature by
// hand.
//
// A token that was verified once is remembered, keyed by its xxhash and
// compared in full, until the earlier of its exp (plus leeway) and
// cache_ttl, and only while the key set that verified it is unchanged. A
// repeated token costs a hash and a comparison: ApplyFast allocates nothing
// on a cache hit.
package jwt
