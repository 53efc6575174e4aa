package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"frontdoor/internal/loopback"
)

// startHandler serves h with a real fasthttp server on 127.0.0.1 and
// returns its address. tune may adjust the server before it starts.
func startHandler(t testing.TB, h fasthttp.RequestHandler, tune ...func(*fasthttp.Server)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h, NoDefaultServerHeader: true, CloseOnShutdown: true}
	for _, f := range tune {
		f(srv)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.ShutdownWithContext(ctx)
	})
	return ln.Addr().String()
}

// streamProxy starts a proxy with one listener routing everything to one
// pool of addrs (health check "none"). extra goes into the listener table,
// poolExtra into the pool table.
func streamProxy(t testing.TB, extra, poolExtra string, access *AccessLog, addrs ...string) *testProxy {
	t.Helper()
	return upProxy(t, listenerTOML+extra+`
  [[listener.route]]
  pool = "s"
`+poolTOML("s", "health = { check = \"none\" }\n"+poolExtra, addrs...), access)
}

// upProxy is startProxy that also waits until every backend is up: with
// check "none" the checker marks them up in its own goroutine, after Ready.
func upProxy(t testing.TB, toml string, access *AccessLog) *testProxy {
	t.Helper()
	return upProxyWith(t, toml, Options{AccessLog: access})
}

// upProxyWith is upProxy with opts (startProxyWith).
func upProxyWith(t testing.TB, toml string, opts Options) *testProxy {
	t.Helper()
	p := startProxyWith(t, toml, opts)
	waitFor(t, 5*time.Second, "every backend up", func() bool {
		for _, pr := range p.gen.Load().pools {
			for _, u := range pr.ups {
				if !u.be.Up() {
					return false
				}
			}
		}
		return true
	})
	return p
}

// pattern yields n bytes of a repeating alphabet, one read at a time, so a
// transfer of any size holds no more than a buffer of it.
type pattern struct{ n, pos int64 }

// alphabet is the pattern's source: 26 letters repeated over 64 KiB + 26.
var alphabet = func() []byte {
	b := make([]byte, 64<<10+26)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}()

func (p *pattern) Read(b []byte) (int, error) {
	if p.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n {
		b = b[:p.n]
	}
	off := int(p.pos % 26)
	n := copy(b, alphabet[off:off+min(len(b), 64<<10)])
	p.n -= int64(n)
	p.pos += int64(n)
	return n, nil
}

// rss returns the resident set size of this process.
func rss(t testing.TB) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Skip("no VmRSS")
	return 0
}

// rssPeak samples the process RSS every 10 ms until stop is called and
// returns the highest sample.
func rssPeak(t testing.TB) (stop func() int64) {
	var peak atomic.Int64
	peak.Store(rss(t))
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if v := rss(t); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()
	return func() int64 {
		close(done)
		<-finished
		if v := rss(t); v > peak.Load() {
			peak.Store(v)
		}
		return peak.Load()
	}
}

// bigTransfer is the size of the bounded-memory tests: 1 GiB, or 256 MiB
// under the race detector (which makes every copy several times slower) and
// with -short.
func bigTransfer() int64 {
	if underRace || testing.Short() {
		return 256 << 20
	}
	return 1 << 30
}

const rssBound = 32 << 20

// underRace reports whether the test binary was built with -race.
var underRace = func() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}()

// settle collects garbage and returns memory to the OS, so that an RSS
// measurement starts from what is really in use.
func settle(t testing.TB) int64 {
	runtime.GC()
	debug.FreeOSMemory()
	return rss(t)
}

