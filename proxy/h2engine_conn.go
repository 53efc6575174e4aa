package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Conn is one client connection of the HTTP/2 engine. Its reader
// goroutine (run) reads frames; everything about the connection and its
// streams is under mu, which backend readers take too to relay answers.
// Lock order: an h2Conn's mu before a backend connection's (h2Back.mu),
// never the other way round.
type h2Conn struct {
	e    *h2Engine
	l    *httpListener
	conn net.Conn
	addr net.TCPAddr    // the client, as ctx.RemoteAddr
	via  netip.AddrPort // the peer, when a PROXY header named the client
	tlsc *tlsConnInfo   // the TLS handshake; nil: plain (h2c)

	br  *bufio.Reader
	rfr *h2FrameReader
	dec *hpack.Decoder
	rfl h2Flusher // the reader's

	mu   sync.Mutex
	wire h2Wire
	// fl is the flusher of the goroutine that holds mu: whoever takes mu
	// sets it, and the wires written to under mu are flushed by that
	// goroutine before it blocks.
	fl      *h2Flusher
	enc     h2Enc
	streams map[uint32]*h2Stream
	free    []*h2Stream
	maxID   uint32 // the highest stream ID the client opened
	open    int    // streams counted against max_concurrent_streams

	// The client's settings.
	peerMaxFrame  uint32
	peerWindow    int32 // SETTINGS_INITIAL_WINDOW_SIZE
	sendWindow    int64 // connection window for our DATA
	recvWindow    int64 // connection window the client may still fill
	recvConsumed  int64 // received and passed on, not yet credited
	settingsAcked bool

	// The header block being read (HEADERS then CONTINUATION).
	hdr h2HeaderBlock

	// Flood accounting: token buckets that refill at the limit per
	// second (a window on the clock's seconds would let twice the limit
	// through across a boundary).
	resets   h2Bucket
	controls h2Bucket

	dateBuf []byte
	dateSec int64

	goingAway bool // GOAWAY sent: no new streams
	closed    bool
	// lastActive is when frames last arrived, or when the sweeper last saw
	// a stream open (expire): the flood buckets' clock and idle_timeout's.
	lastActive time.Time
}

// h2HeaderBlock is the header block being decoded.
type h2HeaderBlock struct {
	stream    uint32
	endStream bool
	size      int  // bytes of the block so far, as sent
	listSize  int  // decoded size, RFC 9113 6.5.2's way
	tooBig    bool // the decoded list passed max_header_bytes
	trailers  bool // a second block on an open stream
	fields    []hpack.HeaderField
}

func newH2Conn(e *h2Engine, nc net.Conn, client netip.AddrPort) *h2Conn {
	c := &h2Conn{e: e, l: e.l, conn: nc, streams: make(map[uint32]*h2Stream)}
	if client.IsValid() {
		c.addr = *net.TCPAddrFromAddrPort(client)
		if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
			if ip, ok := netip.AddrFromSlice(a.IP); ok {
				c.via = netip.AddrPortFrom(ip.Unmap(), uint16(a.Port))
			}
		}
	} else if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		c.addr = *a
	}
	c.wire.init(nc, &c.mu, e.limits.write)
	c.enc.init()
	c.fl = &c.rfl
	c.peerMaxFrame = 16384
	c.peerWindow = 65535
	c.sendWindow = 65535
	c.recvWindow = 65535
	c.lastActive = time.Now()
	return c
}

// refuseAll answers a connection that came while the listener drains:
// GOAWAY, then close.
func (c *h2Conn) refuseAll() {
	c.mu.Lock()
	_ = c.wire.fr.WriteSettings()
	_ = c.wire.fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	c.wire.send()
	c.mu.Unlock()
	_ = c.conn.Close()
}

// h2ReadBuffer is a client connection's read buffer: many small frames per
// read(2).
const h2ReadBuffer = 32 << 10

