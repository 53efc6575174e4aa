package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"

	"frontdoor/internal/loopback"
	"frontdoor/proxy/internal/requestid"
)

// Black-box tests of the event loop (loop.go) through real sockets on
// 127.0.0.1. Behaviour already covered elsewhere is not repeated here:
// Expect: 100-continue (TestExpectContinue), 431 and 400
// (TestMalformedRequests), a silent new connection (TestSilentClientIsAcceptedLate),
// response_timeout (TestBackendTimeoutIs504), connect refused and the retry
// (TestStoppedBackend), the 503 at the connection limit
// (TestBackendConnectionLimit), a spliced body cut short or stalled and a
// client gone during one (splice_test.go), a client gone during an endless
// chunked stream (TestClientGoneFreesBackend), bodies of every framing and
// size (TestBodiesArriveIntact).

// loopProxy is streamProxy for a listener that event loops serve.
func loopProxy(t *testing.T, extra, poolExtra string, access *AccessLog, addrs ...string) *testProxy {
	t.Helper()
	p := streamProxy(t, extra, poolExtra, access, addrs...)
	if l := onlyListener(t, p); len(l.ln.loops) == 0 {
		t.Fatal("the listener runs no event loop")
	}
	return p
}

// dialer returns a dialer whose sockets have a receive buffer of rcvbuf
// bytes (0: the system's default), set before connecting so the window
// stays small: a client that reads slowly, or not at all, fills it soon.
func dialer(rcvbuf int) *net.Dialer {
	d := &net.Dialer{}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	return d
}

// dialLoop connects to the proxy's listener with a 10 s deadline on every
// operation; the connection closes when the test ends.
func dialLoop(t *testing.T, p *testProxy, rcvbuf int) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := dialer(rcvbuf).Dial("tcp", p.Addr("web").String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// readAnswer reads one response (head only for a HEAD request).
func readAnswer(t *testing.T, br *bufio.Reader, head bool) *fasthttp.Response {
	t.Helper()
	resp := &fasthttp.Response{}
	resp.SkipBody = head
	if err := resp.Read(br); err != nil {
		t.Fatalf("read answer: %v", err)
	}
	return resp
}

// readInterim reads a 100 Continue (fasthttp's Response.Read would skip
// it).
func readInterim(t *testing.T, br *bufio.Reader) {
	t.Helper()
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
		t.Fatalf("interim answer %q, %v; want 100 Continue", line, err)
	}
	for line != "\r\n" {
		if line, err = br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
}

// expectEOF checks that the proxy closes the connection within d and sends
// nothing more.
func expectEOF(t *testing.T, c net.Conn, br *bufio.Reader, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("connection not closed within %v: %v (read %q)", d, err, rest)
	}
	if len(rest) > 0 {
		t.Fatalf("%d bytes after the last answer: %q", len(rest), rest)
	}
}

// scripted is a backend that answers raw bytes: a test's script decides,
// per request, what goes on the wire.
type scripted struct {
	addr     string
	accepted atomic.Int64 // connections accepted
	open     atomic.Int64 // connections open now
	maxOpen  atomic.Int64 // most connections open at once
	requests atomic.Int64
}

// startScripted serves raw HTTP/1.1 on 127.0.0.1: for the i-th request of a
// connection (from 0) answer writes what it likes to c and reports whether
// to read the next request; the connection closes when it returns false.
func startScripted(t *testing.T, answer func(c net.Conn, i int, req *fasthttp.Request) bool) *scripted {
	t.Helper()
	s := &scripted{}
	s.addr = loopback.Serve(t, func(c net.Conn) {
		s.accepted.Add(1)
		n := s.open.Add(1)
		defer s.open.Add(-1)
		for {
			m := s.maxOpen.Load()
			if n <= m || s.maxOpen.CompareAndSwap(m, n) {
				break
			}
		}
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			var req fasthttp.Request
			if err := req.Read(br); err != nil {
				return
			}
			s.requests.Add(1)
			if !answer(c, i, &req) {
				return
			}
		}
	})
	return s
}

// reset closes c with a TCP reset.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// echoHandler answers "METHOD URI BODY"; "Upgrade: line-echo" gets a 101
// and the connection echoes its bytes; /big?n=N[&chunked=1] answers N bytes
// of the pattern.
func echoHandler(ctx *fasthttp.RequestCtx) {
	h := &ctx.Request.Header
	if h.ConnectionUpgrade() && string(h.Peek("Upgrade")) == "line-echo" {
		ctx.SetStatusCode(fasthttp.StatusSwitchingProtocols)
		ctx.Response.Header.Set("Connection", "Upgrade")
		ctx.Response.Header.Set("Upgrade", "line-echo")
		ctx.Hijack(func(c net.Conn) { _, _ = io.Copy(c, c) })
		return
	}
	if string(ctx.Path()) == "/big" {
		n := ctx.QueryArgs().GetUintOrZero("n")
		if ctx.QueryArgs().Has("chunked") {
			ctx.SetBodyStream(&pattern{n: int64(n)}, -1)
			return
		}
		ctx.SetBodyStream(&pattern{n: int64(n)}, n)
		return
	}
	ctx.SetBodyString(string(h.Method()) + " " + string(ctx.RequestURI()) + " " + string(ctx.PostBody()))
}

// patternString returns the first n bytes of the pattern.
func patternString(n int) string {
	b := make([]byte, n)
	_, _ = io.ReadFull(&pattern{n: int64(n)}, b)
	return string(b)
}

// want is one expected answer of a pipelined exchange.
type want struct {
	status int
	body   string
	head   bool // the answer to a HEAD request
}

