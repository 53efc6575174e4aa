package tcp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"unsafe"
)

// PROXY protocol versions, as in Upstream.SendProxy.
const (
	ProxyV1 = "v1"
	ProxyV2 = "v2"
)

const (
	// v1MaxLen is the longest v1 header, CRLF included (the spec's 107).
	v1MaxLen = 107
	// v2FixedLen is the v2 signature, version/command, family and length.
	v2FixedLen = 16
	// proxyBufLen holds any v1 header and a v2 header up to its AF_UNIX
	// addresses (16 + 216); TLVs past it are read and dropped.
	proxyBufLen = v2FixedLen + 216
)

// v2Sig opens every PROXY protocol v2 header.
var v2Sig = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

var (
	// errProxyShort means the bytes so far are a valid prefix of a header
	// that is not complete yet.
	errProxyShort = errors.New("tcp: proxy protocol header incomplete")
	// errProxyHeader means the bytes are not a PROXY protocol header.
	errProxyHeader = errors.New("tcp: malformed proxy protocol header")
)

// proxyHeader is a parsed PROXY protocol header.
type proxyHeader struct {
	// version is 1 or 2.
	version int
	// local is true for v1 UNKNOWN, v2 LOCAL and v2 families that carry no
	// IP address: the connection's own addresses stand.
	local bool
	// src is the original client, dst the address it connected to.
	src, dst netip.AddrPort
	// length is the whole header's size on the wire, TLVs included, which
	// may exceed the bytes that were parsed.
	length int
}

// parseProxyHeader parses a v1 or v2 header at the start of b. It returns
// errProxyShort when b is a valid but incomplete prefix and errProxyHeader
// when b cannot start a header. It does not allocate.
func parseProxyHeader(b []byte) (proxyHeader, error) {
	if len(b) == 0 {
		return proxyHeader{}, errProxyShort
	}
	switch b[0] {
	case 'P':
		return parseV1(b)
	case v2Sig[0]:
		return parseV2(b)
	}
	return proxyHeader{}, errProxyHeader
}

func parseV1(b []byte) (proxyHeader, error) {
	const prefix = "PROXY "
	var h proxyHeader
	if n := min(len(b), len(prefix)); string(b[:n]) != prefix[:n] {
		return h, errProxyHeader
	}
	end := bytes.IndexByte(b[:min(len(b), v1MaxLen)], '\r')
	if end < 0 {
		if len(b) >= v1MaxLen || bytes.IndexByte(b, '\n') >= 0 {
			return h, errProxyHeader
		}
		return h, errProxyShort
	}
	if end+1 == len(b) {
		if end+1 >= v1MaxLen {
			return h, errProxyHeader
		}
		return h, errProxyShort
	}
	if b[end+1] != '\n' || end < len(prefix) {
		return h, errProxyHeader
	}
	h.version, h.length = 1, end+2
	line := b[len(prefix):end]
	proto, rest, _ := bytes.Cut(line, []byte{' '})
	var v6 bool
	switch string(proto) {
	case "UNKNOWN":
		h.local = true
		return h, nil
	case "TCP4":
	case "TCP6":
		v6 = true
	default:
		return h, errProxyHeader
	}
	srcIP, rest, ok1 := bytes.Cut(rest, []byte{' '})
	dstIP, rest, ok2 := bytes.Cut(rest, []byte{' '})
	srcPort, dstPort, ok3 := bytes.Cut(rest, []byte{' '})
	if !ok1 || !ok2 || !ok3 {
		return h, errProxyHeader
	}
	sa, ok1 := parseIP(srcIP, v6)
	da, ok2 := parseIP(dstIP, v6)
	sp, ok3 := parsePort(srcPort)
	dp, ok4 := parsePort(dstPort)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return h, errProxyHeader
	}
	h.src, h.dst = netip.AddrPortFrom(sa, sp), netip.AddrPortFrom(da, dp)
	return h, nil
}

// parseIP parses a dotted-quad IPv4 address (no leading zeros, as
// inet_pton) or, when v6, an IPv6 address without a zone.
func parseIP(b []byte, v6 bool) (netip.Addr, bool) {
	if !v6 {
		return parseIPv4(b)
	}
	if len(b) == 0 || len(b) > 45 || bytes.IndexByte(b, '%') >= 0 || bytes.IndexByte(b, ':') < 0 {
		return netip.Addr{}, false
	}
	// The string aliases b only for the duration of the call: ParseAddr keeps
	// nothing of its input for an address without a zone.
	a, err := netip.ParseAddr(unsafe.String(&b[0], len(b)))
	if err != nil || !a.Is6() {
		return netip.Addr{}, false
	}
	return a, true
}

func parseIPv4(b []byte) (netip.Addr, bool) {
	var ip [4]byte
	for i := range 4 {
		if i > 0 {
			if len(b) == 0 || b[0] != '.' {
				return netip.Addr{}, false
			}
			b = b[1:]
		}
		n, digits := 0, 0
		for digits < len(b) && b[digits] >= '0' && b[digits] <= '9' {
			n = n*10 + int(b[digits]-'0')
			digits++
			if digits > 3 {
				return netip.Addr{}, false
			}
		}
		if digits == 0 || n > 255 || (digits > 1 && b[0] == '0') {
			return netip.Addr{}, false
		}
		ip[i] = byte(n)
		b = b[digits:]
	}
	if len(b) != 0 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(ip), true
}

