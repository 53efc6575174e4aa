package health

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"frontdoor/config"
)

// Ejectable receives passive ejection decisions; balancer.Backend satisfies
// it. SetEjected is called with the Ejector's lock held, once per change,
// from the goroutine that called Failure, Recovered or Run; it must be
// quick, safe for concurrent use, and must not call back into the Ejector.
//
// A target that also has a method Healthy() bool (balancer.Backend does) is
// asked, when its ejection time is over, whether it takes traffic again, so
// that the log says "backend up" only then.
type Ejectable interface{ SetEjected(ejected bool) }

// healthyResetFactor × BaseEjection without an ejection resets a target's
// ejection length to BaseEjection.
const healthyResetFactor = 10

// EjectorOptions configures NewEjector. The zero value gives a disabled
// Ejector without targets.
type EjectorOptions struct {
	// Pool names the pool, for logs.
	Pool string
	// Config is the pool's [pool.NAME.passive] table, already defaulted.
	// ConsecutiveFailures 0 (or less) disables ejection: Success and Failure
	// do nothing. MaxEjectionPercent 0 never ejects; 100 may eject the whole
	// pool. A MaxEjectionTime below BaseEjection (0 included) means every
	// ejection lasts BaseEjection. UnejectOnActivePass is read by Recovered;
	// CountTimeouts and FailureStatuses are the caller's to apply (they
	// decide what it reports to Failure).
	Config config.Passive
	// Targets are the backends, in the order Success and Failure index.
	// No entry may be nil. The slice is copied.
	Targets []Ejectable
	// Addresses optionally names the targets for logs and for Previous;
	// when set it must be as long as Targets.
	Addresses []string
	// Logger receives one line per ejection and per end of ejection (keys
	// pool, backend, reason) and panics with their stack. nil discards.
	Logger *slog.Logger
	// OnEject, if set, is called after each ejection with the target index
	// (used for the passive_ejections_total metric), from the goroutine
	// that called Failure, without the lock held.
	OnEject func(target int)
	// Previous, if set, is the Ejector this one replaces on a config
	// reload. For each address present in both, the ejection in force (with
	// its end time), the repeat-ejection multiplier and the failure count
	// carry over, and this Ejector's Run ends the ejection. Without it, a
	// target that reports Ejected() true (as balancer.Backend does) is taken
	// as ejected from now for BaseEjection.
	Previous *Ejector
}

// Ejector is passive health for one pool. Success and Failure are safe to
// call from any number of goroutines; Run ends ejections when they expire.
// A nil *Ejector is valid and does nothing.
//
// Failure ejects a target after Config.ConsecutiveFailures failures in a row
// (a Success in between resets the count) unless more than
// Config.MaxEjectionPercent of the pool would then be ejected: a pool of 4 at
// 50% has at most 2 ejected, a pool of 1 at 50% is never ejected (0.5 rounds
// down; ejecting the only backend would turn errors into 503s). A refused
// target keeps its count, so its next Failure ejects it as soon as there is
// room. The n-th ejection in a row of one target lasts
// BaseEjection × 2^(n-1), at most MaxEjectionTime; a target that goes
// 10 × BaseEjection without being ejected starts again at BaseEjection. An
// ejection ends when its time is over (Run) or, with UnejectOnActivePass,
// when the active check sees the target recover (Recovered).
type Ejector struct {
	pool       string
	threshold  int64
	base       time.Duration
	maxEject   time.Duration // at least base
	maxPercent int
	uneject    bool // Config.UnejectOnActivePass
	log        *slog.Logger
	onEject    func(int)
	// now is the clock; tests swap it.
	now func() time.Time

	// counters[i] counts target i's consecutive failures. Padded so that
	// targets do not share a cache line on the hot path.
	counters []counter

	mu      sync.Mutex
	slots   []slot // guarded by mu
	ejected int    // slots with ejected set; guarded by mu

	// wake tells Run that a new ejection may end before its timer.
	wake chan struct{}
}

type counter struct {
	n atomic.Int64
	_ [56]byte
}

// slot is one target's ejection state, guarded by Ejector.mu.
type slot struct {
	target  Ejectable
	address string
	ejected bool
	until   time.Time // end of the ejection in force
	mult    int64     // multiplier of the last ejection (a power of 2); 0 = never ejected
	lastEnd time.Time // when the last ejection ended
}

