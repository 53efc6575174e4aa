package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"frontdoor/internal/loopback"
	"frontdoor/metrics"
)

// accessLine is an access log line as README.md documents it.
type accessLine struct {
	RequestID string  `json:"request_id"`
	Mode      string  `json:"mode"`
	Listener  string  `json:"listener"`
	Route     string  `json:"route"`
	Pool      string  `json:"pool"`
	Method    string  `json:"method"`
	Path      string  `json:"path"`
	UserAgent string  `json:"user_agent"`
	Status    int     `json:"status"`
	Backend   string  `json:"backend"`
	Retries   int     `json:"retries"`
	Client    string  `json:"client"`
	Peer      string  `json:"peer"`
	BytesIn   int     `json:"bytes_in"`
	BytesOut  int     `json:"bytes_out"`
	Connect   float64 `json:"connect"`
	TTFB      float64 `json:"ttfb"`
	Upstream  float64 `json:"upstream"`
	Duration  float64 `json:"duration"`
	Reason    string  `json:"reason"`
	Tried     []struct {
		Backend string  `json:"backend"`
		Outcome string  `json:"outcome"`
		Status  int     `json:"status"`
		Connect float64 `json:"connect"`
		Time    float64 `json:"time"`
	} `json:"tried"`
	Lost int `json:"lost"`
}

func parseLines(t *testing.T, data string) []accessLine {
	t.Helper()
	var out []accessLine
	for _, l := range strings.Split(strings.TrimSpace(data), "\n") {
		if l == "" {
			continue
		}
		var a accessLine
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("access line is not JSON: %v\n%s", err, l)
		}
		out = append(out, a)
	}
	return out
}

// TestAccessLineRetryThenTimeout is issue 23's acceptance: a request
// retried after a connect failure that then timed out shows, in its one
// line, both backends, both outcomes and the timing split, and its ID
// reached the backend. Through both engines: the event loop (HTTP/1.1) and
// the goroutine engine (HTTP/1.0 is handed to it).
func TestAccessLineRetryThenTimeout(t *testing.T) {
	t.Parallel()
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			dead := refusingAddr(t)
			slow := startBackend(t, "slow")
			slow.delay.Store(int64(400 * time.Millisecond))
			access, read := testAccessLog(t)
			p := startProxy(t, listenerTOML+`
  [[listener.route]]
  path_prefix = "/api/"
  pool = "demo"
`+poolTOML("demo", "retries = 1\nresponse_timeout = \"150ms\"\nhealth = { check = \"none\" }", dead, slow.addr), access)
			addr := p.Addr("web").String()
			// Round robin: of two requests, one starts on the dead backend.
			for i := range 2 {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(c, "GET /api/x %s\r\nHost: h\r\nUser-Agent: probe/1\r\nX-Request-ID: acc-%d\r\nConnection: close\r\n\r\n", proto, i)
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				resp, _ := io.ReadAll(c)
				_ = c.Close()
				if !strings.Contains(string(resp), " 504 ") {
					t.Fatalf("answer %q, want a 504", resp)
				}
			}
			var got *accessLine
			lines := parseLines(t, read())
			for i := range lines {
				if lines[i].Retries == 1 {
					got = &lines[i]
				}
			}
			if got == nil {
				t.Fatalf("no line with a retry among:\n%+v", lines)
			}
			if len(got.Tried) != 2 || got.Tried[0].Backend != dead || got.Tried[0].Outcome != "connect_error" ||
				got.Tried[1].Backend != slow.addr || got.Tried[1].Outcome != "response_timeout" {
				t.Errorf("tried = %+v; want %s connect_error, then %s response_timeout", got.Tried, dead, slow.addr)
			}
			if got.Backend != slow.addr || got.Status != 504 || got.Reason != "timeout" || got.Pool != "demo" || got.Route != "/api/" ||
				got.UserAgent != "probe/1" || got.Client != "127.0.0.1" || !strings.HasPrefix(got.Peer, "127.0.0.1:") {
				t.Errorf("line %+v", *got)
			}
			// The timing split: the timeout's 150ms sits in the second
			// attempt and in upstream, and the parts add up.
			if got.Tried[1].Time < 0.14 || got.Upstream < got.Tried[1].Time || got.Duration < got.Upstream ||
				got.Tried[0].Time <= 0 || got.Tried[0].Time > 0.1 || got.Connect < 0 || got.Connect > got.Tried[1].Time || got.TTFB != 0 {
				t.Errorf("timing: tried %+v, connect %v, ttfb %v, upstream %v, duration %v", got.Tried, got.Connect, got.TTFB, got.Upstream, got.Duration)
			}
			// The backend records the head once its delay is over.
			waitFor(t, 5*time.Second, "the backend's record of X-Request-ID "+got.RequestID, func() bool {
				return strings.Contains(strings.ToLower(slow.header()), "x-request-id: "+got.RequestID)
			})
		})
	}
}

