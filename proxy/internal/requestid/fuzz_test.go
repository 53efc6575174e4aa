package requestid

import (
	"strings"
	"testing"
)

// FuzzPick checks that any pair of header values yields either nothing or an
// ID that is safe to log, the same for string and []byte values, and never
// panics.
func FuzzPick(f *testing.F) {
	f.Add(goodTP, "req-1")
	f.Add("", "req-1")
	f.Add("00-short", "a b")
	f.Add(goodTP[:54], strings.Repeat("x", MaxLen+1))
	f.Fuzz(func(t *testing.T, traceparent, xRequestID string) {
		id, src := Pick(traceparent, xRequestID)
		bid, bsrc := Pick([]byte(traceparent), []byte(xRequestID))
		if string(bid) != id || bsrc != src {
			t.Fatalf("string form %q %d, []byte form %q %d", id, src, bid, bsrc)
		}
		switch src {
		case None:
			if id != "" {
				t.Fatalf("None with id %q", id)
			}
		case Traceparent:
			if len(id) != Len || !Valid(id) || traceparent[3:35] != id {
				t.Fatalf("trace-id %q from %q", id, traceparent)
			}
		case Header:
			if id != xRequestID || !Valid(id) || len(TraceID(traceparent)) != 0 {
				t.Fatalf("header id %q from %q, %q", id, traceparent, xRequestID)
			}
		}
	})
}
