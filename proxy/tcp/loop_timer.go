package tcp

import "time"

// The event loops (loop.go): deadlines. A session has at most one armed at
// a time (the PROXY header's, the ClientHello's, the connect's or the idle
// one), and every deadline of a Server's kind is armed with the same
// duration, so a FIFO list per duration is kept in expiry order by
// appending: arming, disarming and expiring cost no heap and no runtime
// timer.

// Deadline kinds.
const (
	tNone uint8 = iota
	tProxy
	tHello
	tConnect
	tIdle
)

// timerQueue holds the sessions whose deadline of one duration is armed,
// in the order they were armed, which is the order they expire in.
type timerQueue struct {
	d          int64
	head, tail *session
}

// maxTimerQueues is how many durations a loop keeps lists for before it
// drops the empty ones.
const maxTimerQueues = 16

// arm sets ss's deadline of kind to d from now (none for d <= 0).
func (lp *loop) arm(ss *session, kind uint8, d time.Duration) {
	lp.disarm(ss)
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
	l := &ss.l
	l.tq, l.tkind, l.tat = q, kind, lp.now+int64(d)
	l.tprev, l.tnext = q.tail, nil
	if q.tail != nil {
		q.tail.l.tnext = ss
	} else {
		q.head = ss
	}
	q.tail = ss
}

func (lp *loop) disarm(ss *session) {
	l := &ss.l
	q := l.tq
	if q == nil {
		return
	}
	if l.tprev != nil {
		l.tprev.l.tnext = l.tnext
	} else {
		q.head = l.tnext
	}
	if l.tnext != nil {
		l.tnext.l.tprev = l.tprev
	} else {
		q.tail = l.tprev
	}
	l.tq, l.tprev, l.tnext, l.tkind = nil, nil, nil, tNone
}

// expire fires the deadlines that passed.
func (lp *loop) expire() {
	for lp.expireGuarded() {
	}
}

// expireGuarded fires deadlines until none is due; it reports a panic
// (survive closed that session), after which it is called again.
func (lp *loop) expireGuarded() (panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			lp.survive(r)
			panicked = true
		}
	}()
	for _, q := range lp.queues {
		for q.head != nil && q.head.l.tat <= lp.now {
			ss := q.head
			kind := ss.l.tkind
			lp.disarm(ss)
			lp.cur = ss
			lp.timeout(ss, kind)
		}
	}
	lp.cur = nil
	return false
}
