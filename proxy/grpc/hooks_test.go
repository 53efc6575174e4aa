package grpc

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
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
	}{
		{name: "success", code: codes.OK, want: []report{{0, false}}},
		{name: "UNAVAILABLE answer", md: []string{"x-status", "14"}, code: codes.Unavailable, want: []report{{0, true}}},
		{name: "other error answer", md: []string{"x-status", "9"}, code: codes.FailedPrecondition, want: []report{{0, false}}},
		{name: "connect failure", stopped: true, code: codes.Unavailable, want: []report{{0, true}}},
		{name: "response timeout", md: []string{"x-sleep", "1"}, code: codes.DeadlineExceeded, want: []report{{0, true}}},
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