// TestLoopPipelined: requests sent back to back in one write, or dribbled a
// few bytes per write, are answered in order, each body byte for byte,
// including when the last of them is one the loop hands to the goroutine
// engine; nothing follows the last answer.
func TestLoopPipelined(t *testing.T) {
	t.Parallel()
	p := loopProxy(t, "", "", nil, startHandler(t, echoHandler))
	const two = "GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two?q=2 HTTP/1.1\r\nHost: x\r\n\r\n"
	const last = "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	first := []want{{200, "GET /one ", false}, {200, "GET /two?q=2 ", false}}
	many, manyWant := "", []want(nil)
	for i := range 60 {
		many += fmt.Sprintf("GET /m/%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		manyWant = append(manyWant, want{200, fmt.Sprintf("GET /m/%d ", i), false})
	}
	big := strings.Repeat("b", 9000)
	for _, tc := range []struct {
		name   string
		tail   string
		want   []want
		tunnel string // after the answers: the bytes an upgraded connection echoes
	}{
		{"plain, head, small body", "HEAD /three HTTP/1.1\r\nHost: x\r\n\r\nPUT /four HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" + last,
			[]want{{200, "", true}, {200, "PUT /four abc", false}, {200, "GET /last ", false}}, ""},
		{"many", many + last, append(manyWant, want{200, "GET /last ", false}), ""},
		{"spliced and chunked bodies", "GET /big?n=300000 HTTP/1.1\r\nHost: x\r\n\r\nGET /big?n=100000&chunked=1 HTTP/1.1\r\nHost: x\r\n\r\n" + last,
			[]want{{200, patternString(300000), false}, {200, patternString(100000), false}, {200, "GET /last ", false}}, ""},
		{"chunked body (handed off)", "POST /four HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + last,
			[]want{{200, "POST /four hello", false}, {200, "GET /last ", false}}, ""},
		{"body above the prefetch (handed off)", "POST /four HTTP/1.1\r\nHost: x\r\nContent-Length: 9000\r\n\r\n" + big + last,
			[]want{{200, "POST /four " + big, false}, {200, "GET /last ", false}}, ""},
		{"expect (handed off)", "POST /four HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello" + last,
			[]want{{100, "", false}, {200, "POST /four hello", false}, {200, "GET /last ", false}}, ""},
		{"bare LF head (handed off)", "GET /lf HTTP/1.1\nHost: x\n\n" + last,
			[]want{{200, "GET /lf ", false}, {200, "GET /last ", false}}, ""},
		{"HTTP/1.0 (handed off)", "GET /four HTTP/1.0\r\nHost: x\r\n\r\n", []want{{200, "GET /four ", false}}, ""},
		{"upgrade (handed off)", "GET /tunnel HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: line-echo\r\n\r\nearly\n",
			[]want{{101, "", true}}, "early\n"},
	} {
		for _, step := range []int{0, 3} {
			name := tc.name + ", one write"
			if step > 0 {
				name = fmt.Sprintf("%s, %d bytes per write", tc.name, step)
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				c, br := dialLoop(t, p, 0)
				stream := []byte(two + tc.tail)
				go func() {
					if step == 0 {
						_, _ = c.Write(stream)
						return
					}
					for i := 0; i < len(stream); i += step {
						if _, err := c.Write(stream[i:min(i+step, len(stream))]); err != nil {
							return
						}
					}
				}()
				for i, w := range append(first, tc.want...) {
					if w.status == 100 {
						readInterim(t, br)
						continue
					}
					resp := readAnswer(t, br, w.head)
					if resp.StatusCode() != w.status || string(resp.Body()) != w.body {
						t.Fatalf("answer %d: %d %q, want %d %q", i, resp.StatusCode(), shorten(resp.Body()), w.status, shorten([]byte(w.body)))
					}
				}
				if tc.tunnel != "" {
					got := make([]byte, len(tc.tunnel))
					if _, err := io.ReadFull(br, got); err != nil || string(got) != tc.tunnel {
						t.Fatalf("through the tunnel: %q, %v; want %q", got, err, tc.tunnel)
					}
					return
				}
				expectEOF(t, c, br, 5*time.Second)
			})
		}
	}
}

// TestLoopPipelinedPastTheReadBuffer: more pipelined requests than the
// loop's 64 KiB read buffer holds, sent in one write, are all answered in
// order, whether the proxy answers them itself (404) or a backend does,
// and when the buffer ends exactly between two requests.
func TestLoopPipelinedPastTheReadBuffer(t *testing.T) {
	t.Parallel()
	backend := startHandler(t, echoHandler)
	p := upProxy(t, listenerTOML+`
  [[listener.route]]
  path_prefix = "/api/"
  pool = "s"
`+poolTOML("s", `health = { check = "none" }`, backend), nil)
	// request is exactly size bytes long, padded with a header.
	request := func(path, id string, size int) string {
		r := "GET " + path + " HTTP/1.1\r\nHost: x\r\nX-Request-ID: " + id + "\r\nX-Pad: "
		return r + strings.Repeat("p", size-len(r)-4) + "\r\n\r\n"
	}
	for _, tc := range []struct {
		name    string
		n, size int
		backend func(i int) bool // whether request i goes to the backend
	}{
		{"all answered by the proxy", 300, 400, func(int) bool { return false }},
		{"every other one by the backend", 300, 400, func(i int) bool { return i%2 == 1 }},
		{"buffer ends between requests, proxy", 192, 1024, func(int) bool { return false }},
		{"buffer ends between requests, backend last", 192, 1024, func(i int) bool { return i%64 == 63 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stream strings.Builder
			for i := range tc.n {
				path := fmt.Sprintf("/none/%d", i)
				if tc.backend(i) {
					path = fmt.Sprintf("/api/%d", i)
				}
				stream.WriteString(request(path, fmt.Sprintf("id-%d", i), tc.size))
			}
			c, br := dialLoop(t, p, 0)
			go func() { _, _ = io.WriteString(c, stream.String()) }()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for i := range tc.n {
				resp := &fasthttp.Response{}
				if err := resp.Read(br); err != nil {
					t.Fatalf("answer %d of %d: %v", i, tc.n, err)
				}
				status, body := 404, ""
				if tc.backend(i) {
					status, body = 200, fmt.Sprintf("GET /api/%d ", i)
				}
				id := string(resp.Header.Peek("X-Request-ID"))
				if resp.StatusCode() != status || id != fmt.Sprintf("id-%d", i) || (body != "" && string(resp.Body()) != body) {
					t.Fatalf("answer %d: %d %s %q, want %d id-%d %q", i, resp.StatusCode(), id, resp.Body(), status, i, body)
				}
			}
		})
	}
}

