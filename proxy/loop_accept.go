package proxy

import (
	"frontdoor/internal/rawio"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The event loop (loop.go): accepting connections and the epoll set.

// accept takes up to loopAcceptBatch connections; the listener is level-
// triggered, so more waiting raise the next poll again.
func (lp *evLoop) accept() {
	ln := lp.l.ln
	for range loopAcceptBatch {
		fd, e := rawio.Accept(lp.lfd, &lp.rsa, &lp.rsaLen)
		if rawio.OutOfResources(e) {
			lp.pauseAccept(e)
			return
		}
		if e != 0 {
			return // EAGAIN
		}
		lp.acceptPause = 0
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
		lp.cur = c
		lp.clientRead(c, false)
		lp.cur = nil
	}
}

// Pauses of accepting when the process is out of descriptors or memory,
// as net/http's Server: from 5 ms, doubling, to at most 1 s.
const (
	acceptPauseMin = 5 * time.Millisecond
	acceptPauseMax = time.Second
)

// pauseAccept stops accepting for a while after accept4 failed for want of
// descriptors or memory. The listening socket is level-triggered and stays
// readable while connections wait in its backlog: without the pause the
// loop would spin on it. The connections wait in the backlog meanwhile.
func (lp *evLoop) pauseAccept(e unix.Errno) {
	if lp.acceptPause == 0 {
		lp.acceptPause = acceptPauseMin
		lp.l.logger.Warn("listener: accept paused: out of file descriptors or memory; raise LimitNOFILE or lower max_connections",
			"listener", lp.l.name, "err", e)
	} else {
		lp.acceptPause = min(2*lp.acceptPause, acceptPauseMax)
	}
	_ = unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, lp.lfd, nil)
	lp.acceptAt = lp.now + int64(lp.acceptPause)
}

// resumeAccept watches the listening socket again after a pause.
func (lp *evLoop) resumeAccept() {
	lp.acceptAt = 0
	if !lp.accepting {
		return
	}
	lp.ev = unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(lp.lfd)}
	_ = unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, lp.lfd, &lp.ev)
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
