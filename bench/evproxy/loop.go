package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"
)

const (
	clientBufSize  = 8 << 10  // request head plus body must fit
	backendBufSize = 16 << 10 // response head must fit; bodies stream through
	maxPending     = 64 << 10 // client output above which backend reads pause
	idleTimeout    = 60       // seconds a keep-alive client may sit idle
	backendTimeout = 30       // seconds a backend may take over one response
	// connFlags: every connection is edge-triggered for both directions, so
	// nothing is ever modified with EPOLL_CTL_MOD. The listener and the stop
	// eventfd are level-triggered.
	connFlags = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET
	hupFlags  = unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR
)

var (
	crlfcrlf = []byte("\r\n\r\n")
	resp400  = []byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	resp413  = []byte("HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	resp431  = []byte("HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	resp501  = []byte("HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	resp502  = []byte("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	resp504  = []byte("HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
)

// conn is one client or backend connection. Structs and their buffers are
// recycled through the proxy's free lists, never freed.
type conn struct {
	fd        int
	gen       int32 // matches the epoll event's Pad, so a reused fd's stale events are dropped
	isBackend bool
	rbuf      []byte // fixed length; bytes read are rbuf[:rn]
	rn        int
	wbuf      []byte // output not yet written is wbuf[woff:]
	woff      int
	peer      *conn // the other side while a request is in flight
	last      int64 // client: last read; backend: last request or read (unix seconds)

	// client
	ip         []byte // text form, for X-Forwarded-For
	busy       bool   // a request is at the backend
	closeAfter bool   // "Connection: close": close once this response is out
	closing    bool   // close once wbuf is written
	eof        bool   // the client shut down its side
	rfull      bool   // reading stopped on a full rbuf; read again after a response

	// backend
	connecting bool
	inIdle     bool
	headDone   bool
	keep       bool // reusable after this response
	noBody     bool // HEAD request
	idem       bool // GET or HEAD: may be retried once
	gotBytes   bool // some of the response arrived
	retried    bool
	paused     bool // reading stopped until the client drains
	untilClose bool // body ends when the backend closes
	bodyLeft   int64
	reqLen     int // request bytes in wbuf, for a retry
}

// proxy is the whole state of the event loop. Only the goroutine running
// serve may touch it, except stop.
type proxy struct {
	epfd, lfd, stopfd int
	baddr             unix.SockaddrInet4
	conns             []*conn // by fd
	gen               int32
	freeClients       []*conn
	freeBackends      []*conn
	idle              []*conn // keep-alive backend connections, LIFO
	events            [512]unix.EpollEvent
	ev                unix.EpollEvent
	req               fasthttp.RequestHeader
	resp              fasthttp.ResponseHeader
	rd                bytes.Reader
	br                *bufio.Reader
	scratch           []byte
	now               int64
	rsa               unix.RawSockaddrInet4
	rsaLen            uint32
}

func newProxy(listen, backend string) (*proxy, error) {
	la, err := net.ResolveTCPAddr("tcp4", listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %s: %w", listen, err)
	}
	ba, err := net.ResolveTCPAddr("tcp4", backend)
	if err != nil || ba.IP.To4() == nil {
		return nil, fmt.Errorf("backend address %s: want IPv4 host:port (%v)", backend, err)
	}
	p := &proxy{epfd: -1, lfd: -1, stopfd: -1, br: bufio.NewReaderSize(nil, backendBufSize), scratch: make([]byte, 0, 1024)}
	p.baddr.Port = ba.Port
	copy(p.baddr.Addr[:], ba.IP.To4())
	p.req.SetNoDefaultContentType(true)
	p.resp.SetNoDefaultContentType(true)
	if err := p.open(la); err != nil {
		p.closeFDs()
		return nil, err
	}
	return p, nil
}

func (p *proxy) open(la *net.TCPAddr) error {
	var err error
	if p.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	if p.stopfd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	if p.lfd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0); err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if err = unix.SetsockoptInt(p.lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	// Accepted sockets inherit TCP_NODELAY from the listener on Linux: one
	// setsockopt per connection saved.
	if err = unix.SetsockoptInt(p.lfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return fmt.Errorf("TCP_NODELAY: %w", err)
	}
	sa := &unix.SockaddrInet4{Port: la.Port}
	copy(sa.Addr[:], la.IP.To4())
	if err = unix.Bind(p.lfd, sa); err != nil {
		return fmt.Errorf("bind %s: %w", la, err)
	}
	if err = unix.Listen(p.lfd, 4096); err != nil {
		return fmt.Errorf("listen %s: %w", la, err)
	}
	for _, fd := range []int{p.lfd, p.stopfd} {
		p.ev = unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &p.ev); err != nil {
			return fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	return nil
}

// addr is the address the proxy listens on.
func (p *proxy) addr() string {
	sa, err := unix.Getsockname(p.lfd)
	if err != nil {
		return ""
	}
	a := sa.(*unix.SockaddrInet4)
	return net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
}

// stop makes serve close everything and return. Safe from any goroutine.
func (p *proxy) stop() {
	var one = [8]byte{1}
	_, _ = unix.Write(p.stopfd, one[:])
}

func (p *proxy) closeFDs() {
	for _, fd := range []int{p.lfd, p.stopfd, p.epfd} {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
	}
}

// serve runs the event loop on the calling goroutine, locked to its thread,
// until stop.
func (p *proxy) serve() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer p.closeFDs()
	p.now = time.Now().Unix()
	lastSweep := p.now
	for {
		// Under load events are usually ready: a raw, non-blocking
		// epoll_wait keeps the runtime out of it (no entersyscall, so sysmon
		// neither hands the P off nor shortens its sleep). Only an empty poll
		// is followed by a blocking wait through the runtime.
		n, e := p.pollRaw()
		if e != 0 && e != unix.EINTR {
			return fmt.Errorf("epoll_wait: %w", e)
		}
		if n <= 0 {
			var err error
			n, err = unix.EpollWait(p.epfd, p.events[:], 1000)
			if err != nil {
				if errors.Is(err, unix.EINTR) {
					continue
				}
				return fmt.Errorf("epoll_wait: %w", err)
			}
		}
		p.now = time.Now().Unix()
		for i := range n {
			e := &p.events[i]
			fd := int(e.Fd)
			switch {
			case fd == p.lfd:
				p.accept()
			case fd == p.stopfd:
				for _, c := range p.conns {
					if c != nil {
						p.closeConn(c)
					}
				}
				return nil
			case fd < len(p.conns):
				c := p.conns[fd]
				if c == nil || c.gen != e.Pad {
					continue
				}
				if c.isBackend {
					p.backendEvent(c, e.Events)
				} else {
					p.clientEvent(c, e.Events)
				}
			}
		}
		if p.now != lastSweep {
			lastSweep = p.now
			p.sweep()
		}
	}
}

// pollRaw is epoll_wait with a zero timeout, as a raw system call.
func (p *proxy) pollRaw() (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(p.epfd), uintptr(unsafe.Pointer(&p.events[0])),
		uintptr(len(p.events)), 0, 0, 0)
	return int(r), e
}

// read and write are the raw system calls: the sockets are non-blocking, so
// the runtime need not know (no entersyscall/exitsyscall).
func read(fd int, b []byte) (int, unix.Errno) {
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(r), e
}

func write(fd int, b []byte) (int, unix.Errno) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(r), e
}

// accept takes one connection per event: the listener is level-triggered,
// so the next poll reports it again while more are queued, and no accept4
// is spent on finding EAGAIN.
func (p *proxy) accept() {
	for {
		p.rsaLen = unix.SizeofSockaddrInet4
		r, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(p.lfd), uintptr(unsafe.Pointer(&p.rsa)),
			uintptr(unsafe.Pointer(&p.rsaLen)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		if e == unix.EINTR || e == unix.ECONNABORTED {
			continue
		}
		if e != 0 {
			return // EAGAIN, or out of descriptors: the listener stays ready
		}
		c := p.newConn(int(r), false)
		c.ip = appendIP(c.ip[:0], p.rsa.Addr)
		c.last = p.now
		if !p.register(c) {
			p.closeConn(c)
		}
		return
	}
}

func appendIP(dst []byte, a [4]byte) []byte {
	for i, b := range a {
		if i > 0 {
			dst = append(dst, '.')
		}
		dst = strconv.AppendUint(dst, uint64(b), 10)
	}
	return dst
}

func (p *proxy) newConn(fd int, backend bool) *conn {
	list, size := &p.freeClients, clientBufSize
	if backend {
		list, size = &p.freeBackends, backendBufSize
	}
	var c *conn
	if n := len(*list); n > 0 {
		c = (*list)[n-1]
		*list = (*list)[:n-1]
	} else {
		c = &conn{rbuf: make([]byte, size), wbuf: make([]byte, 0, 4096), ip: make([]byte, 0, 16)}
	}
	*c = conn{fd: fd, isBackend: backend, rbuf: c.rbuf, wbuf: c.wbuf[:0], ip: c.ip[:0]}
	p.gen++
	c.gen = p.gen
	if fd >= len(p.conns) {
		p.conns = append(p.conns, make([]*conn, fd+1-len(p.conns))...)
	}
	p.conns[fd] = c
	return c
}

func (p *proxy) register(c *conn) bool {
	p.ev = unix.EpollEvent{Events: connFlags, Fd: int32(c.fd), Pad: c.gen}
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, c.fd, &p.ev) == nil
}

// closeConn closes the descriptor (which also leaves the epoll set) and
// recycles c. It does not touch c's peer.
func (p *proxy) closeConn(c *conn) {
	_ = unix.Close(c.fd)
	p.conns[c.fd] = nil
	c.fd, c.gen, c.peer = -1, -1, nil
	if c.isBackend {
		p.freeBackends = append(p.freeBackends, c)
	} else {
		p.freeClients = append(p.freeClients, c)
	}
}

func (p *proxy) closeClient(c *conn) {
	if b := c.peer; b != nil {
		b.peer, c.peer = nil, nil
		p.closeBackend(b)
	}
	p.closeConn(c)
}

func (p *proxy) closeBackend(b *conn) {
	if b.inIdle {
		for i, x := range p.idle {
			if x == b {
				p.idle = append(p.idle[:i], p.idle[i+1:]...)
				break
			}
		}
	}
	p.closeConn(b)
}

// fail answers c with msg (a complete response that closes) instead of the
// backend's answer.
func (p *proxy) fail(c *conn, msg []byte) {
	if b := c.peer; b != nil {
		b.peer, c.peer = nil, nil
		p.closeBackend(b)
	}
	c.busy = false
	c.closing = true
	c.wbuf = append(c.wbuf, msg...)
	p.flushClient(c)
}

// flushClient writes c's pending output. It reports whether c is still open.
func (p *proxy) flushClient(c *conn) bool {
	for c.woff < len(c.wbuf) {
		n, e := write(c.fd, c.wbuf[c.woff:])
		if e != 0 {
			if e == unix.EAGAIN {
				return true // the EPOLLOUT edge resumes
			}
			if e == unix.EINTR {
				continue
			}
			p.closeClient(c)
			return false
		}
		c.woff += n
	}
	c.wbuf, c.woff = c.wbuf[:0], 0
	if c.closing {
		p.closeClient(c)
		return false
	}
	return true
}

func (p *proxy) clientEvent(c *conn, ev uint32) {
	if ev&unix.EPOLLOUT != 0 && c.woff < len(c.wbuf) {
		if !p.flushClient(c) {
			return
		}
		if b := c.peer; b != nil && b.paused && c.woff == len(c.wbuf) {
			b.paused = false
			p.backendRead(b, 0)
			if c.fd < 0 {
				return // closed while the backend's data went out
			}
		}
	}
	if ev&(unix.EPOLLIN|hupFlags) != 0 && !c.closing {
		p.clientRead(c, ev)
	}
}

func (p *proxy) clientRead(c *conn, ev uint32) {
	for {
		if c.rn == len(c.rbuf) {
			c.rfull = true
			break
		}
		n, e := read(c.fd, c.rbuf[c.rn:])
		if e != 0 {
			if e == unix.EAGAIN {
				break
			}
			if e == unix.EINTR {
				continue
			}
			p.closeClient(c)
			return
		}
		if n == 0 {
			c.eof = true
			break
		}
		short := n < len(c.rbuf)-c.rn
		c.rn += n
		c.last = p.now
		// A short read drained the socket: the next arrival raises a new
		// edge. After a hang-up, read on to the end.
		if short && ev&hupFlags == 0 {
			break
		}
	}
	p.processClient(c)
}

// processClient sends c's next buffered request to a backend, if it has a
// complete one and none in flight.
func (p *proxy) processClient(c *conn) {
	if c.busy || c.closing {
		return
	}
	if c.rn == 0 {
		if c.eof {
			p.closeClient(c)
		}
		return
	}
	data := c.rbuf[:c.rn]
	end := bytes.Index(data, crlfcrlf)
	if end < 0 {
		if c.rn == len(c.rbuf) {
			p.fail(c, resp431)
		} else if c.eof {
			p.closeClient(c)
		}
		return
	}
	headLen := end + 4
	p.rd.Reset(data[:headLen])
	p.br.Reset(&p.rd)
	h := &p.req
	if err := h.Read(p.br); err != nil {
		p.fail(c, resp400)
		return
	}
	cl := h.ContentLength()
	if cl == -1 {
		p.fail(c, resp501) // chunked request body
		return
	}
	cl = max(cl, 0) // -2: no Content-Length, no body
	total := headLen + cl
	if total > len(c.rbuf) {
		p.fail(c, resp413)
		return
	}
	if total > c.rn {
		if c.eof {
			p.closeClient(c)
		}
		return // the rest of the body is still coming
	}
	p.forward(c, headLen, total)
}

// forward rewrites the parsed request head (p.req) and sends it with its
// body, c.rbuf[headLen:total], to a backend connection.
func (p *proxy) forward(c *conn, headLen, total int) {
	h := &p.req
	c.closeAfter = h.ConnectionClose()
	h.Del("Connection")
	h.Del("Keep-Alive")
	h.Del("Proxy-Connection")
	h.Del("Te")
	h.Del("Trailer")
	h.Del("Upgrade")
	if v := h.Peek("X-Forwarded-For"); len(v) > 0 {
		p.scratch = append(append(append(p.scratch[:0], v...), ", "...), c.ip...)
		h.SetBytesV("X-Forwarded-For", p.scratch)
	} else {
		h.SetBytesV("X-Forwarded-For", c.ip)
	}
	b := p.backendConn()
	if b == nil {
		p.fail(c, resp502)
		return
	}
	b.wbuf = h.AppendBytes(b.wbuf[:0])
	b.wbuf = append(b.wbuf, c.rbuf[headLen:total]...)
	b.woff, b.reqLen = 0, len(b.wbuf)
	b.noBody = h.IsHead()
	b.idem = b.noBody || h.IsGet()
	b.retried, b.gotBytes, b.headDone = false, false, false
	b.last = p.now
	c.rn = copy(c.rbuf, c.rbuf[total:c.rn])
	c.busy = true
	c.peer, b.peer = b, c
	if !b.connecting {
		p.flushBackend(b)
	}
}

// backendConn returns a pooled keep-alive connection or starts a new one;
// nil when even the socket cannot be made.
func (p *proxy) backendConn() *conn {
	if n := len(p.idle); n > 0 {
		b := p.idle[n-1]
		p.idle = p.idle[:n-1]
		b.inIdle = false
		return b
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	err = unix.Connect(fd, &p.baddr)
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		_ = unix.Close(fd)
		return nil
	}
	b := p.newConn(fd, true)
	b.connecting = err != nil
	if !p.register(b) {
		p.closeConn(b)
		return nil
	}
	return b
}

func (p *proxy) flushBackend(b *conn) bool {
	for b.woff < len(b.wbuf) {
		n, e := write(b.fd, b.wbuf[b.woff:])
		if e != 0 {
			if e == unix.EAGAIN {
				return true
			}
			if e == unix.EINTR {
				continue
			}
			p.backendGone(b)
			return false
		}
		b.woff += n
	}
	return true
}

func (p *proxy) backendEvent(b *conn, ev uint32) {
	if b.connecting {
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		if soerr, err := unix.GetsockoptInt(b.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soerr != 0 {
			p.backendGone(b)
			return
		}
		b.connecting = false
	}
	if ev&unix.EPOLLOUT != 0 && b.woff < len(b.wbuf) && b.peer != nil {
		if !p.flushBackend(b) {
			return
		}
	}
	if ev&(unix.EPOLLIN|hupFlags) != 0 {
		p.backendRead(b, ev)
	}
}

// backendGone handles a backend connection that failed or closed.
func (p *proxy) backendGone(b *conn) {
	c := b.peer
	if c == nil {
		p.closeBackend(b)
		return
	}
	b.peer, c.peer = nil, nil
	if b.headDone {
		p.closeBackend(b)
		if b.untilClose { // the close ends the body
			c.closeAfter = true
			p.responseDone(c)
		} else {
			p.closeClient(c) // truncated body: the client must see it
		}
		return
	}
	if !b.gotBytes && !b.retried && b.idem {
		// A pooled connection the backend closed before our request got
		// there: one more try on a fresh one.
		if nb := p.backendConn(); nb != nil {
			nb.wbuf = append(nb.wbuf[:0], b.wbuf[:b.reqLen]...)
			nb.woff, nb.reqLen = 0, b.reqLen
			nb.noBody, nb.idem, nb.retried, nb.gotBytes, nb.headDone = b.noBody, b.idem, true, false, false
			nb.last = p.now
			c.peer, nb.peer = nb, c
			p.closeBackend(b)
			if !nb.connecting {
				p.flushBackend(nb)
			}
			return
		}
	}
	p.closeBackend(b)
	p.fail(c, resp502)
}

func (p *proxy) backendRead(b *conn, ev uint32) {
	for {
		c := b.peer
		if c == nil {
			// Idle: a late edge (EAGAIN) is fine; a close or stray bytes are not.
			if _, e := read(b.fd, b.rbuf); e != unix.EAGAIN {
				p.closeBackend(b)
			}
			return
		}
		if len(c.wbuf)-c.woff > maxPending {
			b.paused = true // clientEvent resumes once the client drains
			return
		}
		n, e := read(b.fd, b.rbuf[b.rn:])
		if e != 0 {
			if e == unix.EAGAIN {
				return
			}
			if e == unix.EINTR {
				continue
			}
			p.backendGone(b)
			return
		}
		if n == 0 {
			p.backendGone(b)
			return
		}
		short := n < len(b.rbuf)-b.rn
		b.rn += n
		b.gotBytes = true
		b.last = p.now
		if !p.backendData(b, c) {
			return
		}
		if short && ev&hupFlags == 0 {
			return
		}
	}
}

// backendData moves what b has read to its client. It reports whether b
// should read on (false: the response is complete, or a side closed).
func (p *proxy) backendData(b, c *conn) bool {
	body := b.rbuf[:b.rn]
	for !b.headDone {
		end := bytes.Index(b.rbuf[:b.rn], crlfcrlf)
		if end < 0 {
			if b.rn == len(b.rbuf) {
				p.fail(c, resp502)
				return false
			}
			return true
		}
		headLen := end + 4
		p.rd.Reset(b.rbuf[:headLen])
		p.br.Reset(&p.rd)
		h := &p.resp
		if err := h.Read(p.br); err != nil {
			p.fail(c, resp502)
			return false
		}
		st := h.StatusCode()
		if st < 200 {
			if st == fasthttp.StatusSwitchingProtocols {
				p.fail(c, resp502)
				return false
			}
			b.rn = copy(b.rbuf, b.rbuf[headLen:b.rn]) // drop an interim response
			continue
		}
		b.keep = !h.ConnectionClose()
		b.untilClose = false
		switch cl := h.ContentLength(); {
		case b.noBody || st == fasthttp.StatusNoContent || st == fasthttp.StatusNotModified:
			b.bodyLeft = 0
		case cl >= 0:
			b.bodyLeft = int64(cl)
		case cl == -1: // chunked: not handled
			p.fail(c, resp502)
			return false
		default:
			b.untilClose, b.keep = true, false
		}
		h.Del("Connection")
		h.Del("Keep-Alive")
		if c.closeAfter || b.untilClose {
			c.closeAfter = true
			h.SetConnectionClose()
		}
		p.scratch = h.AppendBytes(p.scratch[:0])
		c.wbuf = append(c.wbuf, p.scratch...)
		b.headDone = true
		body = b.rbuf[headLen:b.rn]
	}
	if !b.untilClose && int64(len(body)) > b.bodyLeft {
		body = body[:b.bodyLeft] // bytes after the response: do not reuse
		b.keep = false
	}
	c.wbuf = append(c.wbuf, body...)
	if !b.untilClose {
		b.bodyLeft -= int64(len(body))
	}
	b.rn = 0
	if !p.flushClient(c) {
		return false
	}
	if !b.untilClose && b.bodyLeft == 0 {
		b.peer, c.peer = nil, nil
		if b.keep {
			b.inIdle = true
			p.idle = append(p.idle, b)
		} else {
			p.closeBackend(b)
		}
		p.responseDone(c)
		return false
	}
	return true
}

// responseDone is called when c's response is all in c.wbuf (and maybe
// written): close, or go on with the next pipelined request.
func (p *proxy) responseDone(c *conn) {
	c.busy = false
	c.last = p.now
	if c.closeAfter {
		c.closing = true
		if c.woff == len(c.wbuf) {
			p.closeClient(c)
		}
		return
	}
	if c.rfull {
		c.rfull = false
		p.clientRead(c, 0)
		return
	}
	p.processClient(c)
}

// sweep runs about once a second: it closes idle clients and fails
// requests whose backend is too slow.
func (p *proxy) sweep() {
	for _, c := range p.conns {
		if c == nil {
			continue
		}
		if !c.isBackend {
			if !c.busy && p.now-c.last > idleTimeout {
				p.closeClient(c)
			}
			continue
		}
		if cl := c.peer; cl != nil && p.now-c.last > backendTimeout {
			if c.headDone {
				p.closeClient(cl) // also closes c
			} else {
				p.fail(cl, resp504)
			}
		}
	}
}
