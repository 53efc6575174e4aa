package proxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Upstream keeps the HTTP/2 connections to one backend of an h2c pool
// (one per poolBackend, so the connection budget and reloads work as for
// HTTP/1.1). Streams go on the first connection with room under the
// backend's SETTINGS_MAX_CONCURRENT_STREAMS; when none has room a new one
// is dialled in the background, and the streams that wait for it are sent
// once it is up.
type h2Upstream struct {
	u  *poolBackend
	mu sync.Mutex
	// conns are the connections that take new streams.
	conns   []*h2Back
	dialing bool
	waiting []h2Ref // streams waiting for the dial
	idle    time.Duration
}

// h2Back is one HTTP/2 connection to a backend. Its reader goroutine
// reads the answers and relays them to the client streams. mu guards the
// wire, the encoder, the stream map and the windows; active and maxStreams
// are the upstream's (h2Upstream.mu).
type h2Back struct {
	up   *h2Upstream
	conn net.Conn
	mu   sync.Mutex
	wire h2Wire
	enc  h2Enc

	streams    map[uint32]*h2Leg
	nextID     uint32
	peerFrame  uint32
	peerWindow int32
	sendWindow int64
	recvWindow int64 // what the backend may still send, connection-wide
	consumedN  int64 // passed on to clients, not yet credited
	dead       bool
	// settled: the backend's SETTINGS came. Request bodies wait for
	// them: a backend may open a stream window below the default 65,535
	// bytes and enforce it at once (Go's net/http server resets the
	// stream with FLOW_CONTROL_ERROR), as clients like Go's and
	// grpc-go's wait too.
	settled    bool
	closeGives bool // the connection's Close gives the budget slot back (TLS)

	active     int  // under up.mu
	maxStreams int  // under up.mu
	goingAway  bool // under up.mu: takes no new streams

	// The reader's own.
	br     *bufio.Reader
	rfr    *h2FrameReader
	dec    *hpack.Decoder
	fl     h2Flusher
	fields []hpack.HeaderField
	grow   []*h2Leg // scratch of windowUpdate
	hdrID  uint32
	hdrEnd bool
	hdrLen int
}

// h2BackWindow is the window frontdoor opens to a backend, per stream and
// for the connection (times 4): a response waits in frontdoor at most this
// long for a slow client.
const h2BackWindow = 256 << 10

// upstreamOf returns u's HTTP/2 upstream, made on first use.
func (u *poolBackend) upstreamH2() *h2Upstream {
	if up := u.h2.Load(); up != nil {
		return up
	}
	up := &h2Upstream{u: u, idle: u.idleTimeout}
	if u.h2.CompareAndSwap(nil, up) {
		return up
	}
	return u.h2.Load()
}

// errH2Refused: the backend refused a stream unprocessed (RST_STREAM
// REFUSED_STREAM, or a GOAWAY below its ID): safe to try elsewhere.
var errH2Refused = errRefusedStream

// upstream starts s on member i's backend (h2Leg.place). Called with
// s.c.mu held.
func (s *h2Stream) upstream(i int) error {
	return s.place(s.x.p.ups[i], s.x.p.cfg.ConnectTimeout.Duration)
}

// dial connects to the backend and sends the streams waiting for it.
func (up *h2Upstream) dial(timeout time.Duration) {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	var nc net.Conn
	var err error
	tlsBudget := false
	if up.u.tlsCfg.Load() != nil {
		// HTTP/2 over TLS (ALPN h2): the connection's Close gives the
		// budget slot back (tls_backend.go).
		nc, err = up.u.dialTLS(context.Background())
		tlsBudget = err == nil
	} else {
		nc, err = net.DialTimeout("tcp", up.u.be.Address(), timeout)
	}
	var b *h2Back
	if err == nil {
		b = newH2Back(up, nc)
		b.closeGives = tlsBudget
	} else {
		up.u.giveConn()
	}
	up.mu.Lock()
	up.dialing = false
	waiting := up.waiting
	up.waiting = nil
	if b != nil {
		up.conns = append(up.conns, b)
	}
	up.mu.Unlock()
	var fl h2Flusher
	for _, r := range waiting {
		l := r.l
		l.mu.Lock()
		*l.fl = &fl
		if r.live() && l.up == up {
			l.up = nil
			l.rider.dialed(b, err)
		}
		l.mu.Unlock()
		fl.flush()
	}
	if b != nil {
		b.run()
	}
}

