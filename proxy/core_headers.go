package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/netip"
	"sync"

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
	hdrForwarded       = []byte("Forwarded")
	hdrXRequestID      = []byte("X-Request-ID")
	hdrTraceparent     = []byte("traceparent")
	hdrRetryAfter      = []byte("Retry-After")
	valHTTP            = []byte("http")
	valH2C             = []byte("h2c")
	valUpgrade         = []byte("Upgrade")
	hdrDate            = []byte("Date")
	hdrExpect          = []byte("Expect")
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

// setForwardedHeaders applies the forwarding-header trust model and
// returns the address the request is believed to come from. From a peer
// that is not trusted (trusted_proxies; by default none: frontdoor is the
// edge), X-Forwarded-For becomes the peer's address, X-Forwarded-Proto
// "http", X-Forwarded-Host the Host, and a Forwarded field the client sent
// is replaced by frontdoor's own element: nothing the client said about
// itself reaches the backend ("https" on a TLS listener). From a trusted
// peer each is appended to (set
// when absent; -Proto and -Host kept when present) and the client is the
// last address the peer put in X-Forwarded-For.
func setForwardedHeaders(ctx *fasthttp.RequestCtx, rt *listenerRuntime, peer netip.AddrPort) netip.Addr {
	h := &ctx.Request.Header
	var buf [256]byte
	trusted := len(rt.trusted) > 0 && rt.trusts(peer.Addr())
	client := peer.Addr()
	b := buf[:0]
	prior := h.PeekBytes(hdrXForwardedFor)
	if trusted && len(prior) > 0 {
		if a, ok := lastForwardedFor(prior); ok {
			client = a
		}
		b = append(append(b, prior...), ", "...)
	}
	b = appendAddr(b, peer.Addr())
	h.SetBytesKV(hdrXForwardedFor, b)
	if !trusted || len(h.PeekBytes(hdrXForwardedProto)) == 0 {
		h.SetBytesKV(hdrXForwardedProto, rt.proto)
	}
	if !trusted || len(h.PeekBytes(hdrXForwardedHost)) == 0 {
		h.SetBytesKV(hdrXForwardedHost, h.Host())
	}
	if fwd := h.PeekBytes(hdrForwarded); len(fwd) > 0 {
		b = buf[:0]
		if trusted {
			b = append(append(b, fwd...), ", "...)
		}
		b = append(b, "for="...)
		if peer.Addr().Is6() {
			b = append(b, `"[`...)
			b = peer.Addr().AppendTo(b)
			b = append(b, `]"`...)
		} else {
			b = appendAddr(b, peer.Addr())
		}
		b = append(b, ";host="...)
		b = append(b, h.Host()...) // checkHead: a host, no quoting needed
		b = append(b, ";proto="...)
		b = append(b, rt.proto...)
		h.SetBytesKV(hdrForwarded, b)
	}
	return client
}

// appendAddr appends a in text, or 0.0.0.0 when not known.
func appendAddr(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return append(b, "0.0.0.0"...)
	}
	return a.AppendTo(b)
}

// lastForwardedFor returns the last address of an X-Forwarded-For value:
// the one the trusted peer itself added.
func lastForwardedFor(v []byte) (netip.Addr, bool) {
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	a, err := netip.ParseAddr(string(bytes.TrimSpace(v)))
	return a.Unmap(), err == nil
}

// passThroughHead returns an empty response header with fasthttp's two
// defaults off, as its server sets them when told to (NoDefaultDate,
// NoDefaultContentType): serialized, a head read into it after CopyTo is
// the backend's, with no Date moved or replaced and no Content-Type
// invented. fasthttp has no setter for the Date one outside its server, so
// the header is taken, once, from a server that answers one request over a
// pipe. The result is never written to; it is safe for concurrent CopyTo.
var passThroughHead = sync.OnceValue(func() *fasthttp.ResponseHeader {
	h := new(fasthttp.ResponseHeader)
	srv := &fasthttp.Server{NoDefaultDate: true, NoDefaultContentType: true, NoDefaultServerHeader: true,
		Handler: func(ctx *fasthttp.RequestCtx) { ctx.Response.Header.CopyTo(h) }}
	server, client := net.Pipe()
	go func() {
		_, _ = io.WriteString(client, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		_, _ = io.Copy(io.Discard, client)
		_ = client.Close()
	}()
	_ = srv.ServeConn(server)
	return h
})

// ensureDate gives a forwarded answer whose backend sent no Date one of
// frontdoor's (RFC 9110 6.6.1: a recipient with a clock adds it), in both
// engines the same way. fasthttp's headers ignore setting Date; only its
// serializer adds one, when the header's NoDefaultDate is off. So the head,
// read over passThroughHead (NoDefaultDate on), is read again from its own
// serialization into a header with it off. Backends that send Date (nearly
// all) pay one lookup.
func ensureDate(h *fasthttp.ResponseHeader) {
	if len(h.PeekBytes(hdrDate)) > 0 {
		return
	}
	re := reheads.Get().(*rehead)
	defer reheads.Put(re)
	re.raw = h.AppendBytes(re.raw[:0])
	h.Reset()
	h.SetNoDefaultContentType(true)
	re.rd.Reset(re.raw)
	re.br.Reset(&re.rd)
	_ = h.Read(re.br) // it was parsed once already
}

// rehead holds what ensureDate needs to read a head again.
type rehead struct {
	raw []byte
	rd  bytes.Reader
	br  *bufio.Reader
}

// reheads are ensureDate's buffers; a backend's head is at most 32 KiB in
// the event loop (half its read buffer) and 8 KiB in the goroutine engine.
var reheads = sync.Pool{New: func() any {
	return &rehead{br: bufio.NewReaderSize(nil, 32<<10+16)}
}}

// upgradeProtocol returns a copy, appended to buf, of the Upgrade header of a
// request that asks for a protocol upgrade (Connection: upgrade and a
// non-empty Upgrade), or nil. Call it before the hop-by-hop headers are
// removed, and restoreUpgrade after.
func upgradeProtocol(req *fasthttp.Request, buf []byte) []byte {
	if !req.Header.ConnectionUpgrade() {
		return nil
	}
	v := req.Header.PeekBytes(hdrUpgrade)
	if len(v) == 0 {
		return nil
	}
	return append(buf[:0], v...)
}

// restoreUpgrade puts back the two hop-by-hop headers an upgrade needs.
func restoreUpgrade(req *fasthttp.Request, proto []byte) {
	req.Header.SetBytesKV(hdrConnection, valUpgrade)
	req.Header.SetBytesKV(hdrUpgrade, proto)
}

// removeTunnelHopHeaders removes a 101 answer's hop-by-hop headers except
// the two the upgrade needs.
func removeTunnelHopHeaders(h *fasthttp.ResponseHeader) {
	var buf [64]byte
	proto := append(buf[:0], h.PeekBytes(hdrUpgrade)...)
	removeResponseHopHeaders(h)
	h.SetBytesKV(hdrConnection, valUpgrade)
	h.SetBytesKV(hdrUpgrade, proto)
}
