package health

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"frontdoor/config"
)

// StatusSetter receives active health results; balancer.Backend satisfies it.
// SetHealthy is called from the Checker's goroutines, once per transition
// (never per probe), and must be safe for concurrent use. It must not call
// back into the Checker.
type StatusSetter interface{ SetHealthy(healthy bool) }

// Target is one backend a Checker watches.
type Target struct {
	// Address is the backend's host:port; probes dial it.
	Address string
	// Backend receives the verdicts. Required.
	Backend StatusSetter
	// Healthy is the state to start from: a backend kept across a reload
	// passes its current state so traffic does not stop while the new
	// Checker runs its first round. false (the zero value) means down: the
	// target goes up on its first successful check.
	Healthy bool
}

// CheckerOptions configures NewChecker. The zero value is not usable: Check
// must name a check kind.
type CheckerOptions struct {
	// Pool names the pool, for logs.
	Pool string
	// Check is the pool's [pool.NAME.health] table, already defaulted and
	// validated by config.Load. NewChecker still rejects values it cannot
	// run (unknown kind, non-positive interval or timeout, rise or fall
	// below 1, an http path not starting with "/", a bad status range).
	// An empty Method means GET and an empty Host means the target address.
	Check config.HealthCheck
	// Targets are the backends to check, in the order the callbacks' target
	// index refers to. The slice is copied.
	Targets []Target
	// Logger receives one line per up/down transition (keys pool, backend,
	// err or reason) and panics with their stack. nil discards.
	Logger *slog.Logger
	// OnCheck, if set, is called after every probe with the target index
	// and result (used for health_checks_total). It may be called from
	// several goroutines at once and must be fast and safe for concurrent
	// use; a slow OnCheck delays the checks of other targets.
	// Probes cut short because Run's context ended are not reported.
	OnCheck func(target int, ok bool)
	// OnChange, if set, is called after each up/down transition, after
	// Backend.SetHealthy and after the OnCheck of the probe that caused it.
	// Same concurrency rules as OnCheck.
	OnChange func(target int, healthy bool)
	// Ejector, if set, is the pool's passive Ejector over the same targets
	// in the same order. Each recovery the Checker sees (a target's
	// transition from down to up) is reported to its Recovered, which may
	// end an ejection in force, before the transition is logged: the line
	// "backend up" is logged only when the target takes traffic again; a
	// target that stays ejected logs "backend passed its checks, stays
	// ejected" with the ejection's end (key until), and the Ejector logs
	// "backend up" when that comes.
	Ejector *Ejector
	// Previous, if set, is the Checker this one replaces on a config
	// reload: for every address present in both, the last result, last
	// error, last check and change times and the rise/fall counters are
	// copied when NewChecker runs. Target.Healthy still decides the starting
	// verdict; counters are dropped when it disagrees with Previous.
	// Previous may still be running; it is only read.
	Previous *Checker
	// TLS, when set, makes every probe go over TLS with this config
	// (probe_tls.go): tcp checks shake hands, http checks are HTTPS, grpc
	// checks use TLS credentials. An empty ServerName is each target's
	// host. It is cloned per target and not modified. nil: plain TCP.
	TLS *tls.Config
}

// TargetStatus is one target's state as shown on /status.
type TargetStatus struct {
	// Address is the target's host:port.
	Address string
	// Healthy is the Checker's current verdict.
	Healthy bool
	// LastResult is "success" or "failure" for the last probe, "" before the
	// first one (and always for check "none").
	LastResult string
	// LastError is the last probe's error, "" when it passed.
	LastError string
	// LastCheck is when the last probe finished (zero before the first).
	LastCheck time.Time
	// LastChange is when the verdict last changed (zero if never).
	LastChange time.Time
	// History is the results of the last probes (up to 20), oldest
	// first: '+' passed, '-' failed. Empty before the first.
	History string
}

// slotsPerInterval is how many wake-up slots one interval is cut into.
const slotsPerInterval = 10

// Checker runs the active health check of one pool: it probes every target
// every interval ± 10% and applies rise/fall. tcp and http checks of targets
// given by IP address all run on one goroutine (see engine); grpc checks and
// targets given by host name get a goroutine each. Create it with NewChecker
// and start it with Run; Status and FirstRoundDone are safe to call from any
// goroutine at any time.
type Checker struct {
	pool     string
	check    config.HealthCheck
	targets  []*target
	log      *slog.Logger
	onCheck  func(int, bool)
	onChange func(int, bool)
	ejector  *Ejector

	// rand returns a float in [0, 1) for spreading and jitter; tests swap
	// it. Default math/rand/v2 Float64.
	rand func() float64
	// now is the clock for status times and scheduling; tests may swap it.
	now func() time.Time
	// slot is the grid probe times are rounded to: interval/slotsPerInterval.
	slot time.Duration
	// newProber makes each target's prober when Run starts; tests swap it.
	newProber func(hc *config.HealthCheck, address string) prober

	started atomic.Bool
	// unprobed counts targets without a recorded result yet.
	unprobed atomic.Int64
}

