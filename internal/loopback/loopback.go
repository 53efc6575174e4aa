// Package loopback starts throwaway TCP servers on 127.0.0.1 for the tests of
// several packages (the tests' backends: echo servers, hand-written HTTP
// answers). Nothing outside _test.go files imports it.
package loopback

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// Serve listens on 127.0.0.1, runs handle on a goroutine of its own for each
// accepted connection and closes the connection when handle returns. The
// listener closes when the test ends. It returns the listener's address.
func Serve(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// Echo runs a line echo server that prefixes each line it sends back with
// name, and returns its address.
func Echo(t testing.TB, name string) string {
	t.Helper()
	return Serve(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := io.WriteString(c, name+" "+line); err != nil {
				return
			}
		}
	})
}

// Bound returns a TCP socket bound to 127.0.0.1 on a port of the kernel's
// choice, neither listening nor connected, and its address; it is closed
// when the test ends. Connecting to it is refused for as long as the test
// runs (no other test can take the port over), and it can be made to listen
// with unix.Listen.
func Bound(t testing.TB) (int, string) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	in4 := sa.(*unix.SockaddrInet4)
	return fd, netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port)).String()
}
