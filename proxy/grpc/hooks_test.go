package grpc

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"frontdoor/metrics"
)

// poolHooks records what a Route's pool hooks hear, as the proxy runtime's
// ejector and retry budget would.
type poolHooks struct {
	mu      sync.Mutex
	reports []report

	allow              atomic.Bool // RetryAllowed's answer
	asks               atomic.Int64
	inFlight, retrying atomic.Int64
	retryPeak          atomic.Int64
}

type report struct {
	member int
	failed bool
}

func (h *poolHooks) install(rt *Route) *Route {
	rt.Passive = func(member int, failed bool) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.reports = append(h.reports, report{member, failed})
	}
	rt.InFlight = func(d int) { h.inFlight.Add(int64(d)) }
	rt.RetryAllowed = func() bool {
		h.asks.Add(1)
		return h.allow.Load()
	}
	rt.Retrying = func(d int) {
		if n := h.retrying.Add(int64(d)); n > h.retryPeak.Load() {
			h.retryPeak.Store(n)
		}
	}
	return rt
}

func (h *poolHooks) got() []report {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]report(nil), h.reports...)
}

// TestPassiveReports checks what each way a call can end tells the pool's
// passive ejection: connect failures, resets, the route's response timeout
// and UNAVAILABLE answers are failures, any other finished answer a
// success, and a client that gives up (cancel or its own deadline) says
// nothing about the backend.
func TestPassiveReports(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		stopped bool                                                // the backend's process is gone
		md      []string                                            // metadata of the call
		run     func(t *testing.T, ctx context.Context, f *fixture) // nil: a unary call
		code    codes.Code
		want    []report
		// skipTimeouts sets PassiveSkipsTimeouts (count_timeouts = false).
		skipTimeouts bool
	}{
		{name: "success", code: codes.OK, want: []report{{0, false}}},
		{name: "UNAVAILABLE answer", md: []string{"x-status", "14"}, code: codes.Unavailable, want: []report{{0, true}}},
		{name: "other error answer", md: []string{"x-status", "9"}, code: codes.FailedPrecondition, want: []report{{0, false}}},
		{name: "connect failure", stopped: true, code: codes.Unavailable, want: []report{{0, true}}},
		{name: "response timeout", md: []string{"x-sleep", "1"}, code: codes.DeadlineExceeded, want: []report{{0, true}}},
		{name: "response timeout not counted", md: []string{"x-sleep", "1"}, code: codes.DeadlineExceeded, skipTimeouts: true},
		{name: "client deadline", md: []string{"x-sleep", "1"}, code: codes.DeadlineExceeded, run: func(t *testing.T, ctx context.Context, f *fixture) {
			ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			_, err := unary(ctx, f.cc, methodUnary, []byte("x"))
			if codeOf(err) != codes.DeadlineExceeded {
				t.Fatalf("err = %v, want DeadlineExceeded", err)
			}
		}},
		{name: "client cancels", md: []string{"x-sleep", "1"}, run: func(t *testing.T, ctx context.Context, f *fixture) {
			ctx, cancel := context.WithCancel(ctx)
			go func() {
				<-f.backends[0].started
				cancel()
			}()
			_, err := unary(ctx, f.cc, methodUnary, []byte("x"))
			if codeOf(err) != codes.Canceled {
				t.Fatalf("err = %v, want Canceled", err)
			}
		}},
		{name: "backend dies mid-stream", want: []report{{0, true}}, run: func(t *testing.T, ctx context.Context, f *fixture) {
			cs, err := f.cc.NewStream(ctx, &descBidi, methodBidi, raw)
			if err != nil {
				t.Fatal(err)
			}
			m := []byte("one")
			if err := cs.SendMsg(&m); err != nil {
				t.Fatal(err)
			}
			if err := cs.RecvMsg(&m); err != nil {
				t.Fatal(err)
			}
			f.backends[0].srv.Stop()
			if err := cs.RecvMsg(&m); codeOf(err) != codes.Unavailable {
				t.Fatalf("stream ended with %v, want Unavailable", err)
			}
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var h poolHooks
			h.allow.Store(true)
			log := newOutcomeLog()
			// Retries would be allowed, but one backend leaves none to
			// try; a call that reached it must not be retried anyway.
			f := newFixture(t, fixtureOpts{backends: 1, route: h.install(&Route{
				Retries: 3, ResponseTimeout: 200 * time.Millisecond, Observe: log.observe,
				PassiveSkipsTimeouts: tc.skipTimeouts,
			})})
			if tc.stopped {
				f.backends[0].srv.Stop()
			}
			id := "passive-" + strconv.Itoa(i)
			ctx := metadata.AppendToOutgoingContext(testCtx(t), append([]string{"x-request-id", id}, tc.md...)...)
			if tc.run != nil {
				tc.run(t, ctx, f)
			} else if _, err := unary(ctx, f.cc, methodUnary, []byte("x")); status.Code(err) != tc.code {
				t.Fatalf("err = %v, want %v", err, tc.code)
			}
			o := log.wait(t, id) // Passive runs before Observe
			got := h.got()
			if len(got) != len(tc.want) || len(got) > 0 && got[0] != tc.want[0] {
				t.Errorf("passive reports %v, want %v (outcome %+v)", got, tc.want, o)
			}
			if !tc.stopped && (o.Retries != 0 || h.asks.Load() != 0) {
				t.Errorf("a call that reached its backend was retried: %d retries, %d asks", o.Retries, h.asks.Load())
			}
			if n, r := h.inFlight.Load(), h.retrying.Load(); n != 0 || r != 0 {
				t.Errorf("after the call: %d in flight, %d retrying; want 0, 0", n, r)
			}
		})
	}
}

