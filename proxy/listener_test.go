package proxy

import (
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// An http listener's socket hands over a connection only once its first
// bytes arrived (TCP_DEFER_ACCEPT): the first read finds the request.
func TestHTTPListenerDefersAccept(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	deferAccept(ln)
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT)
	}); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if v <= 0 {
		t.Errorf("TCP_DEFER_ACCEPT = %d, want > 0", v)
	}
}

// A client that connects and sends nothing is still accepted, counted and
// ended by read_timeout, about a second later than without deferring.
func TestSilentClientIsAcceptedLate(t *testing.T) {
	t.Parallel()
	a := startBackend(t, "a")
	p := startProxy(t, listenerTOML+`read_timeout = "200ms"
  [[listener.route]]
  pool = "demo"
`+poolTOML("demo", `health = { check = "none" }`, a.addr), nil)
	c, err := net.Dial("tcp", p.Addr("web").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("silent connection: %v after %v, want the proxy to close it", err, time.Since(start))
	}
	total := metricValue(t, p.reg, "frontdoor_connections_total", map[string]string{"listener": "web"})
	if total != 1 {
		t.Errorf("connections_total = %v, want 1", total)
	}
}
