package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"frontdoor/internal/loopback"
)

// The HTTP/1.1 conformance table (issue 17): raw request bytes, built from
// RFC 9112 sections 2-7 and RFC 9110 sections 5-7, and what frontdoor must
// make of them: the answer's status, whether the connection closes after
// it, and what a backend that parses strictly receives (each request's
// method, target, version and body length). Every case runs through both
// engines with the parity suite's machinery (parity_test.go), which also
// requires the engines to agree on everything a user observes.
//
// Where RFC 9112 allows refusing or normalising, frontdoor does what
// HAProxy 2.6 does, unless nginx 1.22 is stricter and that is safe; the
// comment of such a case says which (README: "What frontdoor refuses").

// confCase is one row of the table.
type confCase struct {
	name string
	// listener: more keys of the listener table.
	listener string
	req      string
	// status of the one answer; 0: the connection is closed without one.
	status int
	closed bool
	// seen: strictRequest.line of each request the backend received.
	seen []string
	// fast: the answer comes within a second, though read_timeout is 10s
	// (a refusal that does not wait for the body).
	fast bool
	// fwd, when not nil: strictRequest.fwd of each request received;
	// client: the access record's client then (its peer is 127.0.0.1).
	fwd    []string
	client string
}

const confHost = parityHost

// confGet is "GET path HTTP/1.1" for confHost with the header lines.
func confGet(path string, hdrs ...string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: " + confHost + "\r\n" + strings.Join(append(hdrs, ""), "\r\n") + "\r\n"
}

// confPost is a POST to /p with the header lines and body as given (no
// framing added).
func confPost(body string, hdrs ...string) string {
	return "POST /p HTTP/1.1\r\nHost: " + confHost + "\r\n" + strings.Join(append(hdrs, ""), "\r\n") + "\r\n" + body
}

func seenLine(method, target string, body int) string {
	return fmt.Sprintf("%s %s HTTP/1.1 body=%d", method, target, body)
}

