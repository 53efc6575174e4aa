//go:build !race

package tcp

import (
	"io"
	"net"
	"net/netip"
	"testing"
)

func TestProxyHeaderAllocs(t *testing.T) {
	v1 := []byte("PROXY TCP6 2001:db8::7 2001:db8::1 1234 443\r\n")
	v2 := v2Header(1, 0x11, []byte{192, 0, 2, 7, 198, 51, 100, 1, 0x04, 0xd2, 0x01, 0xbb}, 0)
	src, dst := netip.MustParseAddrPort("192.0.2.7:1234"), netip.MustParseAddrPort("[2001:db8::1]:443")
	buf := make([]byte, 0, proxyBufLen)
	if n := testing.AllocsPerRun(100, func() {
		_, _ = parseProxyHeader(v1)
		_, _ = parseProxyHeader(v2)
		buf = appendProxyHeader(buf[:0], 1, src, dst)
		buf = appendProxyHeader(buf[:0], 2, src, dst)
		_ = SourceKey(src.Addr())
	}); n != 0 {
		t.Fatalf("%v allocs per parse+append", n)
	}
}

// TestSessionAllocs checks that moving bytes through an open session
// allocates nothing anywhere in the process (client, proxy and echo
// backend all run here).
func TestSessionAllocs(t *testing.T) {
	p := startProxy(t, Options{IdleTimeout: 1 << 40}, &Upstream{Pool: newPool(t, serveBackend(t, echo))})
	c := dial(t, p.addr)
	msg, back := make([]byte, 4096), make([]byte, 4096)
	roundTrip := func() {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, back); err != nil {
			t.Fatal(err)
		}
	}
	for range 50 { // warm the pipe pool and the goroutine stacks
		roundTrip()
	}
	if n := testing.AllocsPerRun(500, roundTrip); n != 0 {
		t.Fatalf("%v allocs per 4 KiB round trip through an open session", n)
	}
}

// TestConnectionAllocs bounds what a whole connection costs the proxy:
// allocations of a connection through it minus those of a direct
// connection to the same backend. The event loops accept, connect and
// close with raw system calls and pool the session state: 2 allocations
// (the goroutine path, through the net package's accept and dial: 35).
func TestConnectionAllocs(t *testing.T) {
	backend := serveBackend(t, echo)
	p := startProxy(t, Options{}, &Upstream{Pool: newPool(t, backend)})
	msg := make([]byte, 16)
	oneConn := func(addr string, wait func()) func() {
		return func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, msg); err != nil {
				t.Fatal(err)
			}
			_ = c.Close()
			wait()
		}
	}
	direct := oneConn(backend, func() {})
	proxied := oneConn(p.addr, func() { p.waitIdle(t) })
	for range 20 {
		direct()
		proxied()
	}
	d, v := testing.AllocsPerRun(200, direct), testing.AllocsPerRun(200, proxied)
	t.Logf("allocs per connection: direct %v, through the proxy %v, the proxy's share %v", d, v, v-d)
	if v-d > 8 {
		t.Fatalf("the proxy allocates %v times per connection", v-d)
	}
}
