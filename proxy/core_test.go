package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Tests of decisions the shared core makes for every engine, each run
// through the event loop and through the goroutine engine. Each was a
// defect where the engines drifted apart (see README, "One core, several
// engines").

// engine names one way an http listener serves its connections.
type engine struct {
	name          string
	goroutineOnly bool
}

var engines = []engine{{"loop", false}, {"goroutine", true}}

// coreRig is a proxy served by one engine, with an access log to a file
// that the test reads as lines arrive.
type coreRig struct {
	*testProxy
	logPath string
}

func startCoreRig(t *testing.T, e engine, toml string, opts ...func(*Options)) *coreRig {
	t.Helper()
	access, path, _ := openTestAccessLog(t)
	o := Options{AccessLog: access, goroutineOnly: e.goroutineOnly}
	if testing.Verbose() {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	for _, f := range opts {
		f(&o)
	}
	p := startProxyWith(t, toml, o)
	waitFor(t, 5*time.Second, "every backend up", func() bool {
		for _, pr := range p.gen.Load().pools {
			for _, u := range pr.ups {
				if pr.cfg.Health.Check == "none" && !u.be.Up() {
					return false
				}
			}
		}
		return true
	})
	if l := onlyListener(t, p); (len(l.ln.loops) == 0) != e.goroutineOnly {
		t.Fatalf("engine %s: the listener has %d event loops", e.name, len(l.ln.loops))
	}
	return &coreRig{testProxy: p, logPath: path}
}

// record waits for the access record whose field key equals want and
// returns it.
func (r *coreRig) record(t *testing.T, key, want string) map[string]any {
	t.Helper()
	var found map[string]any
	waitFor(t, 5*time.Second, "access record with "+key+"="+want, func() bool {
		data, _ := os.ReadFile(r.logPath)
		for _, line := range strings.Split(string(data), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m[key] == want {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// exchange sends raw on a new connection and reads one answer.
func (r *coreRig) exchange(t *testing.T, raw string) (*fasthttp.Response, net.Conn, *bufio.Reader) {
	t.Helper()
	c, br := dialLoop(t, r.testProxy, 0)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp := readAnswer(t, br, strings.HasPrefix(raw, "HEAD "))
	return resp, c, br
}

// recent checks that an access record carries a real time and duration.
func recent(t *testing.T, rec map[string]any) {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, rec["time"].(string))
	if err != nil || time.Since(at) > 10*time.Second || time.Since(at) < -time.Second {
		t.Errorf("record time %v (%v), want about now", rec["time"], err)
	}
	if d, _ := rec["duration"].(float64); d < 0 || d > 10 {
		t.Errorf("record duration %v, want seconds since the request began", rec["duration"])
	}
}

// TestErrorAnswersAreLoggedAsTheyHappened: frontdoor's own 413 and 408,
// on a fresh and on a kept-alive connection, log the time they happened
// and the client's request ID (they logged 0001-01-01 or the previous
// request's time, a 292-year duration, and a new ID).
func TestErrorAnswersAreLoggedAsTheyHappened(t *testing.T) {
	t.Parallel()
	backend := startHandler(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") })
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			r := startCoreRig(t, e, listenerTOML+`read_timeout = "300ms"
max_body_bytes = 100
  [[listener.route]]
  pool = "s"
`+poolTOML("s", `health = { check = "none" }`, backend))

			// 413 on a kept-alive connection, a second after its first
			// request.
			resp, c, br := r.exchange(t, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
			if resp.StatusCode() != 200 {
				t.Fatalf("first request: %d", resp.StatusCode())
			}
			time.Sleep(1100 * time.Millisecond)
			if _, err := io.WriteString(c, "POST /big HTTP/1.1\r\nHost: a\r\nX-Request-ID: big-1\r\nContent-Length: 500\r\n\r\n"+strings.Repeat("x", 500)); err != nil {
				t.Fatal(err)
			}
			resp = readAnswer(t, br, false)
			if resp.StatusCode() != 413 || string(resp.Header.Peek("X-Request-ID")) != "big-1" {
				t.Errorf("oversized body: %d, X-Request-ID %q; want 413 with the client's ID", resp.StatusCode(), resp.Header.Peek("X-Request-ID"))
			}
			rec := r.record(t, "request_id", "big-1")
			recent(t, rec)
			first := r.record(t, "path", "/first")
			if rec["time"] == first["time"] {
				t.Errorf("the 413 is logged at the previous request's time %v", rec["time"])
			}
			if rec["status"] != 413.0 || rec["host"] != "a" || rec["reason"] != "body_too_large" {
				t.Errorf("413 record %v", rec)
			}

			// 408 on a fresh connection.
			c2, br2 := dialLoop(t, r.testProxy, 0)
			_, _ = io.WriteString(c2, "GET /slow HTTP/1.1\r\nX-Request-ID: slow-1\r\n")
			resp = readAnswer(t, br2, false)
			if resp.StatusCode() != 408 {
				t.Fatalf("slow head: %d, want 408", resp.StatusCode())
			}
			recent(t, r.record(t, "reason", "read_timeout"))
		})
	}
}

// TestStreamedBodyOverLimitKeepsTheRequest: a declared body over
// max_body_bytes on a listener that streams bodies gets 413 with the
// client's request ID, and the record names host and route (it minted a
// new ID and logged neither).
func TestStreamedBodyOverLimitKeepsTheRequest(t *testing.T) {
	t.Parallel()
	backend := startHandler(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") })
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			r := startCoreRig(t, e, listenerTOML+`max_body_bytes = 2097152
  [[listener.route]]
  path_prefix = "/up/"
  pool = "s"
`+poolTOML("s", `health = { check = "none" }`, backend))
			resp, _, _ := r.exchange(t, "POST /up/x HTTP/1.1\r\nHost: h.test\r\nX-Request-ID: up-1\r\nContent-Length: 3000000\r\n\r\n"+strings.Repeat("x", 70000))
			if resp.StatusCode() != 413 || string(resp.Header.Peek("X-Request-ID")) != "up-1" {
				t.Fatalf("got %d with X-Request-ID %q, want 413 with up-1", resp.StatusCode(), resp.Header.Peek("X-Request-ID"))
			}
			rec := r.record(t, "request_id", "up-1")
			if rec["host"] != "h.test" || rec["route"] != "/up/" || rec["status"] != 413.0 {
				t.Errorf("record %v, want host h.test, route /up/, status 413", rec)
			}
			recent(t, rec)
		})
	}
}

// TestHTTP1ToAnH2CPoolIsRefused: a plain HTTP/1.1 request to a route whose
// pool speaks h2c gets 426 from frontdoor and reaches no backend, so it
// cannot count failures against healthy gRPC backends (it was sent as
// HTTP/1.1, failed, was retried and counted on each).
func TestHTTP1ToAnH2CPoolIsRefused(t *testing.T) {
	t.Parallel()
	var conns atomic.Int64
	s := startScripted(t, func(c net.Conn, i int, req *fasthttp.Request) bool {
		conns.Add(1)
		return false
	})
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			r := startCoreRig(t, e, listenerTOML+`
  [[listener.route]]
  pool = "g"
`+poolTOML("g", `protocol = "h2c"
retries = 2
health = { check = "none" }
[pool.g.passive]
consecutive_failures = 1`, s.addr))
			for range 3 {
				resp, _, _ := r.exchange(t, "GET /pkg.Svc/Call HTTP/1.1\r\nHost: a\r\n\r\n")
				if resp.StatusCode() != 426 || string(resp.Header.Peek("Upgrade")) != "h2c" {
					t.Fatalf("got %d (Upgrade %q), want 426 with Upgrade: h2c", resp.StatusCode(), resp.Header.Peek("Upgrade"))
				}
			}
			rec := r.record(t, "reason", "h2c_route")
			if rec["status"] != 426.0 || rec["backend"] != "" {
				t.Errorf("record %v", rec)
			}
			if n := s.accepted.Load(); n != 0 {
				t.Errorf("the h2c backend saw %d connections", n)
			}
			for _, reason := range []string{"connect", "reset", "other"} {
				if v := metricValue(t, r.reg, "frontdoor_upstream_errors_total", map[string]string{"pool": "g", "backend": s.addr, "reason": reason}); v != 0 {
					t.Errorf("upstream_errors_total{reason=%s} = %v", reason, v)
				}
			}
			if !r.gen.Load().pools["g"].ups[0].be.Up() {
				t.Error("the h2c backend was ejected")
			}
		})
	}
}

