package proxy

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"sync/atomic"
)

// requestIDs makes new request IDs: 32 lower-case hex digits, the shape of a
// W3C trace-id, so generated and propagated IDs look alike in logs. The first
// 16 digits are random per process (so IDs from several frontdoor hosts do
// not collide); the last 16 count up. Generating one is an atomic add and a
// hex encode, with no allocation.
type requestIDs struct {
	prefix  [16]byte
	counter atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var seed [16]byte
	_, _ = rand.Read(seed[:])
	g := &requestIDs{}
	hex.Encode(g.prefix[:], seed[:8])
	g.counter.Store(binary.LittleEndian.Uint64(seed[8:]))
	return g
}

// next writes a new ID into dst and returns dst[:32].
func (g *requestIDs) next(dst *[32]byte) []byte {
	copy(dst[:16], g.prefix[:])
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], g.counter.Add(1))
	hex.Encode(dst[16:], n[:])
	return dst[:]
}

// traceID returns the trace-id of a W3C traceparent header value
// ("00-<32 hex>-<16 hex>-<2 hex>"), or nil when v is not well formed or the
// trace-id is all zeros (invalid by the spec).
func traceID(v []byte) []byte {
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return nil
	}
	id := v[3:35]
	zero := true
	for _, c := range id {
		if !isLowerHex(c) {
			return nil
		}
		if c != '0' {
			zero = false
		}
	}
	if zero {
		return nil
	}
	return id
}

func isLowerHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

// maxRequestIDLen bounds an incoming X-Request-ID that we pass on and log.
const maxRequestIDLen = 128

// validRequestID reports whether an incoming X-Request-ID is safe to pass on
// and log as is: 1 to 128 printable ASCII characters without quotes,
// backslashes or spaces. Anything else is replaced by a new ID, so a client
// cannot inject into log lines.
func validRequestID(v []byte) bool {
	if len(v) == 0 || len(v) > maxRequestIDLen {
		return false
	}
	for _, c := range v {
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
