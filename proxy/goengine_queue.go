package proxy

import (
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// The goroutine engine's side of the pool queue (core_queue.go): the
// request's goroutine blocks until the queue hands it a slot or the
// queue's timeout passes.

// goWaiter is a blocked goroutine's place in a pool queue. Pooled: a wait
// allocates only its timer.
type goWaiter struct {
	w  queueWaiter
	ch chan struct{} // one wake-up, sent by slotGranted
}

// slotGranted wakes the goroutine (called with the queue's lock held, at
// most once per wait).
func (g *goWaiter) slotGranted() {
	select {
	case g.ch <- struct{}{}:
	default:
	}
}

var goWaiters = sync.Pool{New: func() any { return &goWaiter{ch: make(chan struct{}, 1)} }}

// await parks x in its pool's queue and blocks until it holds a slot (the
// member is returned, x.slot set) or the queue refused it or its wait
// timed out (-1, the 503 in ctx.Response).
func (l *httpListener) await(ctx *fasthttp.RequestCtx, x *exchange) int {
	// Idle connections of this engine hold slots nobody may use while
	// requests wait: free them for the queue.
	for _, u := range x.p.ups {
		u.hc.CloseIdleConnections()
	}
	g := goWaiters.Get().(*goWaiter)
	defer goWaiters.Put(g)
	i := l.park(ctx, x, &g.w, g)
	if i != pickQueue {
		return i
	}
	t := time.NewTimer(x.p.queueTimeout)
	select {
	case <-g.ch:
	case <-t.C:
	}
	t.Stop()
	i = l.unpark(ctx, x, &g.w)
	// A grant that raced the timer left its wake-up in ch (sent before
	// unpark could see it): take it, so the next wait starts clean.
	select {
	case <-g.ch:
	default:
	}
	return i
}
