package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"sync"

	"github.com/valyala/fasthttp"

	"frontdoor/balancer"
	"frontdoor/config"
)

// Stateless session affinity (pool key affinity).
//
// Every backend of a pool with affinity has a token: 16 hex digits, the first
// 8 bytes of HMAC-SHA256(key, "backend" || Backend.ID()), where ID is the
// xxhash of the backend's address. The key is
// HMAC-SHA256("frontdoor affinity v1", pool name || 0 || affinity setting),
// so every frontdoor instance with the same pool name and affinity setting
// computes the same tokens with no table to share, and tokens survive adding
// or removing other backends. A token names a backend without revealing its
// address, but it is not a secret: the key comes from the config alone, so
// anyone who knows this scheme, the pool name and a backend address can
// compute that backend's token. Affinity steers requests; it is not access
// control.
//
// "cookie:NAME": a request whose cookie NAME holds the token of a member that
// is up goes to that member. Any other request is balanced as usual, and its
// answer sets NAME to the token of the member that served it (Path=/,
// HttpOnly, SameSite=Lax, no expiry). A member that goes down loses its
// sessions to the others; its cookies are re-set on their next answer.
//
// "header:NAME" (Model Context Protocol: "header:Mcp-Session-Id"): the
// backend assigns the session. When an answer carries header NAME, frontdoor
// replaces its value v with
//
//	1.<token>.<mac>.<v>
//
// where mac is 16 hex digits of HMAC-SHA256(key, token || "." || v). A
// request carrying such a value goes to the member named by token, with the
// header set back to v, so the backend sees its own ID unchanged; it is never
// retried on another member. A value that is not of this form, whose mac does
// not match, whose token names no member of the pool, or whose member is
// down gets 404, which MCP clients take as "session expired, initialize
// again". A request without the header (initialize) is balanced as usual.
// DELETE is forwarded like any other request.
type affinity struct {
	cookie  bool   // cookie:NAME, else header:NAME
	name    []byte // cookie or header name
	key     []byte
	tokens  [][]byte // per member
	byToken map[string]int
	members []balancer.Member
	macs    sync.Pool // *macState
}

const (
	tokenLen       = 16
	macLen         = 16
	sessionVersion = "1."
	// wrappedMin is the shortest wrapped value: version, token, dot, mac,
	// dot and one byte of the backend's ID.
	wrappedMin = len(sessionVersion) + tokenLen + 1 + macLen + 1 + 1
)

var dot = []byte{'.'} // a variable: a literal passed to Write would escape

type macState struct {
	h   hash.Hash
	sum []byte
}

// newAffinity returns the affinity of a pool, or nil when it has none.
func newAffinity(pool string, spec config.HashKey, secret []byte, members []balancer.Member) *affinity {
	if spec.Source != "cookie" && spec.Source != "header" {
		return nil
	}
	a := &affinity{
		cookie:  spec.Source == "cookie",
		name:    []byte(spec.Name),
		key:     affinityKey(pool, spec, secret),
		byToken: make(map[string]int, len(members)),
		members: members,
	}
	a.macs.New = func() any { return &macState{h: hmac.New(sha256.New, a.key), sum: make([]byte, 0, sha256.Size)} }
	for i, m := range members {
		t := backendToken(a.key, m.Backend.ID())
		a.tokens = append(a.tokens, t)
		a.byToken[string(t)] = i
	}
	return a
}

// affinityKey derives a pool's affinity key from the config (see affinity):
// from affinity_secret_file when set, else from public config alone.
func affinityKey(pool string, spec config.HashKey, secret []byte) []byte {
	m := hmac.New(sha256.New, append([]byte("frontdoor affinity v1"), secret...))
	m.Write([]byte(pool))
	m.Write([]byte{0})
	m.Write([]byte(spec.Source + ":" + spec.Name))
	return m.Sum(nil)
}