// TestRetriedAnswerIsTheBackends: after a retry, the answer carries the
// backend's Date and no Content-Type the backend did not send (the
// goroutine engine replaced the Date and invented text/plain).
func TestRetriedAnswerIsTheBackends(t *testing.T) {
	t.Parallel()
	const date = "Mon, 02 Jan 2006 15:04:05 GMT"
	s := startScripted(t, func(c net.Conn, i int, req *fasthttp.Request) bool {
		_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nDate: "+date+"\r\nContent-Length: 2\r\n\r\nok")
		return err == nil
	})
	refused := refusingAddr(t)
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			r := startCoreRig(t, e, listenerTOML+`
  [[listener.route]]
  pool = "s"
`+poolTOML("s", `retries = 1
health = { check = "none" }`, refused, s.addr))
			for i := range 4 {
				c, br := dialLoop(t, r.testProxy, 0)
				_, _ = io.WriteString(c, "GET /r HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
				raw, _ := io.ReadAll(br)
				head, body, _ := strings.Cut(string(raw), "\r\n\r\n")
				if !strings.HasPrefix(head, "HTTP/1.1 200 ") || body != "ok" {
					t.Fatalf("request %d: %q", i, raw)
				}
				if !strings.Contains(head, "\r\nDate: "+date+"\r\n") {
					t.Errorf("request %d: the backend's Date is lost: %q", i, head)
				}
				if strings.Contains(strings.ToLower(head), "content-type") {
					t.Errorf("request %d: a Content-Type the backend did not send: %q", i, head)
				}
			}
			if metricValue(t, r.reg, "frontdoor_retries_total", map[string]string{"pool": "s"}) == 0 {
				t.Error("no request was retried: the test proves nothing")
			}
		})
	}
}