// TestLoopRequestInPieces: a head that arrives one byte per write, a body
// (at most 8 KiB) that follows its head in several writes, and a head split
// in the middle of a header are each served once whole, on one connection.
func TestLoopRequestInPieces(t *testing.T) {
	t.Parallel()
	p := loopProxy(t, "", "", nil, startHandler(t, echoHandler))
	c, br := dialLoop(t, p, 0)
	head := "GET /bytewise HTTP/1.1\r\nHost: x\r\n\r\n"
	for i := range len(head) {
		if _, err := c.Write([]byte{head[i]}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if resp := readAnswer(t, br, false); string(resp.Body()) != "GET /bytewise " {
		t.Fatalf("byte by byte: %d %q", resp.StatusCode(), resp.Body())
	}

	body := make([]byte, 8192)
	_, _ = io.ReadFull(&pattern{n: int64(len(body))}, body)
	fmt.Fprintf(c, "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body))
	for i := 0; i < len(body); i += 2000 {
		time.Sleep(10 * time.Millisecond)
		if _, err := c.Write(body[i:min(i+2000, len(body))]); err != nil {
			t.Fatal(err)
		}
	}
	if resp := readAnswer(t, br, false); string(resp.Body()) != "POST /body "+string(body) {
		t.Fatalf("body in five writes: %d, %d bytes", resp.StatusCode(), len(resp.Body()))
	}

	for _, part := range []string{"PUT /split HTTP/1.1\r\nHost: x\r\nContent-Le", "ngth: 3\r\n", "\r\nab", "c"} {
		time.Sleep(10 * time.Millisecond)
		if _, err := io.WriteString(c, part); err != nil {
			t.Fatal(err)
		}
	}
	if resp := readAnswer(t, br, false); string(resp.Body()) != "PUT /split abc" {
		t.Fatalf("split head: %d %q", resp.StatusCode(), resp.Body())
	}
}

// TestLoopClientTimeouts: read_timeout ends a partial head or body with 408
// and a close; idle_timeout closes a keep-alive connection that sends
// nothing more, and not before.
func TestLoopClientTimeouts(t *testing.T) {
	t.Parallel()
	const read, idle = 300 * time.Millisecond, 700 * time.Millisecond
	p := loopProxy(t, fmt.Sprintf("read_timeout = %q\nidle_timeout = %q\n", read, idle), "", nil, startHandler(t, echoHandler))
	for _, tc := range []struct {
		name, sent string
	}{
		{"partial head", "GET / HTTP/1.1\r\nHost: x\r\n"},
		{"partial body", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"},
		{"partial second head", "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, br := dialLoop(t, p, 0)
			start := time.Now()
			if _, err := io.WriteString(c, tc.sent); err != nil {
				t.Fatal(err)
			}
			resp := readAnswer(t, br, false)
			if resp.StatusCode() == 200 {
				start = time.Now()
				resp = readAnswer(t, br, false)
			}
			took := time.Since(start)
			if resp.StatusCode() != fasthttp.StatusRequestTimeout {
				t.Fatalf("status %d, want 408", resp.StatusCode())
			}
			if took < read-50*time.Millisecond || took > read+time.Second {
				t.Errorf("408 after %v, want about read_timeout (%v)", took, read)
			}
			expectEOF(t, c, br, time.Second)
		})
	}
	t.Run("idle keep-alive", func(t *testing.T) {
		t.Parallel()
		c, br := dialLoop(t, p, 0)
		for i := range 2 {
			// The second request comes later than read_timeout after the
			// first answer but within idle_timeout.
			if i == 1 {
				time.Sleep(read + 100*time.Millisecond)
			}
			fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
			if resp := readAnswer(t, br, false); resp.StatusCode() != 200 {
				t.Fatalf("request %d: status %d", i, resp.StatusCode())
			}
		}
		start := time.Now()
		expectEOF(t, c, br, 3*time.Second)
		if took := time.Since(start); took < idle-50*time.Millisecond || took > idle+time.Second {
			t.Errorf("idle connection closed after %v, want about idle_timeout (%v)", took, idle)
		}
	})
}

// TestLoopStaleBackendConnection: a pooled backend connection that the
// backend closed does not fail the next request, whether the loop saw the
// close first or the close crossed the request (one silent retry on a
// fresh connection, for an idempotent request only: a POST the backend may
// have seen is not sent twice, RFC 9110 9.2.2).
func TestLoopStaleBackendConnection(t *testing.T) {
	t.Parallel()
	t.Run("closed while idle", func(t *testing.T) {
		t.Parallel()
		b := startScripted(t, func(c net.Conn, i int, _ *fasthttp.Request) bool {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			// Keep-alive timeout of 100 ms.
			_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			return true
		})
		p := loopProxy(t, "", "retries = 0\n", nil, b.addr)
		c, br := dialLoop(t, p, 0)
		for i := range 3 {
			if i > 0 {
				waitFor(t, 2*time.Second, "backend closed its idle connection", func() bool { return b.open.Load() == 0 })
			}
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp := readAnswer(t, br, false); resp.StatusCode() != 200 || string(resp.Body()) != "ok" {
				t.Fatalf("request %d: %d %q", i, resp.StatusCode(), resp.Body())
			}
		}
		if n := b.accepted.Load(); n != 3 {
			t.Errorf("%d backend connections, want 3", n)
		}
	})
	for _, tc := range []struct {
		method string
		status int
		seen   int64 // requests the backend read
	}{
		{"GET", 200, 3},
		{"DELETE", 200, 3},
		{"POST", 502, 2},
	} {
		t.Run("close crosses a "+tc.method, func(t *testing.T) {
			t.Parallel()
			// The second request of a connection finds it closing: read
			// and dropped unanswered.
			b := startScripted(t, func(c net.Conn, i int, _ *fasthttp.Request) bool {
				if i == 1 {
					return false
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				return true
			})
			p := loopProxy(t, "", "retries = 0\n", nil, b.addr)
			c, br := dialLoop(t, p, 0)
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp := readAnswer(t, br, false); resp.StatusCode() != 200 {
				t.Fatalf("first request: %d", resp.StatusCode())
			}
			fmt.Fprintf(c, "%s / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody", tc.method)
			if resp := readAnswer(t, br, false); resp.StatusCode() != tc.status {
				t.Fatalf("%s on the stale connection: %d %q, want %d", tc.method, resp.StatusCode(), resp.Body(), tc.status)
			}
			if n := b.requests.Load(); n != tc.seen {
				t.Errorf("backend read %d requests, want %d", n, tc.seen)
			}
			be := p.gen.Load().pools["s"].ups[0].be
			waitFor(t, 2*time.Second, "in flight back to 0", func() bool { return be.InFlight() == 0 })
		})
	}
}

// TestLoopBackendFailsMidBody: a backend that resets or closes in the
// middle of a body (below the splice threshold, or chunked) leaves the
// client with a body cut short and its connection closed, the access log
// names upstream_stream_error, and the member is free again.
func TestLoopBackendFailsMidBody(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		head  string
		sent  string
		reset bool
	}{
		{"length, reset", "Content-Length: 20000", strings.Repeat("x", 5000), true},
		{"length, close", "Content-Length: 20000", strings.Repeat("x", 5000), false},
		{"chunked, reset", "Transfer-Encoding: chunked", "1000\r\n" + strings.Repeat("x", 4096) + "\r\n", true},
		{"chunked, close", "Transfer-Encoding: chunked", "1000\r\n" + strings.Repeat("x", 4096) + "\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := startScripted(t, func(c net.Conn, _ int, _ *fasthttp.Request) bool {
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n"+tc.head+"\r\n\r\n"+tc.sent)
				time.Sleep(50 * time.Millisecond)
				if tc.reset {
					reset(c)
				}
				return false
			})
			access, logged := testAccessLog(t)
			p := loopProxy(t, "", "", access, b.addr)
			c, br := dialLoop(t, p, 0)
			fmt.Fprintf(c, "GET /cut HTTP/1.1\r\nHost: x\r\n\r\n")
			resp := &fasthttp.Response{}
			err := resp.Read(br)
			if err == nil {
				t.Fatalf("read a whole answer (%d bytes), want it cut short", len(resp.Body()))
			}
			expectEOF(t, c, br, 2*time.Second)
			be := p.gen.Load().pools["s"].ups[0].be
			waitFor(t, 2*time.Second, "in flight back to 0", func() bool { return be.InFlight() == 0 })
			if line := logged(); !strings.Contains(line, `"reason":"upstream_stream_error"`) {
				t.Errorf("access log line lacks the stream error:\n%s", line)
			}
		})
	}
}

