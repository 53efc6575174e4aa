package balancer

import (
	"math"
	"sync/atomic"
)

// Slow start (Options.SlowStart) ramps a member's effective weight linearly
// from about 0 to its full weight over the slow-start span after its
// Backend came up (from down or ejected, or for the first time after a
// reload added it), as HAProxy's slowstart and Envoy's slow_start_config
// do.
//
// Round robin rebuilds its schedule in rampSteps steps over the span, off
// the request path; least_conn scales its load comparison and its
// tie-breaking by the current fraction. Both read the clock on Pick only
// while a member of the pool is ramping (ramp.until is set); otherwise slow
// start costs one atomic load per pick. Consistent hashing is not ramped:
// its keys stay put (bounded_load limits a cold member's load instead).

// rampSteps is how many weight steps round robin's ramp takes: the schedule
// is rebuilt about every SlowStart/rampSteps while a member ramps, and a
// ramping member starts at 1/rampSteps of its weight.
const rampSteps = 100

// rampOne is 1.0 in least_conn's fixed-point ramp fraction.
const rampOne = 1 << 16

// maxRampSchedule bounds a round-robin schedule while a member ramps (ramp
// levels multiply the weights): above it, the effective weights are scaled
// down to fit, with an error of at most half a slot each.
const maxRampSchedule = 1 << 16

// ramp is a pool's slow-start state. A nil *ramp means slow start is off.
type ramp struct {
	// span is the slow-start duration in nanoseconds, above 0.
	span int64
	// now is the clock, in the nanoseconds of Backend.upSince (monoNow
	// outside tests).
	now func() int64
	// until is when the last running ramp ends, in nanoseconds of now; 0
	// when no up member ramps. The pool's rebuild sets it; Pick clears it
	// once it has passed, so that picks stop reading the clock.
	until atomic.Int64
}

// active reports whether a member may be ramping, with the time it read.
// Without a ramp running it is one atomic load and reads no clock.
func (r *ramp) active() (int64, bool) {
	if r == nil {
		return 0, false
	}
	u := r.until.Load()
	if u == 0 {
		return 0, false
	}
	now := r.now()
	if now < u {
		return now, true
	}
	r.until.CompareAndSwap(u, 0)
	return now, false
}

// update sets until from the up members' ramps at now. The pool calls it
// from its rebuild, after a member's Up changed.
func (r *ramp) update(members []Member, now int64) {
	var until int64
	for _, m := range members {
		if !m.Backend.Up() {
			continue
		}
		if end := m.Backend.upSince.Load() + r.span; end > now && end > until {
			until = end
		}
	}
	r.until.Store(until)
}

// fraction is b's ramp fraction at now in units of 1/rampOne, from
// rampOne/rampSteps (just up) to rampOne (ramp over).
func (r *ramp) fraction(b *Backend, now int64) int64 {
	el := now - b.upSince.Load()
	if el >= r.span {
		return rampOne
	}
	f := int64(float64(el) / float64(r.span) * rampOne)
	return max(f, rampOne/rampSteps)
}

// level is b's ramp step at now, from 1 to rampSteps (ramp over), rounded to
// the nearest step, and when the next step begins (0 when the ramp is over).
func (r *ramp) level(b *Backend, now int64) (level, next int64) {
	since := b.upSince.Load()
	el := now - since
	if el >= r.span {
		return rampSteps, 0
	}
	level = int64(math.Floor(float64(max(el, 0))/float64(r.span)*rampSteps + 0.5))
	if level >= rampSteps {
		return rampSteps, 0
	}
	// The level rounds up to level+1 once el reaches (level + 1/2) steps.
	next = since + int64(math.Ceil((float64(level)+0.5)*float64(r.span)/rampSteps))
	return max(level, 1), max(next, now+1)
}
