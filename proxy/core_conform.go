package proxy

import (
	"bytes"
	"net/netip"

	"github.com/valyala/fasthttp"
)

// What frontdoor refuses of a request head that fasthttp parsed (RFC 9112
// sections 2-7, RFC 9110 5-7), decided once for every engine. fasthttp
// already refuses a head it cannot read (no method, target or version, a
// line without a colon, NUL or a bare CR in a value, a bad or duplicate
// Content-Length, a Transfer-Encoding other than chunked or identity, a
// missing or duplicate Host on HTTP/1.1): its 400 goes through
// handleError. checkHead refuses, in one pass over the bytes fasthttp
// parsed and without allocating, what fasthttp lets through; README's
// "What frontdoor refuses" lists both, and which peer each choice follows.

// headVerdict is checkHead's answer: status 0 lets the request through.
type headVerdict struct {
	status      int
	msg, reason string
}

var (
	verdictOK         = headVerdict{}
	verdictBad        = headVerdict{fasthttp.StatusBadRequest, "malformed request", "bad_request"}
	verdictBadHost    = verdictBad
	verdictBadFraming = verdictBad
	verdictVersion    = headVerdict{fasthttp.StatusHTTPVersionNotSupported, "HTTP version not supported", "bad_version"}
	verdictTooLarge   = headVerdict{fasthttp.StatusRequestEntityTooLarge, "request body too large", "body_too_large"}
)

// verdictOf returns the verdict whose status is status (a refusal checkHead
// made).
func verdictOf(status int) headVerdict {
	switch status {
	case verdictVersion.status:
		return verdictVersion
	case verdictTooLarge.status:
		return verdictTooLarge
	}
	return verdictBad
}

var (
	hdrTransferEncoding = []byte("Transfer-Encoding")
	hdrContentLength    = []byte("Content-Length")
	valChunked          = []byte("chunked")
	strHTTP11           = []byte("HTTP/1.1")
)

// checkHead decides whether a parsed request head may be served; maxBody
// is max_body_bytes (0: no limit). A declared Content-Length above it is
// refused here, before any of the body is read. It reads h only.
func checkHead(h *fasthttp.RequestHeader, maxBody int) headVerdict {
	// The method: a token of upper-case letters, '-' and '_' (nginx;
	// HAProxy lets "get" through to the backend as an unknown method).
	m := h.Method()
	if len(m) == 0 {
		return verdictBad
	}
	for _, c := range m {
		if (c < 'A' || c > 'Z') && c != '-' && c != '_' {
			return verdictBad
		}
	}
	// The version: fasthttp took "HTTP/d.d". Major 1 only (nginx's 505;
	// HAProxy serves HTTP/2.0 in a 1.x line as 1.1). A higher 1.x is
	// served as 1.1 (RFC 9110 6.2: a proxy sends its own version), see
	// ownVersion.
	p := h.Protocol()
	if len(p) != len(strHTTP11) || p[5] != '1' {
		return verdictVersion
	}
	http10 := p[7] == '0'
	// The target: visible ASCII only (HAProxy: raw bytes above 0x7e are
	// 400); origin-form, or absolute-form naming the Host (HAProxy), or
	// asterisk-form for OPTIONS (fasthttp refuses it for other methods).
	t := h.RequestURI()
	for _, c := range t {
		if c <= ' ' || c >= 0x7f {
			return verdictBad
		}
	}
	host := h.Host()
	if len(t) == 0 {
		return verdictBad
	}
	if t[0] != '/' && !(len(t) == 1 && t[0] == '*') {
		auth, ok := absoluteAuthority(t)
		if !ok || !bytes.EqualFold(auth, host) {
			return verdictBad
		}
	}
	// Host: RFC 3986's host and port, the reg-name without
	// percent-encoding or sub-delims, so that it cannot change how the
	// target is read (a '/', '?' or '#' did) or how routes match. An
	// empty Host is refused (nginx; RFC 9112 allows one only when the
	// target has no authority, which a proxy's target always has).
	// fasthttp lets an HTTP/1.0 request without Host through; it goes on
	// as HTTP/1.1, which needs one, and routes match on it: refused too
	// (stricter than HAProxy and nginx).
	if !validHost(host) {
		return verdictBadHost
	}
	// The fields, as they came on the wire.
	var sawCL, sawTE bool
	raw := h.RawHeaders()
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		var line []byte
		if i < 0 {
			line, raw = raw, nil
		} else {
			line, raw = raw[:i], raw[i+1:]
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			break // the blank line that ends the head
		}
		// obs-fold (RFC 9112 5.2): refused (nginx; HAProxy unfolds).
		if line[0] == ' ' || line[0] == '\t' {
			return verdictBad
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return verdictBad
		}
		name := line[:colon]
		for _, c := range name {
			if !isTokenChar(c) {
				return verdictBad // a space before the colon, or in the name
			}
		}
		switch {
		case bytes.EqualFold(name, hdrContentLength):
			sawCL = true
		case bytes.EqualFold(name, hdrTransferEncoding):
			if sawTE {
				return verdictBadFraming // chunked twice
			}
			sawTE = true
			// The final coding must be chunked (RFC 9112 6.3); fasthttp
			// takes only "chunked" or "identity", and forgets the header.
			if !bytes.EqualFold(bytes.TrimSpace(line[colon+1:]), valChunked) {
				return verdictBadFraming
			}
		}
	}
	// Content-Length and Transfer-Encoding both (RFC 9112 6.1: MAY
	// refuse): refused (nginx; HAProxy drops Content-Length and closes),
	// as is Transfer-Encoding on HTTP/1.0 (RFC 9112 6.1: faulty framing).
	if sawTE && (sawCL || http10) {
		return verdictBadFraming
	}
	if maxBody > 0 && h.ContentLength() > maxBody {
		return verdictTooLarge
	}
	return verdictOK
}