// TestOwnAnswersHonourConnectionClose: a client's Connection: close holds
// for every answer frontdoor makes itself, the affinity 404 included (the
// loop kept that connection open).
func TestOwnAnswersHonourConnectionClose(t *testing.T) {
	t.Parallel()
	backend := startHandler(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") })
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			r := startCoreRig(t, e, listenerTOML+`
  [[listener.route]]
  path_prefix = "/s/"
  pool = "s"
`+poolTOML("s", `affinity = "header:Mcp-Session-Id"
health = { check = "none" }`, backend))
			for _, raw := range []string{
				"GET /s/x HTTP/1.1\r\nHost: a\r\nMcp-Session-Id: nosuchsession\r\nConnection: close\r\n\r\n",
				"GET /elsewhere HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			} {
				resp, c, br := r.exchange(t, raw)
				if resp.StatusCode() != 404 || !resp.ConnectionClose() {
					t.Errorf("%q: %d, Connection: close %v; want 404 and close", raw, resp.StatusCode(), resp.ConnectionClose())
				}
				expectEOF(t, c, br, 2*time.Second)
			}
		})
	}
}

// TestConnectionBudgetIsSharedByEngines: max_connections_per_backend
// holds across the event loop and the goroutine engine (each had a budget
// of its own, so a backend could see twice the limit).
func TestConnectionBudgetIsSharedByEngines(t *testing.T) {
	t.Parallel()
	b, arrived, release := startHolding(t)
	r := startCoreRig(t, engines[0], listenerTOML+`
  [[listener.route]]
  pool = "s"
`+poolTOML("s", `max_connections_per_backend = 1
health = { check = "none" }`, b.addr))
	// The loop holds the backend's one connection.
	c1, br1 := dialLoop(t, r.testProxy, 0)
	_, _ = io.WriteString(c1, "GET /held HTTP/1.1\r\nHost: a\r\n\r\n")
	<-arrived
	// HTTP/1.0 goes to the goroutine engine: it must not open a second.
	resp, _, _ := r.exchange(t, "GET /second HTTP/1.0\r\nHost: a\r\n\r\n")
	if resp.StatusCode() != 503 {
		t.Errorf("second request while the one connection is busy: %d, want 503", resp.StatusCode())
	}
	if n := b.maxOpen.Load(); n > 1 {
		t.Errorf("the backend saw %d connections at once, limit 1", n)
	}
	close(release)
	if resp := readAnswer(t, br1, false); resp.StatusCode() != 200 {
		t.Errorf("held request: %d", resp.StatusCode())
	}
}

// TestBodyAfterTheHeadIsNotCutByResponseTimeout: response_timeout ends
// with the response head in both engines; a body that pauses for less
// than idle_timeout arrives whole (the goroutine engine cut bodies of up
// to 256 KiB at response_timeout).
func TestBodyAfterTheHeadIsNotCutByResponseTimeout(t *testing.T) {
	t.Parallel()
	s := startScripted(t, func(c net.Conn, i int, req *fasthttp.Request) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
		time.Sleep(600 * time.Millisecond)
		_, err := io.WriteString(c, "world")
		return err == nil
	})
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			r := startCoreRig(t, e, listenerTOML+`idle_timeout = "5s"
  [[listener.route]]
  pool = "s"
`+poolTOML("s", `response_timeout = "300ms"
health = { check = "none" }`, s.addr))
			resp, _, _ := r.exchange(t, "GET /slowbody HTTP/1.1\r\nHost: a\r\n\r\n")
			if resp.StatusCode() != 200 || string(resp.Body()) != "helloworld" {
				t.Errorf("got %d %q, want 200 helloworld", resp.StatusCode(), resp.Body())
			}
		})
	}
}

