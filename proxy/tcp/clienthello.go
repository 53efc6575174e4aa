package tcp

import (
	"errors"
)

// MaxClientHello bounds the TLS records a ClientHello may take, headers
// included: one full record (16 KiB of plaintext). Clients send a few
// hundred bytes to 2 KiB (post-quantum key shares included); a larger
// hello is refused as ErrHelloTooLarge rather than buffered.
const MaxClientHello = 5 + 16384

// ClientHello is what ParseClientHello reads from the first bytes a TLS
// client sends. ServerName and ALPN point into the parsed buffer: they are
// valid while it is.
type ClientHello struct {
	// Length is how many bytes the records carrying the hello take: the
	// bytes to replay to whoever handles the connection next.
	Length int
	// ServerName is the SNI host name as sent (not lower-cased), nil when
	// the client sent none.
	ServerName []byte
	// ALPN is the raw protocol_name_list of the ALPN extension (each
	// name prefixed by its length byte), nil without the extension.
	ALPN []byte
	// MaxVersion is the highest TLS version offered (0x0303 for 1.2,
	// 0x0304 for 1.3), from supported_versions when present.
	MaxVersion uint16
}

// Errors of ParseClientHello.
var (
	// ErrHelloShort: the bytes are a valid start of a ClientHello; read
	// more.
	ErrHelloShort = errors.New("tcp: ClientHello incomplete")
	// ErrNotTLS: the bytes do not start a TLS handshake record (plain
	// HTTP, say, or garbage).
	ErrNotTLS = errors.New("tcp: not a TLS ClientHello")
	// ErrHelloTooLarge: the hello would take more than MaxClientHello.
	ErrHelloTooLarge = errors.New("tcp: ClientHello too large")
	// ErrBadHello: a handshake record whose ClientHello is malformed.
	ErrBadHello = errors.New("tcp: malformed ClientHello")
)

const (
	recordHandshake   = 22
	handshakeHello    = 1
	extServerName     = 0
	extALPN           = 16
	extSupportedVers  = 43
	maxRecordPayload  = 16384 + 2048 // RFC 8446 5.2, the most any version allows
	recordHeaderBytes = 5
)

// ParseClientHello reads the ClientHello at the start of b, which may be
// spread over several handshake records. It returns ErrHelloShort while b
// is a valid but incomplete prefix (the caller reads more and calls again
// with everything read so far), and never looks beyond MaxClientHello
// bytes. It does not allocate.
func ParseClientHello(b []byte) (ClientHello, error) {
	var h ClientHello
	off, got, need := 0, 0, -1 // record offset, handshake bytes, hello body length
	for need < 0 || got < need+4 {
		if off+recordHeaderBytes > MaxClientHello {
			return h, ErrHelloTooLarge
		}
		rec := b[off:min(len(b), off+recordHeaderBytes)]
		if len(rec) > 0 && rec[0] != recordHandshake || len(rec) > 1 && rec[1] != 3 {
			if off == 0 {
				return h, ErrNotTLS
			}
			return h, ErrBadHello // the hello stopped before its end
		}
		if len(rec) < recordHeaderBytes {
			return h, ErrHelloShort
		}
		n := int(rec[3])<<8 | int(rec[4])
		if n == 0 || n > maxRecordPayload {
			return h, ErrBadHello
		}
		end := off + recordHeaderBytes + n
		if end > MaxClientHello {
			return h, ErrHelloTooLarge
		}
		if got == 0 && len(b) > off+recordHeaderBytes && b[off+recordHeaderBytes] != handshakeHello {
			return h, ErrBadHello
		}
		avail := min(end, len(b)) - off - recordHeaderBytes
		if need < 0 && got+avail >= 4 {
			r := recordReader{b: b[:min(end, len(b))]}
			_, _ = r.byte()
			hi, _ := r.byte()
			lo, _ := r.u16()
			need = int(hi)<<16 | lo
			if need+4 > MaxClientHello {
				return h, ErrHelloTooLarge
			}
		}
		if end > len(b) {
			return h, ErrHelloShort
		}
		got += n
		off = end
	}
	h.Length = off
	r := recordReader{b: b[:off]}
	r.skip(4)
	r.read = 0
	return parseHelloBody(&r, need, h)
}

// recordReader reads handshake bytes across TLS records, skipping the
// record headers. A field of interest (a server name, the ALPN list) is
// returned as a slice only when it does not cross a record boundary; one
// that does is reported as malformed, which no real client produces.
type recordReader struct {
	b    []byte
	pos  int // index in b
	left int // bytes left in the current record
	read int // handshake bytes read
}

