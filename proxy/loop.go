package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"

	"frontdoor/internal/splice"
)

// The event loop: how an http listener serves plain HTTP/1.1.
//
// Each http listener runs one loop per GOMAXPROCS on its socket: a goroutine
// with its own epoll set (edge-triggered, non-blocking sockets, raw read,
// write and accept4 system calls) that owns its client connections and a
// pool of keep-alive backend connections. A request costs no goroutine
// park or wake, no runtime timer (deadlines are FIFO lists, one per
// duration, since every deadline of a kind is armed with the same timeout)
// and no read that is sure to find nothing; fasthttp still parses and
// writes every head, and the request goes through the same phases as in
// the goroutine engine (handler.go: begin, pick, attempted, end), so
// routing, request IDs, headers, JWT, affinity, retries, passive ejection,
// metrics and the access log are the same code.
//
// A connection leaves the loop for the goroutine engine (fasthttp's server,
// the code of stream.go, upgrade.go, splice.go and the h2c server) the
// moment it asks for something the loop does not do, before any side effect
// of that request: the HTTP/2 preface, HTTP/1.0, a chunked request body or
// one that does not arrive with its head (more than requestPrefetch), Expect,
// an upgrade, a head the loop cannot parse or that is over max_header_bytes
// (fasthttp answers 400 or 431 exactly as before), or a route whose pool
// speaks h2c or names a backend by host name. The socket is duplicated into
// a net.Conn with the bytes already read replayed, and stays there.
//
// Response bodies of any framing (Content-Length, chunked, until the
// backend closes, none) are relayed as they arrive through the loop's read
// buffer; while the client does not take them, the backend is not read.

const (
	// loopReadBuf is a loop's one read buffer: a request head and its body,
	// or a slice of a response, pass through it.
	loopReadBuf = 64 << 10
	// loopAcceptBatch bounds the connections accepted per listener event,
	// so accepting does not starve the connections already open.
	loopAcceptBatch = 16
	connEvents      = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET
	hupEvents       = unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR
	// loopHeadRead is the most the first read of an answer takes: the head
	// and the start of the body. A body of known length with at least
	// spliceThreshold left after it moves by splice(2), never through user
	// space; a shorter one is read on with the whole buffer.
	loopHeadRead = 16 << 10
	// loopShortWait is how long a loop with nothing to do sleeps holding
	// its P before it waits through the runtime (pollShort).
	loopShortWait = 100 * time.Microsecond
	// maxTimerQueues is how many deadline durations a loop keeps lists for
	// before it drops the empty ones (arm).
	maxTimerQueues = 64
	// backendIdleDefault is how long an idle backend connection is kept
	// when the pool sets no idle_timeout (fasthttp's default, as in the
	// goroutine engine).
	backendIdleDefault = 10 * time.Second
)

// Deadline kinds of a loop connection (at most one is armed at a time).
const (
	tNone uint8 = iota
	tClientIdle
	tClientRead
	tClientWrite
	tBackendConnect
	tBackendResponse
	tBackendBody
	tBackendIdle
)

// Response body framings.
const (
	bodyNone uint8 = iota
	bodyLength
	bodyChunked
	bodyClose
)

// Control requests from other goroutines to a loop.
const (
	ctlStopAccept = 1 << iota
	ctlDrain
	ctlClose
)

var (
	crlfCRLF  = []byte("\r\n\r\n")
	lfLF      = []byte("\n\n")
	crlf      = []byte("\r\n")
	lastChunk = []byte("0\r\n\r\n")
	crlfDate  = []byte("\r\nDate: ")
	hdrDate   = []byte("Date")
	hdrExpect = []byte("Expect")
	// errLoopDial is a failed connect; classifyUpstreamError reads it as
	// "connect" (retryable). A value, so failing does not allocate.
	errLoopDial error = &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	// errBadResponse is an answer the loop could not parse.
	errBadResponse = errors.New("proxy: malformed response head from the backend")
)

// lconn is a client or backend connection of a loop. Structs are recycled
// through the loop's free list.
type lconn struct {
	fd      int
	gen     int32
	backend bool
	peer    *lconn // the other side while a request is in flight
	in      []byte // bytes read and not yet used: a partial head, pipelined requests
	out     []byte // bytes the socket did not take yet, from outOff
	outOff  int

	// deadline (timerQueue)
	tq           *timerQueue
	tprev, tnext *lconn
	tat          int64
	tkind        uint8

	// client
	x          *lexch // the request in flight
	addr       net.TCPAddr
	ip         [16]byte
	requests   int
	closeAfter bool // close once this response is out
	closing    bool // close once out is written
	serving    bool // inside serveBuffered
	watched    bool // in the epoll set (watch)
	unread     bool // readable while a request was in flight: read after it
	eof        bool

	// backend
	up         *loopUpstream
	idx        int // position in up.idle, or -1
	connecting bool
	reused     bool // taken from the idle list for this request
	sent       int  // bytes of the request written
	gotBytes   bool
	headDone   bool
	paused     bool // not read until the client takes what is queued
	framing    uint8
	keep       bool
	interim    int
	bodyLeft   int64
	chunks     chunkScanner
	splicing   bool            // the rest of the body moves by splice(2)
	xfer       splice.Transfer // its pipe, while bytes are in flight
}

// lexch is a request in flight in a loop: the fasthttp context the phases
// of handler.go work on, and what the loop needs besides.
type lexch struct {
	ctx        fasthttp.RequestCtx
	x          exchange
	idBuf      [32]byte
	req        []byte // the request as sent, for a retry
	client     *lconn
	head       bool // a HEAD request: the answer has no body
	freshRetry bool // the one silent retry after a stale pooled connection
}

// loopUpstream is a loop's view of an upstream: its address and the loop's
// own keep-alive connections to it.
type loopUpstream struct {
	u       *upstream
	family  int
	sa4     unix.SockaddrInet4
	sa6     unix.SockaddrInet6
	idle    []*lconn
	conns   int // this loop's connections to it
	idleFor time.Duration
	connect time.Duration
}

// timerQueue holds the connections whose deadline of one duration is armed,
// in the order they were armed, which is the order they expire in.
type timerQueue struct {
	d          int64
	head, tail *lconn
}

// appendWriter lets a bufio.Writer (fasthttp's Request.Write and
// Response.Write) append to a byte slice.
type appendWriter struct{ b *[]byte }

func (w appendWriter) Write(p []byte) (int, error) {
	*w.b = append(*w.b, p...)
	return len(p), nil
}

