package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// FuzzEnginesAgree feeds the same request bytes to the event loop's head
// path (what request in loop_client.go does before it serves or hands
// off: find the head, parse it with fasthttp, ask the core's checkHead)
// and to fasthttp's server set up as the goroutine engine's
// (headerReceived, expect, an error handler), and checks that whenever the
// loop decides by itself, the goroutine engine decides the same: both
// refuse with the same status, or both serve the same method, target and
// Host. What the loop hands off is the goroutine engine's alone.
func FuzzEnginesAgree(f *testing.F) {
	for _, tc := range confCases() {
		f.Add([]byte(tc.req))
	}
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n"))
	const maxBody = 1 << 20
	l := &httpListener{server: &fasthttp.Server{MaxRequestBodySize: maxBody}}
	f.Fuzz(func(t *testing.T, data []byte) {
		loop, decided := loopHeadDecision(data, maxBody)
		if !decided {
			return
		}
		goro := goroutineDecision(t, l, data)
		if loop != goro {
			t.Fatalf("request %q:\n  event loop: %s\n  goroutine engine: %s", data, loop, goro)
		}
	})
}

// loopHeadDecision is the loop's decision on data: "refuse N" or "serve
// METHOD URI HOST", or decided false when the loop would wait for more or
// hand the connection off.
func loopHeadDecision(data []byte, maxBody int) (string, bool) {
	end := bytes.Index(data, crlfCRLF)
	if end < 0 || bytes.HasPrefix(data, []byte("PRI ")) {
		return "", false
	}
	headLen := end + 4
	var h fasthttp.RequestHeader
	rd := bytes.NewReader(data[:headLen])
	br := bufio.NewReader(rd)
	if err := h.Read(br); err != nil || rd.Len()+br.Buffered() > 0 {
		return "", false
	}
	if v := checkHead(&h, maxBody); v.status != 0 {
		return fmt.Sprintf("refuse %d", v.status), true
	}
	// What canServe hands off, and a body still to come, the loop does
	// not decide here.
	cl := h.ContentLength()
	if !h.IsHTTP11() || cl == -1 || headLen+max(cl, 0) > len(data) || len(h.PeekBytes(hdrExpect)) > 0 ||
		len(h.PeekBytes(hdrUpgrade)) > 0 || h.ConnectionUpgrade() {
		return "", false
	}
	return fmt.Sprintf("serve %s %s %s", h.Method(), h.RequestURI(), h.Host()), true
}

// goroutineDecision serves data on a pipe with a fasthttp server hooked as
// the goroutine engine's and returns what it made of the first request.
func goroutineDecision(t *testing.T, l *httpListener, data []byte) string {
	decision := "nothing"
	srv := &fasthttp.Server{
		MaxRequestBodySize: l.server.MaxRequestBodySize,
		HeaderReceived:     l.headerReceived,
		ExpectHandler: func(ctx *fasthttp.RequestCtx) int {
			if v, ok := refusedHead(&ctx.Request.Header); ok {
				decision = fmt.Sprintf("refuse %d", v.status)
				return v.status
			}
			return fasthttp.StatusContinue
		},
		ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) {
			status := fasthttp.StatusBadRequest
			var small *fasthttp.ErrSmallBuffer
			switch {
			case errors.As(err, &small):
				status = fasthttp.StatusRequestHeaderFieldsTooLarge
			case errors.Is(err, fasthttp.ErrBodyTooLarge):
				status = fasthttp.StatusRequestEntityTooLarge
			}
			if h := &ctx.Request.Header; status == fasthttp.StatusBadRequest && len(h.RawHeaders()) > 0 {
				if v, ok := refusedHead(h); ok {
					status = v.status
				} else if v := checkHead(h, l.server.MaxRequestBodySize); v.status != 0 {
					status = v.status
				}
			}
			if decision == "nothing" {
				decision = fmt.Sprintf("refuse %d", status)
			}
		},
		Handler: func(ctx *fasthttp.RequestCtx) {
			if decision == "nothing" {
				h := &ctx.Request.Header
				decision = fmt.Sprintf("serve %s %s %s", h.Method(), h.RequestURI(), h.Host())
			}
			ctx.SetConnectionClose()
		},
		ReadTimeout:       time.Second,
		StreamRequestBody: true,
	}
	pc := fasthttputil.NewPipeConns()
	client, server := pc.Conn1(), pc.Conn2()
	_, _ = client.Write(data)
	_ = client.Close() // the server reads data, then the end
	_ = server.SetDeadline(time.Now().Add(2 * time.Second))
	_ = srv.ServeConn(server)
	_ = server.Close()
	return decision
}

// FuzzH2Conn feeds arbitrary bytes after the HTTP/2 preface to the HTTP/2
// engine (frames, header blocks, windows: everything its readers parse)
// and checks that it neither panics nor hangs: once the client closes,
// the connection's reader ends (a panic in the engine fails the run).
func FuzzH2Conn(f *testing.F) {
	p := startH2Rig(f, 1, nil)
	var l *httpListener
	for _, hl := range p.http {
		l = hl
	}
	settings := []byte{0, 0, 0, 4, 0, 0, 0, 0, 0}
	f.Add(settings)
	blocks, _ := h2Blocks([]string{":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/a.B/C",
		"content-type", "application/grpc"})
	headers := append([]byte{0, 0, byte(len(blocks[0])), 1, 5, 0, 0, 0, 1}, blocks[0]...)
	f.Add(append(slices.Clone(settings), headers...))
	f.Add(append(slices.Clone(settings), 0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8))       // PING
	f.Add(append(slices.Clone(settings), 0, 0, 4, 8, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff))       // WINDOW_UPDATE
	f.Add(append(slices.Clone(settings), 0, 0, 3, 9, 4, 0, 0, 0, 1, 0x82, 0x84, 0x86))             // stray CONTINUATION
	f.Add(append(slices.Clone(settings), 0, 0, 5, 1, 0x2c, 0, 0, 0, 1, 4, 0x82, 0x84, 0x86, 0x41)) // padded
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			l.h2.serve(server, append(slices.Clone(h2Preface), in...), netip.AddrPort{}, nil)
		}()
		_ = client.SetDeadline(time.Now().Add(50 * time.Millisecond))
		_, _ = io.Copy(io.Discard, client)
		_ = client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the connection's reader did not end after the client closed")
		}
	})
}
