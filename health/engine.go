package health

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"
)

// engine runs the probes of a Checker's asyncProbers (tcp and http checks of
// IP addresses) on one goroutine: it starts each probe when it is due,
// waits for all their sockets at once on a poller, hands each socket's
// events to its prober, and ends probes whose deadline passed.
//
// It replaces a goroutine and a timer per target, which is what most of the
// checker's own CPU time went to: every probe woke its goroutine twice (its
// timer, then the netpoller), each wake-up a trip through the scheduler, and
// every connection carried a deadline timer. Here the probes due in one slot
// of the grid start in one pass, and one wait collects the answers of many.
//
// Everything but the poller's wake (called when Run's context ends) runs on
// the engine's goroutine, so nothing in it is locked.
type engine struct {
	c     *Checker
	pl    *poller
	slots []engineSlot // by tag, the index the poller reports
	base  time.Time    // times below are offsets from it (monotonic)

	due    dueHeap   // when each idle target's next probe starts
	flight ringQueue // running probes, in start order, so by deadline
}

// engineSlot is one target in the engine.
type engineSlot struct {
	tag   int32 // its index in engine.slots
	t     *target
	p     asyncProber
	seq   uint32    // probes started; tells a running probe's flight entry from stale ones
	busy  bool      // a probe is running
	again bool      // the first probe is done: later ones follow at the interval
	start time.Time // the running probe's start
}

// newEngine returns an engine for the targets and their probers, or an
// error if it cannot make its poller.
func newEngine(c *Checker, targets []*target, probers []asyncProber) (*engine, error) {
	pl, err := newPoller()
	if err != nil {
		return nil, err
	}
	e := &engine{c: c, pl: pl, slots: make([]engineSlot, len(targets))}
	for i := range targets {
		e.slots[i] = engineSlot{tag: int32(i), t: targets[i], p: probers[i]}
	}
	return e, nil
}

// run probes until ctx ends, then closes every prober and the poller. Every
// target is due at once.
func (e *engine) run(ctx context.Context) {
	defer e.closeAll()
	stop := context.AfterFunc(ctx, e.pl.wake)
	defer stop()
	e.base = e.c.now()
	for i := range e.slots {
		e.due.push(0, int32(i))
	}
	for ctx.Err() == nil {
		if !e.stepRecovered(ctx) {
			// The engine's own code panicked or the poller failed
			// (logged): go on after a slot rather than stop checking.
			select {
			case <-ctx.Done():
			case <-time.After(max(e.c.slot, time.Millisecond)):
			}
		}
	}
}

// stepRecovered runs step and reports false if it panicked, which it logs.
func (e *engine) stepRecovered(ctx context.Context) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			e.c.log.Error("health: panic", "pool", e.c.pool, "in", "engine", "panic", r, "stack", string(debug.Stack()))
			ok = false
		}
	}()
	return e.step(ctx)
}

// step ends the probes whose deadline passed, starts those that are due,
// waits for the next deadline, start or socket event, and handles the
// events. It reports false if the poller failed.
func (e *engine) step(ctx context.Context) bool {
	now := e.c.now()
	at := now.Sub(e.base)
	for e.flight.len() > 0 && e.flight.peek().deadline <= at {
		f := e.flight.pop()
		if s := &e.slots[f.tag]; s.busy && s.seq == f.seq {
			e.finish(ctx, s, e.abort(s))
		}
	}
	for e.due.len() > 0 && e.due.top().at <= at {
		// The clock is read again for each probe: a slot's probes
		// start one after the other, and each gets its whole timeout.
		now = e.c.now()
		e.begin(ctx, &e.slots[e.due.pop().tag], now, now.Sub(e.base))
	}
	next := at + time.Hour
	if e.due.len() > 0 {
		next = e.due.top().at
	}
	if e.flight.len() > 0 {
		next = min(next, e.flight.peek().deadline)
	}
	evs, err := e.pl.wait(e.base.Add(next))
	if err != nil {
		if ctx.Err() == nil {
			e.c.log.Error("health: wait for sockets", "pool", e.c.pool, "err", err)
		}
		return false
	}
	for _, ev := range evs {
		s := &e.slots[ev.Fd]
		done, err := e.ready(s, ev.Events)
		if done && s.busy {
			e.finish(ctx, s, err)
		}
	}
	return true
}

// begin starts a probe of s at now (offset at).
func (e *engine) begin(ctx context.Context, s *engineSlot, now time.Time, at time.Duration) {
	s.seq++
	s.busy, s.start = true, now
	timeout := e.c.check.Timeout.Duration
	if done, err := e.startProbe(ctx, s, now.Add(timeout)); done {
		e.finish(ctx, s, err)
		return
	}
	e.flight.push(flight{deadline: at + timeout, tag: s.tag, seq: s.seq})
}

