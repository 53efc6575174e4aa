package proxy

import (
	"os"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The answer's way back: what a backend connection's reader hands a
// stream, under the stream's client connection lock.

// responseHead takes the backend's response head: a 1xx goes to the client
// as it is; the final one goes through the core (attempted: passive
// ejection, hop-by-hop headers, request ID, affinity; countHead: metrics)
// and on to the client.
func (s *h2Stream) responseHead(fields []hpack.HeaderField, end bool) {
	c, l, ctx, x := s.c, s.c.l, &s.ctx, &s.x
	status := 0
	for _, f := range fields {
		if f.Name == ":status" {
			status = atoiStatus(f.Value)
		}
	}
	if status < 100 || status == 101 || status > 599 {
		s.dropBackend()
		s.retry(errBackendProtocol)
		return
	}
	if status < 200 {
		e := &c.enc
		e.pseudo(":status", statusValue(status))
		for _, f := range fields {
			if f.Name[0] != ':' {
				e.field(unsafeBytes(f.Name), unsafeBytes(f.Value))
			}
		}
		c.writeHead(s.id, false)
		return
	}
	s.respBegan = true
	if x.fw.timed {
		x.fw.head = time.Now() // the access line's ttfb
	}
	resp := &ctx.Response
	resp.Reset()
	resp.Header.SetNoDefaultContentType(true)
	resp.SetStatusCode(status)
	for _, f := range fields {
		if f.Name[0] != ':' {
			resp.Header.Add(f.Name, f.Value)
			if f.Name == "grpc-status" && end {
				s.grpcCode = atoiStatus(f.Value) // a trailers-only answer
			}
		}
	}
	x.streamed = s.sentBody
	l.attempted(ctx, x, s.member, nil)
	if s.grpcCode >= 0 {
		l.grpcStatus(x, s.member, s.grpcCode)
	}
	x.streamed, x.fw.bodyIn = true, s.bodyIn
	l.countHead(ctx, x)
	s.deadline = s.callEnd
	if end {
		s.respEnded = true
	}
	s.writeResponseHead(end)
	if end {
		s.respDone = true
		s.closeStream()
	}
}

// writeResponseHead sends ctx.Response's head to the client.
func (s *h2Stream) writeResponseHead(end bool) {
	c := s.c
	resp := &s.ctx.Response
	addHSTS(&s.ctx, c.l.rt.Load()) // tls_route.go
	c.enc.pseudo(":status", statusValue(resp.StatusCode()))
	for k, v := range resp.Header.All() {
		c.enc.field(k, v)
	}
	if len(resp.Header.PeekBytes(hdrDate)) == 0 {
		// RFC 9110 6.6.1, as the HTTP/1.1 engines (ensureDate).
		c.enc.field(hdrDateLower, c.date())
	}
	c.writeHead(s.id, end)
	s.headSent = true
}

// responseData relays body bytes from the backend.
func (s *h2Stream) responseData(d []byte, end bool) {
	if !s.respBegan {
		s.dropBackend()
		s.retry(errBackendProtocol)
		return
	}
	s.respPending = append(s.respPending, d...)
	if end {
		s.respEnded = true
		s.respEndPending = true
	}
	s.push()
}

// responseTrailers takes the backend's trailers, which end the stream once
// the body before them is out. They are encoded when they are written: the
// HPACK table must see blocks in the order the client does.
func (s *h2Stream) responseTrailers(fields []hpack.HeaderField) {
	s.trailerFields = s.trailerFields[:0]
	for _, f := range fields {
		if f.Name == "" || f.Name[0] == ':' {
			continue
		}
		if f.Name == "grpc-status" {
			s.grpcCode = atoiStatus(f.Value)
			s.c.l.grpcStatus(&s.x, s.member, s.grpcCode)
		}
		s.trailerFields = append(s.trailerFields, f)
	}
	s.respEnded = true
	s.respEndPending = true
	s.push()
}

// writeTrailers encodes and sends the trailers, ending the stream.
func (s *h2Stream) writeTrailers() {
	c := s.c
	for _, f := range s.trailerFields {
		c.enc.field(unsafeBytes(f.Name), unsafeBytes(f.Value))
	}
	clear(s.trailerFields)
	s.trailerFields = s.trailerFields[:0]
	c.writeHead(s.id, true)
}

// backendReset: the backend reset the stream. Before its answer began, the
// attempt failed (REFUSED_STREAM: unprocessed, safe to retry); after, the
// client's stream is reset too.
func (s *h2Stream) backendReset(code http2.ErrCode) {
	s.dropBackend()
	if !s.respBegan {
		switch {
		case code == http2.ErrCodeRefusedStream:
			s.retry(errH2Refused)
		case s.callExpired():
			// The backend gave up on a call whose grpc-timeout passed:
			// DEADLINE_EXCEEDED, not UNAVAILABLE.
			s.retry(os.ErrDeadlineExceeded)
		default:
			s.retry(errConnReset)
		}
		return
	}
	s.c.resetStream(s, code, "reset")
}

// callExpired reports whether the call's grpc-timeout has passed.
func (s *h2Stream) callExpired() bool {
	return !s.callEnd.IsZero() && !time.Now().Before(s.callEnd)
}

// backendLost: the backend connection broke under the stream.
func (s *h2Stream) backendLost(err error) {
	s.dropBackend()
	if !s.respBegan {
		s.retry(err)
		return
	}
	s.c.resetStream(s, http2.ErrCodeInternal, "reset")
}

// refused: the backend never processed the stream (a GOAWAY below it);
// another backend may take it.
func (s *h2Stream) refused() { s.retry(errH2Refused) }

// dialed: the backend connection s waited for is up (b), or failed (err).
func (s *h2Stream) dialed(b *h2Back, err error) {
	if s.respDone {
		return
	}
	if b == nil {
		s.retry(err)
		return
	}
	if s.x.fw.timed {
		s.x.fw.connected = time.Now() // the access line's connect
	}
	if s.upstream(s.member) != nil {
		s.retry(fasthttp.ErrNoFreeConns)
	}
}

// bodySent credits the client for n body bytes sent on.
func (s *h2Stream) bodySent(n int64) { s.c.consumed(s, n) }

// atoiStatus parses a 3-digit status or grpc-status; -1 when it is not a
// number.
func atoiStatus(v string) int {
	if len(v) == 0 || len(v) > 3 {
		return -1
	}
	n := 0
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return -1
		}
		n = n*10 + int(v[i]-'0')
	}
	return n
}
