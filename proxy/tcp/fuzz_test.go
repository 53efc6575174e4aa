package tcp

import (
	"bytes"
	"net/netip"
	"testing"
)

// FuzzParseProxyHeader checks that the parser never panics, never claims
// more than it was allowed to look at for v1, and that whatever it accepts
// survives a write and a second parse.
func FuzzParseProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.7 198.51.100.1 1234 443\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::7 ::ffff:1.2.3.4 1 65535\r\nrest"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("PROXY TCP4 1.2.3"))
	f.Add(v2Header(1, 0x11, []byte{192, 0, 2, 7, 198, 51, 100, 1, 0x04, 0xd2, 0x01, 0xbb}, 3))
	f.Add(v2Header(1, 0x21, make([]byte, 36), 0))
	f.Add(v2Header(0, 0x00, nil, 0))
	f.Add(v2Header(1, 0x31, make([]byte, 216), 0))
	f.Add([]byte{0x0D, 0x0A, 0x0D})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseProxyHeader(b)
		if err != nil {
			return
		}
		if h.version == 1 {
			if h.length > len(b) || h.length > v1MaxLen || !bytes.HasSuffix(b[:h.length], []byte("\r\n")) {
				t.Fatalf("v1 header length %d of %d bytes", h.length, len(b))
			}
		}
		if h.version == 2 && h.length < v2FixedLen {
			t.Fatalf("v2 header length %d", h.length)
		}
		if h.local {
			return
		}
		for _, v := range []int{1, 2} {
			out := appendProxyHeader(nil, v, h.src, h.dst)
			h2, err := parseProxyHeader(out)
			if err != nil {
				t.Fatalf("cannot parse own v%d header %q: %v", v, out, err)
			}
			if unmapped(h2.src) != unmapped(h.src) || unmapped(h2.dst) != unmapped(h.dst) {
				t.Fatalf("v%d round trip: %v %v became %v %v", v, h.src, h.dst, h2.src, h2.dst)
			}
		}
	})
}

func unmapped(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}
