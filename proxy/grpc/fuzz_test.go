package grpc

import (
	"math"
	"net/http"
	"strconv"
	"testing"
	"time"

	"frontdoor/proxy/internal/requestid"
)

// FuzzParseTimeout checks parseTimeout against a plain reading of the
// grpc-timeout grammar: 1 to 8 digits and one unit letter.
func FuzzParseTimeout(f *testing.F) {
	for _, s := range []string{"1S", "100m", "99999999H", "0n", "", "S", "1", "123456789S", "1x", "-1S", "+1S", "1.5S", " 1S", "00000001u"} {
		f.Add(s)
	}
	units := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second, 'm': time.Millisecond, 'u': time.Microsecond, 'n': time.Nanosecond}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseTimeout(s)
		wantOK := len(s) >= 2 && len(s) <= 9 && units[s[len(s)-1]] != 0
		var n uint64
		if wantOK {
			for _, c := range []byte(s[:len(s)-1]) {
				if c < '0' || c > '9' {
					wantOK = false
					break
				}
			}
		}
		if wantOK {
			var err error
			n, err = strconv.ParseUint(s[:len(s)-1], 10, 64)
			if err != nil {
				t.Fatalf("reference parse of %q: %v", s, err)
			}
		}
		if ok != wantOK {
			t.Fatalf("parseTimeout(%q) ok = %v, want %v", s, ok, wantOK)
		}
		if !ok {
			return
		}
		unit := units[s[len(s)-1]]
		want := time.Duration(math.MaxInt64)
		if n <= uint64(math.MaxInt64/int64(unit)) {
			want = time.Duration(n) * unit
		}
		if d != want || d < 0 {
			t.Fatalf("parseTimeout(%q) = %v, want %v", s, d, want)
		}
	})
}

// FuzzParseStatus checks parseStatus against strconv for grpc-status values.
func FuzzParseStatus(f *testing.F) {
	for _, s := range []string{"0", "14", "16", "999", "1000", "", "-1", "+1", "1a", " 1", "007"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := parseStatus([]string{s})
		want := -1
		if len(s) >= 1 && len(s) <= 3 && s[0] != '+' && s[0] != '-' {
			if n, err := strconv.Atoi(s); err == nil {
				want = n
			}
		}
		if got != want {
			t.Fatalf("parseStatus(%q) = %d, want %d", s, got, want)
		}
	})
}

// FuzzRequestID checks that any traceparent or X-Request-ID value yields a
// request ID that is also set on the header, and never panics.
func FuzzRequestID(f *testing.F) {
	f.Add("", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("req-1", "")
	f.Add("", "00-short")
	ids := requestid.New()
	f.Fuzz(func(t *testing.T, xrid, traceparent string) {
		h := http.Header{}
		if xrid != "" {
			h[hdrRequestID] = []string{xrid}
		}
		if traceparent != "" {
			h[hdrTraceparent] = []string{traceparent}
		}
		id := requestID(h, ids)
		if !requestid.Valid(id) {
			t.Fatalf("request id %q is not safe to log", id)
		}
		if v := h[hdrRequestID]; len(v) != 1 || v[0] != id {
			t.Fatalf("header carries %q, id %q", v, id)
		}
		if want, src := requestid.Pick(traceparent, xrid); src != requestid.None && id != want {
			t.Fatalf("id %q, want %q", id, want)
		}
	})
}
