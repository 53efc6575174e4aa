package proxy

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

// admit makes one allocation for a TCP client connection.
func TestAdmitAllocatesOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	l := &connListener{maxConns: 1 << 30,
		active:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "a"}),
		total:    prometheus.NewCounter(prometheus.CounterOpts{Name: "t"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "r"}),
	}
	allocs := testing.AllocsPerRun(100, func() {
		conn, err := l.admit(sc)
		if err != nil {
			t.Fatal(err)
		}
		conn.(*sniffConn).release()
	})
	if allocs != 1 {
		t.Errorf("admit: %v allocations, want 1", allocs)
	}
}

func BenchmarkAdmit(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	l := &connListener{maxConns: 1 << 30,
		active:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "a"}),
		total:    prometheus.NewCounter(prometheus.CounterOpts{Name: "t"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "r"}),
	}
	b.ReportAllocs()
	for b.Loop() {
		conn, _ := l.admit(sc)
		conn.(*sniffConn).release()
	}
}