func confCases() []confCase {
	get := []string{seenLine("GET", "/a", 0)}
	const chunked = "Transfer-Encoding: chunked"
	const buffered = "max_body_bytes = 1000" // bodies up to 1 MiB are read whole before forwarding
	return []confCase{
		// RFC 9112 2.2: message parsing.
		{name: "2.2 plain GET", req: confGet("/a"), status: 200, seen: get},
		// fasthttp ends a head at CRLF CRLF only: a head with bare LF line
		// ends never ends, and gets 408 (HAProxy and nginx accept it).
		{name: "2.2 bare LF line ends (not recognised)", req: "GET /a HTTP/1.1\nHost: " + confHost + "\n\n", status: 408, closed: true},
		{name: "2.2 empty line before the request line", req: "\r\n" + confGet("/a"), status: 200, seen: get},
		{name: "2.2 whitespace before the first field", req: "GET /a HTTP/1.1\r\n Host: " + confHost + "\r\n\r\n", status: 400, closed: true},
		// RFC 9112 2.3, RFC 9110 6.2: versions.
		{name: "2.3 HTTP/1.0 goes on as HTTP/1.1", req: "GET /a HTTP/1.0\r\nHost: " + confHost + "\r\n\r\n", status: 200, closed: true, seen: get},
		{name: "2.3 HTTP/1.0 without Host (stricter than HAProxy and nginx: it goes on as 1.1)", req: "GET /a HTTP/1.0\r\n\r\n", status: 400, closed: true},
		{name: "2.3 HTTP/1.2 goes on as HTTP/1.1", req: "GET /a HTTP/1.2\r\nHost: " + confHost + "\r\n\r\n", status: 200, closed: true, seen: get},
		{name: "2.3 HTTP/1.9 goes on as HTTP/1.1", req: "GET /a HTTP/1.9\r\nHost: " + confHost + "\r\n\r\n", status: 200, closed: true, seen: get},
		{name: "2.3 HTTP/2.0 in a 1.x request line (505, nginx)", req: "GET /a HTTP/2.0\r\nHost: " + confHost + "\r\n\r\n", status: 505, closed: true},
		{name: "2.3 HTTP/0.9 with a version (505, nginx)", req: "GET /a HTTP/0.9\r\nHost: " + confHost + "\r\n\r\n", status: 505, closed: true},
		{name: "2.3 HTTP/0.9 simple request", req: "GET /a\r\n\r\n", status: 400, closed: true},
		{name: "2.3 lower-case version", req: "GET /a http/1.1\r\nHost: " + confHost + "\r\n\r\n", status: 400, closed: true},
		{name: "2.3 two-digit minor version", req: "GET /a HTTP/1.10\r\nHost: " + confHost + "\r\n\r\n", status: 400, closed: true},
		// RFC 9112 3: the request line.
		{name: "3 lower-case method (nginx)", req: "get /a HTTP/1.1\r\nHost: " + confHost + "\r\n\r\n", status: 400, closed: true},
		{name: "3 method with a non-token byte", req: "G@T /a HTTP/1.1\r\nHost: " + confHost + "\r\n\r\n", status: 400, closed: true},
		{name: "3 two spaces after the method", req: "GET  /a HTTP/1.1\r\nHost: " + confHost + "\r\n\r\n", status: 400, closed: true},
		{name: "3 tab for a space (nginx)", req: "GET\t/a HTTP/1.1\r\nHost: " + confHost + "\r\n\r\n", status: 400, closed: true},
		{name: "3 space after the version", req: "GET /a HTTP/1.1 \r\nHost: " + confHost + "\r\n\r\n", status: 400, closed: true},
		{name: "3 space in the target", req: "GET /a b HTTP/1.1\r\nHost: " + confHost + "\r\n\r\n", status: 400, closed: true},
		{name: "3.2 raw non-ASCII byte in the target (HAProxy)", req: confGet("/a\xffb"), status: 400, closed: true},
		{name: "3.2 DEL in the target", req: confGet("/a\x7fb"), status: 400, closed: true},
		{name: "3.2 percent-encoded non-ASCII in the target", req: confGet("/a%FFb"), status: 200, seen: []string{seenLine("GET", "/a%FFb", 0)}},
		{name: "3.2.1 origin-form with a query", req: confGet("/a?q=1&r=%20"), status: 200, seen: []string{seenLine("GET", "/a?q=1&r=%20", 0)}},
		{name: "3.2.1 target without a leading slash", req: confGet("a"), status: 400, closed: true},
		{name: "3.2.2 absolute-form naming the Host", req: "GET http://" + confHost + "/a?q=1 HTTP/1.1\r\nHost: " + confHost + "\r\n\r\n", status: 200, seen: []string{seenLine("GET", "/a?q=1", 0)}},
		{name: "3.2.2 absolute-form naming another host (HAProxy)", req: "GET http://other.test/a HTTP/1.1\r\nHost: " + confHost + "\r\n\r\n", status: 400, closed: true},
		{name: "3.2.2 absolute-form with userinfo", req: "GET http://u@" + confHost + "/a HTTP/1.1\r\nHost: " + confHost + "\r\n\r\n", status: 400, closed: true},
		{name: "3.2.3 authority-form (CONNECT is not served)", req: "CONNECT " + confHost + ":443 HTTP/1.1\r\nHost: " + confHost + ":443\r\n\r\n", status: 400, closed: true},
		{name: "3.2.4 asterisk-form for GET", req: confGet("*"), status: 400, closed: true},
		// RFC 9112 3.2, RFC 9110 7.2: Host.
		{name: "3.2 missing Host", req: "GET /a HTTP/1.1\r\n\r\n", status: 400, closed: true},
		{name: "3.2 two Host fields", req: "GET /a HTTP/1.1\r\nHost: " + confHost + "\r\nHost: " + confHost + "\r\n\r\n", status: 400, closed: true},
		{name: "3.2 empty Host (nginx)", req: "GET /a HTTP/1.1\r\nHost: \r\n\r\n", status: 400, closed: true},
		{name: "3.2 Host with a port", req: "GET /a HTTP/1.1\r\nHost: " + confHost + ":8080\r\n\r\n", status: 200, seen: get},
		{name: "3.2 Host with an empty port", req: "GET /a HTTP/1.1\r\nHost: " + confHost + ":\r\n\r\n", status: 200, seen: get},
		{name: "3.2 Host IPv4", req: "GET /a HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n", status: 200, seen: get},
		{name: "3.2 Host IPv6 literal with a port", req: "GET /a HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", status: 200, seen: get},
		{name: "3.2 Host with a space", req: "GET /m/a?q=1 HTTP/1.1\r\nHost: a b\r\n\r\n", status: 400, closed: true},
		{name: "3.2 Host with a comma", req: "GET /m/a?q=1 HTTP/1.1\r\nHost: a,b\r\n\r\n", status: 400, closed: true},
		{name: "3.2 Host with a slash", req: "POST /m/h/x HTTP/1.1\r\nHost: t.test/evil\r\nContent-Length: 3\r\n\r\nabc", status: 400, closed: true},
		{name: "3.2 Host with a question mark", req: "GET /m/a HTTP/1.1\r\nHost: t.test?x\r\n\r\n", status: 400, closed: true},
		{name: "3.2 Host with a hash", req: "GET /m/a HTTP/1.1\r\nHost: t.test#x\r\n\r\n", status: 400, closed: true},
		{name: "3.2 Host with an unbalanced bracket", req: "GET /m/a HTTP/1.1\r\nHost: [::1\r\n\r\n", status: 400, closed: true},
		{name: "3.2 Host with userinfo", req: "GET /m/a HTTP/1.1\r\nHost: u@t.test\r\n\r\n", status: 400, closed: true},
		{name: "3.2 Host with a non-numeric port", req: "GET /m/a HTTP/1.1\r\nHost: t.test:abc\r\n\r\n", status: 400, closed: true},
		// RFC 9112 5, RFC 9110 5: field names and values.
		{name: "5.1 space in a field name", req: confGet("/a", "Transfer Encoding: chunked"), status: 400, closed: true},
		{name: "5.1 space before the colon", req: confGet("/a", "X-A : 1"), status: 400, closed: true},
		{name: "5.1 empty field name", req: confGet("/a", ": 1"), status: 400, closed: true},
		{name: "5.1 non-token byte in a field name", req: confGet("/a", "X\"A: 1"), status: 400, closed: true},
		{name: "5.1 control byte in a field name", req: confGet("/a", "X\x01A: 1"), status: 400, closed: true},
		{name: "5.1 non-ASCII byte in a field name", req: confGet("/a", "X\xffA: 1"), status: 400, closed: true},
		{name: "5.2 obs-fold (nginx)", req: confGet("/a", "X-A: 1", " 2"), status: 400, closed: true},
		{name: "5.2 obs-fold with a tab (nginx)", req: confGet("/a", "X-A: 1", "\t2"), status: 400, closed: true},
		{name: "5.5 NUL in a value", req: confGet("/a", "X-A: 1\x002"), status: 400, closed: true},
		{name: "5.5 bare CR in a value", req: confGet("/a", "X-A: 1\r2"), status: 400, closed: true},
		{name: "5.5 other control byte in a value (fasthttp; HAProxy and nginx keep it)", req: confGet("/a", "X-A: 1\x012"), status: 400, closed: true},
		{name: "5.5 obs-text in a value", req: confGet("/a", "X-A: caf\xe9"), status: 200, seen: get},
		{name: "5.5 tab in a value", req: confGet("/a", "X-A: 1\t2"), status: 200, seen: get},
		// RFC 9112 6: message body framing, request smuggling.
		{name: "6.2 Content-Length body", req: confPost("hello", "Content-Length: 5"), status: 200, seen: []string{seenLine("POST", "/p", 5)}},
		{name: "6.2 GET with a body", req: confGet("/a", "Content-Length: 3") + "abc", status: 200, seen: []string{seenLine("GET", "/a", 3)}},
		{name: "6.3 POST without a body", req: confPost(""), status: 200, seen: []string{seenLine("POST", "/p", 0)}},
		{name: "6.3 two Content-Length fields, same value", req: confPost("hello", "Content-Length: 5", "Content-Length: 5"), status: 400, closed: true},
		{name: "6.3 two Content-Length fields, different values", req: confPost("hello", "Content-Length: 5", "Content-Length: 4"), status: 400, closed: true},
		{name: "6.3 Content-Length list (nginx)", req: confPost("hello", "Content-Length: 5, 5"), status: 400, closed: true},
		{name: "6.3 Content-Length with a plus sign", req: confPost("hello", "Content-Length: +5"), status: 400, closed: true},
		{name: "6.3 Content-Length negative", req: confPost("hello", "Content-Length: -5"), status: 400, closed: true},
		{name: "6.3 Content-Length with a space inside", req: confPost("hello", "Content-Length: 5 5"), status: 400, closed: true},
		{name: "6.3 Content-Length in hex", req: confPost("hello", "Content-Length: 0x5"), status: 400, closed: true},
		{name: "6.3 Content-Length that overflows", req: confPost("hello", "Content-Length: 99999999999999999999999"), status: 400, closed: true},
		{name: "6.3 Content-Length with spaces around", req: confPost("hello", "Content-Length:   5  "), status: 200, seen: []string{seenLine("POST", "/p", 5)}},
		{name: "6.1 CL then TE (nginx)", req: confPost("0\r\n\r\n", "Content-Length: 5", chunked), status: 400, closed: true},
		{name: "6.1 TE then CL (nginx)", req: confPost("0\r\n\r\n", chunked, "Content-Length: 5"), status: 400, closed: true},
		{name: "6.1 CL.TE smuggled request", req: confPost("0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", "Content-Length: 44", chunked), status: 400, closed: true},
		{name: "6.1 TE identity with CL (HAProxy 400)", req: confPost("hello", "Transfer-Encoding: identity", "Content-Length: 5"), status: 400, closed: true},
		{name: "6.1 TE identity alone (HAProxy 400)", req: confPost("hello", "Transfer-Encoding: identity"), status: 400, closed: true},
		{name: "6.1 TE gzip, chunked", req: confPost("0\r\n\r\n", "Transfer-Encoding: gzip, chunked"), status: 400, closed: true},
		{name: "6.1 TE chunked, gzip", req: confPost("0\r\n\r\n", "Transfer-Encoding: chunked, gzip"), status: 400, closed: true},
		{name: "6.1 TE chunked twice in one field", req: confPost("0\r\n\r\n", "Transfer-Encoding: chunked, chunked"), status: 400, closed: true},
		{name: "6.1 TE in two fields", req: confPost("0\r\n\r\n", chunked, chunked), status: 400, closed: true},
		{name: "6.1 TE with a vertical tab", req: confPost("0\r\n\r\n", "Transfer-Encoding: \x0bchunked"), status: 400, closed: true},
		{name: "6.1 TE on HTTP/1.0", req: "POST /p HTTP/1.0\r\nHost: " + confHost + "\r\n" + chunked + "\r\n\r\n0\r\n\r\n", status: 400, closed: true},
		{name: "6.1 TE in capitals", req: confPost("5\r\nhello\r\n0\r\n\r\n", "Transfer-Encoding: CHUNKED"), status: 200, seen: []string{seenLine("POST", "/p", 5)}},
		{name: "7.1 chunked body", req: confPost("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", chunked), status: 200, seen: []string{seenLine("POST", "/p", 11)}},
		{name: "7.1 chunked body, buffered listener", listener: buffered, req: confPost("5\r\nhello\r\n0\r\n\r\n", chunked), status: 200, seen: []string{seenLine("POST", "/p", 5)}},
		{name: "7.1 chunk size in upper-case hex", req: confPost("A\r\n0123456789\r\n0\r\n\r\n", chunked), status: 200, seen: []string{seenLine("POST", "/p", 10)}},
		{name: "7.1 chunk size with leading zeros", req: confPost("0005\r\nhello\r\n0\r\n\r\n", chunked), status: 200, seen: []string{seenLine("POST", "/p", 5)}},
		{name: "7.1.1 chunk extension", req: confPost("5;name=value\r\nhello\r\n0;x\r\n\r\n", chunked), status: 200, seen: []string{seenLine("POST", "/p", 5)}},
		{name: "7.1.3 trailer section", req: confPost("5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n", chunked), status: 200, seen: []string{seenLine("POST", "/p", 5)}},
		{name: "7.1 chunk size that overflows", req: confPost("ffffffffffffffffff1\r\nhello\r\n0\r\n\r\n", chunked), status: 400, closed: true},
		{name: "7.1 chunk size that overflows, buffered", listener: buffered, req: confPost("ffffffffffffffffff1\r\nhello\r\n0\r\n\r\n", chunked), status: 400, closed: true},
		{name: "7.1 negative chunk size", req: confPost("-5\r\nhello\r\n0\r\n\r\n", chunked), status: 400, closed: true},
		{name: "7.1 chunk size in 0x form", req: confPost("0x5\r\nhello\r\n0\r\n\r\n", chunked), status: 400, closed: true},
		{name: "7.1 not a chunk size", req: confPost("zz\r\nhello\r\n0\r\n\r\n", chunked), status: 400, closed: true},
		{name: "7.1 not a chunk size, buffered", listener: buffered, req: confPost("zz\r\nhello\r\n0\r\n\r\n", chunked), status: 400, closed: true},
		{name: "7.1 bare LF after the chunk size", req: confPost("5\nhello\r\n0\r\n\r\n", chunked), status: 400, closed: true},
		{name: "7.1 bare LF after the chunk data", req: confPost("5\r\nhello\n0\r\n\r\n", chunked), status: 400, closed: true, seen: []string{"POST /p broken"}},
		{name: "7.1 chunk longer than its size", req: confPost("3\r\nhello\r\n0\r\n\r\n", chunked), status: 400, closed: true, seen: []string{"POST /p broken"}},
		{name: "7.1.1 bare LF in a chunk extension", req: confPost("5;a\nb\r\nhello\r\n0\r\n\r\n", chunked), status: 400, closed: true},
		// A broken chunk before any byte of the body went on: the backend
		// gets nothing; after some did, it gets a body that never ends
		// ("broken"), never one that looks whole.
		// Limits: RFC 9110 15.5.14 (413), RFC 6585 (431).
		{name: "413 declared Content-Length over max_body_bytes, at once", listener: "max_body_bytes = 2000000", req: confPost("", "Content-Length: 3000000"), status: 413, closed: true, fast: true},
		{name: "413 declared Content-Length over max_body_bytes, at once, buffered", listener: buffered, req: confPost("", "Content-Length: 3000"), status: 413, closed: true, fast: true},
		{name: "413 chunked body over max_body_bytes, buffered", listener: buffered, req: confPost("7d0\r\n"+strings.Repeat("a", 2000)+"\r\n0\r\n\r\n", chunked), status: 413, closed: true},
		// Forwarding headers from a peer that is not trusted are replaced.
		{name: "forwarding headers replaced from an untrusted peer", req: confGet("/a", "X-Forwarded-For: 6.6.6.6", "X-Forwarded-Proto: https", "X-Forwarded-Host: evil.test", "Forwarded: for=6.6.6.6"),
			status: 200, seen: get, fwd: []string{"xff=127.0.0.1 xfp=http xfh=" + confHost + " fwd=for=127.0.0.1;host=" + confHost + ";proto=http"}, client: "127.0.0.1"},
		{name: "forwarding headers set without any", req: confGet("/a"), status: 200, seen: get, fwd: []string{"xff=127.0.0.1 xfp=http xfh=" + confHost + " fwd="}, client: "127.0.0.1"},
		{name: "forwarding headers appended from a trusted peer", listener: `trusted_proxies = ["127.0.0.0/8"]`,
			req:    confGet("/a", "X-Forwarded-For: 6.6.6.6", "X-Forwarded-Proto: https", "X-Forwarded-Host: front.test", "Forwarded: for=6.6.6.6"),
			status: 200, seen: get, fwd: []string{"xff=6.6.6.6, 127.0.0.1 xfp=https xfh=front.test fwd=for=6.6.6.6, for=127.0.0.1;host=" + confHost + ";proto=http"}, client: "6.6.6.6"},
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	cases := confCases()
	names := map[string]bool{}
	for _, tc := range cases {
		if names[tc.name] {
			t.Fatalf("two cases are named %q", tc.name)
		}
		names[tc.name] = true
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pc := &parityCase{
				name:     tc.name,
				listener: tc.listener,
				backends: []parityScript{{strict: true, answer: parityAnswerOf("200 OK", "ok")}},
				req:      tc.req,
			}
			if tc.fast {
				pc.readTimeout = "10s"
			}
			var runs []*parityRun
			for _, e := range parityEngines {
				runs = append(runs, startParityRun(t, pc, e.name, e.goroutineOnly))
			}
			var wg sync.WaitGroup
			for _, r := range runs {
				wg.Go(r.exchange)
			}
			wg.Wait()
			var problems []string
			for _, r := range runs {
				r.collect(t)
				for _, p := range tc.check(r) {
					problems = append(problems, r.engine+": "+p)
				}
			}
			problems = append(problems, differences(runs[0], runs[1])...)
			if len(problems) > 0 {
				t.Errorf("request %q\n%s", tc.req, strings.Join(problems, "\n"))
			}
		})
	}
}

