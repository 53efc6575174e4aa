package health

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// errBodyTooLarge fails a check whose response body exceeds maxHealthBody.
var errBodyTooLarge = fmt.Errorf("response body larger than %d bytes", maxHealthBody)

// respReader reads one HTTP/1.x response for a check: the status and whether
// the connection may be kept, with the body skipped. It is fed bytes in a
// fixed buffer, as they come, and keeps no reference to them; it allocates
// only to report an error.
type respReader struct {
	buf     []byte // fixed; unread bytes are buf[r:w]
	r, w    int
	headReq bool // the request was HEAD: no body whatever the headers say

	state     respState
	got       bool  // a byte of this response has come
	status    int   // the final status code, once the head is read
	keepAlive bool  // the connection may carry the next check
	remain    int64 // bytes left of the body or of the current chunk
	body      int64 // body bytes so far, held to maxHealthBody
}

// respState is where a respReader is in a response.
type respState uint8

const (
	respHead       respState = iota // status line and headers
	respBody                        // remain bytes of a Content-Length body
	respChunkSize                   // a chunk-size line
	respChunkData                   // remain bytes of a chunk
	respChunkEnd                    // the CRLF after a chunk's data
	respTrailer                     // trailer lines up to an empty one
	respUntilClose                  // a body that ends when the connection does
	respDone
)

// reset readies r for the next response on a connection.
func (r *respReader) reset() {
	r.r, r.w = 0, 0
	r.state, r.got, r.status, r.keepAlive, r.remain, r.body = respHead, false, 0, false, 0, 0
}

// space returns the free end of the buffer for the next read, moving unread
// bytes to the front when the buffer is full. It is empty only when unread
// bytes fill the whole buffer: a head or line too long for it.
func (r *respReader) space() []byte {
	if r.r == r.w {
		r.r, r.w = 0, 0
	} else if r.w == len(r.buf) && r.r > 0 {
		r.w = copy(r.buf, r.buf[r.r:r.w])
		r.r = 0
	}
	return r.buf[r.w:]
}

// tooLong is the error for a buffer filled by one head or line.
func (r *respReader) tooLong() error {
	if r.state == respHead {
		return fmt.Errorf("response head larger than %d bytes", len(r.buf))
	}
	return fmt.Errorf("chunked body line longer than %d bytes", len(r.buf))
}

// eof is the outcome of the connection closing: the end of a body that runs
// to the close, io.EOF if nothing of the response came (a kept-alive
// connection the backend had closed), or io.ErrUnexpectedEOF.
func (r *respReader) eof() error {
	switch {
	case r.state == respUntilClose:
		r.state = respDone
		return nil
	case !r.got:
		return io.EOF
	}
	return io.ErrUnexpectedEOF
}

// feed takes n bytes just read into space() and reports whether the
// response is complete.
func (r *respReader) feed(n int) (done bool, err error) {
	r.w += n
	r.got = true
	for {
		switch r.state {
		case respHead:
			ok, err := r.head()
			if err != nil || !ok {
				return false, err
			}
		case respBody, respChunkData:
			k := min(r.remain, int64(r.w-r.r))
			r.r += int(k)
			r.remain -= k
			if r.remain > 0 {
				return false, nil
			}
			if r.state == respBody {
				r.state = respDone
			} else {
				r.state = respChunkEnd
			}
		case respChunkSize:
			line, ok := r.line()
			if !ok {
				return false, nil
			}
			size, err := chunkSize(line)
			if err != nil {
				return false, err
			}
			if size == 0 {
				r.state = respTrailer
				continue
			}
			if r.body += size; r.body > maxHealthBody {
				return false, errBodyTooLarge
			}
			r.remain, r.state = size, respChunkData
		case respChunkEnd:
			line, ok := r.line()
			if !ok {
				return false, nil
			}
			if len(line) != 0 {
				return false, errors.New("malformed chunked body: no CRLF after a chunk")
			}
			r.state = respChunkSize
		case respTrailer:
			line, ok := r.line()
			if !ok {
				return false, nil
			}
			if len(line) == 0 {
				r.state = respDone
			}
		case respUntilClose:
			if r.body += int64(r.w - r.r); r.body > maxHealthBody {
				return false, errBodyTooLarge
			}
			r.r = r.w
			return false, nil
		case respDone:
			if r.r != r.w {
				// Bytes past the response: the connection is out of
				// step, do not reuse it.
				r.keepAlive = false
			}
			return true, nil
		}
	}
}

// line takes one line (without its CR LF or LF) from the unread bytes, if a
// whole one is there.
func (r *respReader) line() ([]byte, bool) {
	i := bytes.IndexByte(r.buf[r.r:r.w], '\n')
	if i < 0 {
		return nil, false
	}
	l := trimCR(r.buf[r.r : r.r+i])
	r.r += i + 1
	return l, true
}

