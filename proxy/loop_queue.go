package proxy

// The event loop (loop.go): its side of the pool queue (core_queue.go). An
// exchange that waits is kept in lp.parked with its client connection's
// deadline armed for the queue's timeout (tQueue); the loop never blocks.
// A slot handed to it wakes the loop through its control channel
// (ctlGrant), and resumeGranted sends the exchanges that hold one.

// slotGranted wakes the loop (called by a pool queue, with its lock held,
// from any goroutine).
func (lp *evLoop) slotGranted() { lp.control(ctlGrant) }

// park puts x in its pool's queue, or returns what the core answered at
// once: a member whose slot x holds, or -1 (queue full, 503 in x.ctx).
func (lp *evLoop) park(x *lexch) int {
	lp.closeIdleOf(x.x.p)
	i := lp.l.park(&x.ctx, &x.x, &x.qw, lp)
	if i != pickQueue {
		return i
	}
	x.parkIdx = len(lp.parked)
	lp.parked = append(lp.parked, x)
	lp.arm(x.client, tQueue, x.x.p.queueTimeout)
	// In the epoll set, so that a client that leaves is noticed
	// (clientEvent); a failure closes it, which ends the wait.
	lp.watch(x.client)
	return pickQueue
}

// closeIdleOf closes the loop's idle connections to p's backends: while
// requests wait for a slot, a slot idle here is one nobody may use.
func (lp *evLoop) closeIdleOf(p *poolRuntime) {
	for _, u := range p.ups {
		if u.id < len(lp.ups) {
			if lu := lp.ups[u.id]; lu != nil {
				for len(lu.idle) > 0 {
					lp.closeBackend(lu.idle[len(lu.idle)-1])
				}
			}
		}
	}
}

// unparkX takes x out of lp.parked.
func (lp *evLoop) unparkX(x *lexch) {
	i, last := x.parkIdx, len(lp.parked)-1
	lp.parked[i] = lp.parked[last]
	lp.parked[i].parkIdx = i
	lp.parked[last] = nil
	lp.parked = lp.parked[:last]
	x.parkIdx = -1
	if c := x.client; c.dl.Kind == tQueue {
		lp.disarm(c)
	}
}

// resumeGranted goes on with every parked exchange the queue handed a slot.
func (lp *evLoop) resumeGranted() {
	for i := 0; i < len(lp.parked); {
		x := lp.parked[i]
		if !x.qw.granted() {
			i++
			continue
		}
		lp.unparkX(x) // lp.parked[i] is another exchange now
		lp.resume(x)
	}
}

// queueTimedOut ends the wait of c's exchange at the queue's timeout: 503,
// unless a slot came meanwhile.
func (lp *evLoop) queueTimedOut(c *lconn) {
	x := c.x
	if x == nil || x.parkIdx < 0 {
		return
	}
	lp.unparkX(x)
	lp.resume(x)
}

// resume sends x after its wait, or answers it.
func (lp *evLoop) resume(x *lexch) {
	lp.cur = x.client // for survive, should it panic
	if lp.sendTo(x, lp.l.unpark(&x.ctx, &x.x, &x.qw)) {
		lp.attempt(x)
	}
	lp.cur = nil
}