// TestStreamedDownloadBoundedMemory sends a 1 GiB response (256 MiB under
// -race) from a backend that generates it on the fly, through frontdoor, to
// a client that discards it as it arrives: every byte arrives, and the
// process (backend, proxy and client together) grows by less than 32 MiB.
// Not parallel: the RSS is the whole process's.
func TestStreamedDownloadBoundedMemory(t *testing.T) {
	size := bigTransfer()
	backend := startHandler(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyStream(&pattern{n: size}, int(size))
	})
	p := streamProxy(t, "", "", nil, backend)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()

	base := settle(t)
	stop := rssPeak(t)
	start := time.Now()
	resp, err := client.Get(p.url(t, "web", "/big"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	peak := stop()
	if err != nil || n != size {
		t.Fatalf("got %d bytes (err %v), want %d", n, err, size)
	}
	if resp.ContentLength != size {
		t.Errorf("Content-Length %d, want %d", resp.ContentLength, size)
	}
	t.Logf("%d MiB in %v (%.0f MiB/s), RSS %d MiB before, peak +%d KiB",
		size>>20, took, float64(size>>20)/took.Seconds(), base>>20, (peak-base)>>10)
	if peak-base > rssBound {
		t.Errorf("RSS grew by %d MiB during the download, want < %d MiB", (peak-base)>>20, rssBound>>20)
	}
}

// TestStreamedUploadBoundedMemory is the other direction: a client streams
// a 1 GiB request body (256 MiB under -race), frontdoor streams it on, and a
// backend counts the bytes as they arrive.
func TestStreamedUploadBoundedMemory(t *testing.T) {
	size := bigTransfer()
	backend := startHandler(t, func(ctx *fasthttp.RequestCtx) {
		n, err := io.Copy(io.Discard, ctx.RequestBodyStream())
		if err != nil {
			ctx.SetStatusCode(fasthttp.StatusBadRequest)
		}
		ctx.SetBodyString(strconv.FormatInt(n, 10))
	}, func(s *fasthttp.Server) { s.StreamRequestBody = true; s.MaxRequestBodySize = 2 << 30 })
	p := streamProxy(t, "max_body_bytes = 2147483648\n", "", nil, backend)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()

	base := settle(t)
	stop := rssPeak(t)
	start := time.Now()
	req, err := http.NewRequest(http.MethodPost, p.url(t, "web", "/upload"), &pattern{n: size})
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	peak := stop()
	if resp.StatusCode != 200 || string(body) != strconv.FormatInt(size, 10) {
		t.Fatalf("status %d, backend counted %q bytes, want %d", resp.StatusCode, body, size)
	}
	t.Logf("%d MiB in %v (%.0f MiB/s), RSS %d MiB before, peak +%d KiB",
		size>>20, took, float64(size>>20)/took.Seconds(), base>>20, (peak-base)>>10)
	if peak-base > rssBound {
		t.Errorf("RSS grew by %d MiB during the upload, want < %d MiB", (peak-base)>>20, rssBound>>20)
	}
}

// TestBodiesArriveIntact sends bodies of every framing and of sizes around
// the thresholds both ways, and checks each arrives byte for byte with the
// right framing.
func TestBodiesArriveIntact(t *testing.T) {
	t.Parallel()
	body := func(n int) []byte {
		b := make([]byte, n)
		_, _ = io.ReadFull(&pattern{n: int64(n)}, b)
		return b
	}
	backend := startHandler(t, func(ctx *fasthttp.RequestCtx) {
		args := ctx.QueryArgs()
		n := args.GetUintOrZero("n")
		switch string(args.Peek("mode")) {
		case "echo": // the request body back, with its length
			in, err := io.ReadAll(ctx.RequestBodyStream())
			if err != nil {
				ctx.SetStatusCode(400)
				return
			}
			ctx.Response.Header.Set("X-Got", strconv.Itoa(len(in)))
			ctx.SetBody(in)
		case "chunked":
			ctx.SetBodyStream(bytes.NewReader(body(n)), -1)
		case "nocontent":
			ctx.SetStatusCode(fasthttp.StatusNoContent)
		default:
			ctx.SetBody(body(n))
		}
	}, func(s *fasthttp.Server) { s.StreamRequestBody = true })
	p := streamProxy(t, "", "", nil, backend)
	base := p.url(t, "web", "/")
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(client.CloseIdleConnections)

	for _, tc := range []struct {
		name    string
		method  string
		query   string
		upload  int // request body length; -1 none
		chunked bool
		want    int
		status  int
	}{
		{"empty", "GET", "n=0", -1, false, 0, 200},
		{"small", "GET", "n=100", -1, false, 100, 200},
		{"below splice", "GET", "n=65535", -1, false, 65535, 200},
		{"at splice", "GET", "n=65536", -1, false, 65536, 200},
		{"100 KiB spliced", "GET", "n=102400", -1, false, 102400, 200},
		{"at threshold", "GET", "n=262144", -1, false, 262144, 200},
		{"above threshold", "GET", "n=262145", -1, false, 262145, 200},
		{"5 MiB", "GET", "n=5242880", -1, false, 5 << 20, 200},
		{"small chunked", "GET", "mode=chunked&n=10", -1, false, 10, 200},
		{"large chunked", "GET", "mode=chunked&n=3000000", -1, false, 3000000, 200},
		{"head of large", "HEAD", "n=5242880", -1, false, 0, 200},
		{"no content", "GET", "mode=nocontent", -1, false, 0, 204},
		{"upload small", "POST", "mode=echo", 1000, false, 1000, 200},
		{"upload at prefetch", "POST", "mode=echo", 8192, false, 8192, 200},
		{"upload above prefetch", "POST", "mode=echo", 8193, false, 8193, 200},
		{"upload 3 MiB", "PUT", "mode=echo", 3 << 20, false, 3 << 20, 200},
		{"upload chunked", "POST", "mode=echo", 1 << 20, true, 1 << 20, 200},
		{"upload chunked small", "POST", "mode=echo", 10, true, 10, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var rd io.Reader
			if tc.upload >= 0 {
				rd = bytes.NewReader(body(tc.upload))
				if tc.chunked {
					rd = io.MultiReader(rd) // hides the length: chunked
				}
			}
			req, err := http.NewRequest(tc.method, base+"?"+tc.query, rd)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if len(got) != tc.want || !bytes.Equal(got, body(tc.want)) {
				t.Fatalf("got %d bytes, want %d (intact: %v)", len(got), tc.want, bytes.Equal(got, body(len(got))))
			}
			if tc.upload >= 0 && resp.Header.Get("X-Got") != strconv.Itoa(tc.upload) {
				t.Errorf("backend got %s bytes, want %d", resp.Header.Get("X-Got"), tc.upload)
			}
		})
	}
}

