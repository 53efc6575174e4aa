package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"

	"frontdoor/internal/deadlines"
	"frontdoor/internal/rawio"
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
// the goroutine engine (core_exchange.go: begin, pick, attempted, end), so
// routing, request IDs, headers, JWT, affinity, retries, passive ejection,
// metrics and the access log are the same code.
//
// A connection leaves the loop for the goroutine engine (fasthttp's server,
// the code of goengine_stream.go, goengine_tunnel.go, goengine_splice.go and the h2c server) the
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
	// backendIdleDefault is how long an idle backend connection is kept
	// when the pool sets no idle_timeout (fasthttp's default, as in the
	// goroutine engine).
	backendIdleDefault = 10 * time.Second
)

// Deadline kinds of a loop connection (at most one is armed at a time).
const (
	_ uint8 = iota // 0: none armed
	tClientIdle
	tClientRead
	tClientWrite
	tBackendConnect
	tBackendResponse
	tBackendBody
	tBackendIdle
	tQueue // a client's exchange waits in a pool queue (loop_queue.go)
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
	ctlGrant // a pool queue handed a slot to an exchange parked here (loop_queue.go)
)

var (
	crlfCRLF  = []byte("\r\n\r\n")
	lfLF      = []byte("\n\n")
	crlf      = []byte("\r\n")
	lastChunk = []byte("0\r\n\r\n")
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

	// dl is its deadline (loop_deadline.go).
	dl deadlines.Entry[lconn]

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
	// accept_proxy: proxied once the PROXY protocol header was read; via,
	// when it named a client (now addr), is the peer it came through.
	proxied bool
	via     netip.AddrPort

	// backend
	up         *loopBackend
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

// addrPort is c's client address.
func (c *lconn) addrPort() netip.AddrPort {
	ip, _ := netip.AddrFromSlice(c.addr.IP)
	return netip.AddrPortFrom(ip.Unmap(), uint16(c.addr.Port))
}

// setAddrPort makes ap c's client address (c.addr, backed by c.ip).
func (c *lconn) setAddrPort(ap netip.AddrPort) {
	a := ap.Addr().Unmap()
	if a.Is4() {
		a4 := a.As4()
		copy(c.ip[:4], a4[:])
		c.addr.IP = c.ip[:4]
	} else {
		c.ip = a.As16()
		c.addr.IP = c.ip[:16]
	}
	c.addr.Port = int(ap.Port())
}

// lexch is a request in flight in a loop: the fasthttp context the phases
// of core_exchange.go work on, and what the loop needs besides.
type lexch struct {
	ctx        fasthttp.RequestCtx
	x          exchange
	idBuf      [32]byte
	req        []byte // the request as sent, for a retry
	client     *lconn
	head       bool // a HEAD request: the answer has no body
	freshRetry bool // the one silent retry after a stale pooled connection
	// qw is the exchange's place in its pool's queue; parkIdx its index
	// in evLoop.parked while it waits there, else -1 (loop_queue.go).
	qw      queueWaiter
	parkIdx int
}

// loopBackend is a loop's view of a poolBackend: its address and the loop's
// own keep-alive connections to it.
type loopBackend struct {
	u       *poolBackend
	family  int
	sa4     unix.SockaddrInet4
	sa6     unix.SockaddrInet6
	idle    []*lconn
	conns   int // this loop's connections to it
	idleFor time.Duration
	connect time.Duration
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

	// passHead is passThroughHead(), read only.
	passHead *fasthttp.ResponseHeader
	// cur is the connection being served, for survive.
	cur *lconn
	// acceptAt, when not 0, is when (lp.now) accepting resumes after the
	// process ran out of descriptors; acceptPause is the current pause.
	acceptAt    int64
	acceptPause time.Duration

	freeConns []*lconn
	freeX     []*lexch
	ups       []*loopBackend // by poolBackend.id
	parked    []*lexch       // exchanges waiting in a pool queue (loop_queue.go)
	deadlines deadlines.Set[lconn]
	clients   int
	accepting bool
	draining  bool
	shortWait bool // epoll_pwait2 works (pollShort)
	// yield parks the loop in the runtime's poller now and then
	// (loop_yield.go); it owns epfd once set.
	yield netpollYield

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
	lfd := rawio.ListenerFD(ln)
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
		passHead:    passThroughHead(),
	}
	lp.bw = bufio.NewWriterSize(nil, 4096)
	var err error
	if lp.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, err
	}
	lp.initYield()
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
	if lp.wakefd >= 0 {
		_ = unix.Close(lp.wakefd)
	}
	lp.wakefd = -1
	lp.closeEpoll()
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
		blocked := n <= 0
		if blocked {
			var err error
			n, err = unix.EpollWait(lp.epfd, lp.events[:], lp.waitMillis())
			if err != nil && !errors.Is(err, unix.EINTR) {
				lp.l.logError("epoll_wait", err)
				lp.closeAll()
				return
			}
		}
		lp.now = int64(time.Since(lp.base))
		if blocked {
			lp.yield.at = lp.now
		}
		if lp.dispatch(n) {
			return
		}
		if lp.yieldDue(lp.now) {
			// Goroutines woken by the network run now, not when sysmon
			// polls (loop_yield.go).
			lp.yieldNetpoll()
		} else if n > 0 {
			// The raw polls above never enter the scheduler: a loop kept
			// busy would hold its P until the runtime preempts it (10 ms),
			// and every goroutine behind it (the HTTP/2 engine, the
			// goroutine engine, health checks) would wait that long.
			// Yielding once per batch costs a check of the run queue
			// when nobody waits.
			runtime.Gosched()
		}
		lp.expire()
		if lp.acceptAt != 0 && lp.now >= lp.acceptAt {
			lp.resumeAccept()
		}
		if lp.draining && lp.clients == 0 {
			lp.closeAll()
			return
		}
	}
}

