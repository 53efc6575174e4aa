package proxy

import (
	"time"

	"github.com/valyala/fasthttp"
)

// HTTP/2 streams to a pool that speaks HTTP/1.1: the request, body
// included, is buffered on the stream's RequestCtx (up to max_body_bytes)
// and sent through the pool backend's HostClient by a goroutine of the
// stream's own, which blocks in it; the answer, read whole, goes back as
// HTTP/2 frames within the client's windows. Only these streams have a
// goroutine: a translated request waits on a blocking HTTP/1.1 exchange.

// h1Start sends the stream to member i once its body is whole.
func (s *h2Stream) h1Start(i int) {
	s.h1 = true
	if s.reqEnded {
		s.h1Go(i)
	}
}

func (s *h2Stream) h1Go(i int) {
	s.h1Running = true
	go s.h1Call(i, s.gen)
}

// h1Body takes body bytes for a translated request.
func (s *h2Stream) h1Body(d []byte, end bool) {
	c := s.c
	req := &s.ctx.Request
	c.consumed(s, int64(len(d)))
	if s.h1Running || s.respDone {
		return
	}
	if max := c.l.settings.maxBody; max > 0 && int64(len(req.Body())+len(d)) > max {
		s.reqEnded = end
		if s.failed(errBodyTooLarge) {
			s.attempt()
		}
		return
	}
	req.AppendBody(d)
	if end {
		s.h1Go(s.member)
	}
}

// h1Call runs the HTTP/1.1 exchange on member i, without the connection's
// lock: while it runs, the stream's RequestCtx is this goroutine's alone
// (h1Running), and a stream the client left meanwhile is dropped here.
func (s *h2Stream) h1Call(i int, gen uint32) {
	c := s.c
	u := s.x.p.ups[i]
	req, resp := &s.ctx.Request, &s.ctx.Response
	var err error
	if d := s.deadline; !d.IsZero() {
		err = u.hc.DoDeadline(req, resp, d)
	} else {
		err = u.hc.Do(req, resp)
	}
	var fl h2Flusher
	c.mu.Lock()
	c.fl = &fl
	s.h1Running = false
	if s.gen != gen || s.h1Gone {
		c.mu.Unlock()
		return
	}
	if err != nil {
		if s.failed(err) {
			s.attempt()
		}
		c.mu.Unlock()
		fl.flush()
		return
	}
	l, ctx, x := c.l, &s.ctx, &s.x
	s.respBegan = true
	l.attempted(ctx, x, i, nil)
	x.streamed, x.fw.bodyIn = true, s.bodyIn
	l.countHead(ctx, x)
	body := resp.Body()
	s.writeResponseHead(len(body) == 0)
	if len(body) == 0 {
		s.respDone = true
		s.closeStream()
	} else {
		s.respPending = append(s.respPending[:0], body...)
		s.respEnded, s.respEndPending = true, true
		s.push()
	}
	c.mu.Unlock()
	fl.flush()
}

// h1Abandon: the client left while the exchange runs. The stream is not
// reused (release skips it): the goroutine still holds its RequestCtx.
func (s *h2Stream) h1Abandon() {
	if s.h1Running {
		s.h1Gone = true
	}
}

// h1Deadline is unused by HostClient when zero.
var _ = time.Time{}

var _ = fasthttp.StatusOK