func newH2Back(up *h2Upstream, nc net.Conn) *h2Back {
	b := &h2Back{up: up, conn: nc, streams: make(map[uint32]*h2Leg), nextID: 1,
		peerFrame: 16384, peerWindow: 65535, sendWindow: 65535, recvWindow: 65535, maxStreams: 100}
	b.wire.init(nc, &b.mu, 0)
	b.enc.init()
	b.br = bufio.NewReaderSize(nc, h2ReadBuffer)
	b.rfr = newH2FrameReader(b.br, 1<<24-1)
	b.dec = hpack.NewDecoder(h2DynamicTable, b.emit)
	b.mu.Lock()
	b.wire.out = append(b.wire.out, h2Preface...)
	_ = b.wire.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2BackWindow},
	)
	_ = b.wire.fr.WriteWindowUpdate(0, 4*h2BackWindow-65535)
	b.recvWindow = 4 * h2BackWindow
	b.wire.send()
	b.mu.Unlock()
	return b
}

func (b *h2Back) emit(f hpack.HeaderField) {
	b.hdrLen += len(f.Name) + len(f.Value) + 32
	if b.hdrLen <= 256<<10 {
		b.fields = append(b.fields, f)
	}
}

// start opens a stream for s on b and sends its head and what it has of
// its body. Called with s's lock held; b.active counts it already. False:
// b died meanwhile, and nothing was sent.
func (b *h2Back) start(s *h2Leg) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dead {
		b.up.mu.Lock()
		b.active--
		b.up.mu.Unlock()
		return false
	}
	id := b.nextID
	b.nextID += 2
	if b.nextID > 1<<31-1 {
		// No IDs left: new streams go to a new connection.
		b.up.mu.Lock()
		b.goingAway = true
		b.up.remove(b)
		b.up.mu.Unlock()
	}
	b.streams[id] = s
	s.b, s.upID, s.upWindow = b, id, int64(b.peerWindow)
	h := s.reqHead
	e := &b.enc
	e.buf = e.buf[:0]
	e.pseudo(":method", h.Method())
	e.pseudo(":scheme", valHTTP)
	e.pseudo(":authority", h.Host())
	e.pseudo(":path", h.RequestURI())
	for k, v := range h.All() {
		e.field(k, v)
	}
	if s.te {
		e.pseudo("te", strTrailers)
	}
	end := s.reqEnded && len(s.reqPending) == 0 && len(s.reqTrailers) == 0
	s.sentEnd = end
	b.wire.headerBlock(id, e.buf, end, b.peerFrame)
	(*s.fl).mark(&b.wire)
	if !end {
		b.sendBodyLocked(s)
	}
	return true
}

var strTrailers = []byte("trailers")

// sendBody sends what s has of its body within the backend's windows.
// Called with s's lock held.
func (b *h2Back) sendBody(s *h2Leg) {
	b.mu.Lock()
	b.sendBodyLocked(s)
	b.mu.Unlock()
}

func (b *h2Back) sendBodyLocked(s *h2Leg) {
	if b.dead || s.b != b || s.sentEnd || !b.settled {
		return
	}
	trailers := len(s.reqTrailers) > 0 // they, not the last DATA, end it
	sent, ended := b.wire.data(s.upID, s.reqPending, s.reqEnded && !trailers, &s.upWindow, &b.sendWindow, b.peerFrame)
	s.sentEnd = ended
	if sent > 0 {
		s.sentBody = true
		s.reqPending = s.reqPending[:copy(s.reqPending, s.reqPending[sent:])]
		(*s.fl).mark(&b.wire)
		s.rider.bodySent(int64(sent))
	}
	if s.reqEnded && len(s.reqPending) == 0 && !s.sentEnd {
		if trailers {
			e := &b.enc
			e.buf = e.buf[:0]
			for _, f := range s.reqTrailers {
				e.field(unsafeBytes(f.Name), unsafeBytes(f.Value))
			}
			b.wire.headerBlock(s.upID, e.buf, true, b.peerFrame)
		} else {
			_ = b.wire.fr.WriteData(s.upID, true, nil)
		}
		s.sentEnd = true
		(*s.fl).mark(&b.wire)
	}
}

// consumed credits n response bytes the client took back to the backend.
// Called with s's lock held.
func (b *h2Back) consumed(s *h2Leg, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s.held -= n
	if b.dead {
		return
	}
	b.credit(s, n)
	if s.b == b && !s.respEnded {
		s.upConsumed += n
		if s.upConsumed >= h2BackWindow/2 {
			_ = b.wire.fr.WriteWindowUpdate(s.upID, uint32(s.upConsumed))
			s.upConsumed = 0
			(*s.fl).mark(&b.wire)
		}
	}
}

