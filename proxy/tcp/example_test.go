package tcp_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"frontdoor/balancer"
	"frontdoor/proxy/tcp"
)

// A Server forwards connections from a listener the caller bound to a pool.
func Example() {
	// An echo backend.
	bln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer bln.Close()
	go func() {
		c, err := bln.Accept()
		if err != nil {
			return
		}
		_, _ = io.Copy(c, c)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	backend := balancer.NewBackend(bln.Addr().String())
	backend.SetHealthy(true)
	pool, _ := balancer.NewPool([]balancer.Member{{Backend: backend, Weight: 1}}, balancer.Options{})

	// The caller binds the listener and keeps it; the Server never closes it.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	srv := tcp.NewServer(tcp.Options{Name: "echo", Listener: ln, IdleTimeout: time.Minute},
		&tcp.Upstream{PoolName: "echo", Pool: pool, ConnectTimeout: time.Second, Retries: 1})
	go func() { _ = srv.Serve() }()

	c, _ := net.Dial("tcp", ln.Addr().String())
	_, _ = io.WriteString(c, "hello")
	_ = c.(*net.TCPConn).CloseWrite() // the backend sees EOF, answers, and closes
	reply, _ := io.ReadAll(c)
	fmt.Println(string(reply))

	// Drain: wait up to 5 s for open sessions, then close them.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println(srv.Shutdown(ctx), srv.Active())
	// Output:
	// hello
	// <nil> 0
}

// SourceKey is the consistent_hash key of a client: the same for an IPv4
// address and its IPv4-mapped IPv6 form.
func ExampleSourceKey() {
	v4 := tcp.SourceKey(netip.MustParseAddr("192.0.2.7"))
	mapped := tcp.SourceKey(netip.MustParseAddr("::ffff:192.0.2.7"))
	fmt.Println(v4 == mapped)
	// Output: true
}

// StopAccepting leaves the listener open, so a new Server can take it over
// while the old one's sessions finish.
func ExampleServer_StopAccepting() {
	bln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer bln.Close()
	backend := balancer.NewBackend(bln.Addr().String())
	backend.SetHealthy(true)
	pool, _ := balancer.NewPool([]balancer.Member{{Backend: backend, Weight: 1}}, balancer.Options{})
	up := &tcp.Upstream{PoolName: "p", Pool: pool}

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	old := tcp.NewServer(tcp.Options{Name: "l", Listener: ln}, up)
	oldDone := make(chan error, 1)
	go func() { oldDone <- old.Serve() }()

	old.StopAccepting()
	fmt.Println(<-oldDone)
	next := tcp.NewServer(tcp.Options{Name: "l", Listener: ln}, up)
	go func() { _ = next.Serve() }()
	defer next.Close()
	fmt.Println(old.Close())
	// Output:
	// tcp: server closed
	// <nil>
}

// TakeOver is a reload: the new Server takes the listener and the old
// Server's open sessions, which go on until they end; its Shutdown waits
// for them as for its own.
func ExampleServer_TakeOver() {
	bln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer bln.Close()
	go func() {
		for {
			c, err := bln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	backend := balancer.NewBackend(bln.Addr().String())
	backend.SetHealthy(true)
	pool, _ := balancer.NewPool([]balancer.Member{{Backend: backend, Weight: 1}}, balancer.Options{})

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	old := tcp.NewServer(tcp.Options{Name: "l", Listener: ln}, &tcp.Upstream{PoolName: "p", Pool: pool})
	go func() { _ = old.Serve() }()
	c, _ := net.Dial("tcp", ln.Addr().String())
	buf := make([]byte, 2)
	_, _ = c.Write([]byte("hi"))
	_, _ = io.ReadFull(c, buf)

	// The reload.
	next := tcp.NewServer(tcp.Options{Name: "l", Listener: ln}, &tcp.Upstream{PoolName: "p", Pool: pool, Retries: 1})
	next.TakeOver(old)
	go func() { _ = next.Serve() }()
	_, _ = c.Write([]byte("ok"))
	_, _ = io.ReadFull(c, buf)
	fmt.Println(string(buf), next.Active())

	// Shutdown waits for the session opened before the reload.
	done := make(chan error, 1)
	go func() { done <- next.Shutdown(context.Background()) }()
	_ = c.Close()
	fmt.Println(<-done, next.Active())
	// Output:
	// ok 1
	// <nil> 0
}

// ParseClientHello reads the server name and ALPN protocols a TLS client
// asks for from the bytes it sent first, without terminating anything.
func ExampleParseClientHello() {
	client, server := net.Pipe()
	go func() {
		_ = tls.Client(client, &tls.Config{ServerName: "db.example.com", NextProtos: []string{"h2"}}).Handshake()
	}()
	buf := make([]byte, tcp.MaxClientHello)
	n := 0
	for {
		m, err := server.Read(buf[n:])
		n += m
		h, perr := tcp.ParseClientHello(buf[:n])
		if errors.Is(perr, tcp.ErrHelloShort) && err == nil {
			continue
		}
		fmt.Println(string(h.ServerName), tcp.OffersALPN(h.ALPN, "h2"), h.MaxVersion == tls.VersionTLS13, perr)
		break
	}
	_ = server.Close()
	_, err := tcp.ParseClientHello([]byte("GET / HTTP/1.1\r\n"))
	fmt.Println(err)
	// Output:
	// db.example.com true true <nil>
	// tcp: not a TLS ClientHello
}
