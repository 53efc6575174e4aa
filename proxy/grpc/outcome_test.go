package grpc

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
)

// outcomeLog collects the outcomes a Route's Observe hook reports, by
// request ID.
type outcomeLog struct {
	mu   sync.Mutex
	byID map[string]Outcome
}

func newOutcomeLog() *outcomeLog { return &outcomeLog{byID: map[string]Outcome{}} }

func (l *outcomeLog) observe(o *Outcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byID[o.RequestID] = *o
}

// wait returns the outcome of the call with request ID id. Observe runs
// after the call's last byte, so it may come a moment after the client
// has its answer.
func (l *outcomeLog) wait(t *testing.T, id string) Outcome {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		o, ok := l.byID[id]
		l.mu.Unlock()
		if ok {
			return o
		}
		if time.Now().After(deadline) {
			t.Fatalf("no outcome for call %s", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOutcomeBytes checks that a call's outcome counts the request and
// response body bytes that went through (gRPC messages plus their 5-byte
// prefixes), which the access log reports as bytes_in and bytes_out.
func TestOutcomeBytes(t *testing.T) {
	t.Parallel()
	log := newOutcomeLog()
	f := newFixture(t, fixtureOpts{backends: 1, route: &Route{Observe: log.observe}})
	big := []byte(strings.Repeat("b", 100_000))
	tests := []struct {
		name    string
		run     func(ctx context.Context) error
		in, out int64
	}{
		{"unary", func(ctx context.Context) error {
			_, err := unary(ctx, f.cc, methodUnary, []byte("hello"))
			return err
		}, 5 + 5, 5 + 5},
		{"unary of 100 kB", func(ctx context.Context) error {
			_, err := unary(ctx, f.cc, methodUnary, big)
			return err
		}, 5 + 100_000, 5 + 100_000},
		{"server stream", func(ctx context.Context) error {
			s, err := f.cc.NewStream(ctx, &descServer, methodServer, raw)
			if err != nil {
				return err
			}
			req := []byte("3")
			if err := s.SendMsg(&req); err != nil {
				return err
			}
			if err := s.CloseSend(); err != nil {
				return err
			}
			for {
				var m []byte
				if err := s.RecvMsg(&m); err != nil {
					return nil // io.EOF at the end; a failure shows in the counts
				}
			}
		}, 5 + 1, 3 * (5 + 5)},
		{"client stream", func(ctx context.Context) error {
			s, err := f.cc.NewStream(ctx, &descClient, methodClient, raw)
			if err != nil {
				return err
			}
			for range 4 {
				m := []byte("0123456789")
				if err := s.SendMsg(&m); err != nil {
					return err
				}
			}
			if err := s.CloseSend(); err != nil {
				return err
			}
			var resp []byte
			return s.RecvMsg(&resp) // "4/40"
		}, 4 * (5 + 10), 5 + 4},
		{"trailers-only error", func(ctx context.Context) error {
			_, _ = unary(metadata.AppendToOutgoingContext(ctx, "x-status", "9"), f.cc, methodUnary, []byte("abc"))
			return nil
		}, 5 + 3, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := "bytes-" + strings.ReplaceAll(tc.name, " ", "-")
			ctx := metadata.AppendToOutgoingContext(testCtx(t), "x-request-id", id)
			if err := tc.run(ctx); err != nil {
				t.Fatal(err)
			}
			o := log.wait(t, id)
			if o.BytesIn != tc.in || o.BytesOut != tc.out {
				t.Errorf("bytes in %d, out %d; want %d, %d", o.BytesIn, o.BytesOut, tc.in, tc.out)
			}
		})
	}
}