// evLoop is one event loop of an http listener. Only its goroutine touches
// it, except ctl and the channels.
type evLoop struct {
	l      *httpListener
	lfd    int
	epfd   int
	wakefd int

	conns  []*lconn // by descriptor
	gen    int32
	events [128]unix.EpollEvent
	ev     unix.EpollEvent
	base   time.Time
	now    int64 // nanoseconds since base, read once per wake-up
	rbuf   []byte
	head   []byte
	out    []byte
	rd     bytes.Reader
	br     *bufio.Reader
	bw     *bufio.Writer
	iov    [3]unix.Iovec
	rsa    unix.RawSockaddrAny
	rsaLen uint32

	freeConns []*lconn
	freeX     []*lexch
	ups       []*loopUpstream // by upstream.id
	queues    []*timerQueue
	clients   int
	accepting bool
	draining  bool
	shortWait bool // epoll_pwait2 works (pollShort)

	ctl         atomic.Uint32
	wakeMu      sync.Mutex    // wakefd is written by control, closed by run
	notAccepted chan struct{} // closed once the loop stopped accepting
	stopOnce    sync.Once
	done        chan struct{} // closed when run returned
}

// newLoops makes the event loops of l on the listening socket ln. It returns
// nil when ln is not a TCP socket the loops can use; l then serves every
// connection with the goroutine engine.
func newLoops(l *httpListener, ln net.Listener) []*evLoop {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return nil
	}
	lfd := -1
	_ = rc.Control(func(fd uintptr) {
		lfd = int(fd)
		// Accepted sockets inherit TCP_NODELAY: no setsockopt per
		// connection.
		_ = unix.SetsockoptInt(lfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	})
	if lfd < 0 {
		return nil
	}
	n := runtime.GOMAXPROCS(0)
	loops := make([]*evLoop, 0, n)
	for range n {
		lp, err := newLoop(l, lfd)
		if err != nil {
			for _, lp := range loops {
				lp.closeFDs()
			}
			return nil
		}
		loops = append(loops, lp)
	}
	return loops
}

func newLoop(l *httpListener, lfd int) (*evLoop, error) {
	lp := &evLoop{
		l: l, lfd: lfd, epfd: -1, wakefd: -1,
		base:        time.Now(),
		rbuf:        make([]byte, loopReadBuf),
		br:          bufio.NewReaderSize(nil, max(l.settings.maxHeader, 4096)+16),
		notAccepted: make(chan struct{}),
		done:        make(chan struct{}),
		accepting:   true,
		shortWait:   true,
	}
	lp.bw = bufio.NewWriterSize(nil, 4096)
	var err error
	if lp.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, err
	}
	if lp.wakefd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		lp.closeFDs()
		return nil, err
	}
	lp.ev = unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(lp.wakefd)}
	if err = unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, lp.wakefd, &lp.ev); err != nil {
		lp.closeFDs()
		return nil, err
	}
	// EPOLLEXCLUSIVE: one loop wakes per new connection, not all.
	lp.ev = unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(lfd)}
	if err = unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, lfd, &lp.ev); err != nil {
		lp.closeFDs()
		return nil, err
	}
	return lp, nil
}

func (lp *evLoop) closeFDs() {
	lp.wakeMu.Lock()
	defer lp.wakeMu.Unlock()
	for _, fd := range []int{lp.wakefd, lp.epfd} {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
	}
	lp.wakefd, lp.epfd = -1, -1
}

// control asks the loop for req (ctl* bits) from another goroutine.
func (lp *evLoop) control(req uint32) {
	lp.ctl.Or(req)
	lp.wakeMu.Lock()
	defer lp.wakeMu.Unlock()
	if lp.wakefd >= 0 {
		one := [8]byte{1}
		_, _ = unix.Write(lp.wakefd, one[:])
	}
}

// drainLoops lets the listener's event loops finish the requests in flight
// (idle connections close at once, busy ones after their answer) until ctx
// ends, then closes what is left.
func (l *httpListener) drainLoops(ctx context.Context) error {
	for _, lp := range l.ln.loops {
		lp.control(ctlDrain)
	}
	var err error
	for _, lp := range l.ln.loops {
		select {
		case <-lp.done:
		case <-ctx.Done():
			lp.control(ctlClose)
			<-lp.done
			err = ctx.Err()
		}
	}
	return err
}

// logError reports a failure of the listener's own machinery.
func (l *httpListener) logError(what string, err error) {
	l.logger.Error("listener: "+what, "listener", l.name, "err", err)
}

// stopAccepting makes the loop leave the listening socket alone and returns
// once it does, so the socket may be closed or given to another server.
func (lp *evLoop) stopAccepting() {
	lp.control(ctlStopAccept)
	select {
	case <-lp.notAccepted:
	case <-lp.done:
	}
}

// run is the loop. It returns after a drain ended or a close.
func (lp *evLoop) run() {
	defer close(lp.done)
	defer lp.closeFDs()
	defer lp.markNotAccepting()
	lp.now = int64(time.Since(lp.base))
	for {
		// Under load events are usually ready: a raw, non-blocking
		// epoll_wait keeps the runtime out of it. An empty poll is
		// followed by a short raw wait (loopShortWait) and only then by a
		// blocking wait through the runtime, which hands the P over.
		n, e := lp.pollRaw()
		if n == 0 && e == 0 && lp.shortWait {
			n, e = lp.pollShort()
			if e == unix.ENOSYS {
				lp.shortWait, n, e = false, 0, 0 // a kernel before 5.11
			}
		}
		if e != 0 && e != unix.EINTR {
			lp.l.logError("epoll_wait", e)
			lp.closeAll()
			return
		}
		if n <= 0 {
			var err error
			n, err = unix.EpollWait(lp.epfd, lp.events[:], lp.waitMillis())
			if err != nil && !errors.Is(err, unix.EINTR) {
				lp.l.logError("epoll_wait", err)
				lp.closeAll()
				return
			}
		}
		lp.now = int64(time.Since(lp.base))
		for i := 0; i < n; i++ {
			e := &lp.events[i]
			fd := int(e.Fd)
			switch {
			case fd == lp.wakefd:
				if lp.controlled() {
					return
				}
			case fd == lp.lfd && lp.accepting:
				lp.accept()
			case fd < len(lp.conns):
				c := lp.conns[fd]
				if c == nil || c.gen != e.Pad {
					continue
				}
				if c.backend {
					lp.backendEvent(c, e.Events)
				} else {
					lp.clientEvent(c, e.Events)
				}
			}
		}
		lp.expire()
		if lp.draining && lp.clients == 0 {
			lp.closeAll()
			return
		}
	}
}

func (lp *evLoop) pollRaw() (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(lp.epfd), uintptr(unsafe.Pointer(&lp.events[0])),
		uintptr(len(lp.events)), 0, 0, 0)
	return int(r), e
}

// pollShort is epoll_pwait2 with a timeout of loopShortWait, as a raw
// system call: the thread sleeps in the kernel still holding its P.
//
// Why: a wait through the runtime (entersyscall) that lasts more than a
// sysmon tick (20 µs) makes sysmon retake the P, and every retake keeps
// sysmon waking every 20 µs instead of backing off to 10 ms. With
// connections arriving every few tens of microseconds (a Connection: close
// load), sysmon took about 8% of the proxy's CPU (perf, thread by thread).
// Other goroutines of the process wait at most loopShortWait for the P.
func (lp *evLoop) pollShort() (int, unix.Errno) {
	ts := unix.Timespec{Nsec: int64(loopShortWait)}
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT2, uintptr(lp.epfd), uintptr(unsafe.Pointer(&lp.events[0])),
		uintptr(len(lp.events)), uintptr(unsafe.Pointer(&ts)), 0, 0)
	return int(r), e
}

