package proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"frontdoor/config"
)

// The HTTP/2 engine relays at the frame level, the way HAProxy's mux does:
// golang.org/x/net/http2's Framer reads and writes frames, its hpack package
// decodes and encodes header blocks, and every client stream maps to a
// stream on a pooled backend connection chosen per request by the pool's
// strategy (h2engine_upstream.go). There is one goroutine per connection
// (its reader), none per stream: a stream is a pooled struct
// (h2engine_stream.go) that the readers of its client connection and of its
// backend connection move along under the client connection's lock. Frames
// produced while a reader works through what one read(2) returned are
// written with one write(2) per connection (h2engine_wire.go).
//
// Every decision is the core's: a stream's request head becomes a fasthttp
// request on the stream's own RequestCtx, and begin, pick, attempted and
// end (core_exchange.go) route it, run the JWT stage, set the forwarding
// headers and request ID, pick the backend, retry, eject and log, as for
// HTTP/1.1. A pool that speaks h2c gets the stream as HTTP/2 frames; a pool
// that speaks HTTP/1.1 gets it translated (h2engine_h1.go).

// h2Limits are a listener's HTTP/2 settings ([listener.http2]) and the
// timeouts its streams keep.
type h2Limits struct {
	maxStreams   uint32 // SETTINGS_MAX_CONCURRENT_STREAMS we advertise
	streamWindow uint32 // SETTINGS_INITIAL_WINDOW_SIZE we advertise
	connWindow   uint32 // the connection window we keep open
	maxFrame     uint32 // SETTINGS_MAX_FRAME_SIZE we advertise
	maxHeader    int    // max_header_bytes: the decoded header list
	read, write  time.Duration
	idle         time.Duration
}

// Flood limits (README, "HTTP/2 limits"): fixed, as HAProxy's and nginx's
// are; each answers with GOAWAY ENHANCE_YOUR_CALM and closes.
const (
	// h2MaxHeaderBlock bounds one header block as sent (HEADERS and its
	// CONTINUATION frames): a CONTINUATION flood ends here.
	h2MaxHeaderBlock = 64 << 10
	// h2MaxResets and h2ResetsPerSecond bound the streams a client resets
	// before their answer began (rapid reset, CVE-2023-44487): 200 at
	// once, then 100 a second.
	h2MaxResets       = 200
	h2ResetsPerSecond = 100
	// h2MaxControlPerSecond bounds PING and SETTINGS frames in one second
	// during which frontdoor sent no HEADERS or DATA on the connection.
	h2MaxControlPerSecond = 100
	// h2MaxQueued bounds the bytes waiting to be written to a peer beyond
	// its flow-control window: control frames it makes us answer but does
	// not read.
	h2MaxQueued = 1 << 20
	// h2DynamicTable is the HPACK dynamic table size both sides keep (the
	// protocol's default, never raised).
	h2DynamicTable = 4096
)

func h2LimitsOf(lc *config.Listener) h2Limits {
	h := lc.HTTP2
	return h2Limits{
		maxStreams:   uint32(h.MaxConcurrentStreams),
		streamWindow: uint32(h.InitialWindowSize),
		connWindow:   uint32(max(h.InitialWindowSize*4, 1<<20)),
		maxFrame:     uint32(h.MaxFrameSize),
		maxHeader:    lc.MaxHeaderBytes,
		read:         lc.ReadTimeout.Duration,
		write:        lc.WriteTimeout.Duration,
		idle:         lc.IdleTimeout.Duration,
	}
}

// h2Engine serves the HTTP/2 connections of one http listener.
type h2Engine struct {
	l      *httpListener
	limits h2Limits

	mu       sync.Mutex
	conns    map[*h2Conn]struct{}
	draining bool
	idle     chan struct{} // closed when draining and the last connection ended
	stop     chan struct{} // ends the sweeper
	stopOnce sync.Once
	// second is the clock in Unix seconds, as the sweeper last read it:
	// the Date of answers (h2Conn.date).
	second atomic.Int64
}

func newH2Engine(l *httpListener, lim h2Limits) *h2Engine {
	e := &h2Engine{l: l, limits: lim, conns: map[*h2Conn]struct{}{}, stop: make(chan struct{})}
	e.second.Store(time.Now().Unix())
	go e.sweep()
	return e
}

// serve runs one client connection that opened with the HTTP/2 preface,
// until it ends. buffered is what was read from it so far (a TLS
// connection that chose h2 by ALPN: nothing yet; its preface is read here,
// within read_timeout). client, when valid, is the address a PROXY
// protocol header named (the connection's peer is then via); tlsc is the
// TLS handshake, nil on a plain connection.
func (e *h2Engine) serve(nc net.Conn, buffered []byte, client netip.AddrPort, tlsc *tlsConnInfo) {
	if len(buffered) < len(h2Preface) {
		if e.limits.read > 0 {
			_ = nc.SetReadDeadline(time.Now().Add(e.limits.read))
		}
		rest := make([]byte, len(h2Preface)-len(buffered))
		if _, err := io.ReadFull(nc, rest); err != nil {
			_ = nc.Close()
			return
		}
		buffered = append(buffered, rest...)
	}
	if !bytes.HasPrefix(buffered, h2Preface) {
		_ = nc.Close()
		return
	}
	c := newH2Conn(e, nc, client)
	c.tlsc = tlsc
	e.mu.Lock()
	if e.draining {
		e.mu.Unlock()
		c.refuseAll()
		return
	}
	e.conns[c] = struct{}{}
	e.mu.Unlock()
	c.run(buffered[len(h2Preface):])
	e.mu.Lock()
	delete(e.conns, c)
	if e.draining && len(e.conns) == 0 && e.idle != nil {
		close(e.idle)
		e.idle = nil
	}
	e.mu.Unlock()
}

// h2SweepEvery is how often the sweeper checks deadlines: response and
// grpc-timeout deadlines, stalled streams, idle connections. Timeouts are
// therefore up to this late.
const h2SweepEvery = 50 * time.Millisecond

// sweep enforces the streams' and connections' deadlines, one goroutine
// per listener instead of a timer per stream.
func (e *h2Engine) sweep() {
	t := time.NewTicker(h2SweepEvery)
	defer t.Stop()
	var cs []*h2Conn
	var fl h2Flusher
	for {
		select {
		case <-e.stop:
			return
		case now := <-t.C:
			e.second.Store(now.Unix())
			e.mu.Lock()
			cs = cs[:0]
			for c := range e.conns {
				cs = append(cs, c)
			}
			e.mu.Unlock()
			for _, c := range cs {
				c.expire(now, &fl)
			}
			fl.flush()
			clear(cs)
		}
	}
}

// shutdown sends GOAWAY to every connection, lets their streams finish and
// returns when they all closed, or when ctx ends (the rest are closed then).
func (e *h2Engine) shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.draining = true
	idle := make(chan struct{})
	if len(e.conns) == 0 {
		close(idle)
	} else {
		e.idle = idle
	}
	cs := make([]*h2Conn, 0, len(e.conns))
	for c := range e.conns {
		cs = append(cs, c)
	}
	e.mu.Unlock()
	for _, c := range cs {
		c.goAway()
	}
	var err error
	select {
	case <-idle:
	case <-ctx.Done():
		err = ctx.Err()
		for _, c := range cs {
			c.abort()
		}
	}
	e.stopOnce.Do(func() { close(e.stop) })
	return err
}

// h2Errors counts a GOAWAY frontdoor sent for code.
func (l *httpListener) h2Errors(code http2.ErrCode) {
	if l.goAways != nil {
		l.goAways.WithLabelValues(code.String()).Inc()
	}
}
