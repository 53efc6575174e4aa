package health

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// readResponse feeds pieces to a respReader as a connection would deliver
// them, then the connection's end if eof, and returns the outcome.
func readResponse(headReq bool, pieces []string, eof bool) (r *respReader, done bool, err error) {
	r = &respReader{buf: make([]byte, httpBufSize), headReq: headReq}
	r.reset()
	for _, piece := range pieces {
		for len(piece) > 0 {
			space := r.space()
			if len(space) == 0 {
				return r, false, r.tooLong()
			}
			n := copy(space, piece)
			piece = piece[n:]
			if done, err = r.feed(n); err != nil || done {
				return r, done, err
			}
		}
	}
	if eof {
		if err = r.eof(); err == nil {
			done = true
		}
	}
	return r, done, err
}

// bytewise splits s into one-byte pieces.
func bytewise(s string) []string { return strings.Split(s, "") }

func TestRespReader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		head      bool // HEAD request
		pieces    []string
		eof       bool // the connection closes after the pieces
		status    int
		keepAlive bool
	}{
		{name: "content-length body", pieces: []string{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"}, status: 200, keepAlive: true},
		{name: "HEAD ignores content-length", head: true, pieces: []string{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"}, status: 200, keepAlive: true},
		{name: "204 has no body", pieces: []string{"HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n"}, status: 204, keepAlive: true},
		{name: "304 has no body", pieces: []string{"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"}, status: 304, keepAlive: true},
		{name: "no reason phrase", pieces: []string{"HTTP/1.1 503\r\nContent-Length: 0\r\n\r\n"}, status: 503, keepAlive: true},
		{name: "LF line ends", pieces: []string{"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"}, status: 200, keepAlive: true},
		{name: "empty lines before the status line", pieces: []string{"\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"}, status: 200, keepAlive: true},
		{name: "header names any case", pieces: []string{"HTTP/1.1 200 OK\r\ncontent-LENGTH:2\r\n\r\nok"}, status: 200, keepAlive: true},
		{name: "chunked with extension and trailer", pieces: []string{
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nok\n\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n"},
			status: 200, keepAlive: true},
		{name: "chunked after another coding", pieces: []string{
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nxx\r\n0\r\n\r\n"}, status: 200, keepAlive: true},
		{name: "chunked byte by byte", pieces: bytewise(
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nok\n\r\n0\r\n\r\n"), status: 200, keepAlive: true},
		{name: "content-length byte by byte", pieces: bytewise("HTTP/1.1 418 I'm a teapot\r\nContent-Length: 5\r\n\r\nshort"), status: 418, keepAlive: true},
		{name: "body until close", pieces: []string{"HTTP/1.1 200 OK\r\n\r\nhello ", "world"}, eof: true, status: 200},
		{name: "other coding runs to the close", pieces: []string{"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx"}, eof: true, status: 200},
		{name: "HTTP/1.0 closes", pieces: []string{"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"}, status: 200},
		{name: "HTTP/1.0 keep-alive", pieces: []string{"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"}, status: 200, keepAlive: true},
		{name: "connection close", pieces: []string{"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"}, status: 200},
		{name: "close in a token list", pieces: []string{"HTTP/1.1 200 OK\r\nConnection: x-foo, Close\r\nContent-Length: 0\r\n\r\n"}, status: 200},
		{name: "interim 100 then final", pieces: []string{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n"}, status: 503, keepAlive: true},
		{name: "interim 100 split from final", pieces: []string{"HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"}, status: 200, keepAlive: true},
		{name: "101 ends HTTP", pieces: []string{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"}, status: 101},
		{name: "bytes past the response", pieces: []string{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n"}, status: 200},
		{name: "folded header line skipped", pieces: []string{"HTTP/1.1 200 OK\r\nX-A: 1\r\n  2\r\nContent-Length: 0\r\n\r\n"}, status: 200, keepAlive: true},
		{name: "head of 4000 bytes", pieces: []string{"HTTP/1.1 200 OK\r\nX-Pad: " + strings.Repeat("a", 4000) + "\r\nContent-Length: 0\r\n\r\n"}, status: 200, keepAlive: true},
		{name: "body larger than the buffer", pieces: []string{"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n" + strings.Repeat("b", 20000)}, status: 200, keepAlive: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, done, err := readResponse(tc.head, tc.pieces, tc.eof)
			if err != nil || !done {
				t.Fatalf("done %v, err %v; want a complete response", done, err)
			}
			if r.status != tc.status || r.keepAlive != tc.keepAlive {
				t.Errorf("status %d keep-alive %v, want %d %v", r.status, r.keepAlive, tc.status, tc.keepAlive)
			}
		})
	}
}

func TestRespReaderErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		pieces []string
		eof    bool
		want   string // in the error text
		is     error  // or errors.Is
	}{
		{name: "HTTP/2 status line", pieces: []string{"HTTP/2 200 OK\r\n\r\n"}, want: "malformed response status line"},
		{name: "not HTTP", pieces: []string{"SSH-2.0-OpenSSH\r\n"}, want: "malformed response status line"},
		{name: "letters in the status", pieces: []string{"HTTP/1.1 2x0 OK\r\n\r\n"}, want: "malformed response status line"},
		{name: "status below 100", pieces: []string{"HTTP/1.0 000 x\n\n"}, want: "malformed response status line"},
		{name: "header without colon", pieces: []string{"HTTP/1.1 200 OK\r\nbroken\r\n\r\n"}, want: "malformed response header line"},
		{name: "bad content-length", pieces: []string{"HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n"}, want: "malformed response Content-Length"},
		{name: "conflicting content-lengths", pieces: []string{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"}, want: "malformed response Content-Length"},
		{name: "body over the limit", pieces: []string{"HTTP/1.1 200 OK\r\nContent-Length: 1048577\r\n\r\n"}, is: errBodyTooLarge},
		{name: "huge content-length", pieces: []string{"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n"}, is: errBodyTooLarge},
		{name: "chunks over the limit", pieces: []string{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n"}, is: errBodyTooLarge},
		{name: "body to the close over the limit", pieces: []string{"HTTP/1.1 200 OK\r\n\r\n", strings.Repeat("x", maxHealthBody+1)}, is: errBodyTooLarge},
		{name: "bad chunk size", pieces: []string{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"}, want: "malformed chunk size"},
		{name: "empty chunk size", pieces: []string{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n;x\r\n"}, want: "malformed chunk size"},
		{name: "chunk without CRLF", pieces: []string{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxxyy\r\n"}, want: "no CRLF after a chunk"},
		{name: "head over the buffer", pieces: []string{"HTTP/1.1 200 OK\r\nX-Pad: " + strings.Repeat("a", httpBufSize) + "\r\n\r\n"}, want: "response head larger than 4096 bytes"},
		{name: "closed before a byte", eof: true, is: io.EOF},
		{name: "closed in the head", pieces: []string{"HTTP/1.1 200 OK\r\n"}, eof: true, is: io.ErrUnexpectedEOF},
		{name: "closed in the body", pieces: []string{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"}, eof: true, is: io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, done, err := readResponse(false, tc.pieces, tc.eof)
			switch {
			case done || err == nil:
				t.Fatalf("done %v, err %v; want an error", done, err)
			case tc.is != nil && !errors.Is(err, tc.is):
				t.Errorf("err %v, want %v", err, tc.is)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("err %q, want it to say %q", err, tc.want)
			}
		})
	}
}
