package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"
)

// startBackend serves on 127.0.0.1: /echo answers the request body,
// /chunked a chunked body, anything else "hello <path>"; every answer
// carries the X-Forwarded-For it saw in X-Seen-XFF.
func startBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetBytesV("X-Seen-XFF", ctx.Request.Header.Peek("X-Forwarded-For"))
		switch string(ctx.Path()) {
		case "/echo":
			ctx.SetBody(ctx.Request.Body())
		case "/big":
			ctx.SetBody(bigBody)
		case "/chunked":
			ctx.SetBodyStreamWriter(func(w *bufio.Writer) { _, _ = w.WriteString("chunk") })
		default:
			ctx.SetBodyString("hello ")
			ctx.Response.AppendBody(ctx.Path())
		}
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// bigBody is larger than every proxy buffer and than maxPending, so it
// streams through with backend reads paused while the client drains.
var bigBody = []byte(strings.Repeat("0123456789abcdef", 1<<16)) // 1 MiB

// startProxy runs an evproxy in front of backend until the test ends.
func startProxy(t *testing.T, backend string) string {
	t.Helper()
	p, err := newProxy("127.0.0.1:0", backend)
	if err != nil {
		t.Fatal(err)
	}
	addr := p.addr()
	done := make(chan error, 1)
	go func() { done <- p.serve() }()
	t.Cleanup(func() {
		p.stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("serve did not return after stop")
		}
	})
	return addr
}

type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func (cl *client) send(raw string) {
	cl.t.Helper()
	if _, err := cl.c.Write([]byte(raw)); err != nil {
		cl.t.Fatal(err)
	}
}

func (cl *client) read(head bool) *fasthttp.Response {
	cl.t.Helper()
	r := &fasthttp.Response{SkipBody: head}
	if err := r.Read(cl.br); err != nil {
		cl.t.Fatalf("read response: %v", err)
	}
	return r
}

func (cl *client) expect(status int, body string, head bool) *fasthttp.Response {
	cl.t.Helper()
	r := cl.read(head)
	if r.StatusCode() != status || string(r.Body()) != body {
		cl.t.Fatalf("got %d %q, want %d %q", r.StatusCode(), r.Body(), status, body)
	}
	return r
}

func (cl *client) expectEOF() {
	cl.t.Helper()
	if _, err := cl.br.ReadByte(); !errors.Is(err, io.EOF) {
		cl.t.Fatalf("read after the last response: %v, want EOF", err)
	}
}