// testAccessLog returns an access log to a temporary file, and a function
// that closes it and returns what it holds.
func testAccessLog(t *testing.T) (*AccessLog, func() string) {
	t.Helper()
	access, path, cancel := openTestAccessLog(t)
	return access, func() string {
		cancel()
		<-access.Done()
		data, _ := os.ReadFile(path)
		return string(data)
	}
}

// openTestAccessLog opens an access log to a temporary file and returns it,
// the file's path, and the function that stops its writer (also called
// when the test ends).
func openTestAccessLog(t *testing.T) (*AccessLog, string, context.CancelFunc) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "access.log")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	access, err := NewAccessLog(ctx, path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return access, path, cancel
}

// countingPattern is a pattern that counts the bytes taken from it.
type countingPattern struct {
	pattern
	taken *atomic.Int64
}

func (p *countingPattern) Read(b []byte) (int, error) {
	n, err := p.pattern.Read(b)
	p.taken.Add(int64(n))
	return n, err
}

// TestLoopSlowClientBackpressure: a client that stops reading a large
// answer (chunked, or of known length and so spliced) holds the backend
// back: the proxy's memory does not grow with the body (RSS within
// rssBound), the backend gets ahead of the client by no more than what
// socket buffers hold, and every byte arrives intact once the client
// reads on. Not parallel: the RSS is the whole process's.
func TestLoopSlowClientBackpressure(t *testing.T) {
	const size = 48 << 20
	// Kernel socket buffers and the pipe on the way hold some MiB (7 to
	// 22 seen, more possible with tcp_rmem and tcp_wmem at their
	// maximum); a proxy that buffered the answer would be ahead by all of
	// it within the first pause.
	const bound = size * 3 / 4
	var produced atomic.Int64
	backend := startHandler(t, func(ctx *fasthttp.RequestCtx) {
		src := &countingPattern{pattern: pattern{n: size}, taken: &produced}
		if ctx.QueryArgs().Has("chunked") {
			ctx.SetBodyStream(src, -1)
			return
		}
		ctx.SetBodyStream(src, size)
	})
	p := loopProxy(t, "", "", nil, backend)
	for _, query := range []string{"chunked", "length"} {
		t.Run(query, func(t *testing.T) {
			produced.Store(0)
			c, br := dialLoop(t, p, 64<<10)
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			base := settle(t)
			stop := rssPeak(t)
			body := getQuery(t, c, br, query)
			var read int64
			buf := make([]byte, 256<<10)
			check := make([]byte, len(buf))
			for pause := 0; read < size; pause++ {
				if pause%64 == 0 {
					// Stop reading for a while: the backend must stall.
					time.Sleep(150 * time.Millisecond)
					if ahead := produced.Load() - read; ahead > bound {
						t.Fatalf("backend %d MiB ahead of the client after %d MiB read, want < %d MiB",
							ahead>>20, read>>20, bound>>20)
					}
				}
				n, err := io.ReadFull(body, buf[:min(int64(len(buf)), size-read)])
				_, _ = io.ReadFull(&pattern{n: int64(n), pos: read}, check[:n])
				if !bytes.Equal(buf[:n], check[:n]) {
					t.Fatalf("bytes %d-%d differ from the backend's", read, read+int64(n))
				}
				read += int64(n)
				if err != nil {
					t.Fatalf("after %d bytes: %v", read, err)
				}
			}
			if query == "chunked" {
				if rest, err := io.ReadAll(body); err != nil || len(rest) != 0 {
					t.Fatalf("after the body: %d bytes, %v", len(rest), err)
				}
			}
			if peak := stop(); peak-base > rssBound {
				t.Errorf("RSS grew by %d MiB during the answer, want < %d MiB", (peak-base)>>20, rssBound>>20)
			}
		})
	}
}

// httpChunkedReader decodes a chunked body from br.
func httpChunkedReader(br *bufio.Reader) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			n, err := strconv.ParseInt(strings.TrimSpace(line), 16, 64)
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			if n == 0 {
				_, err = br.ReadString('\n')
				pw.CloseWithError(err)
				return
			}
			if _, err := io.CopyN(pw, br, n); err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := br.ReadString('\n'); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
	return pr
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestLoopClientGoneNoLeak: clients that leave in the middle of answers of
// every kind (chunked, spliced, of known length below the splice
// threshold) free the member and close the backend connection, and leave no
// descriptor or goroutine behind. Not parallel: it counts the process's
// descriptors and goroutines.
func TestLoopClientGoneNoLeak(t *testing.T) {
	slow := startScripted(t, func(c net.Conn, _ int, _ *fasthttp.Request) bool {
		// 40 KiB of 60 KiB, then a byte every 20 ms until the proxy
		// closes the connection.
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 61440\r\n\r\n"+strings.Repeat("s", 40<<10))
		for range 500 {
			time.Sleep(20 * time.Millisecond)
			if _, err := io.WriteString(c, "s"); err != nil {
				break
			}
		}
		return false
	})
	big := startHandler(t, echoHandler)
	p := upProxy(t, listenerTOML+`
  [[listener.route]]
  path_prefix = "/big"
  pool = "big"
  [[listener.route]]
  pool = "slow"
`+poolTOML("big", `health = { check = "none" }`, big)+poolTOML("slow", `health = { check = "none" }`, slow.addr), nil)
	addr := p.Addr("web").String()
	bigBE := p.gen.Load().pools["big"].ups[0].be
	slowBE := p.gen.Load().pools["slow"].ups[0].be
	l := onlyListener(t, p)

	round := func(path string, readFirst int) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		if _, err := io.ReadFull(c, make([]byte, readFirst)); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	kinds := []struct {
		path      string
		readFirst int
	}{
		{"/big?n=67108864&chunked=1", 256 << 10},
		{"/big?n=67108864", 256 << 10},
		{"/short", 20 << 10},
	}
	for _, k := range kinds { // warm up: pools, pipes, goroutines of the test servers
		round(k.path, k.readFirst)
	}
	settled := func() bool {
		return bigBE.InFlight() == 0 && slowBE.InFlight() == 0 && slow.open.Load() == 0 && l.pipes.InUse() == 0
	}
	waitFor(t, 5*time.Second, "warm-up settled", settled)
	fds, gs := openFDs(t), runtime.NumGoroutine()
	for range 5 {
		for _, k := range kinds {
			round(k.path, k.readFirst)
		}
	}
	waitFor(t, 5*time.Second, "members free, backend connections closed, pipes back", settled)
	waitFor(t, 5*time.Second, "descriptors and goroutines back", func() bool {
		return openFDs(t) <= fds+2 && runtime.NumGoroutine() <= gs+2
	})
	if v := metricValue(t, p.reg, "frontdoor_backend_in_flight", nil); v != 0 {
		t.Errorf("backend_in_flight %v, want 0", v)
	}
}

