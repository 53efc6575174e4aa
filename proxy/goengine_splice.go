package proxy

import (
	"errors"
	"io"
	"net"
	"syscall"

	"frontdoor/internal/splice"
)

// Spliced response bodies.
//
// A response body of known length from spliceThreshold up moves from the
// backend's socket to the client's with splice(2) through a pooled pipe, so
// its bytes never enter user space: read whole and written again, a 100 KiB
// body cost two copies of itself, the proxy's largest cost for such
// responses (bench/NOTES.md). The path:
//
//   - forward hands the answer to startStream in splice mode (upstreamBody
//     with spliced set); the head read took the body's first bytes along in
//     the backend connection's bufio.Reader.
//   - fasthttp writes the response head into the client's bufio.Writer and
//     calls upstreamBody.WriteTo, which calls the fixed-size body writer's
//     ReadFrom: bufio.Writer.ReadFrom fills the rest of its buffer from
//     upstreamBody.Read (the bytes already read first), sends head and
//     first bytes in one write, then calls ReadFrom of the connection
//     beneath, sniffConn.ReadFrom, with the rest.
//   - sniffConn.ReadFrom sees the upstreamBody and lets it splice: any bytes
//     still buffered from the backend are written, then splice(2) moves the
//     rest, waiting through the netpoller (RawConn) under the same deadlines
//     as the copy it replaces.
//
// So a 100 KiB answer takes five system calls: the head's read (8 KiB), the
// write of head and first bytes (4 KiB, fasthttp's buffer), the write of
// the rest of what the read took along, and one splice(2) in and one out.
// Sending all of it in one transmission, by writing head and first bytes
// into the pipe too, measured 1.3-1.7x slower: pipe pages filled by write(2)
// cost TCP more than separate sends do. Corking the first two writes
// (MSG_MORE) made no difference.
//
// Bodies below the threshold are read whole: for them, the pipe's two extra
// system calls cost more than the copies they save. HAProxy forwards bodies
// through its buffers unless told to splice (option splice-response).

// spliceSource is a response body that can splice itself to the client
// (an upstreamBody in splice mode).
type spliceSource interface {
	spliceTo(client *deferConn, n int64) (int64, error)
}

// canSplice reports whether a body from backend to client may be spliced:
// both must be plain TCP sockets under our wrappers.
func canSplice(client, backend net.Conn) bool {
	sc, ok := client.(*sniffConn)
	if !ok {
		return false
	}
	if _, ok := sc.Conn.(*deferConn); !ok {
		return false
	}
	_, ok = backend.(*deferConn)
	return ok
}

// rawConnOf returns the connection's RawConn, kept by the deferConn, or nil.
func rawConnOf(c *deferConn) syscall.RawConn {
	if !c.raw() {
		return nil
	}
	return c.rc
}

var errNoRawConn = errors.New("proxy: no raw access to a socket for splice(2)")

// ReadFrom moves a spliced response body to the client (see above); any
// other reader is copied through a pooled buffer, as io.Copy would.
func (c *sniffConn) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		if src, ok := lr.R.(spliceSource); ok {
			if dc, ok := c.Conn.(*deferConn); ok {
				n, err := src.spliceTo(dc, lr.N)
				lr.N -= n
				return n, err
			}
		}
	}
	return copyPooled(c.Conn, r)
}

// bodySplice moves up to want bytes from a source socket to a destination
// socket through a pipe, one RawConn callback at a time. fillFn and drainFn
// are bound once, so passing them to RawConn allocates nothing.
type bodySplice struct {
	t     splice.Transfer
	want  int64 // bytes still to take from the source
	moved int64 // bytes the last drain wrote

	readErr  error // the source failed or ended early
	writeErr error // the destination failed

	fillFn, drainFn func(uintptr) bool
}

func (s *bodySplice) bind() { s.fillFn, s.drainFn = s.fill, s.drain }

// fill moves what the source has, up to want, into the pipe. With nothing
// to read it gives the pipe back before RawConn waits, so a stalled
// transfer holds none.
func (s *bodySplice) fill(fd uintptr) bool {
	n, again, err := s.t.Fill(int(fd), int(min(s.want, splice.MaxMove)))
	switch {
	case again:
		return false
	case err != nil:
		s.readErr = err
	case n == 0:
		s.readErr = io.ErrUnexpectedEOF
	default:
		s.want -= n
	}
	return true
}

// drain moves the pipe's bytes to the destination.
func (s *bodySplice) drain(fd uintptr) bool {
	n, again, err := s.t.Drain(int(fd))
	s.moved += n
	if err != nil {
		s.writeErr = err
	}
	return !again
}

// step moves one pipe's worth: it waits for the source, fills the pipe and
// drains it into the destination. It returns the bytes written and an error
// of the wait or of either side (readErr, writeErr tell which).
func (s *bodySplice) step(src, dst syscall.RawConn) (int64, error) {
	s.moved = 0
	if s.t.InPipe == 0 {
		if err := src.Read(s.fillFn); err != nil {
			s.readErr = err
			return 0, err
		}
		if s.readErr != nil {
			return 0, s.readErr
		}
	}
	if err := dst.Write(s.drainFn); err != nil {
		s.writeErr = err
		return s.moved, err
	}
	return s.moved, s.writeErr
}

// release gives the pipe back, or closes it when it still holds bytes.
func (s *bodySplice) release() {
	s.t.Release()
	s.want, s.readErr, s.writeErr = 0, nil, nil
}