// TestSSEEventsArriveAsSent: a backend sends a server-sent event every
// 100 ms; the client sees each within 50 ms of the backend flushing it.
func TestSSEEventsArriveAsSent(t *testing.T) {
	t.Parallel()
	const events = 10
	backend := startHandler(t, sseHandler(events, 100*time.Millisecond))
	p := streamProxy(t, "", "", nil, backend)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(client.CloseIdleConnections)

	resp, err := client.Get(p.url(t, "web", "/events"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	// Buffering would hold events until the stream ends (a second and more);
	// a loaded test machine may delay one now and then. So: nearly every
	// event within 50 ms, none near the end of the stream.
	got, late := 0, 0
	var worst time.Duration
	for ev := range readEvents(resp.Body) {
		lag := time.Since(time.Unix(0, ev))
		worst = max(worst, lag)
		if lag > 50*time.Millisecond {
			late++
			t.Logf("event %d arrived %v after it was sent", got, lag)
		}
		if lag > 400*time.Millisecond {
			t.Errorf("event %d arrived %v after it was sent: held back, want < 50ms", got, lag)
		}
		got++
	}
	if got != events {
		t.Fatalf("%d events, want %d", got, events)
	}
	if late > 1 {
		t.Errorf("%d of %d events arrived later than 50 ms after they were sent", late, events)
	}
	t.Logf("worst lag %v", worst)
}

// sseHandler sends n events "data: <unix nanoseconds>" every interval (n 0:
// forever), flushing each, and closes the stream.
func sseHandler(n int, interval time.Duration) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			for i := 0; n == 0 || i < n; i++ {
				time.Sleep(interval)
				fmt.Fprintf(w, "id: %d\ndata: %d\n\n", i, time.Now().UnixNano())
				if err := w.Flush(); err != nil {
					return
				}
			}
		})
	}
}

// readEvents yields the data field of each event on r as an int64, until r
// ends.
func readEvents(r io.Reader) func(func(int64) bool) {
	return func(yield func(int64) bool) {
		br := bufio.NewReader(r)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "data: "); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				if !yield(n) {
					return
				}
			}
		}
	}
}

