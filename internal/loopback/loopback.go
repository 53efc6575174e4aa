// Package loopback starts throwaway TCP servers on 127.0.0.1 for the tests of
// several packages (the tests' backends: echo servers, hand-written HTTP
// answers). Nothing outside _test.go files imports it.
package loopback

import (
	"bufio"
	"io"
	"net"
	"testing"
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