// TestLoopAnswersWithoutBody: answers to HEAD, 204 and 304, with and
// without a length, and 1xx answers before the final one, reach the client
// framed right (the next answer on the connection is intact) and the
// backend connection is used again; bytes after an answer's declared end
// (at once, later, or after a spliced body or a last chunk) are never
// taken for the next answer: that backend connection is closed.
func TestLoopAnswersWithoutBody(t *testing.T) {
	t.Parallel()
	late := func(c net.Conn, first, then string) {
		_, _ = io.WriteString(c, first)
		time.Sleep(30 * time.Millisecond)
		_, _ = io.WriteString(c, then)
	}
	spliced := strings.Repeat("z", 200<<10)
	for _, tc := range []struct {
		name   string
		method string
		answer func(c net.Conn)
		status int
		body   string
		header string // a header the client must see, "Name: value"
		reuse  bool   // the backend connection serves the next request
		slow   bool   // the client waits before it reads the answer
	}{
		{"HEAD with length", "HEAD", func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
		}, 200, "", "Content-Length: 1234", true, false},
		{"HEAD chunked", "HEAD", func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		}, 200, "", "", true, false},
		// fasthttp reads an answer without a length as one that ends with
		// the connection, even to HEAD: not kept (as the goroutine engine).
		{"HEAD without length", "HEAD", func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Head: 1\r\n\r\n")
		}, 200, "", "X-Head: 1", false, false},
		{"204", "GET", func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n")
		}, 204, "", "X-A: 1", true, false},
		{"204 with length 0", "DELETE", func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
		}, 204, "", "", true, false},
		{"304", "GET", func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n")
		}, 304, "", "ETag: \"v1\"", true, false},
		{"304 with length", "GET", func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 304 Not Modified\r\nETag: \"v2\"\r\nContent-Length: 99\r\n\r\n")
		}, 304, "", "ETag: \"v2\"", true, false},
		{"100 and 103 first", "GET", func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"+
				"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
		}, 200, "final", "", true, false},
		{"100 in a write of its own", "GET", func(c net.Conn) {
			late(c, "HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
		}, 200, "final", "", true, false},
		{"100 cut in the middle", "GET", func(c net.Conn) {
			late(c, "HTTP/1.1 100 Cont", "inue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nnew")
		}, 201, "new", "", true, false},
		{"too many 1xx", "GET", func(c net.Conn) {
			_, _ = io.WriteString(c, strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 20)+"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		}, 502, "*", "", false, false},
		{"bytes after the length", "GET", func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
		}, 200, "hello", "", false, false},
		{"bytes after the length, later", "GET", func(c net.Conn) {
			late(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
		}, 200, "hello", "", false, false},
		{"bytes after a spliced body", "GET", func(c net.Conn) {
			_, _ = io.WriteString(c, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%sHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil",
				len(spliced), spliced))
		}, 200, spliced, "", false, false},
		{"bytes after a spliced body, slow client", "GET", func(c net.Conn) {
			_, _ = io.WriteString(c, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%sHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil",
				len(spliced), spliced))
		}, 200, spliced, "", false, true},
		{"bytes after the last chunk", "GET", func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
		}, 200, "hello", "", false, false},
		{"bytes after a HEAD answer", "HEAD", func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
		}, 200, "", "", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := startScripted(t, func(c net.Conn, _ int, req *fasthttp.Request) bool {
				if string(req.URI().Path()) == "/next" {
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
					return true
				}
				tc.answer(c)
				return true
			})
			p := loopProxy(t, "", "retries = 0\n", nil, b.addr)
			rcvbuf := 0
			if tc.slow {
				rcvbuf = 4096
			}
			c, br := dialLoop(t, p, rcvbuf)
			fmt.Fprintf(c, "%s /case HTTP/1.1\r\nHost: x\r\n\r\n", tc.method)
			if tc.slow {
				time.Sleep(100 * time.Millisecond)
			}
			resp := readAnswer(t, br, tc.method == "HEAD")
			if resp.StatusCode() != tc.status || (tc.body != "*" && string(resp.Body()) != tc.body) {
				t.Fatalf("answer %d %q, want %d %q", resp.StatusCode(), shorten(resp.Body()), tc.status, shorten([]byte(tc.body)))
			}
			if name, value, ok := strings.Cut(tc.header, ": "); ok && string(resp.Header.Peek(name)) != value {
				t.Errorf("header %s: %q, want %q", name, resp.Header.Peek(name), value)
			}
			// Let a late write arrive first.
			time.Sleep(60 * time.Millisecond)
			fmt.Fprintf(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp := readAnswer(t, br, false); resp.StatusCode() != 200 || string(resp.Body()) != "next" {
				t.Fatalf("next answer on the connection: %d %q, want 200 \"next\"", resp.StatusCode(), resp.Body())
			}
			wantConns := int64(2)
			if tc.reuse {
				wantConns = 1
			}
			if n := b.accepted.Load(); n != wantConns {
				t.Errorf("%d backend connections for two requests, want %d", n, wantConns)
			}
		})
	}
}

// shorten abbreviates a long body for a message.
func shorten(b []byte) string {
	if len(b) > 40 {
		return fmt.Sprintf("%s... (%d bytes)", b[:40], len(b))
	}
	return string(b)
}