func backendToken(key []byte, id uint64) []byte {
	m := hmac.New(sha256.New, key)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], id)
	m.Write([]byte("backend"))
	m.Write(b[:])
	return hex.AppendEncode(nil, m.Sum(nil)[:tokenLen/2])
}

// appendMAC appends the mac of a wrapped session value to dst.
func (a *affinity) appendMAC(dst, token, id []byte) []byte {
	m := a.macs.Get().(*macState)
	m.h.Reset()
	m.h.Write(token)
	m.h.Write(dot)
	m.h.Write(id)
	m.sum = m.h.Sum(m.sum[:0])
	dst = hex.AppendEncode(dst, m.sum[:macLen/2])
	a.macs.Put(m)
	return dst
}

// affinityState is what a request learned from its affinity, kept on the
// handler's stack.
type affinityState struct {
	pin    int    // member to try first, or -1
	strict bool   // a session bound to pin: no other member may serve it
	sent   []byte // the cookie value the request carried
}

// Reasons a session value is refused with 404 (the access log's reason).
const (
	sessionInvalid = "session_invalid"
	sessionGone    = "session_backend_gone"
	sessionDown    = "session_backend_down"
)

// route reads the request's affinity. It returns "" to go on (st.pin set
// when a member is named), or the reason to answer 404. For a session header
// it puts the backend's own ID back into the request.
func (a *affinity) route(req *fasthttp.Request, st *affinityState) string {
	if a.cookie {
		v := req.Header.CookieBytes(a.name)
		if len(v) == 0 {
			return ""
		}
		st.sent = v
		if i, ok := a.byToken[string(v)]; ok && a.members[i].Backend.Up() {
			st.pin = i
		}
		return ""
	}
	v := req.Header.PeekBytes(a.name)
	if len(v) == 0 {
		return ""
	}
	if len(v) < wrappedMin || string(v[:len(sessionVersion)]) != sessionVersion {
		return sessionInvalid
	}
	rest := v[len(sessionVersion):]
	token, mac, id := rest[:tokenLen], rest[tokenLen+1:tokenLen+1+macLen], rest[tokenLen+1+macLen+1:]
	if rest[tokenLen] != '.' || rest[tokenLen+1+macLen] != '.' {
		return sessionInvalid
	}
	var want [macLen]byte
	if subtle.ConstantTimeCompare(a.appendMAC(want[:0], token, id), mac) != 1 {
		return sessionInvalid
	}
	i, ok := a.byToken[string(token)]
	if !ok {
		return sessionGone
	}
	if !a.members[i].Backend.Up() {
		return sessionDown
	}
	st.pin, st.strict = i, true
	// Copy first: setting the header may reuse the storage id points into.
	var buf [128]byte
	req.Header.SetBytesKV(a.name, append(buf[:0], id...))
	return ""
}

// respond marks the answer of member: it sets the affinity cookie unless the
// request already carried this member's token, or wraps the session ID the
// backend assigned.
func (a *affinity) respond(resp *fasthttp.Response, member int, st *affinityState) {
	tok := a.tokens[member]
	if a.cookie {
		if string(st.sent) == string(tok) {
			return
		}
		c := fasthttp.AcquireCookie()
		c.SetKeyBytes(a.name)
		c.SetValueBytes(tok)
		c.SetPath("/")
		c.SetHTTPOnly(true)
		c.SetSameSite(fasthttp.CookieSameSiteLaxMode)
		resp.Header.SetCookie(c)
		fasthttp.ReleaseCookie(c)
		return
	}
	id := resp.Header.PeekBytes(a.name)
	if len(id) == 0 {
		return
	}
	var buf [256]byte
	w := append(buf[:0], sessionVersion...)
	w = append(w, tok...)
	w = append(w, '.')
	w = a.appendMAC(w, tok, id)
	w = append(w, '.')
	w = append(w, id...)
	resp.Header.SetBytesKV(a.name, w)
}