// check returns what r gets wrong of the case.
func (tc *confCase) check(r *parityRun) []string {
	var bad []string
	a := r.answer
	switch {
	case tc.status == 0 && (len(a.raw) > 0 || !a.closed && a.err == nil):
		bad = append(bad, fmt.Sprintf("answer %q, want the connection closed without one", a.raw))
	case tc.status != 0 && a.err != nil:
		bad = append(bad, fmt.Sprintf("answer: %v (read %q)", a.err, a.raw))
	case tc.status != 0 && a.status != tc.status:
		bad = append(bad, fmt.Sprintf("status %d, want %d (answer %q)", a.status, tc.status, a.raw))
	case tc.status != 0 && a.closed != tc.closed:
		bad = append(bad, fmt.Sprintf("connection closed after the answer: %v, want %v", a.closed, tc.closed))
	}
	if len(a.extra) > 0 {
		bad = append(bad, fmt.Sprintf("bytes after the answer: %q", a.extra))
	}
	if tc.fast && r.done.Sub(r.sent) > time.Second+300*time.Millisecond {
		bad = append(bad, fmt.Sprintf("the answer took %v, want it at once", r.done.Sub(r.sent)))
	}
	if got := r.received[0]; !slices.Equal(got, tc.seen) {
		bad = append(bad, fmt.Sprintf("backend received %q, want %q", got, tc.seen))
	}
	if tc.fwd != nil {
		if got := r.backends[0].strict.fwds(); !slices.Equal(got, tc.fwd) {
			bad = append(bad, fmt.Sprintf("backend received forwarding headers %q, want %q", got, tc.fwd))
		}
		if rec, why := r.record(); rec == nil {
			bad = append(bad, why)
		} else if rec.Client != tc.client || !strings.HasPrefix(rec.Peer, "127.0.0.1:") {
			bad = append(bad, fmt.Sprintf("record client %q peer %q, want client %q and the peer 127.0.0.1:port", rec.Client, rec.Peer, tc.client))
		}
	}
	return bad
}

