package tcp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

func v2Header(cmd, fam byte, addrs []byte, tlv int) []byte {
	b := append([]byte(nil), v2Sig[:]...)
	b = append(b, 0x20|cmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(addrs)+tlv))
	b = append(b, addrs...)
	return append(b, make([]byte, tlv)...)
}

func TestParseProxyHeader(t *testing.T) {
	t.Parallel()
	ap := netip.MustParseAddrPort
	v4addrs := []byte{192, 0, 2, 7, 198, 51, 100, 1, 0x04, 0xd2, 0x01, 0xbb}
	v6addrs := append(append(netip.MustParseAddr("2001:db8::7").AsSlice(), netip.MustParseAddr("2001:db8::1").AsSlice()...), 0x04, 0xd2, 0x01, 0xbb)
	tests := []struct {
		name    string
		in      []byte
		want    proxyHeader
		wantErr error
	}{
		{"v1 tcp4", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 1234 443\r\npayload"),
			proxyHeader{version: 1, src: ap("192.0.2.7:1234"), dst: ap("198.51.100.1:443"), length: 44}, nil},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 1234 443\r\n"),
			proxyHeader{version: 1, src: ap("[2001:db8::7]:1234"), dst: ap("[2001:db8::1]:443"), length: 45}, nil},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), proxyHeader{version: 1, local: true, length: 15}, nil},
		{"v1 unknown with addresses", []byte("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"), proxyHeader{version: 1, local: true, length: 35}, nil},
		{"v1 incomplete", []byte("PROXY TCP4 192.0.2.7"), proxyHeader{}, errProxyShort},
		{"v1 cr without lf yet", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 1234 443\r"), proxyHeader{}, errProxyShort},
		{"v1 prefix", []byte("PRO"), proxyHeader{}, errProxyShort},
		{"v1 no crlf in 107 bytes", append([]byte("PROXY TCP4 "), bytes.Repeat([]byte("1"), 100)...), proxyHeader{}, errProxyHeader},
		{"v1 bare lf", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n"), proxyHeader{}, errProxyHeader},
		{"v1 cr not lf", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rx"), proxyHeader{}, errProxyHeader},
		{"v1 v6 address in tcp4", []byte("PROXY TCP4 ::1 ::1 1 2\r\n"), proxyHeader{}, errProxyHeader},
		{"v1 v4 address in tcp6", []byte("PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n"), proxyHeader{}, errProxyHeader},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), proxyHeader{}, errProxyHeader},
		{"v1 octet over 255", []byte("PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n"), proxyHeader{}, errProxyHeader},
		{"v1 leading zero octet", []byte("PROXY TCP4 1.2.3.04 1.2.3.4 1 2\r\n"), proxyHeader{}, errProxyHeader},
		{"v1 port over 65535", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n"), proxyHeader{}, errProxyHeader},
		{"v1 missing port", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n"), proxyHeader{}, errProxyHeader},
		{"v1 extra field", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n"), proxyHeader{}, errProxyHeader},
		{"v1 double space", []byte("PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n"), proxyHeader{}, errProxyHeader},
		{"v1 udp", []byte("PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n"), proxyHeader{}, errProxyHeader},
		{"http", []byte("GET / HTTP/1.1\r\n"), proxyHeader{}, errProxyHeader},
		{"v1 lowercase", []byte("proxy TCP4"), proxyHeader{}, errProxyHeader},
		{"empty", nil, proxyHeader{}, errProxyShort},
		{"v2 inet", v2Header(1, 0x11, v4addrs, 0),
			proxyHeader{version: 2, src: ap("192.0.2.7:1234"), dst: ap("198.51.100.1:443"), length: 28}, nil},
		{"v2 inet with tlvs", v2Header(1, 0x11, v4addrs, 100),
			proxyHeader{version: 2, src: ap("192.0.2.7:1234"), dst: ap("198.51.100.1:443"), length: 128}, nil},
		{"v2 inet6", v2Header(1, 0x21, v6addrs, 0),
			proxyHeader{version: 2, src: ap("[2001:db8::7]:1234"), dst: ap("[2001:db8::1]:443"), length: 52}, nil},
		{"v2 local", v2Header(0, 0x00, nil, 0), proxyHeader{version: 2, local: true, length: 16}, nil},
		{"v2 unspec", v2Header(1, 0x00, nil, 4), proxyHeader{version: 2, local: true, length: 20}, nil},
		{"v2 unix", v2Header(1, 0x31, make([]byte, 216), 0), proxyHeader{version: 2, local: true, length: 232}, nil},
		{"v2 signature prefix", v2Sig[:5], proxyHeader{}, errProxyShort},
		{"v2 fixed part short", v2Header(1, 0x11, v4addrs, 0)[:15], proxyHeader{}, errProxyShort},
		{"v2 addresses short", v2Header(1, 0x11, v4addrs, 0)[:20], proxyHeader{}, errProxyShort},
		{"v2 bad signature", append([]byte{0x0D, 0x0A, 0x0D, 0x0B}, v4addrs...), proxyHeader{}, errProxyHeader},
		{"v2 version 1", append(append(v2Sig[:], 0x11, 0x11, 0, 12), v4addrs...), proxyHeader{}, errProxyHeader},
		{"v2 command 2", v2Header(2, 0x11, v4addrs, 0), proxyHeader{}, errProxyHeader},
		{"v2 family 4", v2Header(1, 0x41, v4addrs, 0), proxyHeader{}, errProxyHeader},
		{"v2 protocol 3", v2Header(1, 0x13, v4addrs, 0), proxyHeader{}, errProxyHeader},
		{"v2 length below addresses", v2Header(1, 0x21, v4addrs, 0), proxyHeader{}, errProxyHeader},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseProxyHeader(tc.in)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestAppendProxyHeader(t *testing.T) {
	t.Parallel()
	ap := netip.MustParseAddrPort
	tests := []struct {
		name     string
		version  int
		src, dst netip.AddrPort
		want     []byte
	}{
		{"v1 tcp4", 1, ap("192.0.2.7:1234"), ap("198.51.100.1:443"), []byte("PROXY TCP4 192.0.2.7 198.51.100.1 1234 443\r\n")},
		{"v1 mapped v4 is tcp4", 1, ap("[::ffff:192.0.2.7]:1234"), ap("198.51.100.1:443"), []byte("PROXY TCP4 192.0.2.7 198.51.100.1 1234 443\r\n")},
		{"v1 tcp6", 1, ap("[2001:db8::7]:1234"), ap("[2001:db8::1]:443"), []byte("PROXY TCP6 2001:db8::7 2001:db8::1 1234 443\r\n")},
		{"v1 mixed families", 1, ap("192.0.2.7:1234"), ap("[2001:db8::1]:443"), []byte("PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 1234 443\r\n")},
		{"v1 unknown", 1, netip.AddrPort{}, ap("198.51.100.1:443"), []byte("PROXY UNKNOWN\r\n")},
		{"v2 inet", 2, ap("192.0.2.7:1234"), ap("198.51.100.1:443"),
			v2Header(1, 0x11, []byte{192, 0, 2, 7, 198, 51, 100, 1, 0x04, 0xd2, 0x01, 0xbb}, 0)},
		{"v2 unspec", 2, netip.AddrPort{}, netip.AddrPort{}, v2Header(1, 0x00, nil, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := appendProxyHeader(nil, tc.version, tc.src, tc.dst)
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			// What we write, we read back.
			h, err := parseProxyHeader(got)
			if err != nil || h.length != len(got) {
				t.Fatalf("parse back: %+v, %v", h, err)
			}
			if !h.local && (h.src.Addr().Unmap() != tc.src.Addr().Unmap() || h.src.Port() != tc.src.Port()) {
				t.Fatalf("parsed source %v, want %v", h.src, tc.src)
			}
		})
	}
}

func TestSendProxy(t *testing.T) {
	t.Parallel()
	for _, version := range []string{ProxyV1, ProxyV2} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			ln := listen(t)
			lport := ln.Addr().(*net.TCPAddr).Port
			gotHdr := make(chan []byte, 1)
			// The v1 header's length depends on the client port: the
			// backend reads it up to CRLF.
			backend := serveBackend(t, func(c *net.TCPConn) {
				var b []byte
				if version == ProxyV1 {
					one := make([]byte, 1)
					for !bytes.HasSuffix(b, []byte("\r\n")) {
						if _, err := c.Read(one); err != nil {
							gotHdr <- nil
							return
						}
						b = append(b, one[0])
					}
				} else {
					b = make([]byte, 28)
					if _, err := io.ReadFull(c, b); err != nil {
						gotHdr <- nil
						return
					}
				}
				gotHdr <- b
				echo(c)
			})
			p := startProxy(t, Options{Listener: ln}, &Upstream{Pool: newPool(t, backend), SendProxy: version})
			c := dial(t, p.addr)
			if got := roundTrip(t, c, "payload"); got != "payload" {
				t.Fatalf("echo %q", got)
			}
			cport := c.LocalAddr().(*net.TCPAddr).Port
			var want []byte
			if version == ProxyV1 {
				want = fmt.Appendf(nil, "PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n", cport, lport)
			} else {
				want = v2Header(1, 0x11, []byte{127, 0, 0, 1, 127, 0, 0, 1, byte(cport >> 8), byte(cport), byte(lport >> 8), byte(lport)}, 0)
			}
			if got := <-gotHdr; !bytes.Equal(got, want) {
				t.Fatalf("backend got header %q, want %q", got, want)
			}
		})
	}
}

func TestAcceptProxy(t *testing.T) {
	t.Parallel()
	v4addrs := []byte{192, 0, 2, 7, 198, 51, 100, 1, 0x04, 0xd2, 0x01, 0xbb}
	fromAddrs := "PROXY TCP4 192.0.2.7 198.51.100.1 1234 443\r\n"
	tests := []struct {
		name   string
		header []byte
		split  int    // write the header in two parts at this offset (0: one write)
		want   string // header the backend gets (send_proxy v1); "" when rejected
		local  bool   // the real addresses stand
	}{
		{"v1", []byte(fromAddrs), 0, fromAddrs, false},
		{"v1 split", []byte(fromAddrs), 9, fromAddrs, false},
		{"v2", v2Header(1, 0x11, v4addrs, 0), 0, fromAddrs, false},
		{"v2 split in signature", v2Header(1, 0x11, v4addrs, 0), 7, fromAddrs, false},
		{"v2 with tlvs", v2Header(1, 0x11, v4addrs, 300), 0, fromAddrs, false},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), 0, "", true},
		{"v2 local", v2Header(0, 0, nil, 0), 0, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gotHdr := make(chan string, 1)
			backend := serveBackend(t, func(c *net.TCPConn) {
				var b []byte
				one := make([]byte, 1)
				for !bytes.HasSuffix(b, []byte("\r\n")) {
					if _, err := c.Read(one); err != nil {
						break
					}
					b = append(b, one[0])
				}
				gotHdr <- string(b)
				echo(c)
			})
			p := startProxy(t, Options{AcceptProxy: true}, &Upstream{Pool: newPool(t, backend), SendProxy: ProxyV1})
			c := dial(t, p.addr)
			// The header and the first payload bytes go in one write when
			// not split: payload after the header must not be lost.
			if tc.split > 0 {
				_, _ = c.Write(tc.header[:tc.split])
				_, _ = c.Write(append(tc.header[tc.split:], "ping"...))
			} else {
				_, _ = c.Write(append(append([]byte(nil), tc.header...), "ping"...))
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("echo %q, %v", buf, err)
			}
			want := tc.want
			if tc.local {
				want = fmt.Sprintf("PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n",
					c.LocalAddr().(*net.TCPAddr).Port, c.RemoteAddr().(*net.TCPAddr).Port)
			}
			if got := <-gotHdr; got != want {
				t.Fatalf("backend got %q, want %q", got, want)
			}
			if got := p.rejected("proxy_protocol"); got != 0 {
				t.Fatalf("rejected %v", got)
			}
		})
	}
}

func TestAcceptProxyRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		send  []byte
		close bool // the client closes after sending
	}{
		{"http request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false},
		{"v1 missing fields", []byte("PROXY TCP4 1.2.3.4\r\n"), false},
		{"v2 bad version", append(append(v2Sig[:], 0x31, 0x11, 0, 12), make([]byte, 12)...), false},
		{"v1 too long", append([]byte("PROXY TCP4 "), bytes.Repeat([]byte("9"), 120)...), false},
		{"nothing before the deadline", nil, false},
		{"partial then close", []byte("PROXY TCP4 1.2"), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			backendConns := make(chan struct{}, 1)
			backend := serveBackend(t, func(c *net.TCPConn) { backendConns <- struct{}{} })
			p := startProxy(t, Options{AcceptProxy: true, ProxyHeaderTimeout: 200 * time.Millisecond},
				&Upstream{Pool: newPool(t, backend)})
			c := dial(t, p.addr)
			if len(tc.send) > 0 {
				_, _ = c.Write(tc.send)
			}
			if tc.close {
				_ = c.CloseWrite()
			}
			if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
				t.Fatalf("read %d, %v: want the connection closed", n, err)
			}
			eventually(t, "connections_rejected_total{reason=proxy_protocol}", func() bool { return p.rejected("proxy_protocol") == 1 })
			select {
			case <-backendConns:
				t.Fatal("a rejected connection reached the backend")
			default:
			}
		})
	}
}