// credit gives the backend n bytes of the connection's window back, in
// one WINDOW_UPDATE once they add up to half of it; s's flusher sends it.
// b.mu is held.
func (b *h2Back) credit(s *h2Leg, n int64) {
	b.consumedN += n
	if b.consumedN >= 2*h2BackWindow {
		_ = b.wire.fr.WriteWindowUpdate(0, uint32(b.consumedN))
		b.recvWindow += b.consumedN
		b.consumedN = 0
		(*s.fl).mark(&b.wire)
	}
}

// run reads the backend's frames until the connection ends.
func (b *h2Back) run() {
	var err error
	idleSet := false
	for {
		if !h2FrameBuffered(b.br) {
			b.fl.flush()
			b.up.mu.Lock()
			idle := b.active == 0
			b.up.mu.Unlock()
			if idle && b.up.idle > 0 && !idleSet {
				_ = b.conn.SetReadDeadline(time.Now().Add(b.up.idle))
				idleSet = true
			}
		}
		var f http2.Frame
		f, err = b.rfr.read()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				b.up.mu.Lock()
				busy := b.active > 0
				if !busy {
					b.goingAway = true
					b.up.remove(b)
				}
				b.up.mu.Unlock()
				if busy {
					_ = b.conn.SetReadDeadline(time.Time{})
					idleSet = false
					continue
				}
			}
			break
		}
		if idleSet {
			_ = b.conn.SetReadDeadline(time.Time{})
			idleSet = false
		}
		if err = b.frame(f); err != nil {
			break
		}
	}
	b.end(err)
}

// remove takes b out of the connections that take new streams; up.mu is
// held.
func (up *h2Upstream) remove(b *h2Back) {
	for i, c := range up.conns {
		if c == b {
			up.conns = append(up.conns[:i], up.conns[i+1:]...)
			return
		}
	}
}

var errH2Protocol = errors.New("proxy: backend broke the HTTP/2 protocol")

// frame handles one frame from the backend.
func (b *h2Back) frame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.DataFrame:
		n := int64(f.Length)
		b.mu.Lock()
		b.recvWindow -= n
		s := b.streams[f.StreamID]
		if pad := n - int64(len(f.Data())); pad > 0 || s == nil {
			// Padding and data for a stream gone: credited at once.
			b.consumedN += pad
			if s == nil {
				b.consumedN += int64(len(f.Data()))
			}
		}
		b.mu.Unlock()
		if s == nil {
			return nil
		}
		if b.lockLeg(s, f.StreamID) {
			s.held += int64(len(f.Data()))
			s.rider.responseData(f.Data(), f.StreamEnded())
		}
		s.mu.Unlock()
	case *h2Headers:
		b.fields, b.hdrLen = b.fields[:0], 0
		b.hdrID, b.hdrEnd = f.StreamID, f.StreamEnded()
		return b.block(f.fragment, f.HeadersEnded())
	case *http2.ContinuationFrame:
		return b.block(f.HeaderBlockFragment(), f.HeadersEnded())
	case *http2.RSTStreamFrame:
		s := b.stream(f.StreamID)
		if s == nil {
			return nil
		}
		if b.lockLeg(s, f.StreamID) {
			s.rider.backendReset(f.ErrCode)
		}
		s.mu.Unlock()
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		return b.settings(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			b.mu.Lock()
			_ = b.wire.fr.WritePing(true, f.Data)
			b.fl.mark(&b.wire)
			b.mu.Unlock()
		}
	case *http2.WindowUpdateFrame:
		return b.windowUpdate(f)
	case *http2.GoAwayFrame:
		b.goAway(f.LastStreamID)
	case *http2.PushPromiseFrame:
		return errH2Protocol
	}
	return nil
}

func (b *h2Back) stream(id uint32) *h2Leg {
	b.mu.Lock()
	s := b.streams[id]
	b.mu.Unlock()
	return s
}

