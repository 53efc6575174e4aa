package grpc

import (
	"math"
	"net/http"
	"testing"
	"time"

	"frontdoor/proxy/internal/requestid"
)

func TestParseTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1H", time.Hour, true},
		{"2M", 2 * time.Minute, true},
		{"30S", 30 * time.Second, true},
		{"250m", 250 * time.Millisecond, true},
		{"7u", 7 * time.Microsecond, true},
		{"99999999n", 99999999, true},
		{"99999999H", math.MaxInt64, true},
		{"0S", 0, true},
		{"", 0, false},
		{"S", 0, false},
		{"100", 0, false},
		{"123456789S", 0, false},
		{"1s", 0, false},
		{"-1S", 0, false},
		{"1.5S", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, ok := parseTimeout(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Errorf("parseTimeout(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestIsGRPC(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ct   []string
		want bool
	}{
		{[]string{"application/grpc"}, true},
		{[]string{"application/grpc+proto"}, true},
		{[]string{"application/grpc;charset=utf-8"}, true},
		{[]string{"Application/GRPC"}, true},
		{[]string{"application/grpc-web"}, false},
		{[]string{"application/grpcx"}, false},
		{[]string{"application/json"}, false},
		{[]string{""}, false},
		{nil, false},
	}
	for _, tc := range tests {
		if got := isGRPC(tc.ct); got != tc.want {
			t.Errorf("isGRPC(%q) = %v, want %v", tc.ct, got, tc.want)
		}
	}
}

func TestRequestIDSources(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header http.Header
		want   string // "" = a new 32-hex-digit ID
	}{
		{"traceparent wins", http.Header{"X-Request-Id": {"abc"}, "Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}, "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"traceparent trace-id", http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}, "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"x-request-id", http.Header{"X-Request-Id": {"abc"}}, "abc"},
		{"first of two x-request-ids", http.Header{"X-Request-Id": {"abc", "def"}}, "abc"},
		{"unsafe x-request-id", http.Header{"X-Request-Id": {"a\"b"}}, ""},
		{"all-zero trace-id is invalid", http.Header{"Traceparent": {"00-00000000000000000000000000000000-00f067aa0ba902b7-01"}}, ""},
		{"uppercase trace-id is invalid", http.Header{"Traceparent": {"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"}}, ""},
		{"short traceparent", http.Header{"Traceparent": {"00-4bf9-01"}}, ""},
		{"empty x-request-id", http.Header{"X-Request-Id": {""}}, ""},
		{"nothing", http.Header{}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ids := requestid.New()
			id := requestID(tc.header, ids)
			if tc.want != "" && id != tc.want {
				t.Errorf("id = %q, want %q", id, tc.want)
			}
			if tc.want == "" {
				var buf [requestid.Len]byte
				if next := ids.Next(&buf); len(id) != requestid.Len || id[:16] != string(next[:16]) {
					t.Errorf("new id %q is not one of the generator's (%s...)", id, next[:16])
				}
			}
			if got := tc.header[hdrRequestID]; len(got) != 1 || got[0] != id {
				t.Errorf("header X-Request-Id = %q, want only %q", got, id)
			}
		})
	}
}