func TestProxy(t *testing.T) {
	t.Parallel()
	proxy := startProxy(t, startBackend(t))
	tests := []struct {
		name string
		run  func(cl *client)
	}{
		{name: "keep-alive GETs", run: func(cl *client) {
			for _, path := range []string{"/a", "/b", "/c"} {
				cl.send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")
				r := cl.expect(200, "hello "+path, false)
				if r.ConnectionClose() {
					t.Errorf("%s: Connection: close on a keep-alive answer", path)
				}
				if got := string(r.Header.Peek("X-Seen-XFF")); got != "127.0.0.1" {
					t.Errorf("%s: backend saw X-Forwarded-For %q, want 127.0.0.1", path, got)
				}
			}
		}},
		{name: "X-Forwarded-For appended", run: func(cl *client) {
			cl.send("GET /x HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n")
			r := cl.expect(200, "hello /x", false)
			if got := string(r.Header.Peek("X-Seen-XFF")); got != "10.0.0.1, 127.0.0.1" {
				t.Errorf("backend saw X-Forwarded-For %q", got)
			}
		}},
		{name: "Connection: close", run: func(cl *client) {
			cl.send("GET /bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if r := cl.expect(200, "hello /bye", false); !r.ConnectionClose() {
				t.Error("no Connection: close in the answer")
			}
			cl.expectEOF()
		}},
		{name: "pipelined pair", run: func(cl *client) {
			cl.send("GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n")
			cl.expect(200, "hello /one", false)
			cl.expect(200, "hello /two", false)
		}},
		{name: "pipelined, the second closes", run: func(cl *client) {
			cl.send("GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			cl.expect(200, "hello /one", false)
			cl.expect(200, "hello /two", false)
			cl.expectEOF()
		}},
		{name: "head split across writes", run: func(cl *client) {
			cl.send("GET /split HTTP/1.1\r\nHo")
			time.Sleep(20 * time.Millisecond) // lets the proxy see the partial head alone
			cl.send("st: x\r\n\r\n")
			cl.expect(200, "hello /split", false)
		}},
		{name: "POST with Content-Length", run: func(cl *client) {
			cl.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
			cl.expect(200, "hello world", false)
			cl.send("GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
			cl.expect(200, "hello /after", false)
		}},
		{name: "HEAD", run: func(cl *client) {
			cl.send("HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n")
			if r := cl.expect(200, "", true); r.Header.ContentLength() != len("hello /h") {
				t.Errorf("HEAD Content-Length %d", r.Header.ContentLength())
			}
			cl.send("GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
			cl.expect(200, "hello /after", false)
		}},
		{name: "1 MiB body, then keep-alive", run: func(cl *client) {
			cl.send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
			time.Sleep(20 * time.Millisecond) // lets the client's socket fill, so the proxy pauses
			cl.expect(200, string(bigBody), false)
			cl.send("GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
			cl.expect(200, "hello /after", false)
		}},
		{name: "chunked response is a 502", run: func(cl *client) {
			cl.send("GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
			cl.expect(502, "", false)
			cl.expectEOF()
		}},
		{name: "chunked request is a 501", run: func(cl *client) {
			cl.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
			cl.expect(501, "", false)
		}},
		{name: "garbage is a 400", run: func(cl *client) {
			cl.send("NOT HTTP\r\n\r\n")
			cl.expect(400, "", false)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(dial(t, proxy))
		})
	}
}

func TestBackendDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()
	cl := dial(t, startProxy(t, dead))
	cl.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	cl.expect(502, "", false)
}

// TestManyConnections runs keep-alive and closing clients at once, so
// backend connections are pooled, reused and dialled concurrently.
func TestManyConnections(t *testing.T) {
	t.Parallel()
	proxy := startProxy(t, startBackend(t))
	errs := make(chan error, 32)
	for i := range 32 {
		go func() {
			errs <- func() error {
				c, err := net.Dial("tcp4", proxy)
				if err != nil {
					return err
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				var r fasthttp.Response
				for j := range 50 {
					req := "GET /m HTTP/1.1\r\nHost: x\r\n\r\n"
					if i%2 == 1 && j == 49 {
						req = strings.Replace(req, "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1)
					}
					if _, err := c.Write([]byte(req)); err != nil {
						return err
					}
					if err := r.Read(br); err != nil {
						return err
					}
					if r.StatusCode() != 200 || string(r.Body()) != "hello /m" {
						return errors.New("bad response " + string(r.Body()))
					}
				}
				return nil
			}()
		}()
	}
	for range 32 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestNoDelayInherited checks what accept relies on instead of a setsockopt
// per connection: the accepted socket has TCP_NODELAY from the listener.
func TestNoDelayInherited(t *testing.T) {
	t.Parallel()
	p, err := newProxy("127.0.0.1:0", "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer p.closeFDs()
	c, err := net.Dial("tcp4", p.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		fd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(p.lfd), 0, 0, unix.SOCK_CLOEXEC, 0, 0)
		if e == 0 {
			defer unix.Close(int(fd))
			v, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY)
			if err != nil || v == 0 {
				t.Fatalf("accepted socket TCP_NODELAY = %d, %v; want 1", v, err)
			}
			return
		}
		if e != unix.EAGAIN || time.Now().After(deadline) {
			t.Fatalf("accept4: %v", e)
		}
		time.Sleep(time.Millisecond)
	}
}
