package proxy

import (
	"time"

	"github.com/valyala/fasthttp"
)

// The event loop (loop.go): deadlines: FIFO lists, one per duration.

// timerQueue holds the connections whose deadline of one duration is armed,
// in the order they were armed, which is the order they expire in.
type timerQueue struct {
	d          int64
	head, tail *lconn
}

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
	for _, q := range lp.queues {
		for q.head != nil && q.head.tat <= lp.now {
			c := q.head
			kind := c.tkind
			lp.disarm(c)
			lp.cur = c
			lp.timeout(c, kind)
		}
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
