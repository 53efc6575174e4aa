package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
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
			body := getQuery(t, c, br, query)
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
				t.Errorf("the client took only %v: the test did not outlast idle_timeout and proves nothing", took)
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

// loopsDone reports whether every event loop of l has returned.
func loopsDone(l *httpListener) bool {
	for _, lp := range l.ln.loops {
		select {
		case <-lp.done:
		default:
			return false
		}
	}
	return true
}

// TestLoopReloadHandsOverLoops: a reload that changes the listener's
// read_timeout gives the socket to a new server and new loops while a
// request is in flight, a keep-alive connection is idle, and clients keep
// connecting: no connection is refused and no request fails, the answer in
// flight arrives whole (with Connection: close), the idle connection is
// closed cleanly, and the old loops return once their connections are gone.
func TestLoopReloadHandsOverLoops(t *testing.T) {
	t.Parallel()
	b, arrived, release := startHolding(t)
	toml := func(read string) string {
		return listenerTOML + "read_timeout = \"" + read + "\"\n" + `
  [[listener.route]]
  pool = "s"
` + poolTOML("s", "health = { check = \"none\" }", b.addr)
	}
	p := upProxy(t, toml("10s"), nil)
	old := onlyListener(t, p)
	if len(old.ln.loops) == 0 {
		t.Fatal("the listener runs no event loop")
	}
	idle, idleBR, busy, busyBR := idleAndHeld(t, p, arrived)

	// New connections all along the reload, each with one request.
	addr := p.Addr("web").String()
	stop := make(chan struct{})
	var served, failed atomic.Int64
	var firstErr atomic.Value
	load := make(chan struct{})
	go func() {
		defer close(load)
		for i := 0; i < 2000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			err := func() error {
				c, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
				resp := &fasthttp.Response{}
				if err := resp.Read(bufio.NewReader(c)); err != nil {
					return err
				}
				if resp.StatusCode() != 200 || string(resp.Body()) != "done" {
					return fmt.Errorf("status %d body %q", resp.StatusCode(), resp.Body())
				}
				return nil
			}()
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
				continue
			}
			served.Add(1)
		}
	}()
	waitFor(t, 5*time.Second, "load before the reload", func() bool { return served.Load() >= 20 })
	if err := reloadApply(t, p, toml("9s")); err != nil {
		t.Fatal(err)
	}
	if onlyListener(t, p) == old {
		t.Fatal("the reload kept the listener's server")
	}
	before := served.Load()
	waitFor(t, 5*time.Second, "load after the reload", func() bool { return served.Load() >= before+20 })

	expectEOF(t, idle, idleBR, 2*time.Second)
	if loopsDone(old) {
		t.Fatal("the old loops returned with a request in flight")
	}
	close(release)
	resp := readAnswer(t, busyBR, false)
	if resp.StatusCode() != 200 || string(resp.Body()) != "done" || !resp.ConnectionClose() {
		t.Fatalf("request in flight: %d %q (close %v), want 200 \"done\" and Connection: close",
			resp.StatusCode(), resp.Body(), resp.ConnectionClose())
	}
	expectEOF(t, busy, busyBR, 2*time.Second)
	waitFor(t, 2*time.Second, "old loops returned", func() bool { return loopsDone(old) })
	close(stop)
	<-load
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests across the reload failed, first: %v", n, n+served.Load(), firstErr.Load())
	}
}

// TestLoopShutdownExpires: Shutdown whose context ends while a request is
// in flight in a loop returns the context's error soon after, closes the
// client's connection and the backend's, and every loop returns.
func TestLoopShutdownExpires(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	b := startScripted(t, func(c net.Conn, _ int, _ *fasthttp.Request) bool {
		arrived <- struct{}{}
		// No answer: wait for the proxy to close (EOF) or 10 s.
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Read(make([]byte, 1))
		return false
	})
	p := loopProxy(t, "", "", nil, b.addr)
	l := onlyListener(t, p)
	c, br := dialLoop(t, p, 0)
	fmt.Fprintf(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-arrived
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.Shutdown(ctx)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want the context's error", err)
	}
	if took > 2*time.Second {
		t.Errorf("Shutdown took %v with a 300ms context", took)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if rest, err := io.ReadAll(br); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client connection not closed: %v (read %q)", err, rest)
	}
	if !loopsDone(l) {
		t.Error("a loop is still running after Shutdown returned")
	}
	waitFor(t, 2*time.Second, "backend connection closed", func() bool { return b.open.Load() == 0 })
	be := p.gen.Load().pools["s"].ups[0].be
	if n := be.InFlight(); n != 0 {
		t.Errorf("member in flight %d after Shutdown, want 0", n)
	}
}

