package requestid

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"sync/atomic"
)

// Len is the length of an ID made by a Generator or taken from a
// traceparent: 32 lower-case hex digits.
const Len = 32

// MaxLen bounds an incoming X-Request-ID that Valid accepts.
const MaxLen = 128

// Generator makes new request IDs: 32 lower-case hex digits, the shape of a
// W3C trace-id, so generated and propagated IDs look alike in logs. The first
// 16 digits are random per Generator (so IDs from several frontdoor hosts do
// not collide); the last 16 count up from a random start. The zero value is
// not usable (its prefix is not hex): make one with New. Next is safe for
// concurrent use.
type Generator struct {
	prefix  [16]byte
	counter atomic.Uint64
}

// New returns a Generator with a random prefix and counter start, read from
// crypto/rand.
func New() *Generator {
	var seed [16]byte
	_, _ = rand.Read(seed[:])
	g := &Generator{}
	hex.Encode(g.prefix[:], seed[:8])
	g.counter.Store(binary.LittleEndian.Uint64(seed[8:]))
	return g
}

// Next writes a new ID into dst and returns dst[:]. It is an atomic add and a
// hex encode, with no allocation.
func (g *Generator) Next(dst *[Len]byte) []byte {
	copy(dst[:16], g.prefix[:])
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], g.counter.Add(1))
	hex.Encode(dst[16:], n[:])
	return dst[:]
}

// Bytes is the type of a header value: string (net/http) or []byte
// (fasthttp).
type Bytes interface{ ~string | ~[]byte }

// Source tells where Pick found a request's ID.
type Source uint8

// Sources of a request ID, in the order Pick tries them.
const (
	// None: neither header carries a usable ID; the caller makes a new one
	// with Generator.Next and sets X-Request-ID to it.
	None Source = iota
	// Traceparent: the ID is the traceparent's trace-id; the caller sets
	// X-Request-ID to it (replacing the client's, if any).
	Traceparent
	// Header: the ID is the client's own X-Request-ID, passed on as is.
	Header
)

// Pick applies the request-ID rule to a request's first traceparent and
// X-Request-ID values (empty when absent): the trace-id of a well-formed
// traceparent, else an X-Request-ID that Valid accepts, else nothing (None,
// with an empty id). The id returned is a part of one of the arguments.
func Pick[T Bytes](traceparent, xRequestID T) (id T, src Source) {
	if id := TraceID(traceparent); len(id) != 0 {
		return id, Traceparent
	}
	if Valid(xRequestID) {
		return xRequestID, Header
	}
	return xRequestID[:0], None
}

// TraceID returns the trace-id of a W3C traceparent header value
// ("00-<32 hex>-<16 hex>-<2 hex>", possibly followed by more fields of a
// later version), or an empty value when v is not well formed or the trace-id
// is all zeros (invalid by the spec).
func TraceID[T Bytes](v T) T {
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return v[:0]
	}
	id := v[3:35]
	zero := true
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !isLowerHex(c) {
			return v[:0]
		}
		if c != '0' {
			zero = false
		}
	}
	if zero {
		return v[:0]
	}
	return id
}

func isLowerHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

// Valid reports whether an incoming X-Request-ID is safe to pass on and log
// as is: 1 to MaxLen printable ASCII characters without quotes, backslashes
// or spaces. Anything else is replaced by a new ID, so a client cannot
// inject into log lines.
func Valid[T Bytes](v T) bool {
	if len(v) == 0 || len(v) > MaxLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