// target is one backend and its state.
type target struct {
	index   int
	address string
	backend StatusSetter

	mu sync.Mutex
	st state
}

// NewChecker validates opts and returns a Checker that has not started: it
// opens no connection and starts no goroutine until Run. It returns every
// problem with opts at once.
func NewChecker(opts CheckerOptions) (*Checker, error) {
	errs := validateCheck(&opts.Check)
	c := &Checker{
		pool:      opts.Pool,
		check:     opts.Check,
		targets:   make([]*target, len(opts.Targets)),
		log:       opts.Logger,
		onCheck:   opts.OnCheck,
		onChange:  opts.OnChange,
		ejector:   opts.Ejector,
		rand:      rand.Float64,
		now:       time.Now,
		slot:      opts.Check.Interval.Duration / slotsPerInterval,
		newProber: newProber,
	}
	if opts.TLS != nil && opts.Check.Check != "none" {
		c.newProber = func(hc *config.HealthCheck, address string) prober { return newTLSProber(hc, address, opts.TLS) }
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	var prev map[string]state
	if opts.Previous != nil {
		prev = opts.Previous.states()
	}
	for i, t := range opts.Targets {
		if t.Address == "" {
			errs = append(errs, fmt.Errorf("target %d: empty address", i))
		}
		if t.Backend == nil {
			errs = append(errs, fmt.Errorf("target %d (%s): nil Backend", i, t.Address))
		}
		tg := &target{index: i, address: t.Address, backend: t.Backend}
		tg.st.healthy, tg.st.everUp = t.Healthy, t.Healthy
		if p, ok := prev[t.Address]; ok {
			tg.st.inherit(p, t.Healthy)
		}
		c.targets[i] = tg
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("health: pool %q: %w", opts.Pool, errors.Join(errs...))
	}
	// Targets whose result was carried over from the previous checker count
	// as probed: a reload must not make the pool look unready.
	var unprobed int64
	for _, tg := range c.targets {
		if !tg.st.checked {
			unprobed++
		}
	}
	c.unprobed.Store(unprobed)
	return c, nil
}

// validateCheck reports every value of hc the Checker cannot run.
func validateCheck(hc *config.HealthCheck) []error {
	switch hc.Check {
	case "none":
		return nil
	case "tcp", "http", "grpc":
	default:
		return []error{fmt.Errorf("check %q: want http, tcp, grpc or none", hc.Check)}
	}
	var errs []error
	if hc.Interval.Duration <= 0 {
		errs = append(errs, fmt.Errorf("interval %s: must be positive", hc.Interval.Duration))
	}
	if hc.Timeout.Duration <= 0 {
		errs = append(errs, fmt.Errorf("timeout %s: must be positive", hc.Timeout.Duration))
	}
	if hc.Rise < 1 {
		errs = append(errs, fmt.Errorf("rise %d: must be at least 1", hc.Rise))
	}
	if hc.Fall < 1 {
		errs = append(errs, fmt.Errorf("fall %d: must be at least 1", hc.Fall))
	}
	if hc.Check == "http" {
		if !strings.HasPrefix(hc.Path, "/") {
			errs = append(errs, fmt.Errorf("path %q: must start with /", hc.Path))
		}
		if r := hc.ExpectStatus; r.Low < 100 || r.High > 599 || r.Low > r.High {
			errs = append(errs, fmt.Errorf("expect_status %d-%d: want a range within 100-599", r.Low, r.High))
		}
	}
	return errs
}

// states copies every target's state by address, for a successor.
func (c *Checker) states() map[string]state {
	m := make(map[string]state, len(c.targets))
	for _, t := range c.targets {
		t.mu.Lock()
		m[t.address] = t.st
		t.mu.Unlock()
	}
	return m
}

// FirstRoundDone reports whether every target has been probed at least once
// (a probe that ends by Run's context is not counted). For check "none" it
// turns true once Run has marked every target up. It is always true for a
// Checker without targets. Safe for concurrent use.
func (c *Checker) FirstRoundDone() bool {
	return c.unprobed.Load() <= 0
}

// Status returns a snapshot of every target's state, in Targets order. Safe
// for concurrent use; the slice is the caller's.
func (c *Checker) Status() []TargetStatus {
	out := make([]TargetStatus, len(c.targets))
	for i, t := range c.targets {
		t.mu.Lock()
		s := t.st
		t.mu.Unlock()
		ts := TargetStatus{Address: t.address, Healthy: s.healthy, LastCheck: s.lastCheck, LastChange: s.lastChange}
		if s.probes > 0 {
			h := make([]byte, s.probes)
			for i := range h {
				h[i] = '-'
				if s.history&(1<<(int(s.probes)-1-i)) != 0 {
					h[i] = '+'
				}
			}
			ts.History = string(h)
		}
		if s.checked {
			ts.LastResult = "failure"
			if s.lastOK {
				ts.LastResult = "success"
			}
			if s.lastErr != nil {
				ts.LastError = s.lastErr.Error()
			}
		}
		out[i] = ts
	}
	return out
}

// Start runs the Checker in the background, as go Run(ctx) would, except
// that with check "none" it marks every target up before it returns: the
// caller can then serve the pool at once, without a first moment in which no
// backend is up.
func (c *Checker) Start(ctx context.Context) {
	if c.check.Check == "none" {
		c.Run(ctx) // marks and returns
		return
	}
	go c.Run(ctx)
}

// Run checks the targets until ctx is done, then closes the probes'
// connections and returns once all its goroutines have ended. Every target
// is probed at once when Run starts; its second probe comes at a random
// point within one interval (so that many targets do not fire together), and
// each following one an interval ± up to 10% after the previous one started.
// For check "none" Run marks every target healthy and returns: call it
// before serving, so that no request finds the pool empty.
//
// Probe times are rounded to a grid of interval/10, so that the targets due
// in the same tenth of an interval start together and wake the process
// once, not once per target.
//
// Call Run once; further calls return at once. A probe still running when
// ctx ends is cut short (its connection closed) and its result discarded,
// so cancelling a replaced Checker never marks a backend down.
func (c *Checker) Run(ctx context.Context) {
	if !c.started.CompareAndSwap(false, true) {
		return
	}
	defer c.recoverPanic("run")
	if c.check.Check == "none" {
		for _, t := range c.targets {
			if c.markUp(t) {
				c.changed(t, true, nil, "check none")
			}
		}
		// Done only now: a caller waiting for the first round must not
		// see the targets before they are marked up.
		c.unprobed.Store(0)
		return
	}
	// tcp and http probers of IP addresses run together in one engine;
	// the others (grpc, host names) on a goroutine per target.
	var wg sync.WaitGroup
	var engTargets []*target
	var engProbers []asyncProber
	for _, t := range c.targets {
		p := c.newProber(&c.check, t.address)
		if ap, ok := p.(asyncProber); ok && !ap.named() {
			engTargets = append(engTargets, t)
			engProbers = append(engProbers, ap)
			continue
		}
		wg.Go(func() { c.runTarget(ctx, t, p) })
	}
	if len(engTargets) > 0 {
		e, err := newEngine(c, engTargets, engProbers)
		if err != nil {
			// Out of descriptors, most likely: check these targets on
			// goroutines instead, each with a poller of its own.
			c.log.Error("health: no engine, checking on goroutines", "pool", c.pool, "err", err)
			for i, t := range engTargets {
				wg.Go(func() { c.runTarget(ctx, t, engProbers[i]) })
			}
		} else {
			wg.Go(func() {
				defer c.recoverPanic("engine")
				e.run(ctx)
			})
		}
	}
	wg.Wait()
}

// runTarget checks t with p on the calling goroutine until ctx is done, then
// closes p.
func (c *Checker) runTarget(ctx context.Context, t *target, p prober) {
	defer c.recoverPanic("check " + t.address)
	defer p.close()
	// Cut a running probe short when ctx ends.
	stop := context.AfterFunc(ctx, p.close)
	defer stop()
	for !c.loopRecovered(ctx, t, p) {
		// A callback panicked (and was logged): carry on after an
		// interval rather than stop checking the target.
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.check.Interval.Duration):
		}
	}
}

