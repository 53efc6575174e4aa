package requestid

import (
	"strings"
	"sync"
	"testing"
)

const (
	goodTP  = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	goodTID = "4bf92f3577b34da6a3ce929d0e0e4736"
)

func TestPick(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		traceparent string
		xRequestID  string
		want        string
		src         Source
	}{
		{"traceparent wins over x-request-id", goodTP, "req-1", goodTID, Traceparent},
		{"traceparent alone", goodTP, "", goodTID, Traceparent},
		{"later version with more fields", goodTP + "-extra", "", goodTID, Traceparent},
		{"x-request-id when traceparent is malformed", "00-4bf9-01", "req-1", "req-1", Header},
		{"all-zero trace-id is invalid", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "req-1", "req-1", Header},
		{"upper-case trace-id is invalid", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "", "", None},
		{"missing dash before flags", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7x01", "", "", None},
		{"x-request-id of 128 characters", "", strings.Repeat("i", MaxLen), strings.Repeat("i", MaxLen), Header},
		{"x-request-id of 129 characters", "", strings.Repeat("i", MaxLen+1), "", None},
		{"x-request-id with a space", "", "a b", "", None},
		{"x-request-id with a quote", "", `a"b`, "", None},
		{"x-request-id with a backslash", "", `a\b`, "", None},
		{"x-request-id with a control character", "", "a\nb", "", None},
		{"x-request-id with non-ASCII", "", "añb", "", None},
		{"nothing", "", "", "", None},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id, src := Pick(tc.traceparent, tc.xRequestID)
			if id != tc.want || src != tc.src {
				t.Errorf("Pick(string) = %q, %d; want %q, %d", id, src, tc.want, tc.src)
			}
			// The []byte form (fasthttp's) gives the same answer.
			bid, bsrc := Pick([]byte(tc.traceparent), []byte(tc.xRequestID))
			if string(bid) != tc.want || bsrc != tc.src {
				t.Errorf("Pick([]byte) = %q, %d; want %q, %d", bid, bsrc, tc.want, tc.src)
			}
		})
	}
}

func TestGenerator(t *testing.T) {
	t.Parallel()
	g := New()
	const perWorker, workers = 1000, 4
	var mu sync.Mutex
	seen := make(map[string]bool, perWorker*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf [Len]byte
			ids := make([]string, 0, perWorker)
			for range perWorker {
				ids = append(ids, string(g.Next(&buf)))
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids {
				if seen[id] {
					t.Errorf("id %s made twice", id)
				}
				seen[id] = true
			}
		}()
	}
	wg.Wait()
	var buf [Len]byte
	id := g.Next(&buf)
	// A new ID has the shape of a trace-id, so Pick would keep it as a
	// valid X-Request-ID and logs show one kind of ID.
	if len(id) != Len || len(TraceID("00-"+string(id)+"-00f067aa0ba902b7-01")) != Len || !Valid(id) {
		t.Errorf("new id %q is not 32 lower-case hex digits", id)
	}
	var other [Len]byte
	if string(New().Next(&other)[:16]) == string(id[:16]) {
		t.Errorf("two generators share the prefix %s", id[:16])
	}
}
