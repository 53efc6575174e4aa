package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/sys/unix"
)

// h2Wire is the sending half of one HTTP/2 connection, client or backend:
// frames are appended to out by whoever produces them, under the
// connection's lock, and flush sends everything appended so far with one
// write(2). So a batch of frames read from one connection costs one system
// call on each connection it wrote to, not one per frame (x/net's server
// flushes each frame group; that was a third of the CPU of a small gRPC
// call, issue #19).
//
// The write is non-blocking: a connection whose socket buffer is full (a
// slow or stalled peer) keeps the rest in out and a goroutine of its own
// finishes it, so a slow client never blocks the backend connection whose
// reader is writing to it. The bytes waiting are bounded by the HTTP/2 flow
// control windows frontdoor honours plus the control frames it answers,
// which the flood limits bound.
type h2Wire struct {
	conn net.Conn
	raw  syscall.RawConn // nil: not a socket; writes block
	fr   *http2.Framer   // writes frames into out
	out  []byte
	// spare is the buffer the drain goroutine is not writing from.
	spare []byte
	// queued: a flush is owed; some goroutine's h2Flusher holds this wire
	// and flushes it before it blocks.
	queued bool
	// draining: the drain goroutine owns the socket's writes.
	draining bool
	dead     bool  // a write failed or the connection closed
	err      error // why, once dead
	// closing: once out is written, the write side closes (closeAfter).
	closing bool
	// writeTimeout bounds a blocked write (the drain goroutine's).
	writeTimeout time.Duration
	// tryWrite is w.tryWriteFD as a method value, made once: passing it
	// to RawConn.Write then allocates nothing.
	tryWrite func(fd uintptr) bool
	tryN     int
	tryErr   error
	// lock is the connection's lock, held by every caller of the
	// methods below but drain, which takes it itself.
	lock sync.Locker
	// kick wakes the writer goroutine of a connection that is not a
	// socket (TLS): it has no non-blocking write, so all its writes are
	// that goroutine's. Closed by stop.
	kick    chan struct{}
	stopped bool
}

// h2WireBuffer is the starting size of a wire's output buffer: a batch of
// small responses fits without growing it.
const h2WireBuffer = 16 << 10

func (w *h2Wire) init(conn net.Conn, lock sync.Locker, writeTimeout time.Duration) {
	w.conn = conn
	w.lock = lock
	w.writeTimeout = writeTimeout
	if sc, ok := conn.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			w.raw = rc
		}
	}
	w.out = make([]byte, 0, h2WireBuffer)
	w.fr = http2.NewFramer(wireAppender{w}, nil)
	w.tryWrite = w.tryWriteFD
	if w.raw == nil {
		w.kick = make(chan struct{}, 1)
		go w.writer()
	}
}

// writer writes for a connection that is not a socket, each time it is
// kicked, until stop.
func (w *h2Wire) writer() {
	for range w.kick {
		w.drain()
	}
}

// stop ends the writer goroutine, if any, once it wrote what is queued.
// The caller holds the lock.
func (w *h2Wire) stop() {
	if w.kick != nil && !w.stopped {
		w.stopped = true
		close(w.kick)
	}
}

// wireAppender is the Framer's writer: each frame lands in out.
type wireAppender struct{ w *h2Wire }

func (a wireAppender) Write(p []byte) (int, error) {
	a.w.out = append(a.w.out, p...)
	return len(p), nil
}

// h2Flusher collects the wires one goroutine wrote to since its last flush.
// Each goroutine that writes frames (a connection's reader, a dialer, the
// sweeper) has one and calls flush before it blocks.
type h2Flusher struct {
	wires []*h2Wire
}

// mark notes that w has bytes to send; the caller holds w's lock.
func (f *h2Flusher) mark(w *h2Wire) {
	if w.queued || w.dead {
		return
	}
	w.queued = true
	f.wires = append(f.wires, w)
}

// flush sends what the marked wires hold.
func (f *h2Flusher) flush() {
	for i, w := range f.wires {
		w.lock.Lock()
		w.queued = false
		w.send()
		w.lock.Unlock()
		f.wires[i] = nil
	}
	f.wires = f.wires[:0]
}

