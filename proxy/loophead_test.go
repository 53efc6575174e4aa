package proxy

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestAppendResponseHeadKeepsBackendHeaders: the loop's head passes the
// backend's Date through and adds no Content-Type, as the goroutine engine.
func TestAppendResponseHeadKeepsBackendHeaders(t *testing.T) {
	parse := func(raw string) *fasthttp.ResponseHeader {
		var h fasthttp.ResponseHeader
		if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Fatal(err)
		}
		return &h
	}
	for _, date := range []string{"Mon, 02 Jan 2006 15:04:05 GMT", "x", "Monday, 02-Jan-2006 15:04:05 GMT and then some"} {
		h := parse("HTTP/1.1 200 OK\r\nDate: " + date + "\r\nContent-Length: 3\r\nX-After: kept\r\n\r\n")
		got := string(appendResponseHead([]byte("overwritten"), h))
		if !strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") || !strings.Contains(got, "\r\nDate: "+date+"\r\n") ||
			strings.Count(got, "Date:") != 1 || !strings.Contains(got, "\r\nX-After: kept\r\n") ||
			strings.Contains(got, "Content-Type") || !strings.HasSuffix(got, "\r\n\r\n") {
			t.Errorf("date %q: head\n%q", date, got)
		}
	}
	h := parse("HTTP/1.1 204 No Content\r\n\r\n")
	if got := string(appendResponseHead(nil, h)); strings.Count(got, "Date: ") != 1 {
		t.Errorf("no backend Date: want fasthttp's one, got\n%q", got)
	}
}