// NewEjector returns an Ejector for opts; it panics if Addresses is set with
// a length other than Targets' or a target is nil (programmer errors). Start
// Run to end ejections.
func NewEjector(opts EjectorOptions) *Ejector {
	if len(opts.Addresses) != 0 && len(opts.Addresses) != len(opts.Targets) {
		panic("health: EjectorOptions.Addresses and Targets differ in length")
	}
	e := &Ejector{
		pool:       opts.Pool,
		threshold:  int64(max(opts.Config.ConsecutiveFailures, 0)),
		base:       max(opts.Config.BaseEjection.Duration, 0),
		maxEject:   max(opts.Config.MaxEjectionTime.Duration, opts.Config.BaseEjection.Duration, 0),
		maxPercent: opts.Config.MaxEjectionPercent,
		uneject:    opts.Config.UnejectOnActivePass,
		log:        opts.Logger,
		onEject:    opts.OnEject,
		now:        time.Now,
		counters:   make([]counter, len(opts.Targets)),
		slots:      make([]slot, len(opts.Targets)),
		wake:       make(chan struct{}, 1),
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	var prev map[string]carried
	if opts.Previous != nil {
		prev = opts.Previous.carry()
	}
	now := e.now()
	for i, t := range opts.Targets {
		if t == nil {
			panic("health: EjectorOptions.Targets[" + strconv.Itoa(i) + "] is nil")
		}
		s := &e.slots[i]
		s.target = t
		if len(opts.Addresses) != 0 {
			s.address = opts.Addresses[i]
		} else {
			s.address = strconv.Itoa(i)
		}
		if p, ok := prev[s.address]; ok && len(opts.Addresses) != 0 {
			*s = p.slot
			s.target = t
			e.counters[i].n.Store(p.failures)
		} else if r, ok := t.(interface{ Ejected() bool }); ok && r.Ejected() {
			s.ejected, s.until, s.mult = true, now.Add(e.base), 1
		}
		if s.ejected {
			e.ejected++
		}
	}
	return e
}

// carried is what a successor Ejector takes over for one address.
type carried struct {
	slot     slot
	failures int64
}

func (e *Ejector) carry() map[string]carried {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := make(map[string]carried, len(e.slots))
	for i, s := range e.slots {
		m[s.address] = carried{slot: s, failures: e.counters[i].n.Load()}
	}
	return m
}

// Success records a good response from target (an index into Targets). It
// is the hot path: no allocation and, in the common case of no recent
// failure, a single atomic load.
func (e *Ejector) Success(target int) {
	if e == nil {
		return
	}
	if c := &e.counters[target].n; c.Load() != 0 {
		c.Store(0)
	}
}

// Failure records a connect failure, reset or 5xx from target (an index into
// Targets). The call that brings the count to Config.ConsecutiveFailures
// ejects the target if the pool's MaxEjectionPercent allows; it takes a lock
// only then. Failures of a target already ejected are ignored.
func (e *Ejector) Failure(target int) {
	if e == nil || e.threshold == 0 {
		return
	}
	if e.counters[target].n.Add(1) < e.threshold {
		return
	}
	e.eject(target)
}

// eject ejects target i if it is not ejected and the pool has room.
func (e *Ejector) eject(i int) {
	d, address, ok := e.tryEject(i, e.now())
	if !ok {
		return
	}
	select {
	case e.wake <- struct{}{}:
	default:
	}
	if e.onEject != nil {
		e.onEject(i)
	}
	e.log.Warn("backend ejected", "pool", e.pool, "backend", address,
		"reason", fmt.Sprintf("%d consecutive failures", e.threshold), "duration", d)
}

// tryEject does eject's state change under the lock and reports the
// ejection's length, or ok false if it did not eject.
func (e *Ejector) tryEject(i int, now time.Time) (d time.Duration, address string, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := &e.slots[i]
	if s.ejected {
		e.counters[i].n.Store(0)
		return 0, "", false
	}
	if (e.ejected+1)*100 > e.maxPercent*len(e.slots) {
		return 0, "", false
	}
	d = e.ejectionTime(s, now)
	s.ejected, s.until = true, now.Add(d)
	e.ejected++
	e.counters[i].n.Store(0)
	s.target.SetEjected(true)
	return d, s.address, true
}

// ejectionTime advances s's multiplier for an ejection at now and returns
// the ejection's length: BaseEjection × 2^(n-1) for the n-th ejection in a
// row, at most maxEject.
func (e *Ejector) ejectionTime(s *slot, now time.Time) time.Duration {
	switch {
	case s.mult == 0 || now.Sub(s.lastEnd) >= healthyResetFactor*e.base:
		s.mult = 1
	case e.base*time.Duration(s.mult) < e.maxEject:
		// Stop doubling once at the cap, so that the multiplier
		// cannot overflow however often the target is ejected.
		s.mult *= 2
	}
	return min(e.base*time.Duration(s.mult), e.maxEject)
}

// Recovered tells the Ejector that the active check saw target (an index
// into Targets) recover: its transition from down to up after rise passes.
// With Config.UnejectOnActivePass an ejection in force ends now and ended
// is true. Otherwise an ejection in force goes on: until is its end (zero
// when target is not ejected). A check that kept passing is no recovery:
// call Recovered only on the transition. The repeat-ejection multiplier is
// kept, as when an ejection ends by time. Safe for concurrent use; a nil
// Ejector reports nothing.
func (e *Ejector) Recovered(target int) (ended bool, until time.Time) {
	if e == nil {
		return false, time.Time{}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s := &e.slots[target]
	if !s.ejected {
		return false, time.Time{}
	}
	if !e.uneject {
		return false, s.until
	}
	e.endLocked(target, e.now())
	return true, time.Time{}
}

// Uneject ends target's (an index into Targets) ejection now, whatever
// UnejectOnActivePass says: an operator's order (frontdoor ctl uneject). It
// reports whether target was ejected. As when an ejection ends by time, the
// failure count starts again from 0 and the repeat-ejection multiplier is
// kept. The target takes traffic again only if its active check passes.
// Safe for concurrent use; a nil Ejector reports false.
func (e *Ejector) Uneject(target int) bool {
	if e == nil {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.slots[target].ejected {
		return false
	}
	e.endLocked(target, e.now())
	return true
}

// endLocked ends target i's ejection at now; e.mu is held.
func (e *Ejector) endLocked(i int, now time.Time) {
	s := &e.slots[i]
	s.ejected, s.lastEnd = false, now
	e.ejected--
	e.counters[i].n.Store(0)
	s.target.SetEjected(false)
}

// EjectedUntil reports whether target (an index into Targets) is ejected
// now and, if so, until when. Safe for concurrent use; not for the hot path
// (it takes the lock). A nil Ejector reports false.
func (e *Ejector) EjectedUntil(target int) (until time.Time, ejected bool) {
	if e == nil {
		return time.Time{}, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s := &e.slots[target]
	if !s.ejected {
		return time.Time{}, false
	}
	return s.until, true
}

// Ejected reports whether target (an index into Targets) is ejected now.
// Safe for concurrent use; not for the hot path (it takes the lock).
func (e *Ejector) Ejected(target int) bool {
	if e == nil {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.slots[target].ejected
}

// Run ends each ejection when its time is up, until ctx is done. It returns
// when ctx ends and un-ejects nothing then: a successor built with Previous
// takes over. Call it once per Ejector.
func (e *Ejector) Run(ctx context.Context) {
	if e == nil {
		<-ctx.Done()
		return
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		if next, ok := e.step(); ok {
			timer.Reset(max(0, next.Sub(e.now())))
		}
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// step releases expired ejections, recovering a panic, and returns the
// earliest end of those still in force.
func (e *Ejector) step() (next time.Time, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("health: panic", "pool", e.pool, "in", "ejector", "panic", r, "stack", string(debug.Stack()))
			// Try again shortly rather than leave ejections in force.
			next, ok = e.now().Add(time.Second), true
		}
	}()
	return e.release(e.now())
}

// release ends every ejection due at now and returns the earliest end of
// those still in force (ok false if none).
func (e *Ejector) release(now time.Time) (next time.Time, ok bool) {
	ended, next, ok := e.releaseLocked(now)
	for _, t := range ended {
		// "backend up" only when it takes traffic again: a target its
		// active check holds down stays out.
		if h, ok := t.target.(interface{ Healthy() bool }); ok && !h.Healthy() {
			e.log.Info("backend ejection ended", "pool", e.pool, "backend", t.address,
				"reason", "ejection time over; active check still failing, stays down")
			continue
		}
		e.log.Info("backend up", "pool", e.pool, "backend", t.address, "reason", "ejection time over")
	}
	return next, ok
}

func (e *Ejector) releaseLocked(now time.Time) (ended []slot, next time.Time, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range e.slots {
		s := &e.slots[i]
		if !s.ejected {
			continue
		}
		if now.Before(s.until) {
			if !ok || s.until.Before(next) {
				next, ok = s.until, true
			}
			continue
		}
		e.endLocked(i, now)
		ended = append(ended, *s)
	}
	return ended, next, ok
}