// controlled handles the control requests; it reports whether the loop
// ends.
func (lp *evLoop) controlled() bool {
	var buf [8]byte
	_, _ = unix.Read(lp.wakefd, buf[:])
	req := lp.ctl.Swap(0)
	if req&(ctlStopAccept|ctlDrain|ctlClose) != 0 && lp.accepting {
		lp.accepting = false
		_ = unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, lp.lfd, nil)
		lp.markNotAccepting()
	}
	if req&ctlClose != 0 {
		lp.closeAll()
		return true
	}
	if req&ctlDrain != 0 && !lp.draining {
		lp.draining = true
		for _, c := range lp.conns {
			if c == nil || c.backend {
				continue
			}
			switch {
			case c.x != nil:
				c.closeAfter = true // once its answer is out
			case c.outOff < len(c.out):
				c.closing = true
			default:
				lp.closeClient(c)
			}
		}
		if lp.clients == 0 {
			lp.closeAll()
			return true
		}
	}
	return false
}

func (lp *evLoop) markNotAccepting() {
	lp.stopOnce.Do(func() { close(lp.notAccepted) })
}

// closeAll closes every connection of the loop.
func (lp *evLoop) closeAll() {
	for _, c := range lp.conns {
		if c == nil {
			continue
		}
		if c.backend {
			if c.peer == nil {
				lp.closeBackend(c)
			}
			continue
		}
		lp.closeClient(c)
	}
}

// accept takes up to loopAcceptBatch connections; the listener is level-
// triggered, so more waiting raise the next poll again.
func (lp *evLoop) accept() {
	ln := lp.l.ln
	for range loopAcceptBatch {
		lp.rsaLen = unix.SizeofSockaddrAny
		r, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(lp.lfd), uintptr(unsafe.Pointer(&lp.rsa)),
			uintptr(unsafe.Pointer(&lp.rsaLen)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		if e == unix.EINTR || e == unix.ECONNABORTED {
			continue
		}
		if e != 0 {
			return // EAGAIN, or out of descriptors: the listener stays ready
		}
		fd := int(r)
		if ln.open.Add(1) > ln.maxConns {
			ln.open.Add(-1)
			ln.rejected.Inc()
			_ = unix.Close(fd)
			continue
		}
		ln.total.Inc()
		ln.active.Inc()
		c := lp.newConn(fd, false)
		lp.setAddr(c)
		lp.clients++
		// TCP_DEFER_ACCEPT: the request is usually here already. The
		// socket joins the epoll set only when the loop first waits for
		// it (watch): a Connection: close request answered at once never
		// costs an epoll_ctl.
		lp.clientRead(c, false)
	}
}

// setAddr records the client's address from the accept4 result.
func (lp *evLoop) setAddr(c *lconn) {
	switch lp.rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&lp.rsa))
		copy(c.ip[:4], sa.Addr[:])
		c.addr.IP = c.ip[:4]
		c.addr.Port = int(sa.Port>>8 | sa.Port<<8)
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&lp.rsa))
		copy(c.ip[:], sa.Addr[:])
		c.addr.IP = c.ip[:16]
		c.addr.Port = int(sa.Port>>8 | sa.Port<<8)
	default:
		c.addr.IP = c.ip[:4]
		c.addr.Port = 0
	}
}

func (lp *evLoop) newConn(fd int, backend bool) *lconn {
	var c *lconn
	if n := len(lp.freeConns); n > 0 {
		c = lp.freeConns[n-1]
		lp.freeConns = lp.freeConns[:n-1]
	} else {
		c = &lconn{}
	}
	*c = lconn{fd: fd, backend: backend, in: c.in[:0], out: c.out[:0], idx: -1}
	lp.gen++
	c.gen = lp.gen
	if fd >= len(lp.conns) {
		lp.conns = append(lp.conns, make([]*lconn, fd+1-len(lp.conns))...)
	}
	lp.conns[fd] = c
	return c
}

func (lp *evLoop) register(c *lconn) bool {
	lp.ev = unix.EpollEvent{Events: connEvents, Fd: int32(c.fd), Pad: c.gen}
	c.watched = true
	return unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, c.fd, &lp.ev) == nil
}

// watch adds client c to the epoll set before the loop waits for it. An
// edge-triggered registration reports at once what is ready already, so no
// event is lost by registering late. It reports whether c is still open.
func (lp *evLoop) watch(c *lconn) bool {
	if c.watched {
		return true
	}
	if !lp.register(c) {
		lp.closeClient(c)
		return false
	}
	return true
}

// rearm makes the next poll report c's readiness again, as edge-triggered
// polls report only changes: bytes left in the socket when the read buffer
// filled are read after the other connections had their turn. A socket not
// in the epoll set yet joins it, which reports its readiness as well.
func (lp *evLoop) rearm(c *lconn) {
	if !c.watched {
		lp.watch(c)
		return
	}
	lp.ev = unix.EpollEvent{Events: connEvents, Fd: int32(c.fd), Pad: c.gen}
	_ = unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_MOD, c.fd, &lp.ev)
}

// forget drops c from the loop without closing its descriptor.
func (lp *evLoop) forget(c *lconn) {
	lp.disarm(c)
	c.xfer.Release()
	c.splicing = false
	lp.conns[c.fd] = nil
	c.fd, c.gen, c.peer, c.x, c.up = -1, -1, nil, nil, nil
	// Buffers grown past a few pages go back to the heap, not the free
	// list: one large response must not pin memory for good.
	if cap(c.in) > 16<<10 {
		c.in = nil
	}
	if cap(c.out) > 64<<10 {
		c.out = nil
	}
	lp.freeConns = append(lp.freeConns, c)
}

// closeClient closes a client connection, ending its request in flight.
func (lp *evLoop) closeClient(c *lconn) {
	if c.fd < 0 {
		return
	}
	if c.x != nil {
		lp.abandon(c)
	}
	_ = unix.Close(c.fd)
	lp.clientClosed()
	lp.forget(c)
}

// clientClosed updates the counts for a client connection that is gone.
func (lp *evLoop) clientClosed() {
	lp.clients--
	lp.l.ln.open.Add(-1)
	lp.l.ln.active.Dec()
}

// abandon ends c's request in flight because the client is gone or its
// connection must close: the backend connection closes too.
func (lp *evLoop) abandon(c *lconn) {
	x := c.x
	b := c.peer
	c.x, c.peer = nil, nil
	ctx := &x.ctx
	if b != nil {
		b.peer = nil
		headDone := b.headDone
		lp.closeBackend(b)
		if headDone {
			x.x.p.pool.Release(x.x.member)
			if x.x.rec.reason == "" {
				x.x.rec.reason = "client_gone"
			}
		} else {
			lp.l.attemptAbandoned(ctx, &x.x)
		}
	}
	lp.l.end(ctx, &x.x)
	lp.releaseX(x)
}