// send writes out without blocking; what the socket does not take is left
// to the drain goroutine. The caller holds the lock.
func (w *h2Wire) send() {
	if w.draining || w.dead || len(w.out) == 0 {
		return
	}
	if w.raw == nil {
		if !w.stopped {
			w.draining = true
			select {
			case w.kick <- struct{}{}:
			default:
			}
		}
		return
	}
	w.tryN, w.tryErr = 0, nil
	if err := w.raw.Write(w.tryWrite); err != nil && w.tryErr == nil {
		w.tryErr = err
	}
	n, err := w.tryN, w.tryErr
	if n == len(w.out) {
		w.out = w.out[:0]
		if w.closing {
			w.shut()
		}
		return
	}
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		w.fail(err)
		return
	}
	w.out = w.out[:copy(w.out, w.out[n:])]
	w.startDrain()
}

// tryWriteFD is one non-blocking write of out; it never asks RawConn to
// wait.
func (w *h2Wire) tryWriteFD(fd uintptr) bool {
	n, err := unix.Write(int(fd), w.out)
	if n > 0 {
		w.tryN = n
	}
	if err != nil {
		w.tryErr = err
	}
	return true
}

func (w *h2Wire) startDrain() {
	w.draining = true
	go w.drain()
}

// drain writes out with blocking writes until it is empty, for a peer that
// reads slower than frontdoor produces. write_timeout bounds each write; a
// peer that takes nothing that long is dead.
func (w *h2Wire) drain() {
	w.lock.Lock()
	if !w.draining {
		w.lock.Unlock()
		return
	}
	for len(w.out) > 0 && !w.dead {
		buf := w.out
		w.out = w.spare[:0]
		w.lock.Unlock()
		if w.writeTimeout > 0 {
			_ = w.conn.SetWriteDeadline(time.Now().Add(w.writeTimeout))
		}
		_, err := w.conn.Write(buf)
		w.lock.Lock()
		w.spare = buf[:0]
		if err != nil {
			w.fail(err)
		}
	}
	w.draining = false
	if w.closing && !w.dead {
		w.shut()
	}
	w.lock.Unlock()
}

// closeAfter closes the connection's write side once what is queued is
// written: the peer reads everything, the last GOAWAY included, and then
// an end of stream, instead of a reset that could lose it. The reader
// then sees the peer's close, or gives up after a second. The caller
// holds the lock.
func (w *h2Wire) closeAfter() {
	if w.closing || w.dead {
		return
	}
	w.closing = true
	if len(w.out) == 0 && !w.draining {
		w.shut()
		return
	}
	w.send()
}

func (w *h2Wire) shut() {
	if cw, ok := w.conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		_ = w.conn.SetReadDeadline(time.Now().Add(time.Second))
		return
	}
	_ = w.conn.Close()
}

// fail marks the wire dead: nothing more is written, and the connection is
// closed so that its reader ends and cleans up. The caller holds the lock.
func (w *h2Wire) fail(err error) {
	if w.dead {
		return
	}
	w.dead, w.err = true, err
	w.out = w.out[:0]
	_ = w.conn.Close()
}

// pending is how many bytes wait to be sent.
func (w *h2Wire) pending() int { return len(w.out) }

// h2FrameReader reads a connection's frames with the Framer, but for the
// payloads of HEADERS and WINDOW_UPDATE frames: the Framer allocates a
// frame struct for each of those (x/net reuses DATA frames only), two or
// three per relayed call, and one per WINDOW_UPDATE a peer sends as it
// reads. The Framer still reads and checks every frame header (size, the
// order of HEADERS and CONTINUATION); only the fixed fields of these two
// payloads (RFC 9113 6.2: pad length, priority, block fragment; 6.9: the
// increment) are taken here, into frame structs reused for every frame.
type h2FrameReader struct {
	fr      *http2.Framer
	r       io.Reader
	buf     []byte
	headers h2Headers
	window  http2.WindowUpdateFrame
	word    [4]byte
}

// h2Headers is a HEADERS frame as h2FrameReader returns it; valid until
// the next read.
type h2Headers struct {
	http2.FrameHeader
	fragment []byte
}

func (h *h2Headers) StreamEnded() bool  { return h.Flags.Has(http2.FlagHeadersEndStream) }
func (h *h2Headers) HeadersEnded() bool { return h.Flags.Has(http2.FlagHeadersEndHeaders) }

