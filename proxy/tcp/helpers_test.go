package tcp

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"frontdoor/balancer"
	"frontdoor/internal/loopback"
	"frontdoor/metrics"
)

// listen opens a listener on 127.0.0.1 that the test closes at the end.
func listen(t testing.TB) *net.TCPListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln.(*net.TCPListener)
}

// serveBackend runs fn for every connection accepted on a new listener and
// returns its address.
func serveBackend(t testing.TB, fn func(c *net.TCPConn)) string {
	t.Helper()
	return loopback.Serve(t, func(c net.Conn) { fn(c.(*net.TCPConn)) })
}

// echo copies everything back and half-closes at EOF.
func echo(c *net.TCPConn) {
	_, _ = io.Copy(c, c)
	_ = c.CloseWrite()
	_, _ = io.Copy(io.Discard, c)
}

// closedAddr returns an address on 127.0.0.1 with nothing listening.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// newPool returns a round-robin pool of healthy backends.
func newPool(t testing.TB, addrs ...string) *balancer.Pool {
	t.Helper()
	members := make([]balancer.Member, len(addrs))
	for i, a := range addrs {
		b := balancer.NewBackend(a)
		b.SetHealthy(true)
		members[i] = balancer.Member{Backend: b, Weight: 1}
	}
	p, err := balancer.NewPool(members, balancer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

type proxy struct {
	*Server
	addr string
	m    *metrics.Metrics
	reg  *prometheus.Registry
}

// startProxy serves opts (with a new listener and metrics unless set) and
// closes the server at the end of the test.
func startProxy(t testing.TB, opts Options, up *Upstream) *proxy {
	t.Helper()
	if opts.Listener == nil {
		opts.Listener = listen(t)
	}
	if opts.Name == "" {
		opts.Name = "test"
	}
	engineFor(t, &opts)
	reg := prometheus.NewRegistry()
	if opts.Metrics == nil {
		opts.Metrics = metrics.New(reg, "test")
	}
	if up.PoolName == "" {
		up.PoolName = "pool"
	}
	s := NewServer(opts, up)
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		_ = s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return &proxy{Server: s, addr: opts.Listener.Addr().String(), m: opts.Metrics, reg: reg}
}

func dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c.(*net.TCPConn)
}

// roundTrip writes msg and reads as many bytes back.
func roundTrip(t testing.TB, c net.Conn, msg string) string {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(buf)
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (p *proxy) counter(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	return value(c)
}

func (p *proxy) upstreamErrors(backend, reason string) float64 {
	return value(p.m.UpstreamErrors.WithLabelValues("pool", backend, reason))
}

func (p *proxy) rejected(reason string) float64 {
	return value(p.m.ConnsRejected.WithLabelValues("test", reason))
}

func (p *proxy) bytes(direction string) float64 {
	return value(p.m.TCPBytes.WithLabelValues("test", direction))
}

// waitIdle waits until the proxy has no open session.
func (p *proxy) waitIdle(t testing.TB) {
	t.Helper()
	eventually(t, "sessions to end", func() bool { return p.Active() == 0 })
}

func itoa(n int) string { return strconv.Itoa(n) }

// value reads a counter or gauge child.
func value(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var pb dto.Metric
	if err := (<-ch).Write(&pb); err != nil {
		panic(err)
	}
	if pb.Counter != nil {
		return pb.Counter.GetValue()
	}
	return pb.Gauge.GetValue()
}

var _ = context.Background