// TestRetryBudget checks that a retry the route's Retries allows still
// needs RetryAllowed's yes (the pool's budget, shared with HTTP/1.1), and
// that in-flight and retrying counts return to zero.
func TestRetryBudget(t *testing.T) {
	t.Parallel()
	for _, allow := range []bool{false, true} {
		t.Run("allowed="+strconv.FormatBool(allow), func(t *testing.T) {
			t.Parallel()
			var h poolHooks
			h.allow.Store(allow)
			log := newOutcomeLog()
			f := newFixture(t, fixtureOpts{backends: 2, route: h.install(&Route{Retries: 1, Observe: log.observe})})
			f.backends[0].srv.Stop() // refuses connections, still marked up
			failed, retried := 0, 0
			for i := range 6 {
				id := "budget-" + strconv.Itoa(i)
				_, err := unary(metadata.AppendToOutgoingContext(testCtx(t), "x-request-id", id), f.cc, methodUnary, []byte("x"))
				switch {
				case err == nil:
				case codeOf(err) == codes.Unavailable && status.Convert(err).Message() == "frontdoor: backend connect failed":
					failed++
				default:
					t.Fatalf("call %d: %v", i, err)
				}
				retried += log.wait(t, id).Retries
			}
			// Each call that met the dead backend first asked the budget
			// once; only its yes let the call go on to the live one.
			if allow && (failed != 0 || retried == 0 || h.retryPeak.Load() != 1) {
				t.Errorf("budget open: %d failed, %d retried, retrying peaked at %d; want 0, some, 1", failed, retried, h.retryPeak.Load())
			}
			if !allow && (failed == 0 || retried != 0 || h.retryPeak.Load() != 0) {
				t.Errorf("budget spent: %d failed, %d retried, retrying peaked at %d; want some, 0, 0", failed, retried, h.retryPeak.Load())
			}
			if asks := h.asks.Load(); asks != int64(failed+retried) {
				t.Errorf("RetryAllowed asked %d times, want %d", asks, failed+retried)
			}
			if n, r := h.inFlight.Load(), h.retrying.Load(); n != 0 || r != 0 {
				t.Errorf("after the calls: %d in flight, %d retrying; want 0, 0", n, r)
			}
		})
	}
}

