package proxy

import (
	"errors"
	"io"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// HTTP/2 streams to a pool that speaks HTTP/1.1: the request, body
// included, is buffered on the stream's RequestCtx (up to max_body_bytes)
// and sent through the pool backend's HostClient by a goroutine of the
// stream's own, which blocks in it; the answer streams back as HTTP/2 DATA
// within the client's windows, read from the backend no faster than the
// client takes it (at most h1Ahead bytes ahead). Only these streams have a
// goroutine: a translated request waits on a blocking HTTP/1.1 exchange.

// h1Ahead bounds the response bytes read from an HTTP/1.1 backend that
// wait for the client's window.
const h1Ahead = 256 << 10

// h1Chunk is how much of a response body one read takes.
const h1Chunk = 32 << 10

// h1Start sends the stream to member i. Its body is whole: a request
// for an HTTP/1.1 pool is read before the core sees it (request).
func (s *h2Stream) h1Start(i int) {
	s.h1, s.h1Running = true, true
	if s.h1Wake == nil {
		s.h1Wake = make(chan struct{}, 1)
	}
	go s.h1Call(i, s.gen)
}

// h1Call runs the HTTP/1.1 exchange on member i. While it runs, the
// stream's RequestCtx is this goroutine's alone (h1Running): the stream is
// not reused before it ends, even when the client left (h1Gone).
func (s *h2Stream) h1Call(i int, gen uint32) {
	c := s.c
	u := s.x.p.ups[i]
	req, resp := &s.ctx.Request, &s.ctx.Response
	resp.StreamBody = true
	var err error
	if d := s.deadline; !d.IsZero() {
		err = u.hc.DoDeadline(req, resp, d)
	} else {
		err = u.hc.Do(req, resp)
	}
	var fl h2Flusher
	c.mu.Lock()
	c.fl = &fl
	if s.gen != gen || s.h1Gone {
		s.h1Done(gen)
		c.mu.Unlock()
		return
	}
	if err != nil {
		s.h1Running = false
		if s.failed(err) {
			s.attempt()
		}
		c.mu.Unlock()
		fl.flush()
		return
	}
	l, ctx, x := c.l, &s.ctx, &s.x
	s.respBegan = true
	if x.fw.timed {
		x.fw.head = time.Now() // the access line's ttfb
	}
	resp.Header.SetNoDefaultContentType(true) // invent none, as the HTTP/1.1 engines
	l.attempted(ctx, x, i, nil)
	x.streamed, x.fw.bodyIn = true, s.bodyIn
	l.countHead(ctx, x)
	var body io.Reader
	if resp.IsBodyStream() {
		body = resp.BodyStream()
	}
	if body == nil {
		b := resp.Body()
		s.writeResponseHead(len(b) == 0)
		if len(b) == 0 {
			s.respDone = true
			s.closeStream()
		} else {
			s.respPending = append(s.respPending[:0], b...)
			s.respEnded, s.respEndPending = true, true
			s.push()
		}
		s.h1Done(gen)
		c.mu.Unlock()
		fl.flush()
		return
	}
	s.writeResponseHead(false)
	c.mu.Unlock()
	fl.flush()
	s.h1Relay(body, gen, &fl)
}

// h1Relay streams a response body to the client, h1Chunk at a time, and
// waits while h1Ahead bytes wait for the client's window.
func (s *h2Stream) h1Relay(body io.Reader, gen uint32, fl *h2Flusher) {
	c := s.c
	if cap(s.h1Buf) < h1Chunk {
		s.h1Buf = make([]byte, h1Chunk)
	}
	buf := s.h1Buf[:h1Chunk]
	for {
		n, rerr := body.Read(buf)
		c.mu.Lock()
		c.fl = fl
		if s.gen != gen || s.h1Gone {
			break
		}
		s.respPending = append(s.respPending, buf[:n]...)
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				// The backend broke mid-body: the client's stream is
				// reset, as a backend HTTP/2 stream's would be.
				s.x.reason = "reset"
				c.resetStream(s, http2.ErrCodeInternal, "reset")
				break
			}
			s.h1Trailers()
			s.respEnded, s.respEndPending = true, true
			s.push()
			break
		}
		s.push()
		for len(s.respPending) >= h1Ahead && s.gen == gen && !s.h1Gone {
			s.h1Waiting = true
			c.mu.Unlock()
			fl.flush()
			<-s.h1Wake
			c.mu.Lock()
			c.fl = fl
		}
		if s.gen != gen || s.h1Gone {
			break
		}
		c.mu.Unlock()
		fl.flush()
	}
	s.h1Done(gen)
	c.mu.Unlock()
	fl.flush()
}

// h1Trailers takes the trailers a chunked answer ended with as the
// stream's. Their bytes stay in ctx.Response, which is the stream's until
// it is released.
func (s *h2Stream) h1Trailers() {
	h := &s.ctx.Response.Header
	for name := range h.Trailers() {
		if v := h.PeekBytes(name); len(v) > 0 {
			s.trailerFields = append(s.trailerFields, hpack.HeaderField{Name: unsafeString(name), Value: unsafeString(v)})
		}
	}
}

// h1Done ends the goroutine's hold on the stream: the HostClient's
// connection goes back (or closes, when its body was not read to the
// end), and a stream released meanwhile goes to the free list now. The
// caller holds the connection's lock.
func (s *h2Stream) h1Done(gen uint32) {
	_ = s.ctx.Response.CloseBodyStream()
	s.ctx.Response.StreamBody = false
	s.h1Running = false
	if s.gen != gen {
		s.c.recycle(s)
	}
}

// h1Wakeup lets a waiting relay go on: the client's window opened, or the
// stream ended.
func (s *h2Stream) h1Wakeup() {
	if s.h1Waiting {
		s.h1Waiting = false
		select {
		case s.h1Wake <- struct{}{}:
		default:
		}
	}
}

// h1Abandon: the client left while the exchange runs.
func (s *h2Stream) h1Abandon() {
	if s.h1Running {
		s.h1Gone = true
		s.h1Wakeup()
	}
}
