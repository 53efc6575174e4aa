package proxy

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"frontdoor/internal/loopback"
)

// TestPassThroughHeadKeepsBackendHeaders: a head read over
// passThroughHead serializes with the backend's Date in place and no
// Content-Type, as the goroutine engine's server writes it; ensureDate adds
// a Date only when the backend sent none.
func TestPassThroughHeadKeepsBackendHeaders(t *testing.T) {
	parse := func(raw string) *fasthttp.ResponseHeader {
		var h fasthttp.ResponseHeader
		passThroughHead().CopyTo(&h)
		if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Fatal(err)
		}
		ensureDate(&h)
		return &h
	}
	for _, date := range []string{"Mon, 02 Jan 2006 15:04:05 GMT", "x", "Monday, 02-Jan-2006 15:04:05 GMT and then some"} {
		h := parse("HTTP/1.1 200 OK\r\nX-Before: kept\r\nDate: " + date + "\r\nContent-Length: 3\r\nX-After: kept\r\n\r\n")
		got := string(h.AppendBytes([]byte("overwritten")))
		want := "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Before: kept\r\nDate: " + date + "\r\nX-After: kept\r\n\r\n"
		if got != want {
			t.Errorf("date %q: head\n%q, want\n%q", date, got, want)
		}
	}
	h := parse("HTTP/1.1 204 No Content\r\n\r\n")
	if got := string(h.AppendBytes(nil)); strings.Count(got, "Date: ") != 1 {
		t.Errorf("no backend Date: want one of frontdoor's, got\n%q", got)
	}
}

// TestCloseDelimitedAnswerKeepsClientOpen: an answer the backend ends by
// closing reaches the client chunked, and the client's connection serves
// the next request.
func TestCloseDelimitedAnswerKeepsClientOpen(t *testing.T) {
	t.Parallel()
	backend := loopback.Serve(t, func(c net.Conn) {
		var h fasthttp.RequestHeader
		if h.Read(bufio.NewReader(c)) != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n"+strings.Repeat("x", 100000))
	})
	p := streamProxy(t, "", "", nil, backend)
	c, err := net.Dial("tcp", p.Addr("web").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for i := range 2 {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		var resp fasthttp.Response
		if err := resp.Read(br); err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if len(resp.Body()) != 100000 || resp.Header.ContentLength() != -1 || resp.ConnectionClose() {
			t.Fatalf("answer %d: %d bytes, Content-Length %d, close %v; want 100000 chunked, kept open",
				i, len(resp.Body()), resp.Header.ContentLength(), resp.ConnectionClose())
		}
	}
}

// TestReloadClosesRetiredBackendConnections: a backend a reload removed
// loses the loop's idle keep-alive connection once the loop uses the new
// backend, not after the pool's 90 s idle_timeout.
func TestReloadClosesRetiredBackendConnections(t *testing.T) {
	t.Parallel()
	closed := make(chan struct{}, 1)
	old := loopback.Serve(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			var h fasthttp.RequestHeader
			if h.Read(br) != nil {
				closed <- struct{}{}
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nold")
		}
	})
	next := startBackend(t, "next")
	p := upProxy(t, listenerTOML+reloadRoute+reloadPool(old), nil)
	get := func() string {
		t.Helper()
		var resp fasthttp.Response
		var req fasthttp.Request
		req.SetRequestURI(p.url(t, "web", "/"))
		if err := fasthttp.DoTimeout(&req, &resp, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		return string(resp.Body())
	}
	if got := get(); got != "old" {
		t.Fatalf("before the reload: %q", got)
	}
	if err := reloadApply(t, p, listenerTOML+reloadRoute+reloadPool(next.addr)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && get() == "old" {
	}
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("the removed backend's pooled connection is still open")
	}
}