// TestStreamOutlivesTimeouts: a stream lasting longer than write_timeout,
// read_timeout and response_timeout together goes on, because they bound a
// stall, not the whole stream; a backend silent for idle_timeout ends it.
func TestStreamOutlivesTimeouts(t *testing.T) {
	t.Parallel()
	backend := startHandler(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/stall" {
			ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
				fmt.Fprintf(w, "data: %d\n\n", time.Now().UnixNano())
				_ = w.Flush()
				time.Sleep(2 * time.Second) // silent beyond idle_timeout
				fmt.Fprintf(w, "data: %d\n\n", time.Now().UnixNano())
				_ = w.Flush()
			})
			return
		}
		sseHandler(15, 100*time.Millisecond)(ctx)
	})
	p := streamProxy(t, "read_timeout = \"400ms\"\nwrite_timeout = \"400ms\"\nidle_timeout = \"800ms\"\n",
		"response_timeout = \"400ms\"\n", nil, backend)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(client.CloseIdleConnections)

	resp, err := client.Get(p.url(t, "web", "/long"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range readEvents(resp.Body) {
		n++
	}
	resp.Body.Close()
	if n != 15 {
		t.Errorf("%d of 15 events over 1.5 s with 400 ms timeouts", n)
	}

	start := time.Now()
	resp, err = client.Get(p.url(t, "web", "/stall"))
	if err != nil {
		t.Fatal(err)
	}
	n = 0
	for range readEvents(resp.Body) {
		n++
	}
	resp.Body.Close()
	if took := time.Since(start); n != 1 || took > 2500*time.Millisecond {
		t.Errorf("stalled stream: %d events, ended after %v; want 1 event and an end near idle_timeout (800ms)", n, took)
	}
}

// TestClientGoneFreesBackend: a client that hangs up on an endless stream
// ends the backend's stream too, and the member's in-flight count returns to
// zero.
func TestClientGoneFreesBackend(t *testing.T) {
	t.Parallel()
	ended := make(chan struct{})
	backend := startHandler(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			defer close(ended)
			for {
				fmt.Fprintf(w, "data: %d\n\n", time.Now().UnixNano())
				if err := w.Flush(); err != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	})
	p := streamProxy(t, "", "", nil, backend)
	c, err := net.Dial("tcp", p.Addr("web").String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, " 200 ") {
		t.Fatalf("status line %q, %v", line, err)
	}
	be := p.gen.Load().pools["s"].ups[0].be
	waitFor(t, 2*time.Second, "stream counted in flight", func() bool { return be.InFlight() == 1 })
	c.Close()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("backend still streaming 5s after the client left")
	}
	waitFor(t, 2*time.Second, "in-flight back to 0", func() bool { return be.InFlight() == 0 })
	waitFor(t, 2*time.Second, "no live streams", func() bool {
		for _, l := range p.http {
			if n, _ := l.live.counts(); n != 0 {
				return false
			}
		}
		return true
	})
}

// TestExpectContinue: a client that sends "Expect: 100-continue" and waits
// gets 100 Continue, sends its body and gets the backend's answer; one that
// announces a body above max_body_bytes gets 413 without sending it.
func TestExpectContinue(t *testing.T) {
	t.Parallel()
	backend := startHandler(t, func(ctx *fasthttp.RequestCtx) {
		n, _ := io.Copy(io.Discard, ctx.RequestBodyStream())
		ctx.SetBodyString(strconv.FormatInt(n, 10))
	}, func(s *fasthttp.Server) { s.StreamRequestBody = true })
	p := streamProxy(t, "max_body_bytes = 2097152\n", "", nil, backend)

	for _, tc := range []struct {
		name   string
		length int
		want   string // status line after the head: " 100 " then the final one
	}{
		{"small", 1000, " 200 "},
		{"streamed", 1500000, " 200 "},
		{"too large", 3000000, " 413 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := net.Dial("tcp", p.Addr("web").String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", tc.length)
			br := bufio.NewReader(c)
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == " 413 " {
				if !strings.Contains(line, " 413 ") {
					t.Fatalf("first answer %q, want 413 before the body", line)
				}
				return
			}
			if !strings.Contains(line, " 100 ") {
				t.Fatalf("first answer %q, want 100 Continue", line)
			}
			if _, err := br.ReadString('\n'); err != nil { // blank line after 100
				t.Fatal(err)
			}
			if _, err := io.Copy(c, &pattern{n: int64(tc.length)}); err != nil {
				t.Fatal(err)
			}
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseResponse(resp)
			if err := resp.Read(br); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode() != 200 || string(resp.Body()) != strconv.Itoa(tc.length) {
				t.Fatalf("status %d body %q, want 200 %d", resp.StatusCode(), resp.Body(), tc.length)
			}
		})
	}
}