func newH2FrameReader(r io.Reader, maxFrame uint32) *h2FrameReader {
	fr := http2.NewFramer(nil, r)
	fr.SetReuseFrames()
	fr.SetMaxReadFrameSize(maxFrame)
	return &h2FrameReader{fr: fr, r: r}
}

// errH2BadHeaders: a HEADERS frame whose padding or priority does not fit.
var errH2BadHeaders = http2.ConnectionError(http2.ErrCodeProtocol)

// read returns the next frame: a *h2Headers for HEADERS, else the Framer's.
func (r *h2FrameReader) read() (http2.Frame, error) {
	fh, err := r.fr.ReadFrameHeader()
	if err != nil {
		return nil, err
	}
	if fh.Type == http2.FrameWindowUpdate && fh.Length == 4 {
		p := r.word[:] // a local array would escape through io.ReadFull
		if _, err := io.ReadFull(r.r, p); err != nil {
			return nil, err
		}
		inc := (uint32(p[0])<<24 | uint32(p[1])<<16 | uint32(p[2])<<8 | uint32(p[3])) & 0x7fffffff
		if inc == 0 {
			// RFC 9113 6.9: a stream error on a stream, a connection
			// error on the connection; both end the connection here, as
			// a peer that sends it is broken.
			return nil, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		r.window = http2.WindowUpdateFrame{FrameHeader: fh, Increment: inc}
		return &r.window, nil
	}
	if fh.Type != http2.FrameHeaders {
		return r.fr.ReadFrameForHeader(fh)
	}
	if cap(r.buf) < int(fh.Length) {
		r.buf = make([]byte, fh.Length)
	}
	p := r.buf[:fh.Length]
	if _, err := io.ReadFull(r.r, p); err != nil {
		return nil, err
	}
	if fh.StreamID == 0 {
		return nil, errH2BadHeaders
	}
	if fh.Flags.Has(http2.FlagHeadersPadded) {
		if len(p) < 1 || int(p[0]) > len(p)-1 {
			return nil, errH2BadHeaders
		}
		p = p[1 : len(p)-int(p[0])]
	}
	if fh.Flags.Has(http2.FlagHeadersPriority) {
		if len(p) < 5 {
			return nil, errH2BadHeaders
		}
		p = p[5:]
	}
	r.headers = h2Headers{FrameHeader: fh, fragment: p}
	return &r.headers, nil
}

// headerBlock writes block as stream id's HEADERS frame, and CONTINUATION
// frames for what does not fit in maxFrame.
func (w *h2Wire) headerBlock(id uint32, block []byte, end bool, maxFrame uint32) {
	first := true
	for first || len(block) > 0 {
		n := min(len(block), int(maxFrame))
		frag := block[:n]
		block = block[n:]
		if first {
			_ = w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: end, EndHeaders: len(block) == 0})
			first = false
		} else {
			_ = w.fr.WriteContinuation(id, len(block) == 0, frag)
		}
	}
}

// data writes p as stream id's DATA frames within the peer's stream window
// (*stream), its connection window (*conn) and maxFrame, taking what it
// sends from both windows. The last frame ends the stream when end is set
// and all of p went. It returns the bytes sent and whether the stream
// ended.
func (w *h2Wire) data(id uint32, p []byte, end bool, stream, conn *int64, maxFrame uint32) (sent int, ended bool) {
	for len(p) > sent {
		n := min(int64(len(p)-sent), *stream, *conn, int64(maxFrame))
		if n <= 0 {
			break
		}
		last := end && sent+int(n) == len(p)
		_ = w.fr.WriteData(id, last, p[sent:sent+int(n)])
		sent += int(n)
		*stream -= n
		*conn -= n
		ended = last
	}
	return sent, ended
}

// h2FrameBuffered reports whether a whole frame waits in br, so that
// reading it will not block: the time to flush is before a read that
// blocks.
func h2FrameBuffered(br *bufio.Reader) bool {
	n := br.Buffered()
	if n < 9 {
		return false
	}
	h, _ := br.Peek(9)
	return n >= 9+(int(h[0])<<16|int(h[1])<<8|int(h[2]))
}
