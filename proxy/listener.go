package proxy

import (
	"bytes"
	"errors"
	"frontdoor/internal/splice"
	"frontdoor/proxy/internal/requestid"
	"frontdoor/proxy/tcp"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"
)

// h2Preface is what an HTTP/2 client with prior knowledge (h2c, gRPC) sends
// first.
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// connListener wraps a bound socket for fasthttp: it counts connections for
// the metrics, enforces max_connections (excess connections are closed at
// once), and hands connections that open with the HTTP/2 preface to the h2c
// server. Detection happens inside the first Read that fasthttp makes anyway,
// so HTTP/1.1 connections pay one branch per read, not a goroutine or a
// syscall.
type connListener struct {
	net.Listener
	maxConns int64
	open     atomic.Int64
	// h2, if set, serves a connection that began with the HTTP/2 preface,
	// or chose h2 by ALPN on a TLS listener: the connection, the bytes read
	// from it so far, the client a PROXY protocol header named (invalid:
	// none) and, on TLS, the handshake. Set before serving starts.
	h2 func(nc net.Conn, buffered []byte, client netip.AddrPort, tlsc *tlsConnInfo)

	// tls, on a listener with [listener.tls], is its current TLS front
	// (tls_front.go), swapped by reloads; nil on a plain listener.
	// tlsStats are its metric children; readTimeout is read_timeout,
	// which the first request gets after the handshake.
	tls         atomic.Pointer[tlsFront]
	tlsStats    *tlsStats
	terminates  bool
	readTimeout time.Duration

	active   prometheus.Gauge
	total    prometheus.Counter
	rejected prometheus.Counter

	// acceptProxy: every connection opens with a PROXY protocol header
	// (accept_proxy), whose source address is the client's from then on;
	// a connection without a valid one is closed and counted in
	// proxyRejected.
	acceptProxy   bool
	proxyRejected prometheus.Counter

	// handedOver is set when a reload gave the socket to a new server: this
	// wrapper's Accept then ends its server's Serve, and Close leaves the
	// socket open.
	handedOver atomic.Bool

	// loops, when set, accept from the socket (loop.go); fasthttp's Serve
	// then only waits in Accept for quit, and serves the connections the
	// loops hand over through serve (Server.ServeConn, which its Shutdown
	// tracks while Serve runs).
	loops    []*evLoop
	serve    func(net.Conn) error
	quit     chan struct{}
	quitOnce sync.Once
}

// stopLoops makes the event loops stop accepting and ends Accept.
func (l *connListener) stopLoops() {
	for _, lp := range l.loops {
		lp.stopAccepting()
	}
	l.quitOnce.Do(func() { close(l.quit) })
}

// handoffConn serves a connection an event loop gave up, with the bytes the
// loop read from it first. It is counted already. On a listener with
// accept_proxy the loop has read the PROXY protocol header: client is the
// address it named (invalid: none, the peer stands).
func (l *connListener) handoffConn(nc net.Conn, buffered []byte, client netip.AddrPort) {
	var sc *sniffConn
	if tc, ok := nc.(*net.TCPConn); ok {
		cc := &clientConn{dc: deferConn{Conn: tc, client: true}}
		cc.sniffConn = sniffConn{Conn: &cc.dc, l: l}
		sc = &cc.sniffConn
	} else {
		sc = &sniffConn{Conn: nc, l: l}
	}
	sc.replay = bytes.Clone(buffered)
	sc.proxyRead = l.acceptProxy
	if client.IsValid() {
		sc.setClient(client)
	}
	go func() { _ = l.serve(sc) }()
}

func (l *connListener) Accept() (net.Conn, error) {
	if l.loops != nil {
		<-l.quit
		return nil, io.EOF
	}
	for {
		c, err := l.Listener.Accept()
		if l.handedOver.Load() {
			if err == nil {
				// Accepted in the instant of the hand-over: serve it here,
				// the old server drains it like any other.
				if conn, rerr := l.admit(c); rerr == nil {
					return conn, nil
				}
			}
			return nil, io.EOF // fasthttp's Serve returns nil on EOF
		}
		if err != nil {
			return nil, err
		}
		if conn, rerr := l.admit(c); rerr == nil {
			return conn, nil
		}
	}
}

// admit applies max_connections to c and wraps it; it returns a nil error
// only when c was admitted.
func (l *connListener) admit(c net.Conn) (net.Conn, error) {
	if l.open.Add(1) > l.maxConns {
		l.open.Add(-1)
		l.rejected.Inc()
		_ = c.Close()
		return nil, errRejected
	}
	l.total.Inc()
	l.active.Inc()
	if tc, ok := c.(*net.TCPConn); ok && !l.terminates {
		cc := &clientConn{dc: deferConn{Conn: tc, client: true}} // as newDeferConn(tc, true)
		cc.sniffConn = sniffConn{Conn: &cc.dc, l: l}
		return &cc.sniffConn, nil
	}
	return &sniffConn{Conn: c, l: l}, nil
}

