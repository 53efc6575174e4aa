//go:build !race

package main

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// TestAllocs counts allocations in the whole process (client, proxy and
// fasthttp backend) per keep-alive request once everything is warm: the
// backend and this client allocate nothing, so any count is the proxy's.
func TestAllocs(t *testing.T) {
	proxy := startProxy(t, startBackend(t))
	c, err := net.Dial("tcp4", proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	req := []byte("GET /alloc HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n")
	buf := make([]byte, 4096)
	want := []byte("hello /alloc")
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		n := 0
		for !bytes.HasSuffix(buf[:n], want) {
			m, err := c.Read(buf[n:])
			if err != nil {
				t.Fatal(err)
			}
			n += m
		}
	}
	for range 100 {
		roundTrip()
	}
	if a := testing.AllocsPerRun(2000, roundTrip); a > 0.05 {
		t.Errorf("%.3f allocations per request, want 0", a)
	}
}
