package proxy

import (
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// The event loop (loop.go): what the loop serves and the hand-off of the rest to the goroutine engine.

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
	// A transcoding route's requests become gRPC calls, which the
	// goroutine engine carries (transcodeengine.go).
	return r == nil || r.redirect || r.pool.loopable && r.transcode == nil
}

// handoff gives c to the goroutine engine with the bytes already read.
func (lp *evLoop) handoff(c *lconn, buffered []byte) {
	_ = unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	var client netip.AddrPort
	if c.via.IsValid() {
		client = c.addrPort() // from the PROXY protocol header
	}
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
	lp.l.ln.handoffConn(nc, buffered, client)
}

// loopable reports whether the event loop may serve requests routed to a
// pool: backends named by IP address (the loop connects without a
// resolver). A pool that speaks h2c is loopable too: the core refuses
// HTTP/1.1 requests to it (begin), and the loop answers that at once.
func loopable(ups []*poolBackend) bool {
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