func (b *h2Back) settings(f *http2.SettingsFrame) error {
	var grow []*h2Leg
	b.mu.Lock()
	for i := range f.NumSettings() {
		st := f.Setting(i)
		if st.Valid() != nil {
			b.mu.Unlock()
			return errH2Protocol
		}
		switch st.ID {
		case http2.SettingMaxFrameSize:
			b.peerFrame = st.Val
		case http2.SettingHeaderTableSize:
			b.enc.enc.SetMaxDynamicTableSize(min(st.Val, h2DynamicTable))
		case http2.SettingInitialWindowSize:
			delta := int64(st.Val) - int64(b.peerWindow)
			b.peerWindow = int32(st.Val)
			for _, s := range b.streams {
				s.upWindow += delta
				if delta > 0 {
					grow = append(grow, s)
				}
			}
		case http2.SettingMaxConcurrentStreams:
			b.up.mu.Lock()
			b.maxStreams = int(min(st.Val, 1<<20))
			b.up.mu.Unlock()
		}
	}
	if !b.settled {
		b.settled = true // every body waiting goes now
		grow = grow[:0]
		for _, s := range b.streams {
			grow = append(grow, s)
		}
	}
	_ = b.wire.fr.WriteSettingsAck()
	b.fl.mark(&b.wire)
	b.mu.Unlock()
	b.pushStreams(grow)
	return nil
}

func (b *h2Back) windowUpdate(f *http2.WindowUpdateFrame) error {
	grow := b.grow[:0]
	b.mu.Lock()
	if f.StreamID == 0 {
		b.sendWindow += int64(f.Increment)
		for _, s := range b.streams {
			grow = append(grow, s) // pushStreams looks under their locks
		}
	} else if s := b.streams[f.StreamID]; s != nil {
		s.upWindow += int64(f.Increment)
		grow = append(grow, s)
	}
	b.mu.Unlock()
	b.pushStreams(grow)
	clear(grow)
	b.grow = grow[:0]
	return nil
}

// pushStreams sends the waiting request bodies of ss, after a window grew.
func (b *h2Back) pushStreams(ss []*h2Leg) {
	for _, s := range ss {
		if b.lockLeg(s, 0) {
			b.sendBody(s)
		}
		s.mu.Unlock()
	}
}

// goAway: the backend takes no new streams; those above last were not
// processed and go elsewhere.
func (b *h2Back) goAway(last uint32) {
	b.up.mu.Lock()
	b.goingAway = true
	b.up.remove(b)
	b.up.mu.Unlock()
	type legID struct {
		l  *h2Leg
		id uint32
	}
	var gone []legID
	b.mu.Lock()
	for id, s := range b.streams {
		if id > last {
			gone = append(gone, legID{s, id})
		}
	}
	b.mu.Unlock()
	for _, r := range gone {
		s := r.l
		if b.lockLeg(s, r.id) && !s.respBegan {
			s.detach(http2.ErrCodeCancel)
			s.rider.refused()
		}
		s.mu.Unlock()
	}
}

// block decodes a response header block; at its end, the stream gets it.
func (b *h2Back) block(frag []byte, end bool) error {
	if _, err := b.dec.Write(frag); err != nil {
		return errH2Protocol
	}
	if !end {
		return nil
	}
	if err := b.dec.Close(); err != nil {
		return errH2Protocol
	}
	s := b.stream(b.hdrID)
	if s == nil {
		return nil
	}
	if b.lockLeg(s, b.hdrID) {
		if !s.respBegan {
			s.rider.responseHead(b.fields, b.hdrEnd)
		} else {
			s.rider.responseTrailers(b.fields)
		}
	}
	s.mu.Unlock()
	return nil
}

// end fails every stream still on the connection after it broke or
// closed.
func (b *h2Back) end(err error) {
	b.up.mu.Lock()
	b.up.remove(b)
	b.up.mu.Unlock()
	b.mu.Lock()
	b.dead = true
	b.wire.stop()
	ss := make([]*h2Leg, 0, len(b.streams))
	for _, s := range b.streams {
		ss = append(ss, s)
	}
	b.mu.Unlock()
	b.fl.flush()
	_ = b.conn.Close()
	if !b.closeGives {
		b.up.u.giveConn()
	}
	if err == nil || errors.Is(err, net.ErrClosed) {
		err = errConnReset
	}
	for _, s := range ss {
		if b.lockLeg(s, 0) {
			s.rider.backendLost(err)
		}
		s.mu.Unlock()
		b.fl.flush()
	}
}

// closeIdle closes the connections that carry no stream (a reload retired
// the backend); the others close when their last stream ends.
func (up *h2Upstream) closeIdle() {
	up.mu.Lock()
	var idle []*h2Back
	for _, b := range up.conns {
		b.goingAway = true
		if b.active == 0 {
			idle = append(idle, b)
		}
	}
	up.conns = nil
	up.mu.Unlock()
	for _, b := range idle {
		_ = b.conn.Close()
	}
}