// connBudget is a per-member connection budget as the proxy runtime's
// upstreams keep it.
type connBudget struct {
	max          []int64 // per member; 0 refuses every dial
	conns        []atomic.Int64
	takes, gives []atomic.Int64
}

func newConnBudget(max ...int64) *connBudget {
	n := len(max)
	return &connBudget{max: max, conns: make([]atomic.Int64, n), takes: make([]atomic.Int64, n), gives: make([]atomic.Int64, n)}
}

func (b *connBudget) install(rt *Route) *Route {
	rt.TakeConn = func(i int) bool {
		if b.conns[i].Add(1) > b.max[i] {
			b.conns[i].Add(-1)
			return false
		}
		b.takes[i].Add(1)
		return true
	}
	rt.GiveConn = func(i int) {
		b.conns[i].Add(-1)
		b.gives[i].Add(1)
	}
	return rt
}

// TestConnBudget checks that the h2c transport dials a backend only with a
// connection of its budget taken, gives it back when the connection closes,
// and that a full budget fails the call like HTTP/1.1's limit: UNAVAILABLE,
// reason "limit", retried on another member when retries allow, and no
// passive failure.
func TestConnBudget(t *testing.T) {
	t.Parallel()
	for _, retries := range []int{0, 1} {
		t.Run("retries="+strconv.Itoa(retries), func(t *testing.T) {
			t.Parallel()
			budget := newConnBudget(0, 1) // member 0 full, member 1 one connection
			var h poolHooks
			h.allow.Store(true)
			log := newOutcomeLog()
			m := metrics.New(prometheus.NewRegistry(), "test")
			rt := budget.install(h.install(&Route{Retries: retries, Observe: log.observe}))
			f := newFixture(t, fixtureOpts{backends: 2, route: rt, options: Options{Metrics: m}})
			failed := 0
			for i := range 6 {
				id := "limit-" + strconv.Itoa(i)
				_, err := unary(metadata.AppendToOutgoingContext(testCtx(t), "x-request-id", id), f.cc, methodUnary, []byte("x"))
				o := log.wait(t, id)
				switch {
				case err == nil:
					if o.Backend != 1 {
						t.Errorf("call %d answered by member %d", i, o.Backend)
					}
				case codeOf(err) == codes.Unavailable && status.Convert(err).Message() == "frontdoor: backend at its connection limit":
					failed++
					if o.Reason != ReasonLimit || o.Backend != 0 {
						t.Errorf("call %d: outcome %+v, want reason limit on member 0", i, o)
					}
				default:
					t.Fatalf("call %d: %v", i, err)
				}
			}
			if retries == 0 && failed == 0 || retries > 0 && failed != 0 {
				t.Errorf("retries %d: %d of 6 calls failed", retries, failed)
			}
			if got := counterValue(t, m.UpstreamErrors.WithLabelValues("echo", f.backends[0].addr, ReasonLimit)); got == 0 {
				t.Error("upstream_errors_total{reason=limit} not counted")
			}
			for _, r := range h.got() {
				if r.member == 0 {
					t.Errorf("passive report %v for a call refused by the budget", r)
				}
			}
			if n := f.backends[0].calls.Load(); n != 0 {
				t.Errorf("member 0 got %d calls past its full budget", n)
			}
			if takes := budget.takes[1].Load(); takes != 1 {
				t.Errorf("member 1: %d connections taken for 6 calls, want 1 (one HTTP/2 connection)", takes)
			}
			// Shutdown closes the pooled connection: its budget comes back.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := f.srv.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for budget.conns[1].Load() != 0 || budget.gives[1].Load() != 1 {
				if time.Now().After(deadline) {
					t.Fatalf("member 1 after shutdown: %d open, %d given back; want 0, 1", budget.conns[1].Load(), budget.gives[1].Load())
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}