// parsePort parses 1 to 5 decimal digits up to 65535.
func parsePort(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return 0, false
	}
	return uint16(n), true
}

func parseV2(b []byte) (proxyHeader, error) {
	var h proxyHeader
	if n := min(len(b), len(v2Sig)); !bytes.Equal(b[:n], v2Sig[:n]) {
		return h, errProxyHeader
	}
	if len(b) < 13 {
		return h, errProxyShort
	}
	if b[12]>>4 != 2 || b[12]&0xF > 1 {
		return h, errProxyHeader
	}
	if len(b) < 14 {
		return h, errProxyShort
	}
	family, proto := b[13]>>4, b[13]&0xF
	if family > 3 || proto > 2 {
		return h, errProxyHeader
	}
	if len(b) < v2FixedLen {
		return h, errProxyShort
	}
	h.version = 2
	size := int(binary.BigEndian.Uint16(b[14:16]))
	h.length = v2FixedLen + size
	if b[12]&0xF == 0 { // LOCAL: a health check of the sender; addresses ignored
		h.local = true
		return h, nil
	}
	var need int
	switch family {
	case 1:
		need = 12
	case 2:
		need = 36
	case 3:
		need = 216
	}
	if size < need {
		return h, errProxyHeader
	}
	if family == 0 || family == 3 {
		h.local = true
		return h, nil
	}
	if len(b) < v2FixedLen+need {
		return h, errProxyShort
	}
	a := b[v2FixedLen:]
	if family == 1 {
		h.src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
		h.dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
	} else {
		h.src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])), binary.BigEndian.Uint16(a[32:34]))
		h.dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])), binary.BigEndian.Uint16(a[34:36]))
	}
	return h, nil
}

// appendProxyHeader appends a PROXY protocol header of version 1 or 2 that
// says src connected to dst. Both IPv4: TCP4 / AF_INET; otherwise both are
// written as IPv6 (IPv4 as ::ffff:a.b.c.d). An invalid address gives v1
// UNKNOWN or a v2 PROXY header with AF_UNSPEC, as HAProxy sends. It does not
// allocate when dst has room for 52 more bytes (v2) or 107 (v1).
func appendProxyHeader(buf []byte, version int, src, dst netip.AddrPort) []byte {
	known := src.Addr().IsValid() && dst.Addr().IsValid()
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	v4 := sa.Is4() && da.Is4()
	if !v4 {
		sa, da = as6(sa), as6(da)
	}
	if version == 1 {
		if !known {
			return append(buf, "PROXY UNKNOWN\r\n"...)
		}
		if v4 {
			buf = append(buf, "PROXY TCP4 "...)
		} else {
			buf = append(buf, "PROXY TCP6 "...)
		}
		buf = sa.AppendTo(buf)
		buf = append(buf, ' ')
		buf = da.AppendTo(buf)
		buf = append(buf, ' ')
		buf = strconv.AppendUint(buf, uint64(src.Port()), 10)
		buf = append(buf, ' ')
		buf = strconv.AppendUint(buf, uint64(dst.Port()), 10)
		return append(buf, '\r', '\n')
	}
	buf = append(buf, v2Sig[:]...)
	buf = append(buf, 0x21) // version 2, PROXY
	switch {
	case !known:
		return append(buf, 0x00, 0, 0)
	case v4:
		buf = append(buf, 0x11, 0, 12)
		s4, d4 := sa.As4(), da.As4()
		buf = append(buf, s4[:]...)
		buf = append(buf, d4[:]...)
	default:
		buf = append(buf, 0x21, 0, 36)
		s16, d16 := sa.As16(), da.As16()
		buf = append(buf, s16[:]...)
		buf = append(buf, d16[:]...)
	}
	buf = binary.BigEndian.AppendUint16(buf, src.Port())
	return binary.BigEndian.AppendUint16(buf, dst.Port())
}

func as6(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.AddrFrom16(a.As16())
	}
	return a
}

// Errors of ParseProxyHeader.
var (
	// ErrProxyShort: the bytes so far are a valid prefix of a header that
	// is not complete yet; read more and parse again.
	ErrProxyShort = errProxyShort
	// ErrProxyHeader: the bytes cannot start a PROXY protocol header.
	ErrProxyHeader = errProxyHeader
)

// ProxyHeader is a parsed PROXY protocol v1 or v2 header, for listeners
// of other engines that accept one (http listeners with accept_proxy).
type ProxyHeader struct {
	// Local is true when the header carries no client address (v1
	// UNKNOWN, v2 LOCAL, v2 families without an IP address): the
	// connection's own addresses stand.
	Local bool
	// Source is the original client, Dest the address it connected to.
	Source, Dest netip.AddrPort
	// Length is the header's whole size on the wire, TLVs included: the
	// first Length bytes of the connection are the header. It may exceed
	// the bytes parsed so far.
	Length int
}

// ParseProxyHeader parses a v1 or v2 header at the start of b. It returns
// ErrProxyShort when b is a valid but incomplete prefix (a v2 header whose
// TLVs have not all arrived is complete: compare Length with len(b)) and
// ErrProxyHeader when b cannot start a header. It does not allocate and is
// safe for concurrent use.
func ParseProxyHeader(b []byte) (ProxyHeader, error) {
	h, err := parseProxyHeader(b)
	return ProxyHeader{Local: h.local, Source: h.src, Dest: h.dst, Length: h.length}, err
}