// run serves the connection until it ends. rest is what was read after the
// preface.
func (c *h2Conn) run(rest []byte) {
	lim := c.e.limits
	c.br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(rest), c.conn), h2ReadBuffer)
	if len(rest) == 0 {
		c.br.Reset(c.conn)
	}
	c.rfr = newH2FrameReader(c.br, lim.maxFrame)
	c.dec = hpack.NewDecoder(h2DynamicTable, c.emitField)
	c.dec.SetMaxStringLength(h2MaxHeaderBlock)

	c.mu.Lock()
	_ = c.wire.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: lim.maxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: lim.streamWindow},
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: lim.maxFrame},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(lim.maxHeader)},
	)
	if lim.connWindow > 65535 {
		_ = c.wire.fr.WriteWindowUpdate(0, lim.connWindow-65535)
		c.recvWindow = int64(lim.connWindow)
	}
	c.rfl.mark(&c.wire)
	c.mu.Unlock()
	c.rfl.flush()

	if lim.read > 0 {
		// The client's preface SETTINGS must come within read_timeout.
		_ = c.conn.SetReadDeadline(time.Now().Add(lim.read))
	}
	var err error
	for {
		// One clock read per read(2), not per frame: the frames of one
		// read arrived together.
		woke := !h2FrameBuffered(c.br)
		if woke {
			c.rfl.flush()
		}
		var f http2.Frame
		f, err = c.rfr.read()
		if err != nil {
			break
		}
		c.mu.Lock()
		c.fl = &c.rfl
		if woke {
			c.lastActive = time.Now()
		}
		err = c.frame(f)
		c.mu.Unlock()
		if err != nil {
			break
		}
	}
	c.end(err)
}

// errH2Closed ends the reader after a GOAWAY frontdoor sent on purpose.
var errH2Closed = errors.New("proxy: http2 connection closed")

// frame handles one frame from the client; mu is held. A non-nil error
// ends the connection (after the GOAWAY it may have written).
func (c *h2Conn) frame(f http2.Frame) error {
	if c.closed {
		return errH2Closed
	}
	if !c.settingsAcked {
		// The client's preface must open with SETTINGS.
		if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
			return c.goAwayErr(http2.ErrCodeProtocol, "the client preface must start with SETTINGS")
		}
		c.settingsAcked = true
		_ = c.conn.SetReadDeadline(time.Time{})
	}
	switch f := f.(type) {
	case *http2.DataFrame:
		return c.data(f)
	case *h2Headers:
		return c.headers(f)
	case *http2.ContinuationFrame:
		return c.continuation(f)
	case *http2.RSTStreamFrame:
		return c.rstStream(f)
	case *http2.SettingsFrame:
		return c.settings(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		if !c.control() {
			return c.goAwayErr(http2.ErrCodeEnhanceYourCalm, "too many PING frames")
		}
		_ = c.wire.fr.WritePing(true, f.Data)
		c.fl.mark(&c.wire)
		return nil
	case *http2.WindowUpdateFrame:
		return c.windowUpdate(f)
	case *http2.GoAwayFrame:
		// The client opens no more streams; the ones open finish.
		c.goingAway = true
		if c.open == 0 {
			return errH2Closed
		}
		return nil
	case *http2.PushPromiseFrame:
		return c.goAwayErr(http2.ErrCodeProtocol, "clients must not push")
	}
	return nil // PRIORITY and unknown frames are ignored
}

// control counts a PING or SETTINGS frame against the flood limit.
func (c *h2Conn) control() bool {
	return c.controls.take(c.lastActive, h2MaxControlPerSecond, h2MaxControlPerSecond) && c.wire.pending() <= h2MaxQueued
}

// h2Bucket is a token bucket: burst tokens at most, rate more a second.
type h2Bucket struct {
	tokens float64
	at     time.Time
}

// take takes a token at now; false: none was left.
func (b *h2Bucket) take(now time.Time, burst, rate float64) bool {
	if b.at.IsZero() {
		b.tokens = burst
	} else {
		b.tokens = min(burst, b.tokens+now.Sub(b.at).Seconds()*rate)
	}
	b.at = now
	b.tokens--
	return b.tokens >= 0
}

// refill fills the bucket (the client is being answered: its pings are
// no flood).
func (b *h2Bucket) refill() { b.at = time.Time{} }