// TestLoopDeadlinesOfSeveralPools: one loop (one client connection) with
// deadlines of several durations armed at once, from two pools with their
// own idle and response timeouts and the listener's: each fires at its
// own time, including when nothing else wakes the loop; a response_timeout
// on a pooled connection answers 504 once, without sending the request
// again; and a reload that changes a pool's idle_timeout applies to its
// next connection.
func TestLoopDeadlinesOfSeveralPools(t *testing.T) {
	t.Parallel()
	answer := func(c net.Conn, _ int, req *fasthttp.Request) bool {
		if string(req.URI().Path()) == "/slow" {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Read(make([]byte, 1)) // until the proxy gives up
			return false
		}
		_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return err == nil
	}
	a, b := startScripted(t, answer), startScripted(t, answer)
	toml := func(bIdle string) string {
		return listenerTOML + `idle_timeout = "5s"
  [[listener.route]]
  host = "a"
  pool = "a"
  [[listener.route]]
  host = "b"
  pool = "b"
` + poolTOML("a", "health = { check = \"none\" }\nretries = 0\nidle_timeout = \"200ms\"\nresponse_timeout = \"600ms\"", a.addr) +
			poolTOML("b", "health = { check = \"none\" }\nretries = 0\nidle_timeout = \""+bIdle+"\"\nresponse_timeout = \"5s\"", b.addr)
	}
	p := upProxy(t, toml("1500ms"), nil)
	c, br := dialLoop(t, p, 0)
	ask := func(host, path string) (int, time.Duration) {
		t.Helper()
		start := time.Now()
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host)
		return readAnswer(t, br, false).StatusCode(), time.Since(start)
	}
	if st, _ := ask("b", "/"); st != 200 {
		t.Fatalf("b: %d", st)
	}
	bIdleSince := time.Now()
	if st, _ := ask("a", "/"); st != 200 {
		t.Fatalf("a: %d", st)
	}
	aIdleSince := time.Now()
	// a's idle connection (200ms) closes with nothing else to wake the
	// loop, and b's (1.5s) stays.
	waitFor(t, 3*time.Second, "a's idle connection closed", func() bool { return a.open.Load() == 0 })
	if idled := time.Since(aIdleSince); idled < 150*time.Millisecond {
		t.Errorf("a's idle connection closed after %v, want about 200ms", idled)
	}
	if b.open.Load() != 1 {
		t.Error("b's idle connection closed with a's")
	}
	// A response_timeout (600ms) on a pooled connection: one 504, after
	// one timeout, and the backend got the request once.
	if st, _ := ask("a", "/"); st != 200 {
		t.Fatalf("a: %d", st)
	}
	before := a.requests.Load()
	st, took := ask("a", "/slow")
	if st != 504 || took < 500*time.Millisecond || took > 1100*time.Millisecond {
		t.Errorf("a /slow: %d after %v, want 504 after about 600ms (response_timeout)", st, took)
	}
	if n := a.requests.Load() - before; n != 1 {
		t.Errorf("a got /slow %d times, want once (retries = 0)", n)
	}
	// b's connection idles for 1.5s: it closes then, not earlier.
	waitFor(t, 5*time.Second, "b's connection closed", func() bool { return b.open.Load() == 0 })
	if idled := time.Since(bIdleSince); idled < 1200*time.Millisecond {
		t.Errorf("b's idle connection closed after %v, want about 1.5s", idled)
	}

	if err := reloadApply(t, p, toml("150ms")); err != nil {
		t.Fatal(err)
	}
	if st, _ := ask("b", "/"); st != 200 {
		t.Fatalf("b after the reload: %d", st)
	}
	since := time.Now()
	waitFor(t, 3*time.Second, "b's connection closed after the new idle_timeout", func() bool { return b.open.Load() == 0 })
	if idled := time.Since(since); idled > time.Second {
		t.Errorf("b's idle connection closed after %v, want about 150ms", idled)
	}
	// The client's connection is still served: its own idle deadline (5s)
	// did not fire with the others.
	if st, _ := ask("a", "/"); st != 200 {
		t.Fatalf("a at the end: %d", st)
	}
}

