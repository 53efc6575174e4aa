package grpc

import (
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// Header values shared read-only by every response; net/http only reads
// them, so one slice serves all calls without an allocation.
var (
	valContentTypeGRPC = []string{"application/grpc"}
	valContentTypeText = []string{"text/plain; charset=utf-8"}
	valNoSniff         = []string{"nosniff"}
)

// statusValues holds the grpc-status header value of each code 0..16.
var statusValues = func() [17][]string {
	var v [17][]string
	for i := range v {
		v[i] = []string{itoa(i)}
	}
	return v
}()

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return string([]byte{byte('0' + i/10), byte('0' + i%10)})
}

// Messages frontdoor puts in grpc-message when it fails a call itself. They
// are plain ASCII without '%', so they need no percent-encoding.
var (
	msgNoRoute         = []string{"frontdoor: no route"}
	msgUnauthenticated = []string{"frontdoor: unauthenticated"}
	msgNoBackend       = []string{"frontdoor: no healthy backend"}
	msgConnect         = []string{"frontdoor: backend connect failed"}
	msgLimit           = []string{"frontdoor: backend at its connection limit"}
	msgUnavailable     = []string{"frontdoor: backend unavailable"}
	msgStreamBroken    = []string{"frontdoor: backend stream broken"}
	msgDeadline        = []string{"frontdoor: deadline exceeded"}
	msgResponseTimeout = []string{"frontdoor: backend response timeout"}
)

// Canonical header names (the form net/http keeps in http.Header).
const (
	hdrContentType   = "Content-Type"
	hdrGRPCStatus    = "Grpc-Status"
	hdrGRPCMessage   = "Grpc-Message"
	hdrGRPCDetails   = "Grpc-Status-Details-Bin"
	hdrGRPCTimeout   = "Grpc-Timeout"
	hdrRequestID     = "X-Request-Id"
	hdrTraceparent   = "Traceparent"
	hdrDate          = "Date"
	hdrWWWAuth       = "Www-Authenticate"
	hdrNoSniff       = "X-Content-Type-Options"
	trailerGRPCState = http.TrailerPrefix + hdrGRPCStatus
	trailerGRPCMsg   = http.TrailerPrefix + hdrGRPCMessage
	trailerGRPCDet   = http.TrailerPrefix + hdrGRPCDetails
)

// trailerKey turns a trailer name into the http.TrailerPrefix form a handler
// uses to send trailers it did not declare. The names every gRPC response
// carries are precomputed; only custom trailers pay for a concatenation.
func trailerKey(k string) string {
	switch k {
	case hdrGRPCStatus:
		return trailerGRPCState
	case hdrGRPCMessage:
		return trailerGRPCMsg
	case hdrGRPCDetails:
		return trailerGRPCDet
	}
	return http.TrailerPrefix + k
}

// isGRPC reports whether a request's content-type is gRPC's:
// "application/grpc" alone or followed by "+codec" or ";params". gRPC-Web
// ("application/grpc-web...") is not served here.
func isGRPC(ct []string) bool {
	if len(ct) == 0 {
		return false
	}
	v := ct[0]
	const base = "application/grpc"
	if len(v) < len(base) || !strings.EqualFold(v[:len(base)], base) {
		return false
	}
	return len(v) == len(base) || v[len(base)] == '+' || v[len(base)] == ';'
}

// parseTimeout parses a grpc-timeout value: 1 to 8 ASCII digits and a unit
// (H hours, M minutes, S seconds, m milliseconds, u microseconds,
// n nanoseconds). ok is false for anything else. Values beyond the range of
// time.Duration saturate at its maximum.
func parseTimeout(v string) (d time.Duration, ok bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	var n int64
	for i := 0; i < len(v)-1; i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if n > math.MaxInt64/int64(unit) {
		return math.MaxInt64, true
	}
	return time.Duration(n) * unit, true
}

// parseStatus reads a grpc-status header value. It returns -1 when v is
// empty or not a decimal number in 0..999.
func parseStatus(v []string) int {
	if len(v) == 0 {
		return -1
	}
	s := v[0]
	if len(s) == 0 || len(s) > 3 {
		return -1
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// writeStatus answers a call trailers-only: HTTP 200, content-type
// application/grpc, grpc-status code and grpc-message msg in one HEADERS
// frame that ends the stream (the handler must write no body afterwards).
func writeStatus(w http.ResponseWriter, code codes.Code, msg []string) {
	h := w.Header()
	h[hdrContentType] = valContentTypeGRPC
	h[hdrGRPCStatus] = statusValues[code]
	h[hdrGRPCMessage] = msg
	h[hdrDate] = nil
	w.WriteHeader(http.StatusOK)
}

// writeTrailerStatus ends a stream whose headers are already sent with
// grpc-status code and grpc-message msg in its trailers.
func writeTrailerStatus(h http.Header, code codes.Code, msg []string) {
	h[trailerGRPCState] = statusValues[code]
	h[trailerGRPCMsg] = msg
}

// plainError answers a request that is not a gRPC call with a one-line text
// body, like the rest of frontdoor's HTTP errors.
func plainError(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h[hdrContentType] = valContentTypeText
	h[hdrNoSniff] = valNoSniff
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}
