package proxy

import (
	"bytes"
	"io"
	"strconv"

	"github.com/valyala/fasthttp"

	"frontdoor/internal/splice"
)

// The event loop (loop.go): relaying response heads and bodies to the client.

// backendData relays data, the next bytes of b's answer, to c. It reports
// whether to read on.
func (lp *evLoop) backendData(b, c *lconn, data []byte) bool {
	x := c.x
	var head []byte
	fresh := false // the head was read in this call
	if !b.headDone {
		resp := &x.ctx.Response
		for {
			n := bytes.Index(data, crlfCRLF) + 4
			if n < 4 {
				if len(data) >= len(lp.rbuf)/2 {
					lp.backendFailed(b, errBadResponse)
					return false
				}
				b.in = append(b.in[:0], data...)
				return true
			}
			lp.rd.Reset(data[:n])
			lp.br.Reset(&lp.rd)
			if x.head {
				resp.SkipBody = true
			}
			// Serialized as the backend sent it, as the goroutine
			// engine's server does: no Date or Content-Type of
			// fasthttp's (passThroughHead).
			lp.passHead.CopyTo(&resp.Header)
			if err := resp.Header.Read(lp.br); err != nil {
				lp.backendFailed(b, errBadResponse)
				return false
			}
			// The head ends where fasthttp's parser ends it, as in the
			// goroutine engine: before n when it ends in "\r\n\n" or
			// "\n\r\n" and the body holds the first CRLFCRLF.
			data = data[n-lp.rd.Len()-lp.br.Buffered():]
			st := resp.StatusCode()
			if st >= 100 && st < 200 && st != fasthttp.StatusSwitchingProtocols {
				if b.interim++; b.interim >= maxInterim {
					lp.backendFailed(b, errTooManyInterim)
					return false
				}
				continue // interim answers are not relayed (as the goroutine engine)
			}
			if st == fasthttp.StatusSwitchingProtocols {
				lp.backendFailed(b, errUnexpectedUpgrade)
				return false
			}
			break
		}
		st := resp.StatusCode()
		cl := resp.Header.ContentLength()
		switch {
		case x.head || st == fasthttp.StatusNoContent || st == fasthttp.StatusNotModified:
			b.framing = bodyNone
		case cl >= 0:
			b.framing, b.bodyLeft = bodyLength, int64(cl)
		case cl == -1:
			b.framing = bodyChunked
		default:
			b.framing = bodyClose
		}
		b.keep = !resp.ConnectionClose() && b.framing != bodyClose
		b.headDone = true
		x.x.bytesOut = 0
		l := lp.l
		member := x.x.member
		if b.framing == bodyClose {
			// Sent on chunked, so the client's connection stays open
			// (HAProxy and nginx do the same); before attempted adds
			// X-Request-ID, so the head reads as the goroutine engine's.
			resp.Header.SetContentLength(-1)
		}
		x.x.fw.head = lp.at()
		l.attempted(&x.ctx, &x.x, member, nil)
		x.x.p.pool.Acquire(member) // busy until the body ends, as a stream
		if x.x.clientClose || lp.draining || c.closeAfter {
			c.closeAfter = true
			resp.Header.SetConnectionClose()
		}
		ensureDate(&resp.Header)
		lp.head = resp.Header.AppendBytes(lp.head[:0])
		head = lp.head
		fresh = true
		lp.disarm(b)
	}
	done := false
	var tail []byte
	switch b.framing {
	case bodyClose:
		if len(data) > 0 {
			if !fresh {
				head = lp.head[:0]
			}
			head = appendChunkSize(head, len(data))
			lp.head = head
			tail = crlf
		}
	case bodyNone:
		if len(data) > 0 {
			b.keep = false
		}
		data, done = nil, true
	case bodyLength:
		if int64(len(data)) >= b.bodyLeft {
			if int64(len(data)) > b.bodyLeft {
				b.keep = false // bytes after the answer: do not reuse
			}
			data, done = data[:b.bodyLeft], true
		}
		b.bodyLeft -= int64(len(data))
		if b.bodyLeft >= spliceThreshold {
			b.splicing = true
		}
	case bodyChunked:
		n, end, err := b.chunks.scan(data)
		if err != nil {
			x.x.rec.reason = "upstream_stream_error"
			b.keep = false
			lp.closeClient(c)
			return false
		}
		if end && n < len(data) {
			b.keep = false
		}
		data, done = data[:n], end
	}
	x.x.bytesOut += len(data)
	if b.framing == bodyChunked {
		x.x.bytesOut = int(b.chunks.data) // the log counts the body, not its framing
	}
	if done {
		// Ended before the last write, as the goroutine engine logs
		// before it writes: once the client has the answer, its log
		// line is there.
		lp.finishExchange(b, c)
		if lp.writeClient(c, head, data, tail) {
			lp.next(c)
		}
		return false
	}
	if fresh {
		// The body is still coming: count the request now, with its
		// duration up to the head (an event stream may last for hours).
		lp.l.countHead(&x.ctx, &x.x)
	}
	if !lp.writeClient(c, head, data, tail) {
		return false
	}
	if c.outOff < len(c.out) {
		b.paused = true
		if b.dl.Kind == tBackendBody {
			lp.disarm(b) // the client is waited for, not the backend
		}
		return false
	}
	if b.splicing {
		lp.pump(b, c)
		return false
	}
	lp.arm(b, tBackendBody, lp.l.settings.idle)
	return true
}

// pump moves the rest of b's body to c with splice(2), backend socket to
// pipe to client socket, until one side has to wait (its edge resumes it)
// or the body is done.
func (lp *evLoop) pump(b, c *lconn) {
	x := c.x
	t := &b.xfer
	if t.Pool == nil {
		t.Pool = &lp.l.pipes
	}
	for {
		if t.InPipe > 0 {
			moved, again, err := t.Drain(c.fd)
			x.x.bytesOut += int(moved)
			if err != nil {
				lp.closeClient(c)
				return
			}
			if again {
				b.paused = true // clientEvent resumes on EPOLLOUT
				if b.dl.Kind == tBackendBody {
					lp.disarm(b) // the client is waited for, not the backend
				}
				if lp.watch(c) {
					lp.arm(c, tClientWrite, lp.l.settings.write)
				}
				return
			}
			if c.dl.Kind == tClientWrite {
				lp.disarm(c)
			}
		}
		if b.bodyLeft == 0 {
			t.Release()
			b.splicing = false
			lp.finishExchange(b, c)
			lp.next(c)
			return
		}
		n, again, err := t.Fill(b.fd, int(min(b.bodyLeft, splice.MaxMove)))
		if err != nil || (n == 0 && !again) {
			lp.backendFailed(b, io.ErrUnexpectedEOF)
			return
		}
		if again {
			lp.arm(b, tBackendBody, lp.l.settings.idle)
			return
		}
		b.bodyLeft -= n
	}
}

// appendChunkSize appends the size line of a chunk of n bytes.
func appendChunkSize(dst []byte, n int) []byte {
	dst = strconv.AppendUint(dst, uint64(n), 16)
	return append(dst, crlf...)
}