// strictBackend is a backend that parses requests by RFC 9112 and nothing
// more lenient: CRLF line ends, one space between the parts of the request
// line, HTTP/1.1, token field names, no control bytes in values, one Host,
// Content-Length digits only, Transfer-Encoding "chunked" alone and never
// with Content-Length, strict chunk framing. A request it cannot parse is
// recorded as "METHOD target broken" (or "broken") and its connection
// closed; each well-formed one is answered with answer.
type strictBackend struct {
	addr   string
	answer string
	mu     sync.Mutex
	seen   []strictRequest
}

// strictRequest is what a strict backend recorded of one request.
type strictRequest struct {
	line string // "METHOD target HTTP/1.1 body=N", or "... broken"
	fwd  string // "xff=... xfp=... xfh=... fwd=..."
}

func startStrictBackend(t *testing.T, answer string) *strictBackend {
	t.Helper()
	b := &strictBackend{answer: answer}
	b.addr = loopback.Serve(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			req, ok, started := readStrict(br)
			if !started {
				return
			}
			b.mu.Lock()
			b.seen = append(b.seen, req)
			b.mu.Unlock()
			if !ok {
				return
			}
			if _, err := io.WriteString(c, b.answer); err != nil {
				return
			}
		}
	})
	return b
}

func (b *strictBackend) lines(string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, r := range b.seen {
		out = append(out, r.line)
	}
	return out
}