// dispatch handles the n events of one wake-up. It reports whether the
// loop ends.
//
// Backend connections go first: the answers they bring end exchanges
// and put their connections back in the idle lists before the requests of
// the same wake-up take one. Taken in arrival order, a request ahead of
// the answer that would free a connection opens a new one; under high
// client concurrency the pool then grows with every stall of the loop,
// and answers already read wait behind new requests (issue 24).
func (lp *evLoop) dispatch(n int) bool {
	for _, backends := range [2]bool{true, false} {
		for i := 0; i < n; {
			var stop bool
			if i, stop = lp.dispatchFrom(i, n, backends); stop {
				return true
			}
		}
	}
	return false
}

// dispatchFrom handles the events from the one at from on: those of
// backend connections, or (backends false) all others. A panic while
// it handles a connection closes that connection (survive) and returns the
// index of the next event, so the loop goes on with the others: with edge
// triggering, an event skipped would be lost for good.
func (lp *evLoop) dispatchFrom(from, n int, backends bool) (next int, stop bool) {
	next = from
	defer func() {
		if r := recover(); r != nil {
			lp.survive(r)
			next++
		}
	}()
	for ; next < n; next++ {
		if next&(loopYieldCheck-1) == loopYieldCheck-1 {
			lp.yieldIfDue() // a long batch must not delay the yield (loop_yield.go)
		}
		e := &lp.events[next]
		fd := int(e.Fd)
		switch {
		case backends:
			// A connection closed and its descriptor reused meanwhile
			// has another generation: its event is stale.
			if fd != lp.wakefd && fd != lp.lfd && fd < len(lp.conns) {
				if c := lp.conns[fd]; c != nil && c.backend && c.gen == e.Pad {
					lp.cur = c
					lp.backendEvent(c, e.Events)
					lp.cur = nil
				}
			}
		case fd == lp.wakefd:
			if lp.controlled() {
				return next, true
			}
		case fd == lp.lfd && lp.accepting:
			lp.accept()
		case fd < len(lp.conns):
			c := lp.conns[fd]
			if c == nil || c.gen != e.Pad || c.backend {
				continue // stale, or a backend's, handled first
			}
			lp.cur = c
			lp.clientEvent(c, e.Events)
			lp.cur = nil
		}
	}
	return next, false
}

// survive handles a panic raised while the loop served lp.cur (a bug): it
// logs the panic with its stack and the request ID, counts it in
// panics_total, and closes the connection and its peer. The loop's other
// connections are untouched.
func (lp *evLoop) survive(r any) {
	c := lp.cur
	lp.cur = nil
	lp.l.panics.Inc()
	client := c
	if c != nil && c.backend {
		client = c.peer
	}
	var id []byte
	if client != nil && client.x != nil {
		id = client.x.x.reqID
	}
	lp.l.logger.Error("listener: panic while serving a connection; the connection is closed",
		"listener", lp.l.name, "request_id", string(id), "panic", r, "stack", string(debug.Stack()))
	if c != nil {
		lp.discard(c)
	}
}

// discard closes c and its peer after a panic: with the usual bookkeeping
// when that works, else just their descriptors.
func (lp *evLoop) discard(c *lconn) {
	defer func() {
		if recover() != nil {
			for _, k := range [2]*lconn{c, c.peer} {
				if k != nil && k.fd >= 0 {
					_ = unix.Close(k.fd)
					lp.conns[k.fd] = nil
					if !k.backend {
						lp.clientClosed()
					}
					k.fd = -1
				}
			}
		}
	}()
	if c.backend {
		if cl := c.peer; cl != nil {
			lp.closeClient(cl) // closes c too
		}
		lp.closeBackend(c)
		return
	}
	lp.closeClient(c)
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
	if req&ctlGrant != 0 {
		lp.resumeGranted()
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
		if c == nil || c.fd < 0 || (c.backend && c.peer != nil) {
			continue // a busy backend closes with its client
		}
		// discard: a connection left half-served by a panic must not
		// stop the loop from ending.
		lp.discard(c)
	}
}

func (lp *evLoop) acquireX() *lexch {
	if n := len(lp.freeX); n > 0 {
		x := lp.freeX[n-1]
		lp.freeX = lp.freeX[:n-1]
		return x
	}
	return &lexch{parkIdx: -1}
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
