package jwt

import (
	"net/http"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// maxVictims is how many forged header spellings are collected per pass
// over a fasthttp header before they are deleted.
const maxVictims = 8

// ApplyFast runs the stage on an HTTP/1.1 request at time now (read once per
// request by the caller). In order, it:
//
//  1. removes every incoming header named in forward_claims, whatever the
//     outcome and in any spelling that differs only in case or '-'/'_';
//  2. reads the token (Authorization: Bearer, or the configured header or
//     cookie) and rejects it when missing, present twice (Malformed: a
//     backend might read the copy that was not verified) or longer than
//     max_token_bytes;
//  3. looks it up in the cache, else verifies it;
//  4. on success sets the forward_claims headers and, with
//     strip_authorization, removes the token's header (or cookie).
//
// It counts the outcome in jwt_verified_total or jwt_rejected_total and
// returns it; on anything but Valid the caller answers 401 with the
// reason's WWWAuthenticate header and must not forward the request. It
// allocates nothing on a cache hit. req must not be used concurrently by another goroutine.
func (p *Policy) ApplyFast(req *fasthttp.Request, now time.Time) Reason {
	r, _ := p.ApplySubject(req, now)
	return r
}

// ApplySubject is ApplyFast that also returns the verified token's sub
// claim (nil when the token has none or was not Valid), for the access
// log. The caller must not modify the subject; it stays valid after the
// request.
func (p *Policy) ApplySubject(req *fasthttp.Request, now time.Time) (Reason, []byte) {
	h := &req.Header
	if len(p.forward) > 0 {
		p.removeForwardedFast(h)
	}
	// The token's header (or cookie) must appear once: with two, a
	// backend could read the one that was not verified.
	var raw []byte
	n := 0
	if p.src.cookie {
		for k, v := range h.Cookies() {
			if string(k) == p.src.nameStr {
				if n == 0 {
					raw = v
				}
				n++
			}
		}
	} else {
		vals := h.PeekAll(p.src.nameStr)
		if n = len(vals); n > 0 {
			raw = vals[0]
		}
	}
	tok := extractToken(raw, p.src.bearer)
	r := p.limit(len(tok), n)
	var e *entry
	if r == Valid {
		e, r = p.check(tok, now)
	}
	if r != Valid {
		p.rejected[r].Inc()
		return r, nil
	}
	for i := range p.forward {
		if v := e.values[i]; v != nil {
			h.SetBytesKV(p.forward[i].header, v)
		}
	}
	if p.strip {
		if p.src.cookie {
			h.DelCookieBytes(p.src.name)
		} else {
			h.DelBytes(p.src.name)
		}
	}
	p.verified.Inc()
	return Valid, e.sub
}

// limit checks a token's length n and how many times its header or cookie
// appeared (copies).
func (p *Policy) limit(n, copies int) Reason {
	switch {
	case n == 0:
		return Missing
	case copies > 1:
		return Malformed
	case n > p.maxTok:
		return TooLarge
	}
	return Valid
}

// removeForwardedFast deletes every header whose name matches a forwarded
// header. It works whether or not the server normalizes header names.
func (p *Policy) removeForwardedFast(h *fasthttp.RequestHeader) {
	for {
		var victims [maxVictims][]byte
		n := 0
		for k := range h.All() {
			if isForwardName(p.forward, k) {
				victims[n] = k
				n++
				if n == maxVictims {
					break
				}
			}
		}
		if n == 0 {
			return
		}
		// Deleting moves header entries but never rewrites their key
		// buffers, so the collected keys stay intact until used.
		for _, k := range victims[:n] {
			h.DelBytes(k)
		}
	}
}

func isForwardName[T string | []byte](forward []forwardClaim, k T) bool {
	for i := range forward {
		if sameHeaderName(k, forward[i].canon) {
			return true
		}
	}
	return false
}

// ApplyHTTP is ApplyFast for a net/http request (gRPC over h2c): the same
// steps, checks, counting and result. It edits r.Header in place. It
// allocates a little on success (one []string per claim header set);
// nothing else on a cache hit. r must not be used concurrently.
func (p *Policy) ApplyHTTP(r *http.Request, now time.Time) Reason {
	if r.Header == nil {
		r.Header = http.Header{}
	}
	if len(p.forward) > 0 {
		for k := range r.Header {
			if isForwardName(p.forward, k) {
				delete(r.Header, k)
			}
		}
	}
	var raw string
	var n int
	if p.src.cookie {
		raw, n = cookieValue(r.Header["Cookie"], p.src.nameStr)
	} else if v := r.Header[p.src.canon]; len(v) > 0 {
		raw, n = v[0], len(v)
	}
	tok := extractToken(raw, p.src.bearer)
	res := p.limit(len(tok), n)
	var e *entry
	if res == Valid {
		e, res = p.checkString(tok, now)
	}
	if res != Valid {
		p.rejected[res].Inc()
		return res
	}
	for i := range p.forward {
		if e.values[i] != nil {
			r.Header[p.forward[i].canon] = []string{e.str[i]}
		}
	}
	if p.strip {
		if p.src.cookie {
			removeCookie(r.Header, p.src.nameStr)
		} else {
			delete(r.Header, p.src.canon)
		}
	}
	p.verified.Inc()
	return Valid
}

// extractToken trims v and, for the Authorization header (bearer true),
// requires and removes the "Bearer" scheme (case-insensitive). Elsewhere a
// "Bearer " prefix is optional. It returns an empty token when there is none.
func extractToken[T string | []byte](v T, bearer bool) T {
	v = trimOWS(v)
	if len(v) > 6 && (v[6] == ' ' || v[6] == '\t') && foldEqual(v[:6], "bearer") {
		return trimOWS(v[7:])
	}
	if bearer {
		return v[:0]
	}
	return v
}

func trimOWS[T string | []byte](v T) T {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// foldEqual compares v with lower, an ASCII lowercase string, ignoring case.
func foldEqual[T string | []byte](v T, lower string) bool {
	if len(v) != len(lower) {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// cookieValue returns the value of the first cookie called name in Cookie
// header lines, without its optional double quotes ("" if none), and how
// many cookies have that name.
func cookieValue(lines []string, name string) (string, int) {
	var first string
	n := 0
	for _, line := range lines {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = trimOWS(part)
			k, v, ok := strings.Cut(part, "=")
			if !ok || k != name {
				continue
			}
			if n == 0 {
				if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				first = v
			}
			n++
		}
	}
	return first, n
}

// removeCookie rewrites the Cookie header without cookie name.
func removeCookie(h http.Header, name string) {
	lines := h["Cookie"]
	if len(lines) == 0 {
		return
	}
	var kept []string
	for _, line := range lines {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = trimOWS(part)
			if part == "" {
				continue
			}
			if k, _, _ := strings.Cut(part, "="); k == name {
				continue
			}
			kept = append(kept, part)
		}
	}
	if len(kept) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = []string{strings.Join(kept, "; ")}
}