// ownVersion makes a request go to the backend as HTTP/1.1, whatever 1.x
// it came as (RFC 9110 6.2: a proxy sends its own version; HAProxy and
// nginx do). Call it once the hop-by-hop headers are gone.
func ownVersion(h *fasthttp.RequestHeader) {
	if !bytes.Equal(h.Protocol(), strHTTP11) {
		h.SetProtocolBytes(strHTTP11)
	}
}

// absoluteAuthority returns the authority of an absolute-form target
// "http://authority/..." (or https).
func absoluteAuthority(t []byte) ([]byte, bool) {
	var rest []byte
	switch {
	case len(t) > 7 && asciiPrefixFold(t, "http://"):
		rest = t[7:]
	case len(t) > 8 && asciiPrefixFold(t, "https://"):
		rest = t[8:]
	default:
		return nil, false
	}
	end := len(rest)
	for i, c := range rest {
		if c == '/' || c == '?' || c == '#' {
			end = i
			break
		}
	}
	if bytes.IndexByte(rest[:end], '@') >= 0 {
		return nil, false // userinfo: RFC 9110 4.2.4 forbids it in http(s) URIs sent
	}
	return rest[:end], end > 0
}

func asciiPrefixFold(b []byte, prefix string) bool {
	if len(b) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// validHost reports whether h is host [":" port]: a reg-name of letters,
// digits, '-', '.', '_' and '~', an IPv4 address (a reg-name too) or an
// IPv6 literal in brackets; port is digits.
func validHost(h []byte) bool {
	if len(h) == 0 {
		return false
	}
	i := 0
	if h[0] == '[' {
		end := bytes.IndexByte(h, ']')
		if end < 2 {
			return false
		}
		for _, c := range h[1:end] {
			if !(isHexDigit(c) || c == ':' || c == '.') {
				return false
			}
		}
		// An IP literal must be an IPv6 address ("[:]" is not: fasthttp's
		// server refuses it, and so must the event loop; FuzzEnginesAgree).
		// Rare enough that the conversion's allocation does not matter.
		if a, err := netip.ParseAddr(string(h[1:end])); err != nil || !a.Is6() {
			return false
		}
		i = end + 1
	} else {
		for i < len(h) && h[i] != ':' {
			c := h[i]
			if !(isHexDigit(c) || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || c == '-' || c == '.' || c == '_' || c == '~') {
				return false
			}
			i++
		}
		if i == 0 {
			return false
		}
	}
	if i == len(h) {
		return true
	}
	if h[i] != ':' {
		return false
	}
	for _, c := range h[i+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isHexDigit(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// isTokenChar reports whether c is a tchar of RFC 9110 5.6.2.
func isTokenChar(c byte) bool {
	return tokenChars[c]
}

var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range []byte("!#$%&'*+-.^_`|~") {
		t[c] = true
	}
	return t
}()