// TestLoopBackendConnectionLimit: with max_connections_per_backend = 1 the
// backend never sees two connections at once; concurrent clients get the
// answer or, as from the goroutine engine, 503 with Retry-After; requests
// one after the other, each on a new client connection (so on any loop),
// all get the answer.
func TestLoopBackendConnectionLimit(t *testing.T) {
	t.Parallel()
	// Requests the backend holds at once, counted from arrival until just
	// before the answer: the proxy's slot is still taken then, so two at
	// once means two connections in use. (Open connections as the backend
	// sees them lag: it notices a close the proxy already counted only
	// when it reads the EOF.)
	var held, maxHeld atomic.Int64
	b := startScripted(t, func(c net.Conn, _ int, req *fasthttp.Request) bool {
		n := held.Add(1)
		for m := maxHeld.Load(); n > m && !maxHeld.CompareAndSwap(m, n); m = maxHeld.Load() {
		}
		if string(req.URI().Path()) == "/slow" {
			time.Sleep(20 * time.Millisecond)
		}
		held.Add(-1)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	p := loopProxy(t, "", "max_connections_per_backend = 1\n", nil, b.addr)
	addr := p.Addr("web").String()
	do := func(path string) (int, string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Error(err)
			return 0, ""
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		resp := &fasthttp.Response{}
		if err := resp.Read(bufio.NewReader(c)); err != nil {
			t.Error(err)
			return 0, ""
		}
		return resp.StatusCode(), string(resp.Header.Peek("Retry-After"))
	}
	for i := range 20 {
		if st, _ := do("/"); st != 200 {
			t.Fatalf("request %d, alone: status %d, want 200", i, st)
		}
	}
	var wg sync.WaitGroup
	var ok, busy atomic.Int64
	for range 8 {
		wg.Go(func() {
			for range 5 {
				switch st, ra := do("/slow"); {
				case st == 200:
					ok.Add(1)
				case st == 503 && ra != "":
					busy.Add(1)
				default:
					t.Errorf("concurrent request: status %d Retry-After %q, want 200 or 503 with Retry-After", st, ra)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() == 0 {
		t.Errorf("no concurrent request got through (%d got 503)", busy.Load())
	}
	if n := maxHeld.Load(); n > 1 {
		t.Errorf("backend held %d requests at once, want at most 1", n)
	}
}

// TestLoopShutdown: Shutdown with a request in flight in the loop and an
// idle keep-alive connection closes the idle one at once, lets the request
// finish (its answer says Connection: close), then closes that connection
// and returns without error.
func TestLoopShutdown(t *testing.T) {
	t.Parallel()
	b, arrived, release := startHolding(t)
	p := loopProxy(t, "", "", nil, b.addr)
	idle, idleBR, busy, busyBR := idleAndHeld(t, p, arrived)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- p.Shutdown(ctx) }()
	expectEOF(t, idle, idleBR, time.Second)
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	resp := readAnswer(t, busyBR, false)
	if resp.StatusCode() != 200 || string(resp.Body()) != "done" || !resp.ConnectionClose() {
		t.Fatalf("request in flight: %d %q (Connection: close %v), want 200 \"done\" and close", resp.StatusCode(), resp.Body(), resp.ConnectionClose())
	}
	expectEOF(t, busy, busyBR, time.Second)
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Shutdown did not return after the last request")
	}
	waitFor(t, 2*time.Second, "backend connection closed", func() bool { return b.open.Load() == 0 })
}

// TestLoopIPv6: a listener on [::1] is served by the loop, and the backend
// gets the client's v6 address in X-Forwarded-For.
func TestLoopIPv6(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	_ = ln.Close()
	a := startBackend(t, "a")
	p := startProxy(t, strings.Replace(listenerTOML, `"127.0.0.1:0"`, `"[::1]:0"`, 1)+`
  [[listener.route]]
  pool = "s"
`+poolTOML("s", `health = { check = "none" }`, a.addr), nil)
	if l := onlyListener(t, p); len(l.ln.loops) == 0 {
		t.Fatal("the listener runs no event loop")
	}
	c, br := dialLoop(t, p, 0)
	if ra := c.RemoteAddr().(*net.TCPAddr); ra.IP.To4() != nil {
		t.Fatalf("connected to %v, want [::1]", ra)
	}
	for i := range 2 {
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n")
		if resp := readAnswer(t, br, false); resp.StatusCode() != 200 || string(resp.Body()) != "a" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode(), resp.Body())
		}
		if hdr := strings.ToLower(a.header()); !strings.Contains(hdr, "x-forwarded-for: ::1\r\n") {
			t.Fatalf("backend headers lack the v6 client address (replacing the untrusted X-Forwarded-For):\n%s", hdr)
		}
	}
}

// TestLoopHandsOff: after a request the loop served, a request it does not
// serve (HTTP/1.0, Expect, an oversized head, a body over the prefetch) on
// the same connection still gets its answer from the goroutine engine.
func TestLoopHandsOff(t *testing.T) {
	t.Parallel()
	p := loopProxy(t, "max_header_bytes = 4096\n", "", nil, startHandler(t, echoHandler))
	for _, tc := range []struct {
		name    string
		req     string
		waitFor int // 100: send body after the 100 Continue
		body    string
		status  int
		want    string
		closes  bool
	}{
		{"HTTP/1.0", "GET /ten HTTP/1.0\r\nHost: x\r\n\r\n", 0, "", 200, "GET /ten ", true},
		{"HTTP/1.0 keep-alive", "GET /ten HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", 0, "", 200, "GET /ten ", false},
		{"Expect", "PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n", 100, "abc", 200, "PUT /e abc", false},
		{"oversized head", "GET /big HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 5000) + "\r\n\r\n", 0, "", 431, "", true},
		{"body over the prefetch", "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n", 0, strings.Repeat("q", 10000), 200, "POST /p " + strings.Repeat("q", 10000), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, br := dialLoop(t, p, 0)
			fmt.Fprintf(c, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp := readAnswer(t, br, false); string(resp.Body()) != "GET /first " {
				t.Fatalf("first request: %d %q", resp.StatusCode(), resp.Body())
			}
			_, _ = io.WriteString(c, tc.req)
			if tc.waitFor == 100 {
				readInterim(t, br)
			}
			_, _ = io.WriteString(c, tc.body)
			resp := readAnswer(t, br, false)
			if resp.StatusCode() != tc.status || (tc.want != "" && string(resp.Body()) != tc.want) {
				t.Fatalf("answer %d %q, want %d %q", resp.StatusCode(), shorten(resp.Body()), tc.status, shorten([]byte(tc.want)))
			}
			if tc.closes {
				expectEOF(t, c, br, 2*time.Second)
				return
			}
			fmt.Fprintf(c, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp := readAnswer(t, br, false); string(resp.Body()) != "GET /after " {
				t.Fatalf("request after the hand-off: %d %q", resp.StatusCode(), resp.Body())
			}
		})
	}
}

// bulkBackend answers /chunked?n=N and /length?n=N with N bytes of the
// pattern, head, body and end in one write (so the loop reads the end of
// the body with a full buffer), and anything else with "METHOD BODY".
func bulkBackend(t *testing.T) *scripted {
	return startScripted(t, func(c net.Conn, _ int, req *fasthttp.Request) bool {
		n := req.URI().QueryArgs().GetUintOrZero("n")
		body := make([]byte, n)
		_, _ = io.ReadFull(&pattern{n: int64(n)}, body)
		var out []byte
		switch string(req.URI().Path()) {
		case "/chunked":
			out = fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", n, body)
		case "/length":
			out = fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", n, body)
		default:
			b := string(req.Header.Method()) + " " + string(req.Body())
			out = fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
		}
		_, err := c.Write(out)
		return err == nil
	})
}

// bulkCases are answers of bulkBackend that pass through the loop's buffer
// (chunked, or of a length too short to splice) and fill a slow client's
// socket.
var bulkCases = []string{"/length?n=10", "/length?n=70000", "/chunked?n=10", "/chunked?n=1048576"}

// slowReader reads at most 4 KiB at a time, with a pause before each read:
// the proxy's writes to such a client often find its socket full.
type slowReader struct{ r io.Reader }

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(300 * time.Microsecond)
	return s.r.Read(p[:min(len(p), 4096)])
}

// bulkProxy starts a bulkBackend and a proxy (listener settings extra)
// that routes Host "backend" to it; other hosts get a 404.
func bulkProxy(t *testing.T, extra string) (*scripted, *testProxy) {
	t.Helper()
	b := bulkBackend(t)
	return b, upProxy(t, listenerTOML+extra+`
  [[listener.route]]
  host = "backend"
  pool = "s"
`+poolTOML("s", `health = { check = "none" }`, b.addr), nil)
}

// queuedAnswers is how many pipelined requests for a 404 overflow the
// kernel's socket buffers (2 to 3 MiB seen) with their answers (about
// 460 bytes with a request ID of 128 bytes).
const queuedAnswers = 16000

// notFounds returns n pipelined requests the proxy answers with a 404.
func notFounds(n int) string {
	return strings.Repeat("GET /nothing HTTP/1.1\r\nHost: x\r\nX-Request-ID: "+strings.Repeat("i", requestid.MaxLen)+"\r\n\r\n", n)
}

// answersSettled waits until the proxy has stopped answering 404s to a
// client that does not read (its answers wait in the proxy), or the
// backend got a request.
func answersSettled(t *testing.T, p *testProxy, b *scripted) {
	t.Helper()
	count := func() float64 {
		return metricValue(t, p.reg, "frontdoor_requests_total", map[string]string{"code": "4xx"})
	}
	last := -1.0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		n := count()
		if b.requests.Load() > 0 || n == last {
			return
		}
		last = n
	}
}

// TestLoopHandOffAfterQueuedAnswer: a request the loop hands off, pipelined
// behind ones whose answers the client has not taken whole yet, comes after
// those answers: the bytes the loop still held for the client are not
// lost.
func TestLoopHandOffAfterQueuedAnswer(t *testing.T) {
	t.Parallel()
	const handed = "POST /handed HTTP/1.1\r\nHost: backend\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
	for _, path := range append(bulkCases, "404s") {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			b, p := bulkProxy(t, "")
			c, _ := dialLoop(t, p, 4096)
			br := bufio.NewReader(slowReader{c})
			lead := "GET " + path + " HTTP/1.1\r\nHost: backend\r\n\r\n"
			n := 1
			if path == "404s" {
				lead, n = notFounds(queuedAnswers), queuedAnswers
			}
			go func() { _, _ = io.WriteString(c, lead+handed) }()
			if n > 1 {
				// Read nothing until answers wait in the proxy, then
				// read at full speed.
				answersSettled(t, p, b)
				br = bufio.NewReader(c)
			} else {
				time.Sleep(100 * time.Millisecond) // the answer fills the socket buffers
			}
			for i := range n {
				resp := readAnswer(t, br, false)
				if n == 1 && (resp.StatusCode() != 200 || !matchesPattern(resp.Body())) {
					t.Fatalf("first answer: %d, %d bytes (intact %v)", resp.StatusCode(), len(resp.Body()), matchesPattern(resp.Body()))
				}
				if n > 1 && resp.StatusCode() != 404 {
					t.Fatalf("answer %d: %d, want 404", i, resp.StatusCode())
				}
			}
			if resp := readAnswer(t, br, false); string(resp.Body()) != "POST hello" {
				t.Fatalf("handed-off answer: %d %q", resp.StatusCode(), shorten(resp.Body()))
			}
		})
	}
}

// TestLoopHalfClosedClient: a client that sends its requests and closes its
// sending side gets every answer whole, even when it reads slowly, then the
// end of the connection at once.
func TestLoopHalfClosedClient(t *testing.T) {
	t.Parallel()
	for _, path := range append(bulkCases, "404s") {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			b, p := bulkProxy(t, "read_timeout = \"10s\"\nidle_timeout = \"10s\"\n")
			c, _ := dialLoop(t, p, 4096)
			br := bufio.NewReader(slowReader{c})
			reqs := "GET " + path + " HTTP/1.1\r\nHost: backend\r\n\r\n"
			n := 1
			if path == "404s" {
				reqs, n = notFounds(queuedAnswers), queuedAnswers
			}
			go func() {
				_, _ = io.WriteString(c, reqs)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
			if n > 1 {
				answersSettled(t, p, b)
				br = bufio.NewReader(c)
			} else {
				time.Sleep(100 * time.Millisecond)
			}
			for i := range n {
				resp := readAnswer(t, br, false)
				if n == 1 && (resp.StatusCode() != 200 || !matchesPattern(resp.Body())) {
					t.Fatalf("answer %d, %d bytes (intact %v)", resp.StatusCode(), len(resp.Body()), matchesPattern(resp.Body()))
				}
				if n > 1 && resp.StatusCode() != 404 {
					t.Fatalf("answer %d: %d, want 404", i, resp.StatusCode())
				}
			}
			expectEOF(t, c, br, 2*time.Second)
		})
	}
	// The second request of a keep-alive connection and the client's end
	// of the stream arrive together.
	t.Run("second request then half-close", func(t *testing.T) {
		t.Parallel()
		_, p := bulkProxy(t, "read_timeout = \"10s\"\nidle_timeout = \"10s\"\n")
		for i := range 20 {
			c, br := dialLoop(t, p, 0)
			fmt.Fprintf(c, "GET /length?n=10 HTTP/1.1\r\nHost: backend\r\n\r\n")
			readAnswer(t, br, false)
			fmt.Fprintf(c, "GET /length?n=20 HTTP/1.1\r\nHost: backend\r\n\r\n")
			_ = c.(*net.TCPConn).CloseWrite()
			if resp := readAnswer(t, br, false); len(resp.Body()) != 20 {
				t.Fatalf("connection %d: second answer %d, %d bytes", i, resp.StatusCode(), len(resp.Body()))
			}
			expectEOF(t, c, br, 2*time.Second)
		}
	})
}

