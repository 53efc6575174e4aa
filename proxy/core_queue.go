package proxy

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// The pool queue (pool queue = { size, timeout }): a request that finds
// every backend of its pool at max_connections_per_backend waits, first
// come first served, for a connection slot on any backend of the pool,
// instead of 503 at once (HAProxy's maxconn with timeout queue).
//
// The core decides: pick sends an exchange to the queue (pickQueue) once
// its attempt met the limit, or at once while others wait, so that new
// arrivals never overtake waiters; park takes a free slot if there is one
// or queues the exchange; a connection that closes (giveConn) hands its
// slot straight to the head of the queue (handOver), without letting it
// go free; unpark turns a granted slot into the next attempt, or answers
// 503 on a timeout. The engines only park and resume: the goroutine engine
// blocks on a channel, the event loop keeps the exchange, arms the wait in
// its deadline lists and is woken through its control channel. Both close
// a finished backend connection instead of idling it while the queue is
// not empty, so its slot reaches the head of the queue whichever engine
// holds it.

// pickQueue is pick's and park's answer for an exchange that waits in its
// pool's queue.
const pickQueue = -2

// States of a queueWaiter.
const (
	waitIdle uint32 = iota
	waitQueued
	waitGranted
)

// queueOwner is the engine side of a waiter. slotGranted is called, with
// the queue's lock held, when a slot was handed to one of its waiters: it
// must not block nor call into the queue, only wake the owner, which then
// calls unpark.
type queueOwner interface {
	slotGranted()
}

// queueWaiter is an exchange's place in a pool queue. The engine owns it
// for as long as the exchange; it is reused, never shared.
type queueWaiter struct {
	prev, next *queueWaiter
	owner      queueOwner
	since      time.Time     // when it was queued
	state      atomic.Uint32 // waitIdle, waitQueued, waitGranted
	u          *poolBackend  // whose slot it was granted (waitGranted)
}

// granted reports whether a slot was handed to w: its owner should
// unpark it.
func (w *queueWaiter) granted() bool { return w.state.Load() == waitGranted }

// poolQueue is the wait queue of one pool. A Proxy keeps one per pool name
// across reloads (as it keeps the pool backends, whose closing connections
// feed it); a runtime uses it when its pool has a queue setting. Safe for
// concurrent use.
type poolQueue struct {
	mu         sync.Mutex
	head, tail *queueWaiter
	// n is the number of waiters, read without the lock by giveConn and
	// pick.
	n      atomic.Int64
	length prometheus.Gauge
	wait   prometheus.Observer
}

// waiting reports whether anybody waits in q.
func (q *poolQueue) waiting() bool { return q.n.Load() > 0 }

func (q *poolQueue) push(w *queueWaiter) {
	w.prev, w.next = q.tail, nil
	if q.tail != nil {
		q.tail.next = w
	} else {
		q.head = w
	}
	q.tail = w
	q.n.Add(1)
	q.length.Inc()
}

func (q *poolQueue) remove(w *queueWaiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		q.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		q.tail = w.prev
	}
	w.prev, w.next = nil, nil
	q.n.Add(-1)
	q.length.Dec()
}

// handOver gives a slot of u, just freed by giveConn, to the head of the
// queue: it takes the slot again for the waiter (a new arrival that took
// it first keeps it) and wakes the waiter's owner. A slot of a backend
// that is not up is left free.
func (q *poolQueue) handOver(u *poolBackend) {
	q.mu.Lock()
	if w := q.head; w != nil && u.be.Up() && u.takeConn() {
		q.remove(w)
		w.u = u
		w.state.Store(waitGranted)
		w.owner.slotGranted() // under the lock: unpark waits for it
	}
	q.mu.Unlock()
}