// clientEvent handles readiness of a client connection.
func (lp *evLoop) clientEvent(c *lconn, ev uint32) {
	if ev&unix.EPOLLOUT != 0 {
		if c.outOff < len(c.out) {
			if !lp.flushClient(c) {
				return
			}
		} else if b := c.peer; b != nil && b.paused && b.splicing {
			b.paused = false
			lp.pump(b, c)
			if c.fd < 0 {
				return
			}
		}
	}
	if ev&(unix.EPOLLIN|hupEvents) != 0 {
		if c.x != nil || c.closing {
			c.unread = true
			return
		}
		lp.clientRead(c, ev&hupEvents != 0)
	}
}

// flushClient writes what is queued for c. It reports whether c is still
// open.
func (lp *evLoop) flushClient(c *lconn) bool {
	for c.outOff < len(c.out) {
		n, err := rawIO(unix.SYS_WRITE, uintptr(c.fd), c.out[c.outOff:])
		if err == unix.EAGAIN {
			return true // the next EPOLLOUT edge resumes
		}
		if err != nil {
			lp.closeClient(c)
			return false
		}
		c.outOff += n
		lp.arm(c, tClientWrite, lp.l.settings.write)
	}
	c.out, c.outOff = c.out[:0], 0
	if c.tkind == tClientWrite {
		lp.disarm(c)
	}
	if c.closing {
		lp.closeClient(c)
		return false
	}
	if b := c.peer; b != nil && b.paused {
		b.paused = false
		lp.arm(b, tBackendBody, lp.l.settings.idle) // the backend is waited for again
		lp.backendRead(b, true)
		return c.fd >= 0
	}
	if c.x == nil && !c.serving {
		lp.next(c)
		return c.fd >= 0
	}
	return true
}

// writeClient sends head, body and tail, in that order, to c (one writev)
// and queues what the socket does not take. It reports whether c is still
// open.
func (lp *evLoop) writeClient(c *lconn, head, body, tail []byte) bool {
	if c.outOff < len(c.out) {
		c.out = append(append(append(c.out, head...), body...), tail...)
		return true
	}
	parts := [3][]byte{head, body, tail}
	niov, total := 0, 0
	for _, p := range parts {
		if len(p) > 0 {
			lp.iov[niov].Base, lp.iov[niov].Len = &p[0], uint64(len(p))
			niov++
			total += len(p)
		}
	}
	if total == 0 {
		return true
	}
	var n int
	var e unix.Errno
	for {
		r, _, errno := unix.RawSyscall(unix.SYS_WRITEV, uintptr(c.fd), uintptr(unsafe.Pointer(&lp.iov[0])), uintptr(niov))
		n, e = int(r), errno
		if e != unix.EINTR {
			break
		}
	}
	if e == unix.EAGAIN {
		n = 0
	} else if e != 0 {
		lp.closeClient(c)
		return false
	}
	if n == total {
		return true
	}
	c.out, c.outOff = c.out[:0], 0
	for _, p := range parts {
		if n >= len(p) {
			n -= len(p)
			continue
		}
		c.out = append(c.out, p[n:]...)
		n = 0
	}
	if !lp.watch(c) {
		return false
	}
	lp.arm(c, tClientWrite, lp.l.settings.write)
	return true
}

// clientRead reads what c sent and serves the requests in it.
// hup as for backendRead.
func (lp *evLoop) clientRead(c *lconn, hup bool) {
	buf := lp.rbuf
	n := copy(buf, c.in)
	c.in = c.in[:0]
	for n < len(buf) {
		m, err := rawIO(unix.SYS_READ, uintptr(c.fd), buf[n:])
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			lp.closeClient(c)
			return
		}
		if m == 0 {
			c.eof = true
			break
		}
		n += m
		if n < len(buf) && !hup {
			break // a short read emptied the socket; the next arrival is a new edge
		}
	}
	lp.serveBuffered(c, buf[:n], n == len(buf))
}

// serveBuffered serves the complete requests at the start of data, one at a
// time, and keeps the rest for later. The next request waits while an
// answer is in flight or not yet taken by the client: answers stay in order,
// a hand-off never overtakes bytes still queued, and a client that does not
// read cannot make the loop queue more for it. full: data filled the read
// buffer, so the socket may hold more.
func (lp *evLoop) serveBuffered(c *lconn, data []byte, full bool) {
	c.serving = true
	for len(data) > 0 && c.x == nil && !c.closing && c.outOff == len(c.out) {
		used := lp.request(c, data)
		if c.fd < 0 {
			return // closed or handed off
		}
		if used == 0 {
			break
		}
		data = data[used:]
	}
	c.serving = false
	if len(data) > 0 {
		c.in = append(c.in[:0], data...)
	}
	// full: the read stopped at the end of the buffer, not of the bytes
	// waiting, and no new edge will tell of them. eof: no edge will tell
	// of the end again.
	if c.x != nil || c.closing || c.outOff < len(c.out) {
		if full || c.eof {
			c.unread = true // next or flushClient reads on
		}
		return
	}
	if full && len(c.in) < len(lp.rbuf) {
		lp.rearm(c)
	}
	if c.eof {
		lp.closeClient(c) // what is left is not a whole request
		return
	}
	if len(c.in) > 0 {
		if lp.watch(c) && c.tkind != tClientRead {
			lp.arm(c, tClientRead, lp.l.settings.read)
		}
		return
	}
	lp.idleClient(c)
}

// idleClient arms the wait for c's next request: idle_timeout, or
// read_timeout when it is not set (as fasthttp).
func (lp *evLoop) idleClient(c *lconn) {
	if !lp.watch(c) {
		return
	}
	d := lp.l.settings.idle
	if d <= 0 || c.requests == 0 {
		// The first request must come within read_timeout (fasthttp).
		lp.arm(c, tClientRead, lp.l.settings.read)
		return
	}
	lp.arm(c, tClientIdle, d)
}

// request serves the request at the start of data, or hands the connection
// to the goroutine engine. It returns the bytes the request took, or 0 when
// it is not complete yet.
func (lp *evLoop) request(c *lconn, data []byte) int {
	l := lp.l
	if c.requests == 0 && data[0] == 'P' && (bytes.HasPrefix(data, h2Preface[:min(len(data), len(h2Preface))])) {
		lp.handoff(c, data)
		return 0
	}
	end := bytes.Index(data, crlfCRLF)
	if end < 0 {
		// A head that fills the read buffer may still be within
		// max_header_bytes: fasthttp's buffer is that large.
		if len(data) >= l.settings.maxHeader || len(data) == len(lp.rbuf) || bytes.Contains(data, lfLF) {
			lp.handoff(c, data)
		}
		return 0
	}
	headLen := end + 4
	if headLen > l.settings.maxHeader {
		lp.handoff(c, data)
		return 0
	}
	x := lp.acquireX()
	req := &x.ctx.Request
	lp.rd.Reset(data[:headLen])
	lp.br.Reset(&lp.rd)
	// A head that fasthttp finds ending before the CRLFCRLF (a bare LF
	// line end) is handed off with the requests behind it, not served
	// with them taken for part of its head.
	if err := req.Header.Read(lp.br); err != nil || lp.rd.Len()+lp.br.Buffered() > 0 || !lp.canServe(x, headLen) {
		lp.releaseX(x)
		lp.handoff(c, data)
		return 0
	}
	total := headLen + max(req.Header.ContentLength(), 0)
	if total > len(data) {
		lp.releaseX(x)
		if c.eof {
			lp.closeClient(c)
		}
		return 0 // the rest of the body is on its way
	}
	x.ctx.Init2(nil, l.server.Logger, false)
	x.ctx.SetRemoteAddr(&c.addr)
	if total > headLen {
		req.SetBody(data[headLen:total])
	}
	x.head = req.Header.IsHead()
	x.client = c
	c.x = x
	c.requests++
	lp.disarm(c)
	lp.start(x)
	return total
}

