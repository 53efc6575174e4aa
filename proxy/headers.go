package proxy

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// Header names, kept as []byte so the hot path neither converts nor
// allocates.
var (
	hdrConnection      = []byte("Connection")
	hdrKeepAlive       = []byte("Keep-Alive")
	hdrTE              = []byte("TE")
	hdrTrailer         = []byte("Trailer")
	hdrUpgrade         = []byte("Upgrade")
	hdrProxyConnection = []byte("Proxy-Connection")
	hdrProxyAuthz      = []byte("Proxy-Authorization")
	hdrProxyAuthn      = []byte("Proxy-Authenticate")
	hdrXForwardedFor   = []byte("X-Forwarded-For")
	hdrXForwardedProto = []byte("X-Forwarded-Proto")
	hdrXForwardedHost  = []byte("X-Forwarded-Host")
	hdrXRequestID      = []byte("X-Request-ID")
	hdrTraceparent     = []byte("traceparent")
	hdrRetryAfter      = []byte("Retry-After")
	valHTTP            = []byte("http")
	valH2C             = []byte("h2c")
)

// removeRequestHopHeaders deletes the hop-by-hop headers of RFC 9110 7.6.1
// from a request about to be forwarded: Connection and every header it
// names, Keep-Alive, TE, Trailer, Upgrade and Proxy-*. Transfer-Encoding is
// already consumed by fasthttp (the body is de-chunked and re-framed).
func removeRequestHopHeaders(h *fasthttp.RequestHeader) {
	if v := h.PeekBytes(hdrConnection); len(v) > 0 {
		forEachToken(v, func(name []byte) { h.DelBytes(name) })
	}
	h.DelBytes(hdrConnection)
	h.DelBytes(hdrKeepAlive)
	h.DelBytes(hdrTE)
	h.DelBytes(hdrTrailer)
	h.DelBytes(hdrUpgrade)
	h.DelBytes(hdrProxyConnection)
	h.DelBytes(hdrProxyAuthz)
}

// removeResponseHopHeaders is the same for a backend's response.
func removeResponseHopHeaders(h *fasthttp.ResponseHeader) {
	if v := h.PeekBytes(hdrConnection); len(v) > 0 {
		forEachToken(v, func(name []byte) { h.DelBytes(name) })
	}
	h.DelBytes(hdrConnection)
	h.DelBytes(hdrKeepAlive)
	h.DelBytes(hdrTrailer)
	h.DelBytes(hdrUpgrade)
	h.DelBytes(hdrProxyConnection)
	h.DelBytes(hdrProxyAuthn)
}

// forEachToken calls fn with each comma-separated token of v, trimmed. The
// tokens "close" and "keep-alive" are skipped: they are options, not header
// names.
func forEachToken(v []byte, fn func([]byte)) {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var tok []byte
		if i < 0 {
			tok, v = v, nil
		} else {
			tok, v = v[:i], v[i+1:]
		}
		tok = bytes.TrimSpace(tok)
		if len(tok) == 0 || bytes.EqualFold(tok, []byte("close")) || bytes.EqualFold(tok, []byte("keep-alive")) {
			continue
		}
		fn(tok)
	}
}

// appendForwardedFor appends the client IP to X-Forwarded-For (or starts it),
// sets X-Forwarded-Proto to http and X-Forwarded-Host to the original Host
// unless a trusted earlier hop set them... frontdoor is the edge, so it
// always overwrites Proto and Host.
func setForwardedHeaders(ctx *fasthttp.RequestCtx, scratch []byte) []byte {
	h := &ctx.Request.Header
	ip := scratch[:0]
	if prior := h.PeekBytes(hdrXForwardedFor); len(prior) > 0 {
		ip = append(ip, prior...)
		ip = append(ip, ", "...)
	}
	ip = appendRemoteIP(ip, ctx)
	h.SetBytesKV(hdrXForwardedFor, ip)
	h.SetBytesKV(hdrXForwardedProto, valHTTP)
	h.SetBytesKV(hdrXForwardedHost, h.Host())
	return ip
}
