package proxy

import (
	"time"

	"github.com/valyala/fasthttp"
)

// The event loop (loop.go): deadlines, FIFO lists one per duration
// (internal/deadline).

// expire fires the deadlines that passed.
func (lp *evLoop) expire() {
	for lp.expireGuarded() {
	}
}

// expireGuarded fires deadlines until none is due; it reports a panic
// (survive closed that connection), after which it is called again for
// the rest.
func (lp *evLoop) expireGuarded() (panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			lp.survive(r)
			panicked = true
		}
	}()
	for {
		c, kind := lp.deadlines.Due(lp.now)
		if c == nil {
			break
		}
		lp.cur = c
		lp.timeout(c, kind)
	}
	lp.cur = nil
	return false
}

// at is the loop's clock as a time: the wake-up's reading, which costs no
// clock read (the timing points of the access line).
func (lp *evLoop) at() time.Time { return lp.base.Add(time.Duration(lp.now)) }

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
	case tQueue:
		lp.queueTimedOut(c)
	}
}

// waitMillis is the epoll_wait timeout: until the next deadline.
func (lp *evLoop) waitMillis() int {
	next := int64(-1)
	if lp.acceptAt != 0 {
		next = lp.acceptAt
	}
	if at, ok := lp.deadlines.Next(); ok && (next < 0 || at < next) {
		next = at
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
	c.dl.Owner = c
	lp.deadlines.Arm(&c.dl, kind, lp.now, d)
}

func (lp *evLoop) disarm(c *lconn) { lp.deadlines.Disarm(&c.dl) }
