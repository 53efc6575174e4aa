package splice

import (
	"bytes"
	"io"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		done <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-done
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// fd runs f with the socket's descriptor.
func fd(t *testing.T, c *net.TCPConn, f func(int)) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(func(d uintptr) { f(int(d)) }); err != nil {
		t.Fatal(err)
	}
}

// TestMoveThroughPipe moves bytes socket to pipe to socket and checks they
// arrive intact, and that an empty source says EAGAIN instead of waiting.
func TestMoveThroughPipe(t *testing.T) {
	in, src := tcpPair(t)
	dst, out := tcpPair(t)
	var pool Pool
	p, err := pool.Get()
	if err != nil {
		t.Fatal(err)
	}
	fd(t, src, func(s int) {
		if _, err := Move(s, p.W, MaxMove); err != unix.EAGAIN {
			t.Errorf("empty source: %v, want EAGAIN", err)
		}
	})
	msg := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	go func() { _, _ = in.Write(msg) }()
	got := make([]byte, len(msg))
	read := make(chan error, 1)
	go func() { _, err := io.ReadFull(out, got); read <- err }()
	moved := 0
	for moved < len(msg) {
		var n int64
		fd(t, src, func(s int) { n, err = Move(s, p.W, len(msg)-moved) })
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for left := n; left > 0; {
			var m int64
			fd(t, dst, func(d int) { m, err = Move(p.R, d, int(left)) })
			if err != nil && err != unix.EAGAIN && err != unix.EINTR {
				t.Fatal(err)
			}
			left -= m
		}
		moved += int(n)
	}
	if err := <-read; err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read %v; intact %v", err, bytes.Equal(got, msg))
	}
	pool.Put(p)
	if pool.InUse() != 0 || pool.Created() != 1 {
		t.Errorf("in use %d, created %d; want 0 and 1", pool.InUse(), pool.Created())
	}
	q, _ := pool.Get()
	pool.Destroy(q)
	if pool.InUse() != 0 {
		t.Errorf("in use %d after Destroy, want 0", pool.InUse())
	}
}
