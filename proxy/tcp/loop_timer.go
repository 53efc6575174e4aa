package tcp

import "time"

// The event loops (loop.go): deadlines. A session has at most one armed at
// a time (the PROXY header's, the ClientHello's, the connect's or the idle
// one), kept in FIFO lists one per duration (internal/deadlines): no heap,
// no runtime timer.

// Deadline kinds.
const (
	_ uint8 = iota // 0: none armed
	tProxy
	tHello
	tConnect
	tIdle
)

// arm sets ss's deadline of kind to d from now (none for d <= 0).
func (lp *loop) arm(ss *session, kind uint8, d time.Duration) {
	ss.l.dl.Owner = ss
	lp.deadlines.Arm(&ss.l.dl, kind, lp.now, d)
}

func (lp *loop) disarm(ss *session) { lp.deadlines.Disarm(&ss.l.dl) }

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
	for {
		ss, kind := lp.deadlines.Due(lp.now)
		if ss == nil {
			break
		}
		lp.cur = ss
		lp.timeout(ss, kind)
	}
	lp.cur = nil
	return false
}