// park runs when pick answered pickQueue. It returns the member whose
// connection slot x now holds (x.slot: the engine connects without taking
// another, or gives it back if it finds an idle connection), -1 when the
// queue is full (the 503 is in ctx.Response), or pickQueue when x waits:
// owner.slotGranted will say when to unpark, and the engine must unpark
// after the pool's queue timeout at the latest.
func (l *httpListener) park(ctx *fasthttp.RequestCtx, x *exchange, w *queueWaiter, owner queueOwner) int {
	p := x.p
	q := p.queue
	x.wait = false
	now := time.Now()
	q.mu.Lock()
	if q.head == nil {
		// Nobody waits: a slot free on any member that is up is this
		// request's, whichever member its pick chose. This also finds a
		// slot freed between the failed attempt and now: giveConn frees
		// before it looks for waiters, and park looks for slots before it
		// queues, so one of the two sees the other.
		for i, u := range p.ups {
			if u.be.Up() && u.takeConn() {
				q.mu.Unlock()
				return l.slotted(x, i, now)
			}
		}
	}
	if q.n.Load() >= int64(p.queueSize) {
		q.mu.Unlock()
		l.queueRefused(ctx, x, "every backend is at its connection limit and the queue is full", "queue_full")
		return -1
	}
	w.owner, w.since, w.u = owner, now, nil
	w.state.Store(waitQueued)
	q.push(w)
	q.mu.Unlock()
	return pickQueue
}

// unpark ends x's wait: woken after a grant, or at the queue timeout. It
// returns the member whose slot x holds (as park does), or -1 with the
// 503 in ctx.Response when the wait timed out.
func (l *httpListener) unpark(ctx *fasthttp.RequestCtx, x *exchange, w *queueWaiter) int {
	p := x.p
	q := p.queue
	now := time.Now()
	// Always under the lock, even when granted: handOver may still be
	// waking the owner, and the owner must not reuse w before that ends.
	q.mu.Lock()
	if w.state.Load() == waitQueued {
		q.remove(w)
		w.state.Store(waitIdle)
		q.mu.Unlock()
		q.wait.Observe(now.Sub(w.since).Seconds())
		l.queueRefused(ctx, x, "every backend is at its connection limit; waited in the queue until its timeout", "queue_timeout")
		return -1
	}
	u := w.u
	w.u, w.owner = nil, nil
	w.state.Store(waitIdle)
	q.mu.Unlock()
	q.wait.Observe(now.Sub(w.since).Seconds())
	for i, m := range p.ups {
		if m == u {
			return l.slotted(x, i, now)
		}
	}
	// A reload took u out of the pool x was routed to: the slot goes to
	// the next waiter.
	u.giveConn()
	l.queueRefused(ctx, x, "every backend is at its connection limit; waited in the queue until its timeout", "queue_timeout")
	return -1
}

// parkAbandoned ends x's wait because the client went away (the event
// loop): a slot granted meanwhile goes to the next waiter.
func (l *httpListener) parkAbandoned(ctx *fasthttp.RequestCtx, x *exchange, w *queueWaiter) {
	q := x.p.queue
	q.mu.Lock()
	if w.state.Load() == waitQueued {
		q.remove(w)
	}
	u := w.u
	w.u, w.owner = nil, nil
	w.state.Store(waitIdle)
	q.mu.Unlock()
	if u != nil {
		u.giveConn() // granted meanwhile: to the next waiter
	}
	q.wait.Observe(time.Since(w.since).Seconds())
	if x.attempt > 0 {
		x.p.retrying.Add(-1)
	}
	x.member = -1
	ctx.Response.Reset()
	ctx.Response.SetStatusCode(statusClientClosed)
	x.reason = clientFaultReason(statusClientClosed)
}

// slotted makes member i, whose connection slot x holds, x's next attempt.
func (l *httpListener) slotted(x *exchange, i int, now time.Time) int {
	x.p.pool.Acquire(i)
	x.member = i
	x.slot = true
	x.fw.startAttempt(now)
	return i
}

// queueRefused answers 503 (with Retry-After) for a request the queue did
// not take or did not serve in time.
func (l *httpListener) queueRefused(ctx *fasthttp.RequestCtx, x *exchange, msg, reason string) {
	if x.attempt > 0 {
		x.p.retrying.Add(-1) // the retry counted ends here, as in pick
	}
	x.member = -1
	x.reason = reason
	l.fail(ctx, fasthttp.StatusServiceUnavailable, msg, x.reqID, x.p)
}