func (b *strictBackend) fwds() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, r := range b.seen {
		out = append(out, r.fwd)
	}
	return out
}

// readStrict reads one request. started: a byte of it came; ok: it was
// well-formed and whole.
func readStrict(br *bufio.Reader) (req strictRequest, ok, started bool) {
	line := func() (string, bool) {
		s, err := br.ReadString('\n')
		if err != nil || !strings.HasSuffix(s, "\r\n") || strings.ContainsRune(s[:len(s)-2], '\r') {
			return s, false
		}
		return s[:len(s)-2], true
	}
	if _, err := br.Peek(1); err != nil {
		return req, false, false
	}
	started = true
	req.line = "broken"
	rl, good := line()
	parts := strings.Split(rl, " ")
	if !good || len(parts) != 3 || parts[2] != "HTTP/1.1" || parts[0] == "" || parts[1] == "" {
		return req, false, true
	}
	method, target := parts[0], parts[1]
	req.line = method + " " + target + " broken"
	for _, c := range []byte(method + target) {
		if c <= ' ' || c >= 0x7f {
			return req, false, true
		}
	}
	hosts, cls, tes := 0, []string{}, []string{}
	var xff, xfp, xfh, fwd string
	for {
		l, good := line()
		if !good {
			return req, false, true
		}
		if l == "" {
			break
		}
		name, value, found := strings.Cut(l, ":")
		if !found || name == "" {
			return req, false, true
		}
		for _, c := range []byte(name) {
			if !isTokenChar(c) {
				return req, false, true
			}
		}
		for _, c := range []byte(value) {
			if c < ' ' && c != '\t' || c == 0x7f {
				return req, false, true
			}
		}
		value = strings.Trim(value, " \t")
		switch strings.ToLower(name) {
		case "host":
			hosts++
		case "content-length":
			cls = append(cls, value)
		case "transfer-encoding":
			tes = append(tes, value)
		case "x-forwarded-for":
			xff = value
		case "x-forwarded-proto":
			xfp = value
		case "x-forwarded-host":
			xfh = value
		case "forwarded":
			fwd = value
		}
	}
	req.fwd = fmt.Sprintf("xff=%s xfp=%s xfh=%s fwd=%s", xff, xfp, xfh, fwd)
	if hosts != 1 || len(cls) > 1 || len(tes) > 1 || len(cls) == 1 && len(tes) == 1 {
		return req, false, true
	}
	n := 0
	switch {
	case len(tes) == 1:
		if tes[0] != "chunked" {
			return req, false, true
		}
		for {
			l, good := line()
			if !good {
				return req, false, true
			}
			size, err := strconv.ParseUint(strings.SplitN(l, ";", 2)[0], 16, 31)
			if err != nil {
				return req, false, true
			}
			if size == 0 {
				break
			}
			chunk := make([]byte, size+2)
			if _, err := io.ReadFull(br, chunk); err != nil || !bytes.HasSuffix(chunk, []byte("\r\n")) {
				return req, false, true
			}
			n += int(size)
		}
		for { // trailers
			l, good := line()
			if !good {
				return req, false, true
			}
			if l == "" {
				break
			}
		}
	case len(cls) == 1:
		for _, c := range []byte(cls[0]) {
			if c < '0' || c > '9' {
				return req, false, true
			}
		}
		size, err := strconv.Atoi(cls[0])
		if err != nil || cls[0] == "" {
			return req, false, true
		}
		if _, err := io.CopyN(io.Discard, br, int64(size)); err != nil {
			return req, false, true
		}
		n = size
	}
	req.line = fmt.Sprintf("%s %s HTTP/1.1 body=%d", method, target, n)
	return req, true, true
}