// loopRecovered runs loop and reports false if it ended in a panic, which
// it logs.
func (c *Checker) loopRecovered(ctx context.Context, t *target, p prober) (ended bool) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("health: panic", "pool", c.pool, "backend", t.address, "panic", r, "stack", string(debug.Stack()))
			ended = false
		}
	}()
	c.loop(ctx, t, p)
	return true
}

// markUp marks t healthy for check "none" and reports whether that changed
// its verdict.
func (c *Checker) markUp(t *target) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	changed := t.st.markUp(c.now())
	if changed {
		t.backend.SetHealthy(true)
	}
	return changed
}

// loop probes t with p until ctx is done.
func (c *Checker) loop(ctx context.Context, t *target, p prober) {
	interval := c.check.Interval.Duration
	start := c.now()
	if !c.probe(ctx, t, p) {
		return
	}
	// Spread the second round over (0, interval].
	timer := time.NewTimer(c.until(start, (1-c.rand())*float64(interval)))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		start = c.now()
		if !c.probe(ctx, t, p) {
			return
		}
		// interval × [0.9, 1.1), measured from this probe's start.
		timer.Reset(c.until(start, (0.9+0.2*c.rand())*float64(interval)))
	}
}

// until returns how long to wait, from now, for the moment after
// nanoseconds past start (measured on the monotonic clock), rounded to the
// nearest point of the Checker's slot grid (never into the past) so that the
// timers of many targets fire together and wake the process once per slot,
// not once per target, while the mean period stays the interval. A
// wall-clock step can move a wake-up by at most one slot.
func (c *Checker) until(start time.Time, after float64) time.Duration {
	return c.untilAt(c.now(), start, after)
}

