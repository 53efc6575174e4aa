package tcp

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"frontdoor/internal/splice"
)

// How a direction ended.
const (
	endEOF        = iota // the source sent FIN
	endReadReset         // the source reset the connection
	endWriteReset        // the destination reset the connection (EPIPE, ECONNRESET)
	endIdle              // no bytes either way for the idle timeout
	endClosed            // a socket was closed under us (other direction, Shutdown)
	endError             // any other error
)

// half is one direction of a session: bytes from src to dst. Its fields
// other than lastActive are owned by the goroutine running it.
type half struct {
	s            *session
	other        *half
	counter      prometheus.Counter // tcp_bytes_total of this direction
	fromBackend  bool               // src is the backend (downstream)
	src, dst     *net.TCPConn
	srcRC, dstRC syscall.RawConn
	// fillFn and drainFn are the method values fill and drain, bound once
	// (bindGoroutine) so that passing them to RawConn does not allocate.
	fillFn, drainFn func(uintptr) bool

	// srcFd and dstFd are the sockets of a direction an event loop runs
	// (loop_session.go); done: it has ended; blocked: its destination is
	// full and its pipe holds bytes.
	srcFd, dstFd  int32
	done, blocked bool

	t      splice.Transfer // the pipe while bytes are in flight
	sysErr error
	eof    bool

	moved   int64 // bytes written to dst
	flushed int64 // bytes of moved already added to the metrics
	// refreshed is when deadlines were last pushed out (session-relative
	// nanoseconds).
	refreshed int64
	// lastActive is when bytes last moved (session-relative nanoseconds);
	// the other direction reads it when its own deadline fires.
	lastActive atomic.Int64
}

func (h *half) bind(s *session, other *half) {
	h.s, h.other = s, other
	h.t.Pool = &s.srv.pipes
}

func (h *half) reset() {
	h.src, h.dst, h.srcRC, h.dstRC = nil, nil, nil, nil
	h.t.Release()
	h.sysErr, h.eof, h.fromBackend = nil, false, false
	h.srcFd, h.dstFd, h.done, h.blocked = -1, -1, false, false
	h.moved, h.flushed, h.refreshed = 0, 0, 0
	h.lastActive.Store(0)
}

// fill moves what the source has into the pipe (the RawConn.Read
// callback). With nothing to read it gives the pipe back before RawConn
// waits, so an idle direction holds none.
func (h *half) fill(fd uintptr) bool {
	n, again, err := h.t.Fill(int(fd), splice.MaxMove)
	switch {
	case again:
		return false
	case err != nil:
		h.sysErr = err
	case n == 0:
		h.eof = true
	}
	return true
}

// drain moves the pipe's bytes to the destination (the RawConn.Write
// callback).
func (h *half) drain(fd uintptr) bool {
	n, again, err := h.t.Drain(int(fd))
	h.moved += n
	if err != nil {
		h.sysErr = err
	}
	return !again
}

// run copies until the direction ends and reports how.
func (h *half) run() int {
	for {
		if h.t.InPipe == 0 {
			if err := h.srcRC.Read(h.fillFn); err != nil {
				if h.keepWaiting(err) {
					continue
				}
				return h.waitEnd(err)
			}
			if h.sysErr != nil {
				return h.readEnd(h.sysErr)
			}
			if h.eof {
				return endEOF
			}
		}
		if err := h.dstRC.Write(h.drainFn); err != nil {
			if h.keepWaiting(err) {
				continue
			}
			return h.waitEnd(err)
		}
		if h.sysErr != nil {
			return h.writeEnd(h.sysErr)
		}
		h.tick()
	}
}

// tick records activity and, at most every refreshEvery, pushes the idle
// deadlines out and adds the bytes moved so far to the metrics.
func (h *half) tick() {
	now := int64(time.Since(h.s.start))
	h.lastActive.Store(now)
	if now-h.refreshed < h.s.refreshEvery {
		return
	}
	h.refreshed = now
	h.flush()
	if h.s.idle > 0 {
		dl := h.s.start.Add(time.Duration(now + h.s.idle))
		_ = h.src.SetReadDeadline(dl)
		_ = h.dst.SetWriteDeadline(dl)
	}
}

// keepWaiting reports whether a wait that ended with err should go on: a
// deadline fired but the session is not idle (the other direction moved
// bytes recently). It pushes the deadlines out in that case.
func (h *half) keepWaiting(err error) bool {
	if h.s.idle <= 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	now := int64(time.Since(h.s.start))
	last := max(h.lastActive.Load(), h.other.lastActive.Load())
	if now-last >= h.s.idle {
		return false
	}
	dl := h.s.start.Add(time.Duration(last + h.s.idle))
	_ = h.src.SetReadDeadline(dl)
	_ = h.dst.SetWriteDeadline(dl)
	return true
}

func (h *half) waitEnd(err error) int {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return endIdle
	case errors.Is(err, net.ErrClosed):
		return endClosed
	}
	return endError
}

func (h *half) readEnd(err error) int {
	if errors.Is(err, unix.ECONNRESET) {
		return endReadReset
	}
	return endError
}

func (h *half) writeEnd(err error) int {
	if errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) {
		return endWriteReset
	}
	return endError
}