// TestTrailersAreRelayed: the trailer fields of a chunked answer reach the
// client from both engines (the goroutine engine dropped them).
func TestTrailersAreRelayed(t *testing.T) {
	t.Parallel()
	s := startScripted(t, func(c net.Conn, i int, req *fasthttp.Request) bool {
		_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"+
			"5\r\nhello\r\n0\r\nX-Checksum: abc123\r\n\r\n")
		return err == nil
	})
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			r := startCoreRig(t, e, listenerTOML+`
  [[listener.route]]
  pool = "s"
`+poolTOML("s", `health = { check = "none" }`, s.addr))
			resp, _, _ := r.exchange(t, "GET /t HTTP/1.1\r\nHost: a\r\n\r\n")
			if string(resp.Body()) != "hello" {
				t.Errorf("body %q", resp.Body())
			}
			if got := string(resp.Header.Peek("X-Checksum")); got != "abc123" {
				t.Errorf("trailer X-Checksum %q, want abc123", got)
			}
		})
	}
}

// TestPanicClosesOnlyItsConnection: a panic while serving one request (a
// bug) closes that connection, is counted and logged with the request ID,
// and the listener goes on serving the others.
func TestPanicClosesOnlyItsConnection(t *testing.T) {
	t.Parallel()
	backend := startHandler(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") })
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			r := startCoreRig(t, e, listenerTOML+`
  [[listener.route]]
  pool = "s"
`+poolTOML("s", `health = { check = "none" }`, backend), func(o *Options) {
				o.beforeRequest = func(ctx *fasthttp.RequestCtx) {
					if string(ctx.Path()) == "/panic" {
						panic("test panic")
					}
				}
			})
			idle, idleBR := dialLoop(t, r.testProxy, 0)
			_, _ = io.WriteString(idle, "GET /before HTTP/1.1\r\nHost: a\r\n\r\n")
			if resp := readAnswer(t, idleBR, false); resp.StatusCode() != 200 {
				t.Fatalf("before: %d", resp.StatusCode())
			}
			c, br := dialLoop(t, r.testProxy, 0)
			_, _ = io.WriteString(c, "GET /panic HTTP/1.1\r\nHost: a\r\n\r\n")
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			rest, _ := io.ReadAll(br)
			if len(rest) > 0 && !strings.HasPrefix(string(rest), "HTTP/1.1 500") {
				t.Errorf("the panicking request got %q", rest)
			}
			waitFor(t, 3*time.Second, "panics_total 1", func() bool {
				return metricValue(t, r.reg, "frontdoor_panics_total", map[string]string{"listener": "web"}) == 1
			})
			_, _ = io.WriteString(idle, "GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
			if resp := readAnswer(t, idleBR, false); resp.StatusCode() != 200 {
				t.Errorf("after the panic, a kept connection got %d", resp.StatusCode())
			}
			if resp, _, _ := r.exchange(t, "GET /new HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode() != 200 {
				t.Errorf("after the panic, a new connection got %d", resp.StatusCode())
			}
		})
	}
}

// TestRetryWithNoBackendLeftEndsTheRetry: a retry that finds no backend up
// (the first one was ejected by its failure) ends with a 503 and leaves
// no retry counted in flight, which would shrink the pool's retry budget
// for the rest of the generation.
func TestRetryWithNoBackendLeftEndsTheRetry(t *testing.T) {
	t.Parallel()
	refused := refusingAddr(t)
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			r := startCoreRig(t, e, listenerTOML+`
  [[listener.route]]
  pool = "s"
`+poolTOML("s", `retries = 1
health = { check = "none" }
[pool.s.passive]
consecutive_failures = 1
max_ejection_percent = 100`, refused))
			resp, _, _ := r.exchange(t, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
			if resp.StatusCode() != 503 {
				t.Fatalf("got %d, want 503 once the one backend is ejected", resp.StatusCode())
			}
			pr := r.gen.Load().pools["s"]
			if n := pr.retrying.Load(); n != 0 {
				t.Errorf("%d retries still counted in flight", n)
			}
			if n := pr.active.Load(); n != 0 {
				t.Errorf("%d requests still counted in flight", n)
			}
		})
	}
}