func (c *h2Conn) settings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	if !c.control() {
		return c.goAwayErr(http2.ErrCodeEnhanceYourCalm, "too many SETTINGS frames")
	}
	for i := range f.NumSettings() {
		s := f.Setting(i)
		if err := s.Valid(); err != nil {
			var ce http2.ConnectionError
			code := http2.ErrCodeProtocol
			if errors.As(err, &ce) {
				code = http2.ErrCode(ce)
			}
			return c.goAwayErr(code, "invalid SETTINGS value")
		}
		switch s.ID {
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = s.Val
		case http2.SettingHeaderTableSize:
			c.enc.enc.SetMaxDynamicTableSize(min(s.Val, h2DynamicTable))
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - int64(c.peerWindow)
			c.peerWindow = int32(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
				if st.sendWindow > 1<<31-1 {
					return c.goAwayErr(http2.ErrCodeFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream window")
				}
			}
			if delta > 0 {
				c.pushAll()
			}
		}
	}
	_ = c.wire.fr.WriteSettingsAck()
	c.fl.mark(&c.wire)
	return nil
}

func (c *h2Conn) windowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		c.sendWindow += inc
		if c.sendWindow > 1<<31-1 {
			return c.goAwayErr(http2.ErrCodeFlowControl, "connection window above 2^31-1")
		}
		c.pushAll()
		return nil
	}
	s := c.streams[f.StreamID]
	if s == nil {
		return nil // a stream that ended meanwhile
	}
	s.sendWindow += inc
	if s.sendWindow > 1<<31-1 {
		c.resetStream(s, http2.ErrCodeFlowControl, "flow_control")
		return nil
	}
	s.push()
	return nil
}

// pushAll sends what waits for the client's window on every stream.
func (c *h2Conn) pushAll() {
	for _, s := range c.streams {
		if c.sendWindow <= 0 {
			return
		}
		if len(s.respPending) > 0 || s.respEndPending {
			s.push()
		}
	}
}

func (c *h2Conn) rstStream(f *http2.RSTStreamFrame) error {
	s := c.streams[f.StreamID]
	if s == nil {
		if f.StreamID > c.maxID {
			return c.goAwayErr(http2.ErrCodeProtocol, "RST_STREAM on an idle stream")
		}
		return nil
	}
	if !s.headSent && !c.resets.take(c.lastActive, h2MaxResets, h2ResetsPerSecond) {
		s.clientReset()
		return c.goAwayErr(http2.ErrCodeEnhanceYourCalm, "too many streams reset")
	}
	s.clientReset()
	return nil
}

func (c *h2Conn) headers(f *h2Headers) error {
	id := f.StreamID
	c.hdr = h2HeaderBlock{stream: id, endStream: f.StreamEnded(), fields: c.hdr.fields[:0]}
	if s := c.streams[id]; s != nil {
		if !f.StreamEnded() || s.reqEnded {
			return c.goAwayErr(http2.ErrCodeProtocol, "HEADERS on an open stream must be trailers ending it")
		}
		c.hdr.trailers = true
	} else if id <= c.maxID {
		return c.goAwayErr(http2.ErrCodeStreamClosed, "HEADERS on a closed stream")
	}
	return c.block(f.fragment, f.HeadersEnded())
}

func (c *h2Conn) continuation(f *http2.ContinuationFrame) error {
	return c.block(f.HeaderBlockFragment(), f.HeadersEnded())
}

// block decodes a fragment of the current header block, and serves it when
// it ends. The decoder runs on every block, even one the stream will refuse:
// its dynamic table must follow the client's.
func (c *h2Conn) block(frag []byte, end bool) error {
	c.hdr.size += len(frag)
	if c.hdr.size > h2MaxHeaderBlock {
		return c.goAwayErr(http2.ErrCodeEnhanceYourCalm, "header block above 64 KiB")
	}
	if _, err := c.dec.Write(frag); err != nil {
		return c.goAwayErr(http2.ErrCodeCompression, "HPACK decoding failed")
	}
	if !end {
		return nil
	}
	if err := c.dec.Close(); err != nil {
		return c.goAwayErr(http2.ErrCodeCompression, "HPACK decoding failed")
	}
	c.dec.SetEmitEnabled(true)
	h := &c.hdr
	if h.trailers {
		if s := c.streams[h.stream]; s != nil {
			s.clientTrailers(h.fields)
		}
		return nil
	}
	if h.stream%2 == 0 {
		return c.goAwayErr(http2.ErrCodeProtocol, "client stream IDs are odd")
	}
	c.maxID = h.stream
	if c.goingAway {
		c.rst(h.stream, http2.ErrCodeRefusedStream)
		return nil
	}
	if c.open >= int(c.e.limits.maxStreams) {
		c.rst(h.stream, http2.ErrCodeRefusedStream)
		return nil
	}
	s := c.newStream(h.stream)
	s.request(h)
	return nil
}