// clientConn puts a TCP client connection's sniffConn and the deferConn under
// it in one allocation: one malloc per accepted connection instead of two.
// fasthttp gets &sniffConn, which keeps the whole struct alive.
type clientConn struct {
	sniffConn
	dc deferConn
}

var errRejected = errors.New("proxy: connection over max_connections")

// Close closes the socket, unless it was handed over to another server.
func (l *connListener) Close() error {
	if l.loops != nil {
		l.stopLoops()
	}
	if l.handedOver.Load() {
		return nil
	}
	return l.Listener.Close()
}

// handOver stops this wrapper's server from accepting, without closing the
// socket or refusing a connection (new ones wait in the backlog), and returns
// once that server's Serve has returned.
func (l *connListener) handOver(served <-chan struct{}) {
	l.handedOver.Store(true)
	if l.loops != nil {
		l.stopLoops()
		<-served
		return
	}
	type deadliner interface{ SetDeadline(time.Time) error }
	if d, ok := l.Listener.(deadliner); ok {
		_ = d.SetDeadline(time.Now())
		<-served
		_ = d.SetDeadline(time.Time{})
		return
	}
	<-served
}

// sniffConn is a client connection of an http listener.
type sniffConn struct {
	net.Conn
	l *connListener
	// replay is what an event loop read before handing the connection
	// over; reads return it first.
	replay    []byte
	sniffed   bool
	handedOff bool
	closeOnce sync.Once
	// proxyRead: the PROXY protocol header (accept_proxy) was read, or
	// the event loop read it before the hand-off. client, when set, is
	// the client address it named; via is then the connection's own peer
	// (the balancer in front).
	proxyRead bool
	client    *net.TCPAddr
	via       netip.AddrPort
	// tlsc, on a TLS connection, holds what requests need of its
	// handshake (tls_front.go); nil on a plain one.
	tlsc *tlsConnInfo
}

// RemoteAddr is the client: the PROXY protocol header's source when the
// listener accepts one, else the peer.
func (c *sniffConn) RemoteAddr() net.Addr {
	if c.client != nil {
		return c.client
	}
	return c.Conn.RemoteAddr()
}

// readProxyHeader reads the PROXY protocol header that opens the
// connection (accept_proxy), keeps what follows it for the next reads, and
// takes the client address from it. A connection that does not open with a
// valid header is counted and ends with io.EOF, which fasthttp takes for a
// close before the first request: no answer, as on the event loop.
func (c *sniffConn) readProxyHeader() error {
	c.proxyRead = true
	buf := make([]byte, 0, 256)
	var tmp [256]byte
	for {
		h, err := tcp.ParseProxyHeader(buf)
		if err == nil && h.Length <= len(buf) {
			c.replay = append(buf[h.Length:], c.replay...)
			if !h.Local {
				c.setClient(h.Source)
			}
			return nil
		}
		if err != nil && !errors.Is(err, tcp.ErrProxyShort) || len(buf) > 16+65535 {
			c.l.proxyRejected.Inc()
			return io.EOF
		}
		n, rerr := c.readRaw(tmp[:])
		buf = append(buf, tmp[:n]...)
		if rerr != nil && n == 0 {
			if rerr != io.EOF {
				return rerr
			}
			c.l.proxyRejected.Inc()
			return io.EOF
		}
	}
}

// setClient makes src the connection's client address, keeping the peer
// as via.
func (c *sniffConn) setClient(src netip.AddrPort) {
	if a, ok := c.Conn.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			c.via = netip.AddrPortFrom(ip.Unmap(), uint16(a.Port))
		}
	}
	c.client = net.TCPAddrFromAddrPort(src)
}

// Read detects the HTTP/2 preface on the first read. An HTTP/2 connection is
// handed to the h2c server with the bytes read so far replayed, and fasthttp
// sees a clean EOF. On a listener with accept_proxy, the PROXY protocol
// header is read first.
func (c *sniffConn) Read(p []byte) (int, error) {
	if c.sniffed {
		return c.readRaw(p)
	}
	if c.l.acceptProxy && !c.proxyRead {
		if err := c.readProxyHeader(); err != nil {
			return 0, err
		}
	}
	c.sniffed = true
	if f := c.l.tls.Load(); f != nil {
		ok, h2 := c.handshakeTLS(f) // tls_front.go
		if !ok {
			return 0, io.EOF
		}
		if h2 {
			return c.handOffH2(c.Conn, nil, c.tlsc)
		}
	}
	n, err := c.readRaw(p)
	if n == 0 || p[0] != 'P' {
		return n, err
	}
	h2 := c.l.h2
	if h2 == nil {
		return n, err
	}
	// Read until we can tell: the preface is 24 bytes and usually arrives
	// whole in the first segment.
	got := append([]byte(nil), p[:n]...)
	for err == nil && len(got) < len(h2Preface) && bytes.HasPrefix(h2Preface, got) {
		var m int
		m, err = c.readRaw(p)
		got = append(got, p[:m]...)
	}
	got = append(got, c.replay...)
	c.replay = nil
	if !bytes.HasPrefix(got, h2Preface) {
		// Not HTTP/2 after all: give fasthttp what we read. p is at least
		// as large as its read buffer; replay whatever does not fit.
		rc := &replayConn{Conn: c.Conn, buf: got}
		c.Conn = rc
		return rc.Read(p)
	}
	nc := c.Conn
	if dc, ok := nc.(*deferConn); ok {
		nc = dc.Conn // nothing was written yet: nothing is deferred
	}
	return c.handOffH2(nc, got, nil)
}