// TestAccessLineAnswered checks the timing points of an answered request
// on both engines: connect (a new connection), ttfb, upstream, duration.
func TestAccessLineAnswered(t *testing.T) {
	t.Parallel()
	a := startBackend(t, "a")
	a.delay.Store(int64(20 * time.Millisecond))
	access, read := testAccessLog(t)
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "demo"
`+poolTOML("demo", `health = { check = "none" }`, a.addr), access)
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
		c, err := net.Dial("tcp", p.Addr("web").String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /x %s\r\nHost: h\r\nConnection: close\r\n\r\n", proto)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.ReadAll(c)
		_ = c.Close()
	}
	lines := parseLines(t, read())
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	for _, l := range lines {
		if len(l.Tried) != 1 || l.Tried[0].Outcome != "answered" || l.Tried[0].Status != 200 || l.Retries != 0 {
			t.Errorf("tried %+v, retries %d", l.Tried, l.Retries)
		}
		if l.TTFB < 0.019 || l.Upstream < l.TTFB-0.001 || l.Duration < l.TTFB || l.Connect > l.TTFB {
			t.Errorf("timing: connect %v ttfb %v upstream %v duration %v", l.Connect, l.TTFB, l.Upstream, l.Duration)
		}
	}
}

// TestLogsFollow drives GET /logs?follow=1 of a real admin server: filters
// by request ID, route, status class and backend; NDJSON and SSE; the admin
// token when one is set.
func TestLogsFollow(t *testing.T) {
	t.Parallel()
	a := startBackend(t, "a")
	access, _ := testAccessLog(t)
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "demo"
`+poolTOML("demo", `health = { check = "none" }`, a.addr), access)
	token := []byte("0123456789abcdef0123")
	admin, err := metrics.NewAdmin(metrics.AdminOptions{Bind: "127.0.0.1:0", Gatherer: p.reg, Logs: access,
		Token: func() []byte { return token }})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = admin.Serve() }()
	t.Cleanup(func() { _ = admin.Shutdown(context.Background()) })
	base := "http://" + admin.Addr().String() + "/logs?follow=1"

	follow := func(query string, sse bool) (*bufio.Reader, func()) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+query, nil)
		req.Header.Set("Authorization", "Bearer "+string(token))
		if sse {
			req.Header.Set("Accept", "text/event-stream")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %s", query, resp.Status)
		}
		return bufio.NewReader(resp.Body), func() { _ = resp.Body.Close() }
	}
	// Without the token: 401.
	if resp, err := http.Get(base); err != nil || resp.StatusCode != 401 {
		t.Fatalf("no token: %v %v, want 401", resp, err)
	}
	byID, close1 := follow("&request_id=want-me", false)
	defer close1()
	errs, close2 := follow("&status=5xx&route=/", true)
	defer close2()
	byBackend, close3 := follow("&backend="+a.addr+"&min_duration=0s", false)
	defer close3()
	_, _ = errs.ReadString('\n') // ": following"
	_, _ = errs.ReadString('\n')

	client := &fasthttp.Client{}
	for _, id := range []string{"other-1", "want-me", "other-2"} {
		if _, err := get(t, client, p.url(t, "web", "/x"), "X-Request-ID", id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := get(t, client, p.url(t, "web", "/status/500"), "X-Request-ID", "five-hundred"); err != nil {
		t.Fatal(err)
	}
	line, err := byID.ReadString('\n')
	if err != nil || !strings.Contains(line, `"request_id":"want-me"`) {
		t.Fatalf("request_id follower: %q, %v", line, err)
	}
	for range 4 {
		line, err := byBackend.ReadString('\n')
		if err != nil || !strings.Contains(line, `"backend":"`+a.addr+`"`) {
			t.Fatalf("backend follower: %q, %v", line, err)
		}
	}
	ev, err := errs.ReadString('\n')
	if err != nil || !strings.HasPrefix(ev, "data: {") || !strings.Contains(ev, `"request_id":"five-hundred"`) {
		t.Fatalf("SSE 5xx follower: %q, %v", ev, err)
	}
	if bad, err := http.Get(base + "&status=9xx"); err == nil && bad.StatusCode != 401 {
		t.Errorf("bad filter without token: %s, want 401 first", bad.Status)
	}
}

// TestFollowerLosesLines: a follower that does not read loses lines (and
// is told how many) instead of holding the log up or growing without
// bound.
func TestFollowerLosesLines(t *testing.T) {
	t.Parallel()
	access, read := testAccessLog(t)
	st := access.Follow(metrics.LogFilter{})
	defer st.Close()
	rec := accessRecord{start: time.Now(), requestID: []byte("r"), listener: "web", path: []byte(strings.Repeat("p", 900)), status: 200}
	const n = 2000 // about 2 MB of lines against a 256 KiB follower buffer
	for i := 0; i < n; {
		select {
		case <-access.free:
		default:
		}
		if len(access.lines) < accessLogQueue/2 {
			access.log(&rec)
			i++
		}
	}
	all := parseLines(t, read()) // stops the writer: every line was handed on
	if len(all) != n {
		t.Fatalf("the file got %d lines, want %d", len(all), n)
	}
	var got, lost int64
	for {
		lines, l, err := st.Next(context.Background())
		if err != nil {
			break
		}
		got += int64(strings.Count(string(lines), "\n"))
		lost += l
	}
	if lost == 0 || got+lost != n || got*1000 > followerBuffer*1000/900+1000 {
		t.Errorf("follower got %d lines and lost %d of %d", got, lost, n)
	}
}

// TestTCPSessionLine: a tcp session is one line when it closes: client,
// backend, bytes each way, duration and how it ended.
func TestTCPSessionLine(t *testing.T) {
	t.Parallel()
	echo := loopback.Echo(t, "e")
	dead := refusingAddr(t)
	access, read := testAccessLog(t)
	p := startProxy(t, `
[admin]
bind = "off"
[[listener]]
name = "l4"
bind = "127.0.0.1:0"
mode = "tcp"
pool = "echo"
`+poolTOML("echo", "retries = 1\nhealth = { check = \"none\" }", dead, echo), access)
	st := access.Follow(metrics.LogFilter{Pool: "echo"})
	defer st.Close()
	for range 2 {
		c, err := net.Dial("tcp", p.Addr("l4").String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c, "hello\n")
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		_, _ = io.ReadAll(c)
		_ = c.Close()
	}
	var data string
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for strings.Count(data, "\n") < 2 {
		b, _, err := st.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for two session lines: %v (got %q)", err, data)
		}
		data += string(b)
	}
	lines := parseLines(t, data)
	if file := parseLines(t, read()); len(file) != 2 {
		t.Errorf("the file has %d lines, want 2", len(file))
	}
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2: %+v", len(lines), lines)
	}
	retried := 0
	for _, l := range lines {
		if l.Mode != "tcp" || l.Listener != "l4" || l.Pool != "echo" || l.Backend != echo || l.BytesIn != 6 || l.BytesOut != 8 ||
			l.Reason != "client_closed" || l.Client != "127.0.0.1" || l.Duration <= 0 {
			t.Errorf("session line %+v", l)
		}
		if len(l.Tried) == 2 {
			retried++
			if l.Tried[0].Outcome != "connect_error" || l.Tried[1].Outcome != "connected" {
				t.Errorf("tried %+v", l.Tried)
			}
		}
	}
	if retried == 0 {
		t.Error("no session tried the dead backend first")
	}
}