// canServe reports whether the loop serves the request whose head is
// parsed in x (headLen bytes): see the list at the top of this file.
func (lp *evLoop) canServe(x *lexch, headLen int) bool {
	h := &x.ctx.Request.Header
	if !h.IsHTTP11() || len(h.PeekBytes(hdrExpect)) > 0 || len(h.PeekBytes(hdrUpgrade)) > 0 {
		return false
	}
	cl := h.ContentLength()
	if cl == -1 || cl > requestPrefetch || int64(cl) > lp.l.settings.maxBody || headLen+cl > len(lp.rbuf) {
		return false
	}
	if h.ConnectionUpgrade() {
		return false
	}
	// The route chosen here is the one begin uses: one match a request.
	rt := lp.l.rt.Load()
	r := rt.routes.match(h.Host(), x.ctx.Path())
	x.x.rt, x.x.r, x.x.routed = rt, r, true
	return r == nil || r.pool.loopable
}

// handoff gives c to the goroutine engine with the bytes already read.
func (lp *evLoop) handoff(c *lconn, buffered []byte) {
	_ = unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	f := os.NewFile(uintptr(c.fd), "")
	nc, err := net.FileConn(f)
	_ = f.Close()
	lp.clients--
	lp.forget(c)
	if err != nil {
		lp.l.ln.open.Add(-1)
		lp.l.ln.active.Dec()
		lp.l.logError("hand a connection to the goroutine engine", err)
		return
	}
	lp.l.ln.handoffConn(nc, buffered)
}

// start runs a parsed request through the phases of handler.go.
func (lp *evLoop) start(x *lexch) {
	if !lp.l.begin(&x.ctx, &x.x, &x.idBuf) {
		lp.respond(x)
		return
	}
	lp.attempt(x)
}

// attempt sends x to the next member, or answers it when none is left.
func (lp *evLoop) attempt(x *lexch) {
	l := lp.l
	ctx := &x.ctx
	for {
		i := l.pick(ctx, &x.x)
		if i < 0 {
			l.end(ctx, &x.x)
			lp.respond(x)
			return
		}
		err := lp.send(x, i)
		if err == nil {
			return // the answer comes to backendRead
		}
		if !l.attempted(ctx, &x.x, i, err) {
			l.end(ctx, &x.x)
			lp.respond(x)
			return
		}
	}
}

// send writes x's request to a connection to member i.
func (lp *evLoop) send(x *lexch, i int) error {
	if len(x.req) == 0 {
		req := &x.ctx.Request
		req.URI().DisablePathNormalizing = true
		lp.bw.Reset(appendWriter{&x.req})
		err := req.Write(lp.bw)
		if err == nil {
			err = lp.bw.Flush()
		}
		if err != nil {
			return err
		}
	}
	lu := lp.upstream(x.x.p.ups[i])
	b, err := lp.backendConn(lu)
	if err != nil {
		return err
	}
	c := x.client
	b.peer, c.peer = c, b
	if b.connecting {
		lp.arm(b, tBackendConnect, lu.connect)
		return nil
	}
	lp.arm(b, tBackendResponse, x.x.fw.timeout)
	lp.flushBackend(b)
	return nil
}

// upstream returns the loop's view of u.
func (lp *evLoop) upstream(u *upstream) *loopUpstream {
	if u.id < len(lp.ups) && lp.ups[u.id] != nil {
		return lp.ups[u.id]
	}
	lp.dropRetired()
	lu := &loopUpstream{u: u, idleFor: u.hc.MaxIdleConnDuration, connect: u.connectTimeout}
	if lu.idleFor <= 0 {
		lu.idleFor = backendIdleDefault
	}
	ap := u.addrPort
	if ap.Addr().Is4() || ap.Addr().Is4In6() {
		lu.family = unix.AF_INET
		lu.sa4.Addr = ap.Addr().Unmap().As4()
		lu.sa4.Port = int(ap.Port())
	} else {
		lu.family = unix.AF_INET6
		lu.sa6.Addr = ap.Addr().As16()
		lu.sa6.Port = int(ap.Port())
	}
	if u.id >= len(lp.ups) {
		lp.ups = append(lp.ups, make([]*loopUpstream, u.id+1-len(lp.ups))...)
	}
	lp.ups[u.id] = lu
	return lu
}

// dropRetired closes the idle connections to upstreams a reload retired and
// forgets those upstreams once no connection is left (busy ones close when
// their answer ends). It runs when a new upstream is first used, which is
// after a reload.
func (lp *evLoop) dropRetired() {
	for i, lu := range lp.ups {
		if lu == nil || !lu.u.retired.Load() {
			continue
		}
		for len(lu.idle) > 0 {
			lp.closeBackend(lu.idle[len(lu.idle)-1])
		}
		if lu.conns == 0 {
			lp.ups[i] = nil
		}
	}
}