// emitField collects a decoded header field of the current block; past
// max_header_bytes it only counts, and the stream gets 431.
func (c *h2Conn) emitField(f hpack.HeaderField) {
	h := &c.hdr
	h.listSize += len(f.Name) + len(f.Value) + 32
	if h.listSize > c.e.limits.maxHeader {
		h.tooBig = true
		c.dec.SetEmitEnabled(false)
		return
	}
	h.fields = append(h.fields, f)
}

// data takes request body bytes for a stream.
func (c *h2Conn) data(f *http2.DataFrame) error {
	n := int64(f.Length) // padding included: it counts against windows
	c.recvWindow -= n
	if c.recvWindow < 0 {
		return c.goAwayErr(http2.ErrCodeFlowControl, "DATA beyond the connection window")
	}
	s := c.streams[f.StreamID]
	if s == nil || s.reqEnded {
		if f.StreamID > c.maxID {
			return c.goAwayErr(http2.ErrCodeProtocol, "DATA on an idle stream")
		}
		// A stream frontdoor answered and reset, or one the client
		// ended: its late DATA is ignored (RFC 9113 5.1), its window
		// given back.
		c.consumed(nil, n)
		return nil
	}
	s.recvWindow -= n
	if s.recvWindow < 0 {
		// A client that overruns a window it was given is broken.
		return c.goAwayErr(http2.ErrCodeFlowControl, "DATA beyond the stream window")
	}
	d := f.Data()
	if pad := n - int64(len(d)); pad > 0 {
		c.consumed(nil, pad)
	}
	s.requestData(d, f.StreamEnded())
	return nil
}

// consumed credits n bytes back to the client once they are passed on:
// connection-wide, and on stream s unless it ended or is nil. Credit goes
// out when half a window is owed, so a stream of small messages costs few
// WINDOW_UPDATE frames.
func (c *h2Conn) consumed(s *h2Stream, n int64) {
	c.recvConsumed += n
	if c.recvConsumed >= int64(c.e.limits.connWindow)/2 {
		_ = c.wire.fr.WriteWindowUpdate(0, uint32(c.recvConsumed))
		c.recvWindow += c.recvConsumed
		c.recvConsumed = 0
		c.fl.mark(&c.wire)
	}
	if s == nil || s.reqEnded {
		return
	}
	s.recvConsumed += n
	if s.recvConsumed >= int64(c.e.limits.streamWindow)/2 {
		_ = c.wire.fr.WriteWindowUpdate(s.id, uint32(s.recvConsumed))
		s.recvWindow += s.recvConsumed
		s.recvConsumed = 0
		c.fl.mark(&c.wire)
	}
}

// rst resets stream id, which has no state here.
func (c *h2Conn) rst(id uint32, code http2.ErrCode) {
	_ = c.wire.fr.WriteRSTStream(id, code)
	c.fl.mark(&c.wire)
}

// goAwayErr sends GOAWAY with code and ends the connection: the reader
// stops and end cleans up. debug is sent as GOAWAY's debug data.
func (c *h2Conn) goAwayErr(code http2.ErrCode, debug string) error {
	if !c.closed {
		c.closed = true
		_ = c.wire.fr.WriteGoAway(c.maxID, code, []byte(debug))
		c.wire.send()
		c.l.h2Errors(code)
	}
	return errH2Closed
}

// goAway starts a graceful close (drain, reload): GOAWAY NO_ERROR with
// the last stream ID; the open streams finish, then the connection closes.
func (c *h2Conn) goAway() {
	c.mu.Lock()
	defer c.mu.Unlock()
	var fl h2Flusher
	c.fl = &fl
	defer fl.flush()
	if c.goingAway || c.closed {
		return
	}
	c.goingAway = true
	_ = c.wire.fr.WriteGoAway(c.maxID, http2.ErrCodeNo, nil)
	c.wire.send()
	if c.open == 0 {
		c.closeLocked()
	}
}

// abort closes the connection at once (the drain's time ran out).
func (c *h2Conn) abort() {
	c.mu.Lock()
	c.closed = true
	_ = c.conn.Close()
	c.mu.Unlock()
}

// closeLocked ends the connection once what is queued for it is written.
func (c *h2Conn) closeLocked() {
	c.closed = true
	c.wire.closeAfter()
}