// untilAt is until with the current time given.
func (c *Checker) untilAt(now, start time.Time, after float64) time.Duration {
	wait := max(0, time.Duration(after)-now.Sub(start))
	if c.slot > 0 {
		at := now.Add(wait)
		switch r := at.Sub(at.Truncate(c.slot)); {
		case r >= c.slot/2:
			wait += c.slot - r
		case r <= wait:
			wait -= r
		default: // due now: fire at the next slot rather than at once
			wait += c.slot - r
		}
	}
	return wait
}

// probe runs one probe of t and records it. It reports false when ctx ended,
// in which case nothing was recorded.
func (c *Checker) probe(ctx context.Context, t *target, p prober) bool {
	err := c.safeProbe(ctx, t, p)
	if ctx.Err() != nil {
		return false
	}
	c.report(t, err)
	return true
}

// report records the result err of a probe of t, and calls the callbacks
// and logs a transition.
func (c *Checker) report(t *target, err error) {
	wasUp, changed, healthy := c.record(t, err)
	if c.onCheck != nil {
		c.onCheck(t.index, err == nil)
	}
	if !changed {
		return
	}
	reason := fmt.Sprintf("%d consecutive checks failed", c.check.Fall)
	switch {
	case healthy && !wasUp:
		reason = "first check passed"
	case healthy:
		reason = fmt.Sprintf("%d consecutive checks passed", c.check.Rise)
	}
	if healthy && c.ejector != nil {
		switch ended, until := c.ejector.Recovered(t.index); {
		case ended:
			reason += "; passive ejection ended"
		case !until.IsZero():
			if c.onChange != nil {
				c.onChange(t.index, healthy)
			}
			c.log.Info("backend passed its checks, stays ejected", "pool", c.pool, "backend", t.address,
				"reason", reason+"; uneject_on_active_pass is false", "until", until.Format(time.RFC3339))
			return
		}
	}
	c.changed(t, healthy, err, reason)
}

// record applies a probe result to t and tells the backend of a change. It
// reports whether t had ever been up before, whether the verdict changed,
// and the verdict.
func (c *Checker) record(t *target, err error) (wasUp, changed, healthy bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	first := !t.st.checked
	wasUp = t.st.everUp
	changed = t.st.record(err, c.now(), c.check.Rise, c.check.Fall)
	healthy = t.st.healthy
	if first {
		c.unprobed.Add(-1)
	}
	if changed {
		// Under t.mu, so that verdicts reach the backend in order.
		t.backend.SetHealthy(healthy)
	}
	return wasUp, changed, healthy
}

// safeProbe runs p, turning a panic into a failed check.
func (c *Checker) safeProbe(ctx context.Context, t *target, p prober) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("health: probe panicked", "pool", c.pool, "backend", t.address,
				"panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("health: probe panicked: %v", r)
		}
	}()
	return p.probe(ctx)
}

// changed reports a transition of t to the callback and the log.
func (c *Checker) changed(t *target, healthy bool, err error, reason string) {
	if c.onChange != nil {
		c.onChange(t.index, healthy)
	}
	if healthy {
		c.log.Info("backend up", "pool", c.pool, "backend", t.address, "reason", reason)
		return
	}
	c.log.Warn("backend down", "pool", c.pool, "backend", t.address, "reason", reason, "err", err)
}

// recoverPanic logs a panic of a goroutine with its stack. Deferred directly.
func (c *Checker) recoverPanic(where string) {
	if r := recover(); r != nil {
		c.log.Error("health: panic", "pool", c.pool, "in", where, "panic", r, "stack", string(debug.Stack()))
	}
}
