package proxy

import (
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Rider is what a stream on a backend connection (h2Back) carries: a
// client stream of the HTTP/2 engine (h2Stream) or a transcoded call
// (h2Call). The connection's reader and the dialer call these with the
// rider's lock held (h2Leg.mu), once they found the leg still theirs.
type h2Rider interface {
	// responseHead, responseData and responseTrailers hand over the
	// answer, in its order.
	responseHead(fields []hpack.HeaderField, end bool)
	responseData(d []byte, end bool)
	responseTrailers(fields []hpack.HeaderField)
	// backendReset: the backend reset the stream with code.
	backendReset(code http2.ErrCode)
	// backendLost: the connection broke or closed under the stream.
	backendLost(err error)
	// refused: a GOAWAY said the backend never processed the stream,
	// whose answer had not begun; the leg is off the connection already.
	refused()
	// dialed: the dial the leg waited for ended, with b (err nil) or
	// without it (err says why); the leg is off the upstream.
	dialed(b *h2Back, err error)
	// bodySent: n more bytes of the request body went to the backend.
	bodySent(n int64)
}

// h2Leg is a rider's backend side: its stream on a backend connection, the
// request to send there and both directions' progress. Every field is
// under the rider's lock (mu) but upWindow and upConsumed, which are under
// the backend connection's (h2Back.mu). A rider is reused: gen tells a
// reference to an earlier life (h2Ref) from one to the current.
type h2Leg struct {
	rider   h2Rider
	mu      *sync.Mutex             // the rider's lock
	fl      **h2Flusher             // where the lock holder's frames are flushed
	reqHead *fasthttp.RequestHeader // sent as the stream's HEADERS
	gen     uint32

	b          *h2Back     // the backend connection, once the stream is on it
	up         *h2Upstream // the upstream dialling for it meanwhile
	upID       uint32
	upWindow   int64 // under b.mu: the backend's window for our DATA
	upConsumed int64 // under b.mu: response bytes passed on, not yet credited
	// held: response bytes the rider got and has not passed on (credited
	// to the connection when it leaves it, whatever became of them).
	held       int64
	te         bool // send "te: trailers"
	reqPending []byte
	reqEnded   bool // the request's end is in reqPending
	// reqTrailers end the request once reqPending is out.
	reqTrailers []hpack.HeaderField
	sentBody    bool // a byte of the body went to a backend
	sentEnd     bool // the request's END_STREAM went to the backend
	respBegan   bool // the backend's final head arrived
	respEnded   bool // the backend's END_STREAM arrived
}

// h2Ref names a leg in one life (gen).
type h2Ref struct {
	l   *h2Leg
	gen uint32
}

func (r h2Ref) live() bool { return r.l.gen == r.gen }

// place starts l on backend u: on a connection with room, or after a dial
// (within connect timeout) that it waits for. Called with l's lock held.
// An error means nothing was sent: errH2Refused (the connection died
// meanwhile) or fasthttp.ErrNoFreeConns (u's connection budget is spent).
func (l *h2Leg) place(u *poolBackend, timeout time.Duration) error {
	up := u.upstreamH2()
	up.mu.Lock()
	for _, b := range up.conns {
		if b.active < b.maxStreams {
			b.active++
			up.mu.Unlock()
			if !b.start(l) {
				return errH2Refused
			}
			return nil
		}
	}
	if !up.dialing {
		if !up.u.takeConn() {
			up.mu.Unlock()
			return fasthttp.ErrNoFreeConns
		}
		up.dialing = true
		go up.dial(timeout)
	}
	l.up = up
	up.waiting = append(up.waiting, h2Ref{l, l.gen})
	up.mu.Unlock()
	return nil
}

// detach takes l off its backend connection (or its dial), resetting the
// backend's stream with code unless it ended. Called with l's lock held.
func (l *h2Leg) detach(code http2.ErrCode) {
	// A leg waiting for a dial is dropped by the dialer, which finds
	// l.up no longer pointing at its upstream.
	l.up = nil
	b := l.b
	if b == nil {
		return
	}
	b.mu.Lock()
	if !b.dead && !(l.respEnded && l.sentEnd) {
		_ = b.wire.fr.WriteRSTStream(l.upID, code)
		(*l.fl).mark(&b.wire)
	}
	if !b.dead && l.held > 0 {
		b.credit(l, l.held)
	}
	l.held = 0
	delete(b.streams, l.upID)
	l.b = nil
	b.mu.Unlock()
	b.up.mu.Lock()
	b.active--
	idle := b.active == 0 && b.goingAway
	b.up.mu.Unlock()
	if idle {
		_ = b.conn.Close()
	}
}

// dropBackend takes l off a backend stream that ended on the backend's
// side: nothing is sent to it.
func (l *h2Leg) dropBackend() {
	l.respEnded, l.sentEnd = true, true
	l.detach(http2.ErrCodeCancel)
	l.respEnded = false
}

// lockLeg takes l's lock for b's reader and reports whether l is still on
// b as stream id, or on b at all when id is 0: a leg can leave b while the
// reader waits for the lock, and its rider may even start another stream
// there. The lock is held either way: l.mu.Unlock after.
func (b *h2Back) lockLeg(l *h2Leg, id uint32) bool {
	l.mu.Lock()
	*l.fl = &b.fl
	return l.b == b && (id == 0 || l.upID == id)
}