// TestLoopNonReadingClient: a client that pipelines many requests and never
// reads the answers makes the proxy stop taking its requests once an answer
// waits for it (answers, its own or the backend's, are not made and queued
// in memory without end), and write_timeout cuts it off; the member is
// freed.
func TestLoopNonReadingClient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path string
		n    int64 // requests sent
	}{
		// Small answers: the kernel's socket buffers take a few MiB of
		// them before any waits in the proxy.
		{"/length?n=1000", 20000},
		{"/length?n=61440", 3000},
		{"/chunked?n=61440", 3000},
		{"/nothing", 200000}, // answered by the proxy: 404
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			b := bulkBackend(t)
			p := upProxy(t, listenerTOML+`write_timeout = "800ms"
  [[listener.route]]
  path_prefix = "/length"
  pool = "s"
  [[listener.route]]
  path_prefix = "/chunked"
  pool = "s"
`+poolTOML("s", `health = { check = "none" }`, b.addr), nil)
			c, _ := dialLoop(t, p, 4096)
			go func() {
				reqs := bytes.Repeat([]byte("GET "+tc.path+" HTTP/1.1\r\nHost: x\r\n\r\n"), 100)
				for range tc.n / 100 {
					if _, err := c.Write(reqs); err != nil {
						return
					}
				}
			}()
			answered := func() int64 {
				return b.requests.Load() + int64(metricValue(t, p.reg, "frontdoor_requests_total", map[string]string{"code": "4xx"}))
			}
			be := p.gen.Load().pools["s"].ups[0].be
			waitFor(t, 2*time.Second, "the first answer", func() bool { return answered() > 0 })
			time.Sleep(400 * time.Millisecond) // within write_timeout
			if got := answered(); got > tc.n/4 {
				t.Errorf("%d of %d requests answered for a client that read nothing", got, tc.n)
			}
			waitFor(t, 10*time.Second, "client cut off, member free", func() bool {
				return be.InFlight() == 0 && metricValue(t, p.reg, "frontdoor_connections_active", nil) == 0
			})
		})
	}
}