// TestStreamedBodyLimits: a body above max_body_bytes gets 413, whether it
// announces its length or is chunked, on a listener that streams bodies and
// on one that buffers them (max_body_bytes <= 1 MiB).
func TestStreamedBodyLimits(t *testing.T) {
	t.Parallel()
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(client.CloseIdleConnections)
	for _, tc := range []struct {
		name    string
		max     int64
		chunked bool
	}{
		{"streaming, content-length", 2 << 20, false},
		{"streaming, chunked", 2 << 20, true},
		{"buffering, content-length", 100000, false},
		{"buffering, chunked", 100000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A backend per case: the previous case's backend may still be
			// reading the bytes it was allowed when this one starts.
			var got atomic.Int64
			backend := startHandler(t, func(ctx *fasthttp.RequestCtx) {
				n, _ := io.Copy(io.Discard, ctx.RequestBodyStream())
				got.Add(n)
			}, func(s *fasthttp.Server) { s.StreamRequestBody = true })
			p := streamProxy(t, fmt.Sprintf("max_body_bytes = %d\n", tc.max), "", nil, backend)
			size := 3 * tc.max / 2
			req, _ := http.NewRequest("POST", p.url(t, "web", "/"), &pattern{n: size})
			if !tc.chunked {
				req.ContentLength = size
			}
			before := got.Load()
			resp, err := client.Do(req)
			if err != nil {
				// The proxy may close before the client finished sending.
				t.Logf("client error (acceptable after a 413 and close): %v", err)
			} else {
				resp.Body.Close()
				if resp.StatusCode != 413 {
					t.Fatalf("status %d, want 413", resp.StatusCode)
				}
			}
			if sent := got.Load() - before; sent > tc.max {
				t.Errorf("backend received %d bytes of a body above max_body_bytes %d", sent, tc.max)
			}
		})
	}
}

// TestStreamAccessLog: a streamed answer's access log line is written when
// it ends and counts the bytes really sent.
func TestStreamAccessLog(t *testing.T) {
	t.Parallel()
	const size = 1 << 20
	backend := startHandler(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyStream(&pattern{n: size}, -1)
	})
	logPath := filepath.Join(t.TempDir(), "access.log")
	ctx, cancel := context.WithCancel(context.Background())
	access, err := NewAccessLog(ctx, logPath, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := streamProxy(t, "", "", access, backend)
	resp, err := http.Get(p.url(t, "web", "/stream/path"))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n != size {
		t.Fatalf("%d bytes, want %d", n, size)
	}
	var line string
	waitFor(t, 2*time.Second, "access log line", func() bool {
		cancel()
		<-access.Done()
		data, _ := os.ReadFile(logPath)
		line = string(data)
		return line != ""
	})
	for _, want := range []string{`"path":"/stream/path"`, `"status":200`, fmt.Sprintf(`"bytes_out":%d`, size), `"method":"GET"`} {
		if !strings.Contains(line, want) {
			t.Errorf("access log line lacks %s:\n%s", want, line)
		}
	}
}

// TestCloseDelimitedResponse: a backend that answers without a length and
// ends the body by closing (HTTP/1.0 style) is relayed whole, chunked to the
// client, and the next request gets a fresh backend connection.
func TestCloseDelimitedResponse(t *testing.T) {
	t.Parallel()
	const size = 200000
	backend := loopback.Serve(t, func(c net.Conn) {
		var h fasthttp.RequestHeader
		if h.Read(bufio.NewReader(c)) != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
		_, _ = io.Copy(c, &pattern{n: size})
	})
	p := streamProxy(t, "", "", nil, backend)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(client.CloseIdleConnections)
	for i := range 3 {
		resp, err := client.Get(p.url(t, "web", "/"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || len(got) != size || resp.ContentLength != -1 {
			t.Fatalf("request %d: %d bytes (Content-Length %d), %v; want %d bytes chunked", i, len(got), resp.ContentLength, err, size)
		}
	}
}