// handOffH2 gives the connection nc, with what was read from it so far,
// to the HTTP/2 engine and returns the io.EOF that fasthttp takes for a
// clean close before the first byte.
func (c *sniffConn) handOffH2(nc net.Conn, got []byte, tlsc *tlsConnInfo) (int, error) {
	h2 := c.l.h2
	if h2 == nil {
		return 0, io.EOF
	}
	c.handedOff = true
	var client netip.AddrPort
	if c.client != nil {
		client = c.client.AddrPort()
	}
	go func() {
		defer c.release()
		defer nc.Close()
		h2(nc, got, client, tlsc)
	}()
	return 0, io.EOF
}

// readRaw reads what an event loop left over first, then the socket.
func (c *sniffConn) readRaw(p []byte) (int, error) { return readFirst(&c.replay, p, c.Conn) }

// answered tells the connection that the response being written is whole in
// memory, so its last write may wait for the next read (goengine_deferconn.go).
func (c *sniffConn) answered() {
	if dc, ok := c.Conn.(*deferConn); ok {
		dc.deferNext = true
	}
}

// Close closes the connection unless the h2c server now owns it.
func (c *sniffConn) Close() error {
	if c.handedOff {
		return nil
	}
	c.release()
	return c.Conn.Close()
}

func (c *sniffConn) release() {
	c.closeOnce.Do(func() {
		c.l.open.Add(-1)
		c.l.active.Dec()
	})
}

// replayConn reads buf before reading from the connection. client, when
// set, is its remote address (from a PROXY protocol header).
type replayConn struct {
	net.Conn
	buf    []byte
	client *net.TCPAddr
}

// RemoteAddr is the client's address.
func (c *replayConn) RemoteAddr() net.Addr {
	if c.client != nil {
		return c.client
	}
	return c.Conn.RemoteAddr()
}

func (c *replayConn) Read(p []byte) (int, error) { return readFirst(&c.buf, p, c.Conn) }

// readFirst reads from *buf, consuming it, and from r once it is empty.
func readFirst(buf *[]byte, p []byte, r io.Reader) (int, error) {
	if len(*buf) > 0 {
		n := copy(p, *buf)
		*buf = (*buf)[n:]
		if len(*buf) == 0 {
			*buf = nil // let the array go (a TLS connection keeps its reader)
		}
		return n, nil
	}
	return r.Read(p)
}

// deferAccept sets TCP_DEFER_ACCEPT on an http listener's socket: the kernel
// hands a connection over once its first bytes arrived (an HTTP or h2c
// client speaks first), so the first read finds the request. Without it,
// about two thirds of Connection: close requests (measured) found nothing on
// that read and cost an extra read(2), a park and a wakeup through the
// netpoller. A silent client is accepted after the one second given here.
func deferAccept(ln net.Listener) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 1)
	})
}

// httpListener is one bound http listener. It outlives runtimes: a reload
// that keeps the bind keeps the socket, the fasthttp server and every open
// client connection, and only swaps rt.
type httpListener struct {
	settings listenerSettings
	name     string
	bind     string
	rt       atomic.Pointer[listenerRuntime]
	ln       *connListener
	server   *fasthttp.Server
	ids      *requestid.Generator
	log      *AccessLog
	tracing  *atomic.Pointer[tracer] // the Proxy's (core_trace.go); nil: off
	h2       *h2Engine               // serves connections that open with the HTTP/2 preface
	done     chan struct{}           // closed when Serve returned
	live     liveSet                 // streamed bodies and tunnels (goengine_stream.go)
	pipes    splice.Pool             // pipes of spliced response bodies (goengine_splice.go)
	logger   *slog.Logger
	panics   prometheus.Counter     // panics_total{listener}
	goAways  *prometheus.CounterVec // http2_goaway_total{listener}, by code
	// beforeRequest, tests only (Options.beforeRequest), runs first in
	// begin: it can make a request panic.
	beforeRequest func(*fasthttp.RequestCtx)
}