// finish ends s's probe with result err: it schedules the next probe, then
// records the result (unless ctx ended: a probe cut short by the end of Run
// is not recorded).
func (e *engine) finish(ctx context.Context, s *engineSlot, err error) {
	s.busy = false
	interval := float64(e.c.check.Interval.Duration)
	// The second probe comes at a random point within one interval (so
	// that targets spread out), each later one an interval ± 10% after
	// the previous one started.
	after := (1 - e.c.rand()) * interval
	if s.again {
		after = (0.9 + 0.2*e.c.rand()) * interval
	}
	s.again = true
	now := e.c.now()
	e.due.push(now.Sub(e.base)+e.c.untilAt(now, s.start, after), s.tag)
	if ctx.Err() != nil {
		return
	}
	e.report(s.t, err)
}

// report records a result, logging a panic of a callback instead of
// stopping the engine.
func (e *engine) report(t *target, err error) {
	defer func() {
		if r := recover(); r != nil {
			e.c.log.Error("health: panic", "pool", e.c.pool, "backend", t.address, "panic", r, "stack", string(debug.Stack()))
		}
	}()
	e.c.report(t, err)
}

// startProbe, ready and abort call the prober, turning a panic into a
// failed check (logged with its stack) and closing the prober's sockets.

func (e *engine) startProbe(ctx context.Context, s *engineSlot, deadline time.Time) (done bool, err error) {
	defer e.recoverProbe(s, &done, &err)
	return s.p.start(ctx, e.pl, s.tag, deadline)
}

func (e *engine) ready(s *engineSlot, events uint32) (done bool, err error) {
	defer e.recoverProbe(s, &done, &err)
	return s.p.ready(events)
}

func (e *engine) abort(s *engineSlot) (err error) {
	var done bool
	defer e.recoverProbe(s, &done, &err)
	return s.p.abort()
}

func (e *engine) recoverProbe(s *engineSlot, done *bool, err *error) {
	if r := recover(); r != nil {
		e.c.log.Error("health: probe panicked", "pool", e.c.pool, "backend", s.t.address,
			"panic", r, "stack", string(debug.Stack()))
		*done, *err = true, fmt.Errorf("health: probe panicked: %v", r)
		s.p.release()
	}
}

// closeAll closes every prober's sockets and the poller.
func (e *engine) closeAll() {
	for i := range e.slots {
		e.slots[i].p.close()
	}
	e.pl.close()
}

// dueEntry is a target's next probe start, as an offset from engine.base.
type dueEntry struct {
	at  time.Duration
	tag int32
}

// dueHeap is a min-heap of start times. (container/heap would box every
// entry in an interface, an allocation per probe.)
type dueHeap struct{ h []dueEntry }

func (d *dueHeap) len() int      { return len(d.h) }
func (d *dueHeap) top() dueEntry { return d.h[0] }
func (d *dueHeap) push(at time.Duration, tag int32) {
	d.h = append(d.h, dueEntry{at: at, tag: tag})
	for i := len(d.h) - 1; i > 0; {
		parent := (i - 1) / 2
		if d.h[parent].at <= d.h[i].at {
			break
		}
		d.h[parent], d.h[i] = d.h[i], d.h[parent]
		i = parent
	}
}

func (d *dueHeap) pop() dueEntry {
	top := d.h[0]
	last := len(d.h) - 1
	d.h[0] = d.h[last]
	d.h = d.h[:last]
	for i := 0; ; {
		l, r, least := 2*i+1, 2*i+2, i
		if l < last && d.h[l].at < d.h[least].at {
			least = l
		}
		if r < last && d.h[r].at < d.h[least].at {
			least = r
		}
		if least == i {
			break
		}
		d.h[i], d.h[least] = d.h[least], d.h[i]
		i = least
	}
	return top
}

// flight is a running probe's deadline.
type flight struct {
	deadline time.Duration
	tag      int32
	seq      uint32
}

// ringQueue is a FIFO of flights. All probes of a Checker have the same
// timeout and start in time order, so the queue is in deadline order too.
// Entries of probes that ended early stay until their deadline and are
// skipped then (their seq no longer matches).
type ringQueue struct {
	buf        []flight
	head, size int
}

func (q *ringQueue) len() int     { return q.size }
func (q *ringQueue) peek() flight { return q.buf[q.head] }

func (q *ringQueue) push(f flight) {
	if q.size == len(q.buf) {
		grown := make([]flight, max(16, 2*len(q.buf)))
		for i := range q.size {
			grown[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = grown, 0
	}
	q.buf[(q.head+q.size)%len(q.buf)] = f
	q.size++
}

func (q *ringQueue) pop() flight {
	f := q.buf[q.head]
	q.head = (q.head + 1) % len(q.buf)
	q.size--
	return f
}
