package proxy

import (
	"bytes"
	"strings"

	"github.com/valyala/fasthttp"

	"frontdoor/config"
	"frontdoor/metrics"
)

// What the core does for TLS: X-Forwarded-Proto https, HSTS, the identity
// headers of a verified client certificate (stripped from every request
// first, as forward_claims headers are), and the 308 of redirect_https.

var (
	valHTTPS       = []byte("https")
	hdrHSTS        = []byte("Strict-Transport-Security")
	hdrLocation    = []byte("Location")
	redirectScheme = []byte("https://")
)

// tlsRuntime sets the TLS part of a listener's runtime.
func tlsRuntime(rt *listenerRuntime, lc *config.Listener, cfg *config.Config) {
	rt.proto = valHTTP
	if lc.TLS != nil {
		rt.proto = valHTTPS
		if lc.TLS.HSTS != "" {
			rt.hsts = []byte(lc.TLS.HSTS)
		}
	}
	rt.stripIdent = identHeaderNames(cfg)
}

// identHeaderNames lists the forward_client_cert headers of every TLS
// listener of cfg, nil when there is none: they are removed from every
// request on every listener, so that a client never hands a backend a
// forged identity, whichever listener it comes through.
func identHeaderNames(cfg *config.Config) [][]byte {
	seen := map[string]bool{}
	var out [][]byte
	for i := range cfg.Listeners {
		t := cfg.Listeners[i].TLS
		if t == nil {
			continue
		}
		for _, part := range []string{"subject", "sans", "fingerprint"} {
			h := t.ForwardClientCert[part]
			if k := strings.ToLower(h); h != "" && !seen[k] {
				seen[k] = true
				out = append(out, []byte(h))
			}
		}
	}
	return out
}

// setClientCertHeaders removes the identity headers a client sent and
// sets those of the connection's verified client certificate, if any.
func setClientCertHeaders(h *fasthttp.RequestHeader, rt *listenerRuntime, ci *tlsConnInfo) {
	for _, name := range rt.stripIdent {
		h.DelBytes(name)
	}
	if ci == nil {
		return
	}
	for i := range ci.n {
		h.SetBytesKV(ci.ident[i].name, ci.ident[i].value)
	}
}

// addHSTS adds the listener's Strict-Transport-Security to an answer.
func addHSTS(ctx *fasthttp.RequestCtx, rt *listenerRuntime) {
	if rt != nil && rt.hsts != nil {
		ctx.Response.Header.SetBytesKV(hdrHSTS, rt.hsts)
	}
}

// redirectRoute builds the route of a [[listener.route]] with
// redirect_https: no pool; its answers count with pool="" backend="".
func redirectRoute(m *metrics.Metrics, lc *config.Listener, rc *config.Route) *route {
	s := &routeStats{durations: []*metrics.Duration{m.RequestDuration.With(lc.Name, "", rc.Host+rc.PathPrefix, "")}}
	for c, class := range metrics.CodeClasses {
		s.noBackend[c] = m.RequestsTotal.WithLabelValues(lc.Name, "", "", class)
	}
	return &route{
		host:     rc.Host,
		prefix:   []byte(rc.PathPrefix),
		name:     rc.Host + rc.PathPrefix,
		stats:    s,
		redirect: true,
	}
}

// redirectHTTPS answers a request of a redirect_https route: 308 to the
// same host (without its port: https is on 443) and target over https. A
// request without a Host cannot be redirected and gets 400.
func (l *httpListener) redirectHTTPS(ctx *fasthttp.RequestCtx, x *exchange) {
	host := stripPort(ctx.Request.Header.Host())
	if len(host) == 0 {
		l.refuse(ctx, x, nil, fasthttp.StatusBadRequest, "no Host to redirect to https", "bad_request")
		return
	}
	l.refuse(ctx, x, nil, fasthttp.StatusPermanentRedirect, "moved to https", "redirect")
	var buf [512]byte
	loc := append(buf[:0], redirectScheme...)
	loc = append(loc, host...)
	target := ctx.Request.Header.RequestURI()
	if len(target) == 0 || target[0] != '/' {
		// An absolute-form target (or "*"): its path and query.
		target = ctx.Request.URI().RequestURI()
	}
	if bytes.HasPrefix(target, []byte("//")) {
		// "//evil.example" would read as a host: keep one slash.
		target = target[1:]
	}
	loc = append(loc, target...)
	ctx.Response.Header.SetBytesKV(hdrLocation, loc)
}
