package proxy

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The cases of the parity suite (parity_test.go).

// parityCase is one exchange: the config around one pool "s" of scripted
// backends, the raw bytes a client sends on a new connection, and what
// every engine must make of them.
type parityCase struct {
	name string
	// listener, route, pool: more keys of the listener table, of its one
	// route (which names pool s) and of pool s; extra: more tables.
	listener, route, pool, extra string
	// readTimeout and responseTimeout default to 2s; retries to 0.
	readTimeout, responseTimeout string
	retries                      int
	backends                     []parityScript
	setup                        func(t *testing.T, r *parityRun)
	warmup                       string // answered (200) before req, on the same connection
	req                          string
	want                         parityWant
}

// toml renders the case's config with the backends at addrs.
func (tc *parityCase) toml(addrs []string) string {
	or := func(s, d string) string {
		if s == "" {
			return d
		}
		return s
	}
	return fmt.Sprintf(`[admin]
bind = "off"
[log]
access = "off"
[[listener]]
name = "web"
bind = "127.0.0.1:0"
read_timeout = %q
write_timeout = "2s"
idle_timeout = "5s"
%s
  [[listener.route]]
  pool = "s"
%s
`, or(tc.readTimeout, "2s"), tc.listener, tc.route) + poolTOML("s", fmt.Sprintf(`health = { check = "none" }
retries = %d
connect_timeout = "1s"
response_timeout = %q
%s`, tc.retries, or(tc.responseTimeout, "2s"), tc.pool), addrs...) + tc.extra
}

const (
	// parityDate is the Date of the backends' answers: the client must get
	// this very value.
	parityDate = "Mon, 02 Jan 2006 15:04:05 GMT"
	parityHost = "parity.test"
	// parityTrace is a traceparent whose trace-id becomes the request ID.
	parityTrace   = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	parityTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	// parityTraceMasked is parityTrace as a backend's received shows it.
	parityTraceMasked = "00-{id}-00f067aa0ba902b7-01"
)

