package proxy

import (
	"bufio"
	"bytes"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// bodyRig forwards requests with bodies over real loopback sockets: a
// fasthttp client, frontdoor, and rawBackend. Neither end allocates per
// request in steady state, so allocations per request are frontdoor's.
type bodyRig struct {
	client *fasthttp.HostClient
	req    *fasthttp.Request
	resp   *fasthttp.Response
}

func newBodyRig(tb testing.TB, listener, method, path string, upload int) *bodyRig {
	tb.Helper()
	p := streamProxy(tb, listener, "", nil, rawBackend(tb))
	addr := p.Addr("web").String()
	r := &bodyRig{
		client: &fasthttp.HostClient{Addr: addr, MaxResponseBodySize: 8 << 20},
		req:    &fasthttp.Request{},
		resp:   &fasthttp.Response{},
	}
	r.req.Header.SetMethod(method)
	r.req.SetRequestURI("http://" + addr + path)
	if upload > 0 {
		r.req.SetBody(bytes.Repeat([]byte("u"), upload))
	}
	return r
}

// rawBackend is an HTTP/1.1 server written for allocation tests: it reads
// each request head with fasthttp's header parser, discards the body
// (Content-Length or chunked) with bufio.Reader.Discard, and writes a canned
// answer chosen by path: /small (100 bytes), /64k, /1m, or /chunked (1 KiB in
// two chunks). fasthttp's own server allocates for streamed bodies, which
// would hide frontdoor's figure.
func rawBackend(tb testing.TB) string {
	tb.Helper()
	answer := func(n int) []byte {
		return append([]byte("HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(n)+"\r\n\r\n"), bytes.Repeat([]byte("x"), n)...)
	}
	answers := map[string][]byte{
		"/small": answer(100), "/64k": answer(64 << 10), "/1m": answer(1 << 20),
		"/chunked": []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n200\r\n" + strings.Repeat("c", 512) +
			"\r\n200\r\n" + strings.Repeat("c", 512) + "\r\n0\r\n\r\n"),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = ln.Close() })
	serve := func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReaderSize(c, 16<<10)
		var h fasthttp.RequestHeader
		for {
			if err := h.Read(br); err != nil {
				return
			}
			if n := h.ContentLength(); n > 0 {
				if _, err := br.Discard(n); err != nil {
					return
				}
			} else if n == -1 && !discardChunked(br) {
				return
			}
			a := answers[string(h.RequestURI())]
			if a == nil {
				a = answers["/small"]
			}
			if _, err := c.Write(a); err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}

// discardChunked reads past a chunked body without allocating.
func discardChunked(br *bufio.Reader) bool {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return false
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(line)), 16, 64)
		if err != nil {
			return false
		}
		if n == 0 {
			_, err := br.ReadSlice('\n') // no trailers: the final CRLF
			return err == nil
		}
		if _, err := br.Discard(int(n) + 2); err != nil {
			return false
		}
	}
}

func (r *bodyRig) do(tb testing.TB) {
	if err := r.client.DoTimeout(r.req, r.resp, 5*time.Second); err != nil {
		tb.Fatal(err)
	}
	if r.resp.StatusCode() != 200 {
		tb.Fatalf("status %d: %s", r.resp.StatusCode(), r.resp.Body())
	}
}

// buffered is a listener that buffers request bodies (streamRequests).
const buffered = "max_body_bytes = 1048576\n"

var bodyCases = []struct {
	name     string
	listener string // listener settings
	method   string
	path     string
	upload   int
	// allocs is the most allocations per request allowed: 0, except that
	// fasthttp's server allocates once (24 B, io.CopyN in
	// requestStream.discard) after every request whose body it streamed.
	allocs float64
}{
	{"post_1KiB_buffered", buffered, "POST", "/small", 1 << 10, 0},
	{"post_1KiB_streaming_listener", "", "POST", "/small", 1 << 10, 1},
	{"get_64KiB", "", "GET", "/64k", 0, 0},
	{"get_chunked_1KiB", "", "GET", "/chunked", 0, 0},
	{"get_1MiB", "", "GET", "/1m", 0, 0},
	{"post_1MiB", "", "POST", "/small", 1 << 20, 1},
}

// BenchmarkForwardBodies measures requests with bodies through frontdoor on
// loopback: buffered (small upload, 64 KiB answer) and streamed (chunked
// answer, 1 MiB answer, 1 MiB upload).
func BenchmarkForwardBodies(b *testing.B) {
	for _, bc := range bodyCases {
		b.Run(bc.name, func(b *testing.B) {
			r := newBodyRig(b, bc.listener, bc.method, bc.path, bc.upload)
			for range 20 {
				r.do(b)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				r.do(b)
			}
		})
	}
}

// TestForwardBodiesAllocs holds buffered and streamed bodies at zero
// allocations per request of frontdoor's own (streams are pooled); see
// bodyCases.allocs for fasthttp's one.
func TestForwardBodiesAllocs(t *testing.T) {
	if underRace {
		t.Skip("allocation counts are meaningless under -race")
	}
	for _, bc := range bodyCases {
		t.Run(bc.name, func(t *testing.T) {
			r := newBodyRig(t, bc.listener, bc.method, bc.path, bc.upload)
			for range 200 {
				r.do(t)
			}
			// Allow the rare allocation of a pool refilled after a GC.
			if n := testing.AllocsPerRun(200, func() { r.do(t) }); n > bc.allocs+0.05 {
				t.Errorf("%v allocations per request, want %v", n, bc.allocs)
			}
		})
	}
}
