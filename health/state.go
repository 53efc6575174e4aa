package health

import "time"

// state is one target's active health state. It is owned by the target's
// probe goroutine and guarded by target.mu for readers (Status, a successor
// Checker copying it).
type state struct {
	// healthy is the verdict last handed to the StatusSetter.
	healthy bool
	// everUp is true once the target has been up in this or a previous
	// Checker (or started up). Until then the first success brings it up at
	// once; afterwards rise applies.
	everUp bool
	// oks counts consecutive successes while down, fails consecutive
	// failures while up. The other counter is always zero.
	oks, fails int

	// checked is true once a probe result was recorded; lastOK and lastErr
	// describe that result.
	checked    bool
	lastOK     bool
	lastErr    error
	lastCheck  time.Time
	lastChange time.Time
	// history holds the last results, newest in bit 0 (1: passed);
	// probes counts them up to historyLen.
	history uint32
	probes  uint8
}

// historyLen is how many results TargetStatus.History shows.
const historyLen = 20

// record applies one probe result at now under the rise/fall rule and
// reports whether the healthy verdict changed.
func (s *state) record(err error, now time.Time, rise, fall int) (changed bool) {
	ok := err == nil
	s.checked = true
	s.lastOK = ok
	s.lastErr = err
	s.lastCheck = now
	s.history <<= 1
	if ok {
		s.history |= 1
	}
	if s.probes < historyLen {
		s.probes++
	}
	if ok {
		s.fails = 0
		if s.healthy {
			return false
		}
		s.oks++
		if s.everUp && s.oks < rise {
			return false
		}
		s.healthy, s.everUp, s.oks = true, true, 0
		s.lastChange = now
		return true
	}
	s.oks = 0
	if !s.healthy {
		return false
	}
	s.fails++
	if s.fails < fall {
		return false
	}
	s.healthy, s.fails = false, 0
	s.lastChange = now
	return true
}

// markUp makes the target healthy without a probe (check "none") and reports
// whether that changed the verdict.
func (s *state) markUp(now time.Time) (changed bool) {
	s.oks, s.fails = 0, 0
	if s.healthy {
		return false
	}
	s.healthy, s.everUp = true, true
	s.lastChange = now
	return true
}

// inherit takes over prev, the state a replaced Checker kept for the same
// address, for a target that starts with the given verdict. The verdict the
// caller passes wins (it comes from the backend itself); if it disagrees
// with prev, prev's counters are meaningless and are dropped.
func (s *state) inherit(prev state, healthy bool) {
	*s = prev
	s.everUp = prev.everUp || healthy
	if prev.healthy != healthy {
		s.healthy = healthy
		s.oks, s.fails = 0, 0
	}
}