// head parses a response head once it has fully come (it reports false
// until then, consuming nothing), and sets the framing of the body. An
// interim 1xx response (other than 101) is skipped.
func (r *respReader) head() (bool, error) {
	b := r.buf[r.r:r.w]
	pos := 0
	// A client ignores empty lines before the status line (RFC 9112 2.2).
	for pos < len(b) && (b[pos] == '\r' || b[pos] == '\n') {
		pos++
	}
	i := bytes.IndexByte(b[pos:], '\n')
	if i < 0 {
		return false, nil
	}
	status, http10, err := statusLine(trimCR(b[pos : pos+i]))
	if err != nil {
		return false, err
	}
	pos += i + 1
	var (
		contentLength  int64 = -1
		te, chunked    bool
		closeConn      bool
		keepAliveToken bool
	)
	for {
		i := bytes.IndexByte(b[pos:], '\n')
		if i < 0 {
			return false, nil
		}
		line := trimCR(b[pos : pos+i])
		pos += i + 1
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // obsolete line folding: a continuation we do not need
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return false, fmt.Errorf("malformed response header line %q", clip(line))
		}
		name, value := line[:colon], trimSpace(line[colon+1:])
		switch {
		case equalFold(name, "Content-Length"):
			n, ok := parseContentLength(value)
			if !ok || (contentLength >= 0 && n != contentLength) {
				return false, fmt.Errorf("malformed response Content-Length %q", clip(value))
			}
			contentLength = n
		case equalFold(name, "Transfer-Encoding"):
			// The body is chunked when chunked is the last coding;
			// any other coding runs to the close.
			te = true
			chunked = lastToken(value, "chunked")
		case equalFold(name, "Connection"):
			closeConn = closeConn || hasToken(value, "close")
			keepAliveToken = keepAliveToken || hasToken(value, "keep-alive")
		}
	}
	r.r += pos
	if status >= 100 && status < 200 && status != 101 {
		// Interim response: the final one follows.
		return true, nil
	}
	r.status = status
	r.keepAlive = !closeConn && (!http10 || keepAliveToken)
	switch {
	case r.headReq || status == 204 || status == 304 || status < 200:
		// No body (RFC 9112 6.3); after 101 the connection is no longer
		// HTTP.
		r.keepAlive = r.keepAlive && status != 101
		r.state = respDone
	case te && chunked:
		r.state = respChunkSize
	case te:
		r.state, r.keepAlive = respUntilClose, false
	case contentLength > maxHealthBody:
		return false, errBodyTooLarge
	case contentLength >= 0:
		r.state, r.remain = respBody, contentLength
	default:
		r.state, r.keepAlive = respUntilClose, false
	}
	return true, nil
}

// statusLine parses "HTTP/1.x NNN reason"; NNN is 100 to 999.
func statusLine(l []byte) (status int, http10 bool, err error) {
	if len(l) < 12 || string(l[:7]) != "HTTP/1." || l[8] != ' ' || (len(l) > 12 && l[12] != ' ') {
		return 0, false, fmt.Errorf("malformed response status line %q", clip(l))
	}
	for _, c := range l[9:12] {
		if c < '0' || c > '9' {
			return 0, false, fmt.Errorf("malformed response status line %q", clip(l))
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 {
		return 0, false, fmt.Errorf("malformed response status line %q", clip(l))
	}
	return status, l[7] == '0', nil
}

// parseContentLength parses a Content-Length value; values above
// maxHealthBody saturate (they fail the check either way).
func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = min(n*10+int64(c-'0'), maxHealthBody+1)
	}
	return n, true
}

// chunkSize parses a chunk-size line, ignoring chunk extensions.
func chunkSize(l []byte) (int64, error) {
	var n int64
	digits := 0
	for _, c := range l {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		case c == ';' || c == ' ' || c == '\t':
			if digits == 0 {
				return 0, fmt.Errorf("malformed chunk size %q", clip(l))
			}
			return n, nil
		default:
			return 0, fmt.Errorf("malformed chunk size %q", clip(l))
		}
		n = min(n<<4|int64(d), maxHealthBody+1)
		digits++
	}
	if digits == 0 {
		return 0, fmt.Errorf("malformed chunk size %q", clip(l))
	}
	return n, nil
}

// hasToken reports whether the comma-separated list v holds token (ASCII
// case-insensitively).
func hasToken(v []byte, token string) bool {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		if i < 0 {
			return equalFold(trimSpace(v), token)
		}
		if equalFold(trimSpace(v[:i]), token) {
			return true
		}
		v = v[i+1:]
	}
	return false
}

// lastToken reports whether the comma-separated list v ends with token.
func lastToken(v []byte, token string) bool {
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return equalFold(trimSpace(v), token)
}

// equalFold reports whether b equals s, ASCII case-insensitively.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func trimCR(l []byte) []byte {
	if n := len(l); n > 0 && l[n-1] == '\r' {
		return l[:n-1]
	}
	return l
}

func trimSpace(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// clip shortens b for an error message.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