// TestLoopHeadLargerThanTheReadBuffer: with max_header_bytes above the
// loop's 64 KiB buffer, a head between the two is served (by the goroutine
// engine), not left waiting for read_timeout.
func TestLoopHeadLargerThanTheReadBuffer(t *testing.T) {
	t.Parallel()
	backend := startHandler(t, echoHandler, func(s *fasthttp.Server) { s.ReadBufferSize = 256 << 10 })
	p := loopProxy(t, "max_header_bytes = 262144\nread_timeout = \"3s\"\n", "", nil, backend)
	c, br := dialLoop(t, p, 0)
	start := time.Now()
	fmt.Fprintf(c, "GET /huge HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("h", 100<<10))
	resp := readAnswer(t, br, false)
	if resp.StatusCode() != 200 || string(resp.Body()) != "GET /huge " {
		t.Fatalf("answer %d %q after %v, want 200", resp.StatusCode(), shorten(resp.Body()), time.Since(start))
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("answer after %v", took)
	}
}

// TestLoopAnswerHeadLineEnds: an answer head that ends in "\r\n\n" or
// "\n\r\n", with a body that holds the first "\r\n\r\n", is framed where
// fasthttp's parser ends it (as in the goroutine engine): the body is
// relayed whole, not taken for part of the head.
func TestLoopAnswerHeadLineEnds(t *testing.T) {
	t.Parallel()
	answers := []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\nhello\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 9\n\r\nhello\r\n\r\n",
	}
	b := startScripted(t, func(c net.Conn, i int, _ *fasthttp.Request) bool {
		_, _ = io.WriteString(c, answers[i])
		return i+1 < len(answers)
	})
	p := loopProxy(t, "", "response_timeout = \"2s\"\nretries = 0\n", nil, b.addr)
	c, br := dialLoop(t, p, 0)
	for i, want := range []string{"hello\r\n\r\n", "hello\r\n\r\n"} {
		start := time.Now()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp := readAnswer(t, br, false)
		if resp.StatusCode() != 200 || string(resp.Body()) != want {
			t.Fatalf("answer %d: %d %q after %v, want 200 %q", i, resp.StatusCode(), shorten(resp.Body()), time.Since(start), want)
		}
	}
}

// getQuery sends GET /?query on c and reads the answer's head (200 wanted).
// It returns the body's reader, de-chunked for query "chunked".
func getQuery(t *testing.T, c net.Conn, br *bufio.Reader, query string) io.Reader {
	t.Helper()
	fmt.Fprintf(c, "GET /?%s HTTP/1.1\r\nHost: x\r\n\r\n", query)
	var h fasthttp.ResponseHeader
	if err := h.Read(br); err != nil || h.StatusCode() != 200 {
		t.Fatalf("head: %d, %v", h.StatusCode(), err)
	}
	if query == "chunked" {
		return httpChunkedReader(br)
	}
	return br
}

// startHolding starts a backend that answers "done" at once, except to
// /held, which it answers only once release is closed; arrived gets a value
// when a /held request reached it.
func startHolding(t *testing.T) (b *scripted, arrived chan struct{}, release chan struct{}) {
	t.Helper()
	release = make(chan struct{})
	arrived = make(chan struct{}, 1)
	b = startScripted(t, func(c net.Conn, _ int, req *fasthttp.Request) bool {
		if string(req.URI().Path()) == "/held" {
			arrived <- struct{}{}
			<-release
		}
		_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
		return err == nil
	})
	return b, arrived, release
}

// idleAndHeld opens two connections to p's listener: one that had an answer
// and is now idle, and one whose request to /held waits at a startHolding
// backend (arrived) until release.
func idleAndHeld(t *testing.T, p *testProxy, arrived <-chan struct{}) (idle net.Conn, idleBR *bufio.Reader, busy net.Conn, busyBR *bufio.Reader) {
	t.Helper()
	idle, idleBR = dialLoop(t, p, 0)
	fmt.Fprintf(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp := readAnswer(t, idleBR, false); resp.StatusCode() != 200 {
		t.Fatalf("idle connection's request: %d", resp.StatusCode())
	}
	busy, busyBR = dialLoop(t, p, 0)
	fmt.Fprintf(busy, "GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
	<-arrived
	return idle, idleBR, busy, busyBR
}
