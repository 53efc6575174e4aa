package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// A second pass of black-box tests of the event loop (loop.go), on what
// loop_test.go does not cover: reloads and drains with loops, deadlines of
// several durations at once, and the spliced-body pump against slow and
// vanishing clients.

// TestLoopSlowClientOutlastsBodyTimeout: a client that reads steadily but
// slowly takes longer than the listener's idle_timeout (the body timeout
// of the backend) to receive an answer the backend sent at once. The
// backend is not the one waited for, so the answer arrives whole: spliced
// (of known length) and through the loop's buffer (chunked).
func TestLoopSlowClientOutlastsBodyTimeout(t *testing.T) {
	t.Parallel()
	const size = 6 << 20
	var served atomic.Int64
	backend := startHandler(t, func(ctx *fasthttp.RequestCtx) {
		served.Add(1)
		if ctx.QueryArgs().Has("chunked") {
			ctx.SetBodyStream(&pattern{n: size}, -1)
			return
		}
		ctx.SetBodyStream(&pattern{n: size}, size)
	})
	p := loopProxy(t, "idle_timeout = \"300ms\"\nwrite_timeout = \"5s\"\n", "", nil, backend)
	for _, query := range []string{"length", "chunked"} {
		t.Run(query, func(t *testing.T) {
			t.Parallel()
			c, br := dialLoop(t, p, 64<<10)
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			fmt.Fprintf(c, "GET /?%s HTTP/1.1\r\nHost: x\r\n\r\n", query)
			var h fasthttp.ResponseHeader
			if err := h.Read(br); err != nil || h.StatusCode() != 200 {
				t.Fatalf("head: %d, %v", h.StatusCode(), err)
			}
			var body io.Reader = br
			if query == "chunked" {
				body = httpChunkedReader(br)
			}
			// About 5 MB/s: well over idle_timeout in all, never
			// silent for more than a few milliseconds.
			start := time.Now()
			var read int64
			buf := make([]byte, 32<<10)
			check := make([]byte, len(buf))
			for read < size {
				time.Sleep(5 * time.Millisecond)
				n, err := io.ReadFull(body, buf[:min(int64(len(buf)), size-read)])
				_, _ = io.ReadFull(&pattern{n: int64(n), pos: read}, check[:n])
				if !bytes.Equal(buf[:n], check[:n]) {
					t.Fatalf("bytes %d-%d differ from the backend's", read, read+int64(n))
				}
				read += int64(n)
				if err != nil {
					t.Fatalf("after %d of %d bytes (%v): %v", read, size, time.Since(start), err)
				}
			}
			if took := time.Since(start); took < 600*time.Millisecond {
				t.Logf("the client took only %v: idle_timeout not outlasted", took)
			}
		})
	}
}

// TestLoopSlowClientAfterBackendDone: the backend sends the start of a
// spliced body, pauses (the loop waits for it with idle_timeout armed), then
// sends all the rest at once and is done. A client that then reads slowly,
// for longer than idle_timeout, still gets the whole body: the backend's
// timeout stops counting while the loop waits for the client.
func TestLoopSlowClientAfterBackendDone(t *testing.T) {
	t.Parallel()
	const first, size = 96 << 10, 24 << 20
	b := startScripted(t, func(c net.Conn, _ int, _ *fasthttp.Request) bool {
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
		_, _ = io.Copy(c, &pattern{n: first})
		time.Sleep(100 * time.Millisecond)
		_, err := io.Copy(c, &pattern{n: size - first, pos: first})
		return err == nil
	})
	p := loopProxy(t, "idle_timeout = \"300ms\"\nwrite_timeout = \"5s\"\n", "", nil, b.addr)
	c, br := dialLoop(t, p, 64<<10)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	var h fasthttp.ResponseHeader
	if err := h.Read(br); err != nil || h.StatusCode() != 200 {
		t.Fatalf("head: %d, %v", h.StatusCode(), err)
	}
	got := make([]byte, size)
	if _, err := io.ReadFull(br, got[:first]); err != nil {
		t.Fatal(err)
	}
	// Slowly: 256 KiB every 10 ms, about a second for the rest, more
	// than the kernel's buffers hold.
	start := time.Now()
	for read := first; read < size; {
		time.Sleep(10 * time.Millisecond)
		n, err := io.ReadFull(br, got[read:min(read+256<<10, size)])
		read += n
		if err != nil {
			t.Fatalf("after %d of %d bytes, %v into the slow part: %v", read, size, time.Since(start), err)
		}
	}
	if !matchesPattern(got) {
		t.Fatal("the body differs from the backend's")
	}
	t.Logf("slow part took %v", time.Since(start))
	l := onlyListener(t, p)
	waitFor(t, 2*time.Second, "pipe back", func() bool { return l.pipes.InUse() == 0 })
}