// parityReq returns a request for parityHost with the given header lines;
// an element that starts with "\n" is the body instead (sent with its
// Content-Length).
func parityReq(method, path string, hdrs ...string) string {
	var b strings.Builder
	b.WriteString(method + " " + path + " HTTP/1.1\r\nHost: " + parityHost + "\r\n")
	body := ""
	for _, h := range hdrs {
		if rest, ok := strings.CutPrefix(h, "\n"); ok {
			body = rest
			continue
		}
		b.WriteString(h + "\r\n")
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	return b.String() + "\r\n" + body
}

// parityAnswerOf returns a backend's answer: the status line, parityDate,
// the header lines and the body, with a Content-Length unless a header
// line says how the body is framed.
func parityAnswerOf(status string, body string, hdrs ...string) string {
	var b strings.Builder
	b.WriteString("HTTP/1.1 " + status + "\r\nDate: " + parityDate + "\r\n")
	framed := false
	for _, h := range hdrs {
		b.WriteString(h + "\r\n")
		framed = framed || strings.HasPrefix(h, "Transfer-Encoding") || strings.HasPrefix(h, "Content-Length")
	}
	if !framed && body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	return b.String() + "\r\n" + body
}

// asReceived is what a backend receives of a request without a body: the
// request ID is the answer's.
func asReceived(method, path string) string { return method + " " + path + " HTTP/1.1 id={id}" }

// routed is the record of a request to the one route.
func routed(method, path, backend, reason string, bytesOut int) parityRec {
	return parityRec{reason: reason, route: "/", host: parityHost, path: path, method: method, backend: backend, bytesOut: bytesOut}
}

// requestsTotal and upstreamErrors render a series of value 1 as
// paritySeries does; backend is a pool index or `""`.
func requestsTotal(pool, backend, code string) string {
	if backend != `""` {
		backend = "b" + backend
	}
	return fmt.Sprintf("requests_total{pool=%q,backend=%s,code=%q} 1", pool, backend, code)
}

func upstreamErrors(backend, reason string) string {
	if backend != `""` {
		backend = "b" + backend
	}
	return fmt.Sprintf("upstream_errors_total{pool=\"s\",backend=%s,reason=%q} 1", backend, reason)
}

const retriedOnce = `retries_total{pool="s"} 1`

// withClientClose returns tc with "Connection: close" from the client: the
// same answer, saying it closes, and the connection closed after it.
func withClientClose(tc parityCase) parityCase {
	tc.name += ", client close"
	head, body, _ := strings.Cut(tc.req, "\r\n\r\n")
	tc.req = head + "\r\nConnection: close\r\n\r\n" + body
	tc.want.closed = true
	return tc
}

// jwtKeyFile writes an Ed25519 public key for a JWT policy and returns its
// path; no token is ever signed with it here.
func jwtKeyFile(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwt.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// parityCases returns the table. Case names are the keys of
// knownDivergences.
func parityCases(t *testing.T) []*parityCase {
	ok := parityScript{answer: parityAnswerOf("200 OK", "hello", "Content-Type: text/plain", "X-Parity: b0", "Keep-Alive: timeout=5")}
	okHas := []string{"Date: " + parityDate, "Content-Type: text/plain", "X-Parity: b0", "Content-Length: 5"}
	never := parityScript{answer: parityAnswerOf("200 OK", "never")} // must not be asked
	rid := func(n string) string { return "X-Request-ID: rid-" + n }
	// unrouted: the one series of an answer that belongs to no route.
	unrouted := func(code string) []string { return []string{requestsTotal("", `""`, code)} }

	success := parityCase{
		name:     "200 content-length",
		backends: []parityScript{ok},
		req:      parityReq("GET", "/x?q=1"),
		want: parityWant{
			status: 200, body: "hello", framing: "length", has: okHas, lacks: []string{"Keep-Alive"},
			rec:      routed("GET", "/x", "b0", "", 5),
			metrics:  []string{requestsTotal("s", "0", "2xx")},
			received: [][]string{{asReceived("GET", "/x?q=1")}},
		},
	}
	noRoute := parityCase{
		name:     "404 no route",
		route:    `host = "known.test"`,
		backends: []parityScript{never},
		req:      parityReq("GET", "/x", rid("404")),
		want: parityWant{
			status: 404, fd: "no route for this host and path", id: "rid-404",
			rec:     parityRec{reason: "no_route", host: parityHost, path: "/x", method: "GET"},
			metrics: unrouted("4xx"),
		},
	}
	jwtRejected := parityCase{
		name:     "401 JWT rejected",
		route:    `jwt = "users"`,
		extra:    "[jwt.users]\npublic_key_file = \"" + jwtKeyFile(t) + "\"\nissuer = \"https://auth.test/\"\naudiences = [\"api\"]\nalgorithms = [\"EdDSA\"]\n",
		backends: []parityScript{never},
		req:      parityReq("GET", "/x", rid("401")),
		want: parityWant{
			status: 401, fd: "no bearer token in the request", id: "rid-401",
			has:     []string{"WWW-Authenticate: Bearer", "Cache-Control: no-store"},
			rec:     routed("GET", "/x", "", "missing", 0),
			metrics: []string{requestsTotal("s", `""`, "4xx")},
		},
	}
	unknownSession := parityCase{
		name:     "404 affinity unknown session",
		pool:     `affinity = "header:Mcp-Session-Id"`,
		backends: []parityScript{never},
		req:      parityReq("POST", "/mcp", rid("aff"), "Mcp-Session-Id: not-a-session", "\n{}"),
		want: parityWant{
			status: 404, fd: "unknown or expired session", fdPool: true, id: "rid-aff",
			rec:     parityRec{reason: "session_invalid", route: "/", host: parityHost, path: "/mcp", method: "POST", bytesIn: 2},
			metrics: []string{requestsTotal("s", `""`, "4xx")},
		},
	}
	refused := parityCase{
		name:     "502 refused",
		backends: []parityScript{{refuse: true}},
		req:      parityReq("GET", "/x", rid("refused")),
		want: parityWant{
			status: 502, fd: "backend failed", fdPool: true, id: "rid-refused",
			rec:     routed("GET", "/x", "b0", "connect", 0),
			metrics: []string{requestsTotal("s", `""`, "5xx"), upstreamErrors("0", "connect")},
		},
	}
	resetBeforeAnswer := parityCase{
		name:     "502 reset before answer",
		backends: []parityScript{{then: "reset"}},
		req:      parityReq("GET", "/x", "traceparent: "+parityTrace),
		want: parityWant{
			status: 502, fd: "backend failed", fdPool: true, id: parityTraceID,
			rec:      routed("GET", "/x", "b0", "reset", 0),
			metrics:  []string{requestsTotal("s", `""`, "5xx"), upstreamErrors("0", "reset")},
			received: [][]string{{asReceived("GET", "/x") + " tp=" + parityTraceMasked}},
		},
	}
	noBackend := parityCase{
		name:     "503 no healthy backend",
		backends: []parityScript{never},
		setup:    func(t *testing.T, r *parityRun) { memberOf(t, r.p, "s", r.addrs[0]).SetHealthy(false) },
		req:      parityReq("GET", "/x", rid("503")),
		want: parityWant{
			status: 503, fd: "no healthy backend", fdPool: true, id: "rid-503",
			has:     []string{"Retry-After: 1"},
			rec:     routed("GET", "/x", "", "no_backend", 0),
			metrics: []string{requestsTotal("s", `""`, "5xx"), upstreamErrors(`""`, "no_backend")},
		},
	}
	timeout := parityCase{
		name:            "504 response timeout",
		responseTimeout: "300ms",
		retries:         1, // a response timeout is never retried
		backends:        []parityScript{{then: "hang"}},
		req:             parityReq("GET", "/x", rid("504")),
		want: parityWant{
			status: 504, fd: "backend timed out", fdPool: true, id: "rid-504",
			rec:      routed("GET", "/x", "b0", "timeout", 0),
			metrics:  []string{requestsTotal("s", `""`, "5xx"), upstreamErrors("0", "timeout")},
			received: [][]string{{asReceived("GET", "/x")}},
		},
	}

	// The head was read: the record knows the route, host, path and the
	// client's ID.
	tooLarge := parityCase{
		name:     "413 declared Content-Length over max_body_bytes",
		listener: "max_body_bytes = 1024",
		backends: []parityScript{never},
		req:      "POST /x HTTP/1.1\r\nHost: " + parityHost + "\r\n" + rid("413") + "\r\nContent-Length: 2000\r\n\r\n",
		want: parityWant{
			status: 413, fd: "request body too large", closed: true, id: "rid-413",
			rec: routed("POST", "/x", "", "body_too_large", 0),
			// Routed: counted on the route's pool, as a 401 is.
			metrics: []string{requestsTotal("s", `""`, "4xx")},
		},
	}
	// Above 1 MiB, request bodies stream (goengine_stream.go): fasthttp reads the
	// first 8 KiB before frontdoor sees the request.
	tooLargeStreamed := parityCase{
		name:     "413 declared Content-Length over max_body_bytes, streamed",
		listener: "max_body_bytes = 2000000",
		backends: []parityScript{never},
		req:      "POST /x HTTP/1.1\r\nHost: " + parityHost + "\r\n" + rid("413s") + "\r\nContent-Length: 3000000\r\n\r\n" + strings.Repeat("a", requestPrefetch),
		want: parityWant{
			status: 413, fd: "request body too large", closed: true, id: "rid-413s",
			rec:     routed("POST", "/x", "", "body_too_large", 0),
			metrics: []string{requestsTotal("s", `""`, "4xx")},
		},
	}
	// A head that does not fit is not parsed: a new ID, no method, path or
	// host.
	headerTooLarge := parityCase{
		name:     "431 header block over max_header_bytes",
		listener: "max_header_bytes = 4096",
		backends: []parityScript{never},
		req:      parityReq("GET", "/x", "X-Big: "+strings.Repeat("b", 5000)),
		want: parityWant{
			status: 431, fd: "request header block too large", closed: true,
			rec:     parityRec{reason: "header_too_large"},
			metrics: unrouted("4xx"),
		},
	}

	cases := []parityCase{
		success,
		withClientClose(success),
		{
			name:     "200 chunked",
			backends: []parityScript{{answer: parityAnswerOf("200 OK", "2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n", "Transfer-Encoding: chunked")}},
			req:      parityReq("GET", "/x"),
			want: parityWant{
				status: 200, body: "hello", framing: "chunked", has: []string{"Date: " + parityDate},
				lacks:    []string{"Content-Type", "Content-Length"},
				rec:      routed("GET", "/x", "b0", "", 5),
				metrics:  []string{requestsTotal("s", "0", "2xx")},
				received: [][]string{{asReceived("GET", "/x")}},
			},
		},
		{
			name: "200 chunked with trailers",
			backends: []parityScript{{answer: parityAnswerOf("200 OK", "5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n",
				"Transfer-Encoding: chunked", "Trailer: X-Checksum")}},
			req: parityReq("GET", "/x", "TE: trailers"),
			want: parityWant{
				status: 200, body: "hello", framing: "chunked", has: []string{"Date: " + parityDate},
				trailers: []string{"X-Checksum: abc"},
				rec:      routed("GET", "/x", "b0", "", 5),
				metrics:  []string{requestsTotal("s", "0", "2xx")},
				received: [][]string{{asReceived("GET", "/x")}},
			},
		},
		{
			// Sent on chunked, so the client's connection stays open.
			name:     "200 close-delimited",
			backends: []parityScript{{answer: parityAnswerOf("200 OK", "") + "hello", then: "close"}},
			req:      parityReq("GET", "/x"),
			want: parityWant{
				status: 200, body: "hello", framing: "chunked", has: []string{"Date: " + parityDate},
				lacks:    []string{"Content-Type", "Content-Length"},
				rec:      routed("GET", "/x", "b0", "", 5),
				metrics:  []string{requestsTotal("s", "0", "2xx")},
				received: [][]string{{asReceived("GET", "/x")}},
			},
		},
		{
			name:     "200 HEAD",
			backends: []parityScript{{answer: parityAnswerOf("200 OK", "", "Content-Length: 5", "ETag: \"v1\"")}},
			req:      parityReq("HEAD", "/x"),
			want: parityWant{
				status: 200, framing: "none", has: []string{"Date: " + parityDate, "Content-Length: 5", "ETag: \"v1\""},
				lacks:    []string{"Content-Type"},
				rec:      routed("HEAD", "/x", "b0", "", 0),
				metrics:  []string{requestsTotal("s", "0", "2xx")},
				received: [][]string{{asReceived("HEAD", "/x")}},
			},
		},
		{
			name:     "204",
			backends: []parityScript{{answer: parityAnswerOf("204 No Content", "", "X-Parity: b0")}},
			req:      parityReq("DELETE", "/x"),
			want: parityWant{
				status: 204, framing: "none", has: []string{"Date: " + parityDate, "X-Parity: b0"},
				lacks:    []string{"Content-Type", "Content-Length", "Transfer-Encoding"},
				rec:      routed("DELETE", "/x", "b0", "", 0),
				metrics:  []string{requestsTotal("s", "0", "2xx")},
				received: [][]string{{asReceived("DELETE", "/x")}},
			},
		},
		{
			name:     "304",
			backends: []parityScript{{answer: parityAnswerOf("304 Not Modified", "", "ETag: \"v1\"")}},
			req:      parityReq("GET", "/x", "If-None-Match: \"v1\""),
			want: parityWant{
				status: 304, framing: "none", has: []string{"Date: " + parityDate, "ETag: \"v1\""},
				lacks:    []string{"Content-Type", "Content-Length", "Transfer-Encoding"},
				rec:      routed("GET", "/x", "b0", "", 0),
				metrics:  []string{requestsTotal("s", "0", "3xx")},
				received: [][]string{{asReceived("GET", "/x")}},
			},
		},
		{
			name:     "200 POST with a body",
			backends: []parityScript{{answer: parityAnswerOf("201 Created", "made", "Location: /x/1")}},
			req:      parityReq("POST", "/x", "Content-Type: text/plain", "\nhello world"),
			want: parityWant{
				status: 201, body: "made", framing: "length", has: []string{"Date: " + parityDate, "Location: /x/1"},
				lacks:    []string{"Content-Type"},
				rec:      parityRec{route: "/", host: parityHost, path: "/x", method: "POST", backend: "b0", bytesIn: 11, bytesOut: 4},
				metrics:  []string{requestsTotal("s", "0", "2xx")},
				received: [][]string{{asReceived("POST", "/x") + ` body="hello world"`}},
			},
		},
		{
			// RFC 9110 6.6.1: the answer gets a Date.
			name:     "200 backend sent no Date",
			backends: []parityScript{{answer: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"}},
			req:      parityReq("GET", "/x"),
			want: parityWant{
				status: 200, body: "hello", framing: "length", lacks: []string{"Content-Type"},
				rec:      routed("GET", "/x", "b0", "", 5),
				metrics:  []string{requestsTotal("s", "0", "2xx")},
				received: [][]string{{asReceived("GET", "/x")}},
			},
		},
		{
			name:     "200 client X-Request-ID kept",
			backends: []parityScript{ok},
			req:      parityReq("GET", "/x", rid("client-42")),
			want: parityWant{
				status: 200, body: "hello", framing: "length", has: okHas, id: "rid-client-42",
				rec:      routed("GET", "/x", "b0", "", 5),
				metrics:  []string{requestsTotal("s", "0", "2xx")},
				received: [][]string{{asReceived("GET", "/x")}},
			},
		},
		{
			// The trace-id wins over X-Request-ID; traceparent passes on
			// unchanged.
			name:     "200 traceparent",
			backends: []parityScript{ok},
			req:      parityReq("GET", "/x", rid("other"), "traceparent: "+parityTrace),
			want: parityWant{
				status: 200, body: "hello", framing: "length", has: okHas, id: parityTraceID,
				rec:      routed("GET", "/x", "b0", "", 5),
				metrics:  []string{requestsTotal("s", "0", "2xx")},
				received: [][]string{{asReceived("GET", "/x") + " tp=" + parityTraceMasked}},
			},
		},
		{
			// Date and Content-Type are the backend's: it sent no
			// Content-Type, so the client gets none.
			name:     "200 after a retry from a refused backend",
			retries:  1,
			backends: []parityScript{{refuse: true}, {answer: parityAnswerOf("200 OK", "hello", "X-Parity: b1")}},
			req:      parityReq("GET", "/x"),
			want: parityWant{
				status: 200, body: "hello", framing: "length", has: []string{"Date: " + parityDate, "X-Parity: b1"},
				lacks:    []string{"Content-Type"},
				rec:      routed("GET", "/x", "b1", "", 5),
				metrics:  []string{requestsTotal("s", "1", "2xx"), retriedOnce, upstreamErrors("0", "connect")},
				received: [][]string{nil, {asReceived("GET", "/x")}},
			},
		},

		{
			name: "200 cookies both ways",
			backends: []parityScript{{answer: parityAnswerOf("200 OK", "hello", "Content-Type: text/plain",
				"Set-Cookie: a=1; Path=/", "Set-Cookie: b=2; HttpOnly", "Vary: Accept", "Vary: Cookie")}},
			req: parityReq("GET", "/x", "Cookie: a=1; b=2; c=3", "Accept: text/plain"),
			want: parityWant{
				status: 200, body: "hello", framing: "length",
				has:      []string{"Date: " + parityDate, "Content-Type: text/plain"},
				rec:      routed("GET", "/x", "b0", "", 5),
				metrics:  []string{requestsTotal("s", "0", "2xx")},
				received: [][]string{{asReceived("GET", "/x")}},
			},
		},
		{
			name:     "200 path and query as sent",
			backends: []parityScript{ok},
			req:      parityReq("GET", "/a/./b/../c%2Fd;p?q=%41&r=a+b"),
			want: parityWant{
				status: 200, body: "hello", framing: "length", has: okHas,
				rec:      routed("GET", "/a/c/d;p", "b0", "", 5),
				metrics:  []string{requestsTotal("s", "0", "2xx")},
				received: [][]string{{asReceived("GET", "/a/./b/../c%2Fd;p?q=%41&r=a+b")}},
			},
		},
		{
			// Above 8 KiB the event loop hands the request to the
			// goroutine engine; the HTTP/2 engine buffers it whole.
			name:     "200 POST with a body over 8 KiB",
			backends: []parityScript{{answer: parityAnswerOf("201 Created", "made", "Location: /x/1")}},
			req:      parityReq("POST", "/x", "Content-Type: text/plain", "\n"+patternString(20_000)),
			want: parityWant{
				status: 201, body: "made", framing: "length", has: []string{"Date: " + parityDate, "Location: /x/1"},
				lacks:    []string{"Content-Type"},
				rec:      parityRec{route: "/", host: parityHost, path: "/x", method: "POST", backend: "b0", bytesIn: 20_000, bytesOut: 4},
				metrics:  []string{requestsTotal("s", "0", "2xx")},
				received: [][]string{{asReceived("POST", "/x") + fmt.Sprintf(" body=%q", patternString(20_000))}},
			},
		},
		{
			// A POST that reached a backend is never sent again.
			name:     "502 POST reset before answer, not retried",
			retries:  1,
			backends: []parityScript{{then: "reset"}, never},
			req:      parityReq("POST", "/x", rid("post"), "\nhello"),
			want: parityWant{
				status: 502, fd: "backend failed", fdPool: true, id: "rid-post",
				rec:      parityRec{reason: "reset", route: "/", host: parityHost, path: "/x", method: "POST", backend: "b0", bytesIn: 5},
				metrics:  []string{requestsTotal("s", `""`, "5xx"), upstreamErrors("0", "reset")},
				received: [][]string{{asReceived("POST", "/x") + ` body="hello"`}},
			},
		},
		{
			name:     "200 GET retried after a reset",
			retries:  1,
			backends: []parityScript{{then: "reset"}, {answer: parityAnswerOf("200 OK", "hello", "X-Parity: b1")}},
			req:      parityReq("GET", "/x"),
			want: parityWant{
				status: 200, body: "hello", framing: "length", has: []string{"Date: " + parityDate, "X-Parity: b1"},
				lacks:    []string{"Content-Type"},
				rec:      routed("GET", "/x", "b1", "", 5),
				metrics:  []string{requestsTotal("s", "1", "2xx"), retriedOnce, upstreamErrors("0", "reset")},
				received: [][]string{{asReceived("GET", "/x")}, {asReceived("GET", "/x")}},
			},
		},
		{
			// A backend's 5xx is relayed and counts against it.
			name:     "500 from the backend",
			backends: []parityScript{{answer: parityAnswerOf("500 Internal Server Error", "oops", "Content-Type: text/plain")}},
			req:      parityReq("GET", "/x"),
			want: parityWant{
				status: 500, body: "oops", framing: "length", has: []string{"Date: " + parityDate, "Content-Type: text/plain"},
				rec:      routed("GET", "/x", "b0", "", 4),
				metrics:  []string{requestsTotal("s", "0", "5xx"), upstreamErrors("0", "status_5xx")},
				received: [][]string{{asReceived("GET", "/x")}},
			},
		},
		{
			// The backend's wish to close and the headers its Connection
			// names stay on its side of the hop.
			name:     "200 backend asks to close",
			backends: []parityScript{{answer: parityAnswerOf("200 OK", "hello", "Connection: close, X-Hop", "X-Hop: 1"), then: "close"}},
			req:      parityReq("GET", "/x"),
			want: parityWant{
				status: 200, body: "hello", framing: "length", has: []string{"Date: " + parityDate},
				lacks:    []string{"X-Hop", "Content-Type"},
				rec:      routed("GET", "/x", "b0", "", 5),
				metrics:  []string{requestsTotal("s", "0", "2xx")},
				received: [][]string{{asReceived("GET", "/x")}},
			},
		},
		{
			// Interim answers are not relayed.
			name: "200 after a 103 Early Hints",
			backends: []parityScript{{answer: "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" +
				parityAnswerOf("200 OK", "hello")}},
			req: parityReq("GET", "/x"),
			want: parityWant{
				status: 200, body: "hello", framing: "length", has: []string{"Date: " + parityDate},
				lacks:    []string{"Link", "Content-Type"},
				rec:      routed("GET", "/x", "b0", "", 5),
				metrics:  []string{requestsTotal("s", "0", "2xx")},
				received: [][]string{{asReceived("GET", "/x")}},
			},
		},
		{
			// From spliceThreshold (64 KiB) up, a body of known length moves
			// by splice(2) in both engines.
			name:     "200 content-length, spliced body",
			backends: []parityScript{{answer: parityAnswerOf("200 OK", patternString(100_000))}},
			req:      parityReq("GET", "/big"),
			want: parityWant{
				status: 200, body: patternString(100_000), framing: "length", has: []string{"Date: " + parityDate, "Content-Length: 100000"},
				lacks:    []string{"Content-Type"},
				rec:      routed("GET", "/big", "b0", "", 100_000),
				metrics:  []string{requestsTotal("s", "0", "2xx")},
				received: [][]string{{asReceived("GET", "/big")}},
			},
		},

		// Answers frontdoor makes itself.
		{
			// Nothing of the request could be read: a new ID, no method,
			// path or host.
			name:     "400 malformed",
			backends: []parityScript{never},
			req:      "GARBAGE\r\n\r\n",
			want: parityWant{
				status: 400, fd: "malformed request", closed: true,
				rec:     parityRec{reason: "bad_request"},
				metrics: unrouted("4xx"),
			},
		},
		{
			name:     "400 malformed header line, client close",
			backends: []parityScript{never},
			req:      "GET /x HTTP/1.1\r\nHost: " + parityHost + "\r\nConnection: close\r\nno colon here\r\n\r\n",
			want: parityWant{
				status: 400, fd: "malformed request", closed: true,
				rec:     parityRec{reason: "bad_request"},
				metrics: unrouted("4xx"),
			},
		},
		{
			name:     "400 malformed after a request on the same connection",
			backends: []parityScript{ok},
			warmup:   parityReq("GET", "/first"),
			req:      "GARBAGE\r\n\r\n",
			want: parityWant{
				status: 400, fd: "malformed request", closed: true,
				rec:      parityRec{reason: "bad_request"},
				metrics:  []string{requestsTotal("", `""`, "4xx"), requestsTotal("s", "0", "2xx")},
				received: [][]string{{"GET /first HTTP/1.1 id={new-id}"}},
			},
		},
		noRoute,
		withClientClose(noRoute),
		{
			name:        "408 read timeout",
			readTimeout: "300ms",
			backends:    []parityScript{never},
			req:         "GET /x HTTP/1.1\r\nHost: " + parityHost + "\r\n",
			want: parityWant{
				status: 408, fd: "request read timed out", closed: true,
				rec:     parityRec{reason: "read_timeout"},
				metrics: unrouted("4xx"),
			},
		},
		{
			name:        "408 read timeout, client close",
			readTimeout: "300ms",
			backends:    []parityScript{never},
			req:         "GET /x HTTP/1.1\r\nHost: " + parityHost + "\r\nConnection: close\r\n",
			want: parityWant{
				status: 408, fd: "request read timed out", closed: true,
				rec:     parityRec{reason: "read_timeout"},
				metrics: unrouted("4xx"),
			},
		},
		{
			name:        "408 body never ends",
			readTimeout: "300ms",
			backends:    []parityScript{never},
			req:         "POST /x HTTP/1.1\r\nHost: " + parityHost + "\r\n" + rid("408b") + "\r\nContent-Length: 5\r\n\r\nab",
			want: parityWant{
				status: 408, fd: "request read timed out", closed: true,
				rec:     parityRec{reason: "read_timeout"},
				metrics: unrouted("4xx"),
			},
		},
		{
			name:     "404 no route, HEAD",
			route:    `host = "known.test"`,
			backends: []parityScript{never},
			req:      parityReq("HEAD", "/x", rid("404h")),
			want: parityWant{
				status: 404, fd: "no route for this host and path", id: "rid-404h",
				// bytes_out: no body is sent (knownDivergences).
				rec:     parityRec{reason: "no_route", host: parityHost, path: "/x", method: "HEAD"},
				metrics: unrouted("4xx"),
			},
		},
		tooLarge,
		withClientClose(tooLarge),
		tooLargeStreamed,
		withClientClose(tooLargeStreamed),
		headerTooLarge,
		withClientClose(headerTooLarge),
		jwtRejected,
		withClientClose(jwtRejected),
		unknownSession,
		withClientClose(unknownSession),
		refused,
		withClientClose(refused),
		resetBeforeAnswer,
		withClientClose(resetBeforeAnswer),
		{
			name:     "502 closed before answer",
			backends: []parityScript{{then: "close"}},
			req:      parityReq("GET", "/x", rid("closed")),
			want: parityWant{
				status: 502, fd: "backend failed", fdPool: true, id: "rid-closed",
				rec:      routed("GET", "/x", "b0", "reset", 0),
				metrics:  []string{requestsTotal("s", `""`, "5xx"), upstreamErrors("0", "reset")},
				received: [][]string{{asReceived("GET", "/x")}},
			},
		},
		noBackend,
		withClientClose(noBackend),
		timeout,
		withClientClose(timeout),
		{
			// An HTTP/1.1 request to gRPC backends: frontdoor answers it
			// itself and counts nothing against a backend, which never
			// sees it (an h2c backend drops what is not HTTP/2).
			name:     "h2c pool, plain HTTP/1.1 request",
			pool:     `protocol = "h2c"`,
			retries:  1,
			backends: []parityScript{{then: "close"}},
			req:      parityReq("GET", "/x", rid("h2c")),
			want: parityWant{
				free: true, id: "rid-h2c",
				rec: routed("GET", "/x", "", "", 0),
				more: func(r *parityRun) []string {
					var bad []string
					a := r.answer
					if a.status < 400 || !strings.HasPrefix(string(a.body), "frontdoor: ") {
						bad = append(bad, fmt.Sprintf("answer %d %q, want an error answer of frontdoor's own", a.status, a.body))
					}
					for _, s := range r.series {
						if !strings.HasPrefix(s, "requests_total{") || !strings.Contains(s, `backend=""`) {
							bad = append(bad, "metric "+s+", want no backend counted")
						}
					}
					return bad
				},
			},
		},
	}
	out := make([]*parityCase, len(cases))
	for i := range cases {
		out[i] = &cases[i]
	}
	return out
}