// end cleans up after the reader stopped: every stream still open ends as
// the client's going away.
func (c *h2Conn) end(err error) {
	c.mu.Lock()
	c.fl = &c.rfl
	c.closed = true
	for _, s := range c.streams {
		s.clientReset()
	}
	if !errors.Is(err, errH2Closed) && !c.wire.dead {
		// A protocol error the Framer found: tell the client which.
		var ce http2.ConnectionError
		if errors.As(err, &ce) {
			_ = c.wire.fr.WriteGoAway(c.maxID, http2.ErrCode(ce), nil)
			c.l.h2Errors(http2.ErrCode(ce))
		} else if errors.Is(err, http2.ErrFrameTooLarge) {
			_ = c.wire.fr.WriteGoAway(c.maxID, http2.ErrCodeFrameSize, nil)
			c.l.h2Errors(http2.ErrCodeFrameSize)
		}
		c.wire.send()
	}
	c.wire.stop()
	c.mu.Unlock()
	c.rfl.flush()
	// Let the GOAWAY leave before the close: a close with unread input
	// would send RST and the client could lose it.
	if tc, ok := c.conn.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	_ = c.conn.Close()
}

// expire applies the deadlines at now: streams past their response or
// gRPC deadline, streams the client has not let move for write_timeout,
// and an idle connection.
func (c *h2Conn) expire(now time.Time, fl *h2Flusher) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fl = fl
	if c.closed {
		return
	}
	if c.open > 0 && now.After(c.lastActive) {
		c.lastActive = now // busy: idle_timeout counts from the last stream's end
	}
	for _, s := range c.streams {
		s.expire(now)
	}
	lim := c.e.limits
	if c.open == 0 && lim.idle > 0 && now.Sub(c.lastActive) > lim.idle {
		c.goingAway = true
		_ = c.wire.fr.WriteGoAway(c.maxID, http2.ErrCodeNo, nil)
		c.wire.send()
		c.closeLocked()
		return
	}
	if c.open == 0 && c.goingAway {
		c.closeLocked()
	}
}

// newStream opens stream id from the free list.
func (c *h2Conn) newStream(id uint32) *h2Stream {
	var s *h2Stream
	if n := len(c.free); n > 0 {
		s = c.free[n-1]
		c.free = c.free[:n-1]
	} else {
		s = &h2Stream{c: c}
		s.rider, s.mu, s.fl, s.reqHead = s, &c.mu, &c.fl, &s.ctx.Request.Header
	}
	s.open(id)
	c.streams[id] = s
	c.open++
	return s
}

// h2MaxFreeStreams bounds the stream structs a connection keeps for reuse.
const h2MaxFreeStreams = 128

// release returns s, which ended, to the free list.
func (c *h2Conn) release(s *h2Stream) {
	if n := len(s.reqPending); n > 0 {
		// Body bytes that never went to a backend: the client gets
		// them back.
		c.consumed(nil, int64(n))
		s.reqPending = s.reqPending[:0]
	}
	delete(c.streams, s.id)
	c.open--
	s.gen++
	if s.h1Running {
		// Its goroutine still holds the RequestCtx: it stops, and
		// recycles the stream when it is done (h1Done).
		s.h1Gone = true
		s.h1Wakeup()
	} else {
		c.recycle(s)
	}
	if c.open == 0 && c.goingAway {
		c.closeLocked()
	}
}

// date is the Date value for answers, from the engine's clock (the
// sweeper's, to 50 ms): one formatting a second per connection, no clock
// read per answer.
func (c *h2Conn) date() []byte {
	if sec := c.e.second.Load(); sec != c.dateSec || len(c.dateBuf) == 0 {
		c.dateSec = sec
		c.dateBuf = fasthttp.AppendHTTPDate(c.dateBuf[:0], time.Unix(sec, 0))
	}
	return c.dateBuf
}

// recycle keeps an ended stream for reuse.
func (c *h2Conn) recycle(s *h2Stream) {
	if len(c.free) < h2MaxFreeStreams {
		c.free = append(c.free, s)
	}
}

// writeHead writes the header block encoded in c.enc.buf as stream id's
// HEADERS (and CONTINUATION) frames.
func (c *h2Conn) writeHead(id uint32, end bool) {
	c.wire.headerBlock(id, c.enc.buf, end, c.peerMaxFrame)
	c.enc.buf = c.enc.buf[:0]
	c.controls.refill()
	c.fl.mark(&c.wire)
}
