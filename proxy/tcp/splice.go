package tcp

import (
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// maxSplice is the most one splice(2) call asks to move into a pipe; the
// pipe's capacity (64 KiB by default) caps it in practice.
const maxSplice = 1 << 20

// pipeSize is the capacity asked for each pipe. Only pipes of directions
// with bytes in flight exist, so the kernel memory it costs follows the
// number of busy directions, not of sessions. A larger pipe means fewer
// splice(2) calls per byte (iperf3 on loopback: about 7,000 per GB at 1 MiB,
// 40,000 at 64 KiB). Smaller pipes cost the proxy more CPU per GB on
// loopback (64 KiB: 0.84-1.05x HAProxy's, 1 MiB: 0.73-0.96x) while raising
// throughput somewhat, because reading less per call keeps the client's
// receive window shut longer, so more of the client's own TCP transmit runs
// in the proxy's context instead of the load generator's.
const pipeSize = 1 << 20

const spliceFlags = unix.SPLICE_F_NONBLOCK | unix.SPLICE_F_MOVE

// splice moves at most n bytes from rfd to wfd with splice(2), as a raw
// system call: the runtime is not told (no entersyscall/exitsyscall), so the
// goroutine keeps its P for the call. That is safe because the call never
// waits: SPLICE_F_NONBLOCK and the sockets' O_NONBLOCK make it return
// EAGAIN instead of sleeping for data or room, so it lasts only as long as
// the kernel takes to move the bytes there are. As an ordinary system call,
// one that outlasted a sysmon tick (20 µs; a large write on loopback also
// runs the receiver's TCP input and takes far longer) made sysmon hand the P
// to another thread, and each such call cost thread wake-ups, futex and
// sched_yield calls and context switches: with GOMAXPROCS=1 and 8 iperf3
// streams, sysmon and the scheduler took more of the proxy's CPU than
// splice itself. The price is that nothing else runs on this P, and a
// stop-the-world waits, while a call moves its bytes.
func splice(rfd, wfd, n int) (int64, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(rfd), 0, uintptr(wfd), 0, uintptr(n), spliceFlags)
	if e != 0 {
		return 0, e
	}
	return int64(r), nil
}

// pipe is a kernel pipe used as the splice buffer of one direction while
// bytes are in flight. A pipe in the pool is always empty.
type pipe struct {
	r, w    int
	cleanup runtime.Cleanup
}

// pipePool hands out empty pipes. Pipes dropped by the sync.Pool at garbage
// collection are closed by a cleanup.
type pipePool struct {
	pool    sync.Pool
	created atomic.Int64 // pipes ever created
	inUse   atomic.Int64 // pipes handed out and not yet returned
}

func closePipe(fds [2]int) {
	_ = unix.Close(fds[0])
	_ = unix.Close(fds[1])
}

func (pp *pipePool) get() (*pipe, error) {
	if p, _ := pp.pool.Get().(*pipe); p != nil {
		pp.inUse.Add(1)
		return p, nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, os.NewSyscallError("pipe2", err)
	}
	// A larger pipe moves more per splice(2) pair. Errors are ignored: the
	// kernel refuses it past pipe-max-size or, for unprivileged users, past
	// pipe-user-pages-soft, and the default 64 KiB pipe works.
	_, _ = unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, pipeSize)
	p := &pipe{r: fds[0], w: fds[1]}
	p.cleanup = runtime.AddCleanup(p, closePipe, fds)
	pp.created.Add(1)
	pp.inUse.Add(1)
	return p, nil
}

// put returns an empty pipe to the pool.
func (pp *pipePool) put(p *pipe) {
	pp.inUse.Add(-1)
	pp.pool.Put(p)
}

// destroy closes a pipe that may still hold bytes.
func (pp *pipePool) destroy(p *pipe) {
	pp.inUse.Add(-1)
	p.cleanup.Stop()
	closePipe([2]int{p.r, p.w})
}

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
	// when the session struct is created so that passing them to RawConn
	// does not allocate.
	fillFn, drainFn func(uintptr) bool

	p      *pipe
	inPipe int
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
	h.fillFn, h.drainFn = h.fill, h.drain
}

func (h *half) reset() {
	h.src, h.dst, h.srcRC, h.dstRC = nil, nil, nil, nil
	h.p, h.inPipe, h.sysErr, h.eof, h.fromBackend = nil, 0, nil, false, false
	h.moved, h.flushed, h.refreshed = 0, 0, 0
	h.lastActive.Store(0)
}

// fill moves what the source has into the pipe. With nothing to read it
// gives the pipe back before RawConn waits, so an idle direction holds none.
func (h *half) fill(fd uintptr) bool {
	if h.p == nil {
		p, err := h.s.srv.pipes.get()
		if err != nil {
			h.sysErr = err
			return true
		}
		h.p = p
	}
	for {
		n, err := splice(int(fd), h.p.w, maxSplice)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			h.s.srv.pipes.put(h.p)
			h.p = nil
			return false
		case err != nil:
			h.sysErr = err
		case n == 0:
			h.eof = true
		default:
			h.inPipe = int(n)
		}
		return true
	}
}

// drain moves the pipe's bytes to the destination.
func (h *half) drain(fd uintptr) bool {
	for h.inPipe > 0 {
		n, err := splice(h.p.r, int(fd), h.inPipe)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			h.sysErr = err
			return true
		case n == 0:
			h.sysErr = unix.EPIPE
			return true
		}
		h.inPipe -= int(n)
		h.moved += n
	}
	return true
}

// run copies until the direction ends and reports how.
func (h *half) run() int {
	for {
		if h.inPipe == 0 {
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

// release gives the pipe back (or closes it when it still holds bytes).
func (h *half) release() {
	if h.p == nil {
		return
	}
	if h.inPipe == 0 {
		h.s.srv.pipes.put(h.p)
	} else {
		h.s.srv.pipes.destroy(h.p)
	}
	h.p, h.inPipe = nil, 0
}
