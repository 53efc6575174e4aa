package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"frontdoor/config"
)

var (
	// ErrUnhealthy is wrapped by a probe error when the backend answered but
	// reported itself unhealthy: an HTTP status outside expect_status, or a
	// grpc.health.v1 status other than SERVING.
	ErrUnhealthy = errors.New("health: backend reports unhealthy")
	// ErrTimeout is wrapped by a probe error when the backend did not answer
	// within the check's timeout (connect included).
	ErrTimeout = errors.New("health: check timed out")
)

// maxHealthBody caps the response body an HTTP check reads; a larger body
// fails the check.
const maxHealthBody = 1 << 20

// prober runs one check against one backend. probe is called by one
// goroutine at a time; close releases the connections and may be called
// while a probe runs (which then fails promptly) and more than once.
type prober interface {
	probe(ctx context.Context) error
	close()
}

// newProber returns the prober for check kind hc.Check against address. It
// opens nothing: connections are made by the first probe.
func newProber(hc *config.HealthCheck, address string) prober {
	switch hc.Check {
	case "tcp":
		return newTCPProber(address, hc.Timeout.Duration)
	case "http":
		return newHTTPProber(hc, address)
	case "grpc":
		return newGRPCProber(hc, address)
	}
	// NewChecker rejects every other kind.
	panic("health: no prober for check " + hc.Check)
}

// timeoutErr wraps err with ErrTimeout when it is a timeout of any kind.
func timeoutErr(err error, timeout time.Duration) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w after %s: %w", ErrTimeout, timeout, err)
	}
	return err
}

// errProberClosed fails a probe cut short by close, or started after it.
var errProberClosed = errors.New("health: prober closed")

// asyncProber is a prober whose probes never block: the engine starts them
// and hands them the readiness events of their sockets, so that one
// goroutine runs the probes of all of a Checker's targets (see engine). Its
// probe method runs one probe to the end on the calling goroutine instead,
// with a poller of its own (blockingRun): that is how targets with a host
// name are checked (resolving blocks), and how tests drive it.
//
// The engine calls start, ready, abort and release from one goroutine.
type asyncProber interface {
	prober
	// named reports that the target is a host name, resolved on connect:
	// the prober must run on a goroutine of its own.
	named() bool
	// start begins a probe that must end by deadline. It reports done if
	// the probe ended at once, with err its result; otherwise the prober
	// has registered its socket with pl under tag and waits for ready.
	start(ctx context.Context, pl *poller, tag int32, deadline time.Time) (done bool, err error)
	// ready takes the events of the prober's socket. Between probes it
	// may get the events of a kept connection (the backend closed it);
	// it then reports not done.
	ready(events uint32) (done bool, err error)
	// abort ends the running probe (its deadline passed, or the checker
	// stops), closing what it had in progress, and returns the timeout
	// error for it.
	abort() error
	// release closes every socket of the prober. It may start again.
	release()
}

// blockingRun gives an asyncProber its probe and close methods: a probe
// runs on the calling goroutine with a poller made on first use.
type blockingRun struct {
	mu      sync.Mutex
	pl      *poller
	running bool
	// closed refuses new probes; a running one is cut short by waking
	// its poller and stops at its next wake-up.
	closed atomic.Bool
}

// run runs one probe of ap to its end, or until timeout passes or close is
// called. ctx bounds name resolution; Run ends probes through close.
func (b *blockingRun) run(ctx context.Context, ap asyncProber, timeout time.Duration) error {
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return errProberClosed
	}
	if b.pl == nil {
		pl, err := newPoller()
		if err != nil {
			b.mu.Unlock()
			return err
		}
		b.pl = pl
	}
	b.running = true
	pl := b.pl
	b.mu.Unlock()
	defer b.stopped(ap)

	deadline := time.Now().Add(timeout)
	done, err := ap.start(ctx, pl, 0, deadline)
	for !done {
		evs, werr := pl.wait(deadline)
		switch {
		case werr != nil:
			_ = ap.abort()
			return werr
		case b.closed.Load():
			_ = ap.abort()
			return errProberClosed
		}
		for _, ev := range evs {
			if done, err = ap.ready(ev.Events); done {
				break
			}
		}
		if !done && len(evs) == 0 && !time.Now().Before(deadline) {
			return ap.abort()
		}
	}
	return err
}

// stopped ends a run; a close that came meanwhile is carried out now.
func (b *blockingRun) stopped(ap asyncProber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.running = false
	if b.closed.Load() {
		b.release(ap)
	}
}

// close closes ap's sockets, or has the running probe stop and close them.
func (b *blockingRun) close(ap asyncProber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed.Store(true)
	if b.running {
		b.pl.wake()
		return
	}
	b.release(ap)
}

// release closes ap's sockets and the poller. Called with b.mu held.
func (b *blockingRun) release(ap asyncProber) {
	ap.release()
	if b.pl != nil {
		b.pl.close()
		b.pl = nil
	}
}