func (r *recordReader) advance() bool {
	for r.left == 0 {
		if r.pos+recordHeaderBytes > len(r.b) {
			return false
		}
		r.left = int(r.b[r.pos+3])<<8 | int(r.b[r.pos+4])
		r.pos += recordHeaderBytes
	}
	return r.pos < len(r.b)
}

func (r *recordReader) byte() (byte, bool) {
	if !r.advance() {
		return 0, false
	}
	c := r.b[r.pos]
	r.pos++
	r.left--
	r.read++
	return c, true
}

func (r *recordReader) u16() (int, bool) {
	a, ok1 := r.byte()
	b, ok2 := r.byte()
	return int(a)<<8 | int(b), ok1 && ok2
}

func (r *recordReader) skip(n int) bool {
	for n > 0 {
		if !r.advance() {
			return false
		}
		step := min(len(r.b)-r.pos, r.left, n)
		r.pos += step
		r.left -= step
		r.read += step
		n -= step
	}
	return true
}

// bytes returns the next n bytes when they lie in one record.
func (r *recordReader) bytes(n int) ([]byte, bool) {
	if n == 0 {
		return nil, true
	}
	if !r.advance() || n > r.left || r.pos+n > len(r.b) {
		return nil, false
	}
	s := r.b[r.pos : r.pos+n]
	r.pos += n
	r.left -= n
	r.read += n
	return s, true
}

// parseHelloBody reads a ClientHello body of n bytes from r.
func parseHelloBody(r *recordReader, n int, h ClientHello) (ClientHello, error) {
	start := r.read
	bad := func() (ClientHello, error) { return ClientHello{}, ErrBadHello }
	legacy, ok := r.u16()
	if !ok || legacy>>8 != 3 {
		return bad()
	}
	h.MaxVersion = uint16(legacy)
	if !r.skip(32) { // random
		return bad()
	}
	sid, ok := r.byte()
	if !ok || sid > 32 || !r.skip(int(sid)) {
		return bad()
	}
	cs, ok := r.u16()
	if !ok || cs < 2 || cs%2 != 0 || !r.skip(cs) {
		return bad()
	}
	comp, ok := r.byte()
	if !ok || comp < 1 || !r.skip(int(comp)) {
		return bad()
	}
	if r.read-start == n {
		return h, nil // no extensions
	}
	extLen, ok := r.u16()
	if !ok || r.read-start+extLen != n {
		return bad()
	}
	for r.read-start < n {
		typ, ok1 := r.u16()
		l, ok2 := r.u16()
		if !ok1 || !ok2 || r.read-start+l > n {
			return bad()
		}
		switch typ {
		case extServerName:
			d, ok := r.bytes(l)
			if !ok {
				return bad()
			}
			name, ok := parseSNI(d)
			if !ok {
				return bad()
			}
			h.ServerName = name
		case extALPN:
			d, ok := r.bytes(l)
			if !ok || len(d) < 2 || int(d[0])<<8|int(d[1]) != len(d)-2 {
				return bad()
			}
			h.ALPN = d[2:]
		case extSupportedVers:
			d, ok := r.bytes(l)
			if !ok || len(d) < 1 || int(d[0]) != len(d)-1 || len(d)%2 != 1 {
				return bad()
			}
			for i := 1; i+1 < len(d); i += 2 {
				v := uint16(d[i])<<8 | uint16(d[i+1])
				if v&0x0f0f == 0x0a0a { // GREASE (RFC 8701)
					continue
				}
				if v>>8 == 3 && v > h.MaxVersion {
					h.MaxVersion = v
				}
			}
		default:
			if !r.skip(l) {
				return bad()
			}
		}
	}
	return h, nil
}

// parseSNI returns the first host_name of a server_name extension.
func parseSNI(d []byte) ([]byte, bool) {
	if len(d) < 2 || int(d[0])<<8|int(d[1]) != len(d)-2 {
		return nil, false
	}
	d = d[2:]
	var name []byte
	for len(d) > 0 {
		if len(d) < 3 {
			return nil, false
		}
		typ, l := d[0], int(d[1])<<8|int(d[2])
		if len(d) < 3+l {
			return nil, false
		}
		if typ == 0 && name == nil {
			name = d[3 : 3+l]
			if len(name) == 0 {
				return nil, false
			}
		}
		d = d[3+l:]
	}
	return name, true
}

// OffersALPN reports whether an ALPN list (ClientHello.ALPN) names proto.
func OffersALPN(list []byte, proto string) bool {
	for len(list) > 0 {
		l := int(list[0])
		if l == 0 || 1+l > len(list) {
			return false
		}
		if string(list[1:1+l]) == proto {
			return true
		}
		list = list[1+l:]
	}
	return false
}
