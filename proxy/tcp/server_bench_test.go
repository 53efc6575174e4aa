package tcp

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
)

func BenchmarkParseProxyHeader(b *testing.B) {
	for _, bc := range []struct {
		name string
		in   []byte
	}{
		{"v1", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 1234 443\r\n")},
		{"v1-tcp6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 1234 443\r\n")},
		{"v2", v2Header(1, 0x11, []byte{192, 0, 2, 7, 198, 51, 100, 1, 0x04, 0xd2, 0x01, 0xbb}, 0)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parseProxyHeader(bc.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendProxyHeader(b *testing.B) {
	src, dst := netip.MustParseAddrPort("192.0.2.7:1234"), netip.MustParseAddrPort("198.51.100.1:443")
	for _, v := range []int{1, 2} {
		b.Run("v"+itoa(v), func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, proxyBufLen)
			for b.Loop() {
				buf = appendProxyHeader(buf[:0], v, src, dst)
			}
		})
	}
}

// ioCopyProxy is the baseline: the standard library's splice path, io.Copy
// between two *net.TCPConn, one goroutine per direction, a pipe per
// direction for the whole session.
func ioCopyProxy(b *testing.B, backend string) string {
	ln := listen(b)
	go serveIOCopy(context.Background(), ln, backend)
	return ln.Addr().String()
}

func serveIOCopy(ctx context.Context, ln *net.TCPListener, backend string) {
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			bc, err := (&net.Dialer{}).DialContext(ctx, "tcp", backend)
			if err != nil {
				return
			}
			be := bc.(*net.TCPConn)
			defer be.Close()
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(c, be)
				_ = c.CloseWrite()
				close(done)
			}()
			_, _ = io.Copy(be, c)
			_ = be.CloseWrite()
			<-done
		}()
	}
}

// targets returns the addresses benchmarks compare: the backend itself, the
// io.Copy baseline and this engine.
func targets(b *testing.B, backend string) []struct{ name, addr string } {
	p := startProxy(b, Options{IdleTimeout: 1 << 40}, &Upstream{Pool: newPool(b, backend)})
	return []struct{ name, addr string }{
		{"direct", backend},
		{"iocopy", ioCopyProxy(b, backend)},
		{"engine", p.addr},
	}
}

// BenchmarkRoundTrip is request/response traffic on one open session: the
// engine's cost per wake-up compared with io.Copy.
func BenchmarkRoundTrip(b *testing.B) {
	for _, size := range []int{64, 4096} {
		for _, tg := range targets(b, serveBackend(b, echo)) {
			b.Run(tg.name+"/"+itoa(size), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(2 * size))
				c := dial(b, tg.addr)
				msg := make([]byte, size)
				for b.Loop() {
					if _, err := c.Write(msg); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(c, msg); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkBulk streams 1 MiB writes one way into a discarding backend.
func BenchmarkBulk(b *testing.B) {
	sink := serveBackend(b, func(c *net.TCPConn) { _, _ = io.Copy(io.Discard, c) })
	for _, tg := range targets(b, sink) {
		b.Run(tg.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(1 << 20)
			c := dial(b, tg.addr)
			buf := make([]byte, 1<<20)
			for b.Loop() {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkConnect opens a connection, does one 16-byte round trip and
// closes it.
func BenchmarkConnect(b *testing.B) {
	for _, tg := range targets(b, serveBackend(b, echo)) {
		b.Run(tg.name, func(b *testing.B) {
			b.ReportAllocs()
			msg := make([]byte, 16)
			for b.Loop() {
				c, err := net.Dial("tcp", tg.addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, msg); err != nil {
					b.Fatal(err)
				}
				_ = c.Close()
			}
		})
	}
}