// TestLoopSplicedClientResetsWithPipeFull: a client that stops reading a
// spliced body, so that the pipe holds bytes the client's socket does not
// take, then resets its connection: the pipe goes back (InUse 0), the
// member and the backend connection are freed, and the loop serves the
// next client.
func TestLoopSplicedClientResetsWithPipeFull(t *testing.T) {
	t.Parallel()
	const size = 64 << 20
	backend := startScripted(t, func(c net.Conn, _ int, req *fasthttp.Request) bool {
		if string(req.URI().Path()) == "/small" {
			_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return err == nil
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
		_, _ = io.Copy(c, &pattern{n: size})
		return false
	})
	p := loopProxy(t, "", "", nil, backend.addr)
	l := onlyListener(t, p)
	be := p.gen.Load().pools["s"].ups[0].be
	c, br := dialLoop(t, p, 16<<10)
	fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	var h fasthttp.ResponseHeader
	if err := h.Read(br); err != nil || h.StatusCode() != 200 {
		t.Fatalf("head: %d, %v", h.StatusCode(), err)
	}
	waitFor(t, 5*time.Second, "a pipe holding bytes", func() bool { return l.pipes.InUse() > 0 })
	time.Sleep(50 * time.Millisecond) // the loop pauses on the full socket
	if l.pipes.InUse() == 0 || be.InFlight() != 1 {
		t.Fatalf("pipes in use %d, in flight %d during the paused body; want 1 and 1", l.pipes.InUse(), be.InFlight())
	}
	reset(c)
	waitFor(t, 5*time.Second, "pipe, member and backend connection freed", func() bool {
		return l.pipes.InUse() == 0 && be.InFlight() == 0 && backend.open.Load() == 0
	})
	c2, br2 := dialLoop(t, p, 0)
	fmt.Fprintf(c2, "GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp := readAnswer(t, br2, false); resp.StatusCode() != 200 || string(resp.Body()) != "ok" {
		t.Fatalf("next client: %d %q", resp.StatusCode(), resp.Body())
	}
}

// TestLoopSplicedHalfClosedClient: a client that shuts down its sending
// side after the request still gets the whole spliced body, read slowly so
// the loop pauses on it, then the connection closes.
func TestLoopSplicedHalfClosedClient(t *testing.T) {
	t.Parallel()
	const size = 8 << 20
	backend := startHandler(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyStream(&pattern{n: size}, size)
	})
	p := loopProxy(t, "", "", nil, backend)
	l := onlyListener(t, p)
	c, br := dialLoop(t, p, 32<<10)
	fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	var h fasthttp.ResponseHeader
	if err := h.Read(br); err != nil || h.StatusCode() != 200 {
		t.Fatalf("head: %d, %v", h.StatusCode(), err)
	}
	got := make([]byte, size)
	for read := 0; read < size; {
		if read%(1<<20) == 0 {
			time.Sleep(20 * time.Millisecond)
		}
		n, err := io.ReadFull(br, got[read:min(read+64<<10, size)])
		read += n
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", read, size, err)
		}
	}
	if !matchesPattern(got) {
		t.Fatal("the body differs from the backend's")
	}
	expectEOF(t, c, br, 2*time.Second)
	waitFor(t, 2*time.Second, "pipe back", func() bool { return l.pipes.InUse() == 0 })
}