// backendConn returns an idle keep-alive connection to lu or starts a new
// one.
func (lp *evLoop) backendConn(lu *loopUpstream) (*lconn, error) {
	if n := len(lu.idle); n > 0 {
		b := lu.idle[n-1]
		lu.idle = lu.idle[:n-1]
		b.idx = -1
		lp.disarm(b)
		lp.resetBackend(b)
		b.reused = true
		return b, nil
	}
	// max_connections_per_backend counts the connections of every loop.
	if !lu.u.takeConn() {
		return nil, fasthttp.ErrNoFreeConns
	}
	fd, err := unix.Socket(lu.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		lu.u.giveConn()
		return nil, errLoopDial
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if lu.family == unix.AF_INET {
		err = unix.Connect(fd, &lu.sa4)
	} else {
		err = unix.Connect(fd, &lu.sa6)
	}
	if err != nil && err != unix.EINPROGRESS {
		_ = unix.Close(fd)
		lu.u.giveConn()
		return nil, errLoopDial
	}
	b := lp.newConn(fd, true)
	b.up = lu
	lu.conns++
	b.connecting = err != nil
	if !lp.register(b) {
		lp.closeBackend(b)
		return nil, errLoopDial
	}
	return b, nil
}

func (lp *evLoop) resetBackend(b *lconn) {
	b.sent, b.gotBytes, b.headDone, b.paused, b.keep, b.reused = 0, false, false, false, false, false
	b.framing, b.interim, b.bodyLeft, b.chunks = bodyNone, 0, 0, chunkScanner{}
	b.in = b.in[:0]
}

// idleBackend keeps b for the next request to its upstream.
func (lp *evLoop) idleBackend(b *lconn) {
	lu := b.up
	b.peer = nil
	lp.resetBackend(b)
	b.idx = len(lu.idle)
	lu.idle = append(lu.idle, b)
	lp.arm(b, tBackendIdle, lu.idleFor)
}

func (lp *evLoop) closeBackend(b *lconn) {
	if b.fd < 0 {
		return
	}
	if lu := b.up; lu != nil {
		if b.idx >= 0 {
			last := len(lu.idle) - 1
			lu.idle[b.idx] = lu.idle[last]
			lu.idle[b.idx].idx = b.idx
			lu.idle = lu.idle[:last]
		}
		lu.u.giveConn()
		if lu.conns--; lu.conns == 0 && lu.u.retired.Load() {
			lp.ups[lu.u.id] = nil // a reload dropped it: nothing will use it again
		}
	}
	_ = unix.Close(b.fd)
	lp.forget(b)
}

// flushBackend writes what is left of the request. It reports whether b is
// still usable.
func (lp *evLoop) flushBackend(b *lconn) bool {
	x := b.peer.x
	for b.sent < len(x.req) {
		n, err := rawIO(unix.SYS_WRITE, uintptr(b.fd), x.req[b.sent:])
		if err == unix.EAGAIN {
			return true
		}
		if err != nil {
			lp.backendFailed(b, errConnReset)
			return false
		}
		b.sent += n
	}
	return true
}

func (lp *evLoop) backendEvent(b *lconn, ev uint32) {
	if b.connecting {
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		if soerr, err := unix.GetsockoptInt(b.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soerr != 0 {
			lp.backendFailed(b, errLoopDial)
			return
		}
		b.connecting = false
		if b.peer != nil {
			lp.arm(b, tBackendResponse, b.peer.x.x.fw.timeout)
			if !lp.flushBackend(b) {
				return
			}
		}
	} else if ev&unix.EPOLLOUT != 0 && b.peer != nil && b.sent < len(b.peer.x.req) {
		if !lp.flushBackend(b) {
			return
		}
	}
	if ev&(unix.EPOLLIN|hupEvents) != 0 {
		lp.backendRead(b, ev&hupEvents != 0)
	}
}

// backendRead reads b's answer and relays it.
// hup: the event reported a hang-up (or the caller does not know): read on
// to EAGAIN, since no new edge will come for the end of the stream.
func (lp *evLoop) backendRead(b *lconn, hup bool) {
	for {
		c := b.peer
		if c == nil {
			// Idle: a late edge finds EAGAIN; a close or stray bytes end
			// the connection.
			if _, err := rawIO(unix.SYS_READ, uintptr(b.fd), lp.rbuf); err != unix.EAGAIN {
				lp.closeBackend(b)
			}
			return
		}
		if c.outOff < len(c.out) {
			b.paused = true // flushClient reads on once the client took it
			if b.tkind == tBackendBody {
				lp.disarm(b) // the client is waited for, not the backend
			}
			return
		}
		if b.splicing {
			lp.pump(b, c)
			return
		}
		n := copy(lp.rbuf, b.in)
		b.in = b.in[:0]
		end := len(lp.rbuf)
		if !b.headDone && n == 0 {
			end = loopHeadRead
		}
		m, err := rawIO(unix.SYS_READ, uintptr(b.fd), lp.rbuf[n:end])
		if err == unix.EAGAIN {
			b.in = append(b.in, lp.rbuf[:n]...)
			return
		}
		if err != nil {
			lp.backendFailed(b, errConnReset)
			return
		}
		if m == 0 {
			if b.headDone && b.framing == bodyClose {
				lp.finishExchange(b, c)
				if lp.writeClient(c, lastChunk, nil, nil) {
					lp.next(c)
				}
				return
			}
			lp.backendFailed(b, io.EOF)
			return
		}
		b.gotBytes = true
		short := n+m < end
		if !lp.backendData(b, c, lp.rbuf[:n+m]) || (short && !hup) {
			return
		}
	}
}

// backendData relays data, the next bytes of b's answer, to c. It reports
// whether to read on.
func (lp *evLoop) backendData(b, c *lconn, data []byte) bool {
	x := c.x
	var head []byte
	fresh := false // the head was read in this call
	if !b.headDone {
		resp := &x.ctx.Response
		for {
			n := bytes.Index(data, crlfCRLF) + 4
			if n < 4 {
				if len(data) >= len(lp.rbuf)/2 {
					lp.backendFailed(b, errBadResponse)
					return false
				}
				b.in = append(b.in[:0], data...)
				return true
			}
			lp.rd.Reset(data[:n])
			lp.br.Reset(&lp.rd)
			if x.head {
				resp.SkipBody = true
			}
			if err := resp.Header.Read(lp.br); err != nil {
				lp.backendFailed(b, errBadResponse)
				return false
			}
			// The head ends where fasthttp's parser ends it, as in the
			// goroutine engine: before n when it ends in "\r\n\n" or
			// "\n\r\n" and the body holds the first CRLFCRLF.
			data = data[n-lp.rd.Len()-lp.br.Buffered():]
			st := resp.StatusCode()
			if st >= 100 && st < 200 && st != fasthttp.StatusSwitchingProtocols {
				if b.interim++; b.interim >= maxInterim {
					lp.backendFailed(b, errTooManyInterim)
					return false
				}
				continue // interim answers are not relayed (as the goroutine engine)
			}
			if st == fasthttp.StatusSwitchingProtocols {
				lp.backendFailed(b, errUnexpectedUpgrade)
				return false
			}
			break
		}
		st := resp.StatusCode()
		cl := resp.Header.ContentLength()
		switch {
		case x.head || st == fasthttp.StatusNoContent || st == fasthttp.StatusNotModified:
			b.framing = bodyNone
		case cl >= 0:
			b.framing, b.bodyLeft = bodyLength, int64(cl)
		case cl == -1:
			b.framing = bodyChunked
		default:
			b.framing = bodyClose
		}
		b.keep = !resp.ConnectionClose() && b.framing != bodyClose
		b.headDone = true
		x.x.bytesOut = 0
		l := lp.l
		member := x.x.member
		l.attempted(&x.ctx, &x.x, member, nil)
		x.x.p.pool.Acquire(member) // busy until the body ends, as a stream
		if b.framing == bodyClose {
			// Sent on chunked, so the client's connection stays open
			// (HAProxy and nginx do the same).
			resp.Header.SetContentLength(-1)
		}
		if x.x.clientClose || lp.draining || c.closeAfter {
			c.closeAfter = true
			resp.Header.SetConnectionClose()
		}
		lp.head = appendResponseHead(lp.head[:0], &resp.Header)
		head = lp.head
		fresh = true
		lp.disarm(b)
	}
	done := false
	var tail []byte
	switch b.framing {
	case bodyClose:
		if len(data) > 0 {
			if !fresh {
				head = lp.head[:0]
			}
			head = appendChunkSize(head, len(data))
			lp.head = head
			tail = crlf
		}
	case bodyNone:
		if len(data) > 0 {
			b.keep = false
		}
		data, done = nil, true
	case bodyLength:
		if int64(len(data)) >= b.bodyLeft {
			if int64(len(data)) > b.bodyLeft {
				b.keep = false // bytes after the answer: do not reuse
			}
			data, done = data[:b.bodyLeft], true
		}
		b.bodyLeft -= int64(len(data))
		if b.bodyLeft >= spliceThreshold {
			b.splicing = true
		}
	case bodyChunked:
		n, end, err := b.chunks.scan(data)
		if err != nil {
			x.x.rec.reason = "upstream_stream_error"
			b.keep = false
			lp.closeClient(c)
			return false
		}
		if end && n < len(data) {
			b.keep = false
		}
		data, done = data[:n], end
	}
	x.x.bytesOut += len(data)
	if b.framing == bodyChunked {
		x.x.bytesOut = int(b.chunks.data) // the log counts the body, not its framing
	}
	if done {
		// Ended before the last write, as the goroutine engine logs
		// before it writes: once the client has the answer, its log
		// line is there.
		lp.finishExchange(b, c)
		if lp.writeClient(c, head, data, tail) {
			lp.next(c)
		}
		return false
	}
	if fresh {
		// The body is still coming: count the request now, with its
		// duration up to the head (an event stream may last for hours).
		lp.l.countHead(&x.ctx, &x.x)
	}
	if !lp.writeClient(c, head, data, tail) {
		return false
	}
	if c.outOff < len(c.out) {
		b.paused = true
		if b.tkind == tBackendBody {
			lp.disarm(b) // the client is waited for, not the backend
		}
		return false
	}
	if b.splicing {
		lp.pump(b, c)
		return false
	}
	lp.arm(b, tBackendBody, lp.l.settings.idle)
	return true
}

// appendResponseHead writes a backend's response head, as the client gets
// it, over dst (fasthttp's AppendBytes starts at dst[:0] too). fasthttp's serializer, used outside its server, would add a default
// Content-Type and put its own Date in place of the backend's; the
// goroutine engine (fasthttp's server, set up with NoDefaultContentType and
// NoDefaultDate) passes both through as the backend sent them, and so does
// this.
func appendResponseHead(dst []byte, h *fasthttp.ResponseHeader) []byte {
	h.SetNoDefaultContentType(true)
	const start = 0
	dst = h.AppendBytes(dst[:0])
	date := h.PeekBytes(hdrDate)
	if len(date) == 0 {
		return dst // fasthttp's Date stands in for the missing one (RFC 9110 6.6.1)
	}
	head := dst[start:]
	i := bytes.Index(head, crlfDate)
	if i < 0 {
		return dst
	}
	v := i + len(crlfDate)
	e := bytes.Index(head[v:], crlf)
	if e < 0 {
		return dst
	}
	// Put the backend's value in place of fasthttp's, moving the rest of
	// the head (copy is a memmove) when the lengths differ.
	at, oldEnd := start+v, len(dst)
	delta := len(date) - e
	if delta > 0 {
		dst = append(dst, make([]byte, delta)...)
	}
	copy(dst[at+len(date):], dst[at+e:oldEnd])
	copy(dst[at:], date)
	return dst[:oldEnd+delta]
}

// pump moves the rest of b's body to c with splice(2), backend socket to
// pipe to client socket, until one side has to wait (its edge resumes it)
// or the body is done.
func (lp *evLoop) pump(b, c *lconn) {
	x := c.x
	t := &b.xfer
	if t.Pool == nil {
		t.Pool = &lp.l.pipes
	}
	for {
		if t.InPipe > 0 {
			moved, again, err := t.Drain(c.fd)
			x.x.bytesOut += int(moved)
			if err != nil {
				lp.closeClient(c)
				return
			}
			if again {
				b.paused = true // clientEvent resumes on EPOLLOUT
				if b.tkind == tBackendBody {
					lp.disarm(b) // the client is waited for, not the backend
				}
				if lp.watch(c) {
					lp.arm(c, tClientWrite, lp.l.settings.write)
				}
				return
			}
			if c.tkind == tClientWrite {
				lp.disarm(c)
			}
		}
		if b.bodyLeft == 0 {
			t.Release()
			b.splicing = false
			lp.finishExchange(b, c)
			lp.next(c)
			return
		}
		n, again, err := t.Fill(b.fd, int(min(b.bodyLeft, splice.MaxMove)))
		if err != nil || (n == 0 && !again) {
			lp.backendFailed(b, io.ErrUnexpectedEOF)
			return
		}
		if again {
			lp.arm(b, tBackendBody, lp.l.settings.idle)
			return
		}
		b.bodyLeft -= n
	}
}

// finishExchange ends c's exchange with b once the whole answer is read.
func (lp *evLoop) finishExchange(b, c *lconn) {
	x := c.x
	x.x.p.pool.Release(x.x.member)
	b.peer, c.peer, c.x = nil, nil, nil
	// At max_connections_per_backend an idle connection would be one no
	// other loop can use while it refuses requests for the limit: close
	// it, so the next request connects from whichever loop serves it.
	lu := b.up
	full := len(lp.l.ln.loops) > 1 && lu.u.connsFull()
	if b.keep && !lp.draining && !full && !lu.u.retired.Load() {
		lp.idleBackend(b)
	} else {
		lp.closeBackend(b)
	}
	lp.l.end(&x.ctx, &x.x)
	lp.releaseX(x)
}

// appendChunkSize appends the size line of a chunk of n bytes.
func appendChunkSize(dst []byte, n int) []byte {
	dst = strconv.AppendUint(dst, uint64(n), 16)
	return append(dst, crlf...)
}

// next goes on with c after an answer: close it, or serve what it sent
// meanwhile. Inside serveBuffered, which goes on by itself, it only closes.
func (lp *evLoop) next(c *lconn) {
	if c.closeAfter {
		if c.outOff < len(c.out) {
			c.closing = true
			return
		}
		lp.closeClient(c)
		return
	}
	if c.serving || c.outOff < len(c.out) {
		// The next request waits until the client took this answer
		// (flushClient goes on): answers are not fetched and queued for a
		// client that does not read them, write_timeout stays armed, and
		// a hand-off finds nothing queued. Inside serveBuffered, its own
		// loop goes on.
		return
	}
	if c.unread || len(c.in) > 0 || c.eof {
		// Pipelined or sent meanwhile, or the client's end to read.
		c.unread = false
		lp.clientRead(c, true)
		return
	}
	lp.idleClient(c)
}

// respond sends the answer the phases left in x.ctx.Response (an error, a
// 404, a 401) and ends the exchange in the loop.
func (lp *evLoop) respond(x *lexch) {
	c := x.client
	ctx := &x.ctx
	if ctx.Request.Header.ConnectionClose() || ctx.Response.ConnectionClose() || lp.draining {
		c.closeAfter = true
		ctx.Response.SetConnectionClose()
	}
	if x.head {
		ctx.Response.SkipBody = true
	}
	lp.out = lp.out[:0]
	lp.bw.Reset(appendWriter{&lp.out})
	_ = ctx.Response.Write(lp.bw)
	_ = lp.bw.Flush()
	c.x, c.peer = nil, nil
	lp.releaseX(x)
	if lp.writeClient(c, lp.out, nil, nil) {
		lp.next(c)
	}
}

// backendFailed handles a backend connection that failed or closed.
func (lp *evLoop) backendFailed(b *lconn, err error) {
	c := b.peer
	if c == nil {
		lp.closeBackend(b)
		return
	}
	x := c.x
	if b.headDone {
		// The answer was under way: the client must see it cut short.
		// abandon closes b and frees the member.
		x.x.rec.reason = "upstream_stream_error"
		lp.closeClient(c)
		return
	}
	reused, gotBytes := b.reused, b.gotBytes
	b.peer, c.peer = nil, nil
	lp.closeBackend(b)
	if reused && !gotBytes && !x.freshRetry && (err == errConnReset || err == io.EOF) && isIdempotent(x.ctx.Request.Header.Method()) {
		// A pooled connection the backend had closed: once more on a
		// fresh one to the same member, as the request may never have
		// arrived. Not a POST, which it may have (RFC 9110 9.2.2: a
		// proxy does not retry a non-idempotent request; nor does the
		// goroutine engine). Not after response_timeout: the backend
		// was silent, not gone, and the client has waited its time.
		x.freshRetry = true
		x.ctx.Response.Reset()
		if lp.send(x, x.x.member) == nil {
			return
		}
	}
	l := lp.l
	ctx := &x.ctx
	if l.attempted(ctx, &x.x, x.x.member, err) {
		x.freshRetry = false
		lp.attempt(x)
		return
	}
	l.end(ctx, &x.x)
	lp.respond(x)
}

// expire fires the deadlines that passed.
func (lp *evLoop) expire() {
	for _, q := range lp.queues {
		for q.head != nil && q.head.tat <= lp.now {
			c := q.head
			kind := c.tkind
			lp.disarm(c)
			lp.timeout(c, kind)
		}
	}
}

func (lp *evLoop) timeout(c *lconn, kind uint8) {
	switch kind {
	case tClientIdle, tClientWrite:
		lp.closeClient(c)
	case tClientRead:
		if len(c.in) == 0 {
			lp.closeClient(c) // nothing sent: fasthttp closes too
			return
		}
		lp.readTimedOut(c)
	case tBackendConnect:
		lp.backendFailed(c, fasthttp.ErrDialTimeout)
	case tBackendResponse:
		lp.backendFailed(c, fasthttp.ErrTimeout)
	case tBackendBody:
		if cl := c.peer; cl != nil {
			cl.x.x.rec.reason = "upstream_stream_error"
			lp.closeClient(cl)
			return
		}
		lp.closeBackend(c)
	case tBackendIdle:
		lp.closeBackend(c)
	}
}

// readTimedOut answers 408 to a client whose request did not arrive within
// read_timeout, as fasthttp's server does (handleError).
func (lp *evLoop) readTimedOut(c *lconn) {
	x := lp.acquireX()
	x.ctx.Init2(nil, lp.l.server.Logger, false)
	x.ctx.SetRemoteAddr(&c.addr)
	x.client = c
	lp.l.handleError(&x.ctx, os.ErrDeadlineExceeded)
	c.closeAfter = true
	c.in = c.in[:0]
	lp.respond(x)
}

// waitMillis is the epoll_wait timeout: until the next deadline.
func (lp *evLoop) waitMillis() int {
	next := int64(-1)
	for _, q := range lp.queues {
		if q.head != nil && (next < 0 || q.head.tat < next) {
			next = q.head.tat
		}
	}
	if next < 0 {
		return -1
	}
	d := next - int64(time.Since(lp.base))
	if d <= 0 {
		return 0
	}
	return int((d + int64(time.Millisecond) - 1) / int64(time.Millisecond))
}

// arm sets c's deadline of kind to d from now (none for d <= 0).
func (lp *evLoop) arm(c *lconn, kind uint8, d time.Duration) {
	lp.disarm(c)
	if d <= 0 {
		return
	}
	var q *timerQueue
	for _, tq := range lp.queues {
		if tq.d == int64(d) {
			q = tq
			break
		}
	}
	if q == nil {
		// A new duration. Past maxTimerQueues (reloads changed timeouts
		// many times), drop the empty queues first, so their number
		// follows the durations in use; below it, a queue that is empty
		// for a moment stays and costs no allocation when used again.
		if len(lp.queues) >= maxTimerQueues {
			kept := lp.queues[:0]
			for _, tq := range lp.queues {
				if tq.head != nil {
					kept = append(kept, tq)
				}
			}
			clear(lp.queues[len(kept):])
			lp.queues = kept
		}
		q = &timerQueue{d: int64(d)}
		lp.queues = append(lp.queues, q)
	}
	c.tq, c.tkind, c.tat = q, kind, lp.now+int64(d)
	c.tprev, c.tnext = q.tail, nil
	if q.tail != nil {
		q.tail.tnext = c
	} else {
		q.head = c
	}
	q.tail = c
}

func (lp *evLoop) disarm(c *lconn) {
	q := c.tq
	if q == nil {
		return
	}
	if c.tprev != nil {
		c.tprev.tnext = c.tnext
	} else {
		q.head = c.tnext
	}
	if c.tnext != nil {
		c.tnext.tprev = c.tprev
	} else {
		q.tail = c.tprev
	}
	c.tq, c.tprev, c.tnext, c.tkind = nil, nil, nil, tNone
}

func (lp *evLoop) acquireX() *lexch {
	if n := len(lp.freeX); n > 0 {
		x := lp.freeX[n-1]
		lp.freeX = lp.freeX[:n-1]
		return x
	}
	return &lexch{}
}

func (lp *evLoop) releaseX(x *lexch) {
	x.ctx.Request.Reset()
	x.ctx.Response.Reset()
	x.x = exchange{}
	x.req = x.req[:0]
	x.client, x.head, x.freshRetry = nil, false, false
	if cap(x.req) > 64<<10 {
		x.req = nil
	}
	lp.freeX = append(lp.freeX, x)
}

// loopable reports whether the event loop may serve requests routed to a
// pool: HTTP/1.1 backends named by IP address (the loop connects without a
// resolver).
func loopable(protocol string, ups []*upstream) bool {
	if protocol == "h2c" {
		return false
	}
	for _, u := range ups {
		if !u.addrPort.IsValid() {
			return false
		}
	}
	return true
}

// parseAddrPort returns addr as an IP address and port, or the zero value
// when it names a host.
func parseAddrPort(addr string) netip.AddrPort {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.AddrPort{}
	}
	return ap
}
