package proxy

import (
	"unsafe"

	"golang.org/x/net/http2/hpack"
)

// h2Enc is one connection's HPACK encoder. A field the encoder indexes is
// kept in its dynamic table as a string, so the strings it gets must never
// change: names and values are interned (one allocation the first time a
// string is seen, none after), except the values that never repeat, which
// go out unindexed without being copied.
type h2Enc struct {
	enc     *hpack.Encoder
	buf     []byte // the block being built
	lower   []byte // scratch: a name in lower case
	strings map[string]string
}

// h2MaxInterned bounds a connection's interned strings; past it the set
// starts over (the encoder's table keeps its own references).
const h2MaxInterned = 1024

func (e *h2Enc) init() {
	e.enc = hpack.NewEncoder(encAppender{e})
	e.strings = make(map[string]string)
}

type encAppender struct{ e *h2Enc }

func (a encAppender) Write(p []byte) (int, error) {
	a.e.buf = append(a.e.buf, p...)
	return len(p), nil
}

// intern returns b as a string that never changes.
func (e *h2Enc) intern(b []byte) string {
	if s, ok := e.strings[string(b)]; ok {
		return s
	}
	if len(e.strings) >= h2MaxInterned {
		clear(e.strings)
	}
	s := string(b)
	e.strings[s] = s
	return s
}

// pseudo writes a pseudo-header (":status", ":path"...).
func (e *h2Enc) pseudo(name string, v []byte) {
	_ = e.enc.WriteField(hpack.HeaderField{Name: name, Value: e.intern(v)})
}

// field writes header k: v with k lower-cased, unless HTTP/2 forbids it
// (connection-specific headers, RFC 9113 8.2.2).
func (e *h2Enc) field(k, v []byte) {
	e.lower = append(e.lower[:0], k...)
	for i, c := range e.lower {
		if 'A' <= c && c <= 'Z' {
			e.lower[i] = c + 'a' - 'A'
		}
	}
	switch string(e.lower) {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host", "te":
		return
	case "x-request-id", "traceparent", "tracestate", "date", "grpc-timeout", "content-length",
		"authorization", "cookie", "set-cookie":
		// Values that never repeat (or must not sit in a table): sent
		// without indexing, and so without a copy.
		_ = e.enc.WriteField(hpack.HeaderField{Name: e.intern(e.lower), Value: unsafeString(v), Sensitive: true})
		return
	}
	_ = e.enc.WriteField(hpack.HeaderField{Name: e.intern(e.lower), Value: e.intern(v)})
}

// unsafeString views b as a string for a call that does not keep it.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// unsafeBytes views s as bytes for a call that neither keeps nor changes
// them.
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// h2Forbidden reports whether a request header name is one HTTP/2 does not
// allow (RFC 9113 8.2.2): a request carrying it is malformed.
func h2Forbidden(name string) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// h2StatusBytes are the :status values, formatted once.
var h2StatusBytes = func() (t [600][]byte) {
	for i := 100; i < 600; i++ {
		t[i] = []byte{byte('0' + i/100), byte('0' + i/10%10), byte('0' + i%10)}
	}
	return t
}()

// statusValue is code's :status value.
func statusValue(code int) []byte {
	if code < 100 || code >= 600 {
		code = 502
	}
	return h2StatusBytes[code]
}
