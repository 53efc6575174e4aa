package proxy

import (
	"errors"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Call is one transcoded gRPC call on the HTTP/2 engine's backend
// connections (h2engine_upstream.go): the rider of a backend stream whose
// answer is kept for the goroutine that serves the HTTP/1.1 request
// (serveTranscode) instead of being relayed to a client stream. That
// goroutine sends the call (send), waits for the head (awaitHead), reads
// the messages (Read, which credits the backend's window as it takes
// them, so a slow client holds the backend back rather than filling
// memory) and ends it (release). The connection's reader fills it in under
// lock. Calls are pooled (getH2Call).
type h2Call struct {
	h2Leg
	lock sync.Mutex
	flp  *h2Flusher // the lock holder's flusher (h2Leg.fl)
	own  h2Flusher  // the serving goroutine's
	req  fasthttp.Request
	u    *poolBackend
	dial time.Duration // connect timeout, for a redial after a refused start

	// The answer, under lock.
	fields    []hpack.HeaderField // the head's, then from trailerAt the trailers'
	trailerAt int
	headSeen  []hpack.HeaderField // the head's, as awaitHead saw them
	status    int                 // the head's :status; 0 until it came
	data      []byte              // DATA not yet read from off
	off       int
	err       error // why the call failed, once it did

	wake   chan struct{} // a signal that the answer moved (cap 1)
	timer  *time.Timer
	timerC <-chan time.Time // nil when no deadline is armed
	scrap  []byte
}

// Errors of a call that are not the backend's.
var (
	// errCallAborted: a drain's deadline cut the call short (abort).
	errCallAborted = errors.New("proxy: transcoded call cut short by shutdown")
)

var h2Calls = sync.Pool{New: func() any {
	c := &h2Call{wake: make(chan struct{}, 1)}
	c.rider, c.mu, c.fl, c.reqHead = c, &c.lock, &c.flp, &c.req.Header
	c.te = true
	return c
}}

// getH2Call returns a call ready for prepare.
func getH2Call() *h2Call { return h2Calls.Get().(*h2Call) }

// prepare sets the call's head: a POST of path with the gRPC content type
// and, unless timeout is 0, the grpc-timeout. The caller adds metadata to
// c.req.Header.
func (c *h2Call) prepare(path string, timeout time.Duration) {
	h := &c.req.Header
	h.Reset()
	h.SetMethod(fasthttp.MethodPost)
	h.SetRequestURI(path)
	h.SetContentTypeBytes(strApplicationGRPC)
	h.SetUserAgentBytes(valTranscodeUA)
	if timeout > 0 {
		// grpc-timeout tells the backend when the caller gives up.
		c.scrap = strconv.AppendInt(c.scrap[:0], timeout.Milliseconds(), 10)
		c.scrap = append(c.scrap, 'm')
		h.SetBytesKV(hdrGRPCTimeout, c.scrap)
	}
}

// arm starts the call's deadline: Read and awaitHead fail with
// os.ErrDeadlineExceeded once d passed. d <= 0 disarms it.
func (c *h2Call) arm(d time.Duration) {
	if d <= 0 {
		c.disarm()
		return
	}
	if c.timer == nil {
		c.timer = time.NewTimer(d)
	} else {
		c.timer.Reset(d)
	}
	c.timerC = c.timer.C
}

// disarm stops the deadline (a stream's head came: it may run as long as
// it likes).
func (c *h2Call) disarm() {
	if c.timer != nil {
		c.timer.Stop()
	}
	c.timerC = nil
}

// send starts the call on backend u with its request, frame (one
// length-prefixed message): on a connection with room, or once one is
// dialled. An error says that no byte of the call left:
// fasthttp.ErrNoFreeConns (u's connection budget is spent) or
// errRefusedStream (the connection died meanwhile).
func (c *h2Call) send(u *poolBackend, connectTimeout time.Duration, frame []byte) error {
	c.u, c.dial = u, connectTimeout
	c.req.Header.SetHost(u.be.Address())
	c.reqPending = append(c.reqPending[:0], frame...)
	c.reqEnded = true
	c.lock.Lock()
	c.flp = &c.own
	err := c.place(u, connectTimeout)
	c.lock.Unlock()
	if len(c.own.wires) > 0 {
		// This call's frames wait in the connection's buffer, and
		// this goroutine owes their write. Other calls' goroutines,
		// runnable now, add theirs first (their mark finds the write
		// owed, so they leave it to us): one write(2) for the calls
		// that came together, not one each. Alone, the yield returns
		// at once.
		runtime.Gosched()
	}
	c.own.flush()
	return err
}

// awaitHead waits for the answer's head: nil once it came, else why the
// call failed before it (see classifyUpstreamError).
func (c *h2Call) awaitHead() error {
	c.lock.Lock()
	defer c.lock.Unlock()
	for c.status == 0 && c.err == nil {
		if err := c.waitUnlocked(); err != nil {
			c.err = err
		}
	}
	if c.status == 0 {
		return c.err
	}
	c.headSeen = c.fields[:c.trailerAt:c.trailerAt]
	return nil
}

// waitUnlocked waits, with the lock released, for a signal or the
// deadline.
func (c *h2Call) waitUnlocked() error {
	c.lock.Unlock()
	defer c.lock.Lock()
	if c.timerC == nil {
		<-c.wake
		return nil
	}
	select {
	case <-c.wake:
		return nil
	case <-c.timerC:
		c.timerC = nil
		return os.ErrDeadlineExceeded
	}
}

func (c *h2Call) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// head is the answer's head once awaitHead returned nil, and trailers are
// its trailers once Read returned io.EOF or rest nil: lower-case names, no
// pseudo-headers, valid until end.
func (c *h2Call) head() []hpack.HeaderField { return c.headSeen }

func (c *h2Call) trailers() []hpack.HeaderField {
	c.lock.Lock()
	defer c.lock.Unlock()
	return c.fields[c.trailerAt:]
}

// Read reads the answer's DATA (length-prefixed gRPC messages): io.EOF
// at its end, the call's error when it failed.
func (c *h2Call) Read(p []byte) (int, error) {
	c.lock.Lock()
	for c.off == len(c.data) && !c.respEnded && c.err == nil {
		if err := c.waitUnlocked(); err != nil {
			c.err = err
		}
	}
	n := copy(p, c.data[c.off:])
	c.off += n
	if c.off == len(c.data) {
		c.data, c.off = c.data[:0], 0
	} else if c.off > len(c.data)/2 {
		c.data, c.off = c.data[:copy(c.data, c.data[c.off:])], 0
	}
	var err error
	switch {
	case n > 0:
		if c.b != nil {
			c.flp = &c.own
			c.b.consumed(&c.h2Leg, int64(n))
		}
	case c.err != nil:
		err = c.err
	default:
		err = io.EOF
	}
	c.lock.Unlock()
	c.own.flush()
	return n, err
}

// abort fails the call from outside (a drain's deadline): a Read waiting
// on it returns errCallAborted.
func (c *h2Call) abort() {
	c.lock.Lock()
	if c.err == nil {
		c.err = errCallAborted
	}
	c.lock.Unlock()
	c.signal()
}

// rest waits for the end of the answer, dropping what DATA is left: nil
// once it ended, else why the call failed.
func (c *h2Call) rest() error {
	c.lock.Lock()
	defer c.lock.Unlock()
	dropped := 0
	for !c.respEnded && c.err == nil {
		if dropped += len(c.data) - c.off; dropped > 1<<20 {
			c.err = errBackendProtocol // a unary answer goes on and on
			break
		}
		c.drop()
		if err := c.waitUnlocked(); err != nil {
			c.err = err
		}
	}
	c.drop()
	if c.respEnded {
		return nil
	}
	return c.err
}

// drop discards the DATA not read, crediting the backend for it. Called
// with the lock held.
func (c *h2Call) drop() {
	if n := len(c.data) - c.off; n > 0 && c.b != nil {
		c.flp = &c.own
		c.b.consumed(&c.h2Leg, int64(n))
	}
	c.data, c.off = c.data[:0], 0
}

// release ends the call and returns it to the pool.
func (c *h2Call) release() {
	c.end()
	c.disarm()
	h2Calls.Put(c)
}

// end ends the call's stream (reset, unless it ended both ways) and clears
// its answer, so that it can be sent again (a retry).
func (c *h2Call) end() {
	c.lock.Lock()
	c.flp = &c.own
	c.drop()
	c.detach(http2.ErrCodeCancel)
	c.gen++ // a dial still holding the call skips it
	c.sentBody, c.sentEnd, c.respBegan, c.respEnded = false, false, false, false
	c.upWindow, c.upConsumed, c.upID = 0, 0, 0
	clear(c.fields)
	c.fields, c.trailerAt, c.status, c.headSeen = c.fields[:0], 0, 0, nil
	c.data, c.off, c.err = c.data[:0], 0, nil
	c.u = nil
	c.lock.Unlock()
	c.own.flush()
	select {
	case <-c.wake:
	default:
	}
}

// The rider's side (h2Rider): what the backend connection's reader hands
// over, under c.lock.

func (c *h2Call) responseHead(fields []hpack.HeaderField, end bool) {
	status := 0
	for _, f := range fields {
		if f.Name == ":status" {
			status = atoiStatus(f.Value)
		}
	}
	switch {
	case status < 100 || status == 101 || status > 599:
		c.dropBackend()
		c.err = errBackendProtocol
	case status < 200:
		return // interim: the final head follows
	default:
		c.respBegan, c.status = true, status
		c.keep(fields)
		c.trailerAt = len(c.fields)
		if end {
			c.respEnded = true
		}
	}
	c.signal()
}

// keep copies fields but the pseudo-headers (the decoder's strings are
// its own; the slice is reused).
func (c *h2Call) keep(fields []hpack.HeaderField) {
	for _, f := range fields {
		if f.Name != "" && f.Name[0] != ':' {
			c.fields = append(c.fields, f)
		}
	}
}

func (c *h2Call) responseData(d []byte, end bool) {
	if c.respEnded {
		return // past the end: the backend broke the protocol; ignored
	}
	if !c.respBegan {
		c.dropBackend()
		c.err = errBackendProtocol
	} else {
		c.data = append(c.data, d...)
		if end {
			c.respEnded = true
		}
	}
	c.signal()
}

func (c *h2Call) responseTrailers(fields []hpack.HeaderField) {
	if c.respEnded {
		return // past the end: the backend broke the protocol; ignored
	}
	c.keep(fields)
	c.respEnded = true
	c.signal()
}

func (c *h2Call) backendReset(code http2.ErrCode) {
	c.dropBackend()
	if c.err == nil {
		c.err = errConnReset
		if code == http2.ErrCodeRefusedStream && !c.respBegan {
			c.err = errRefusedStream
		}
	}
	c.signal()
}

func (c *h2Call) backendLost(err error) {
	c.dropBackend()
	if c.err == nil {
		c.err = err
	}
	c.signal()
}

func (c *h2Call) refused() {
	if c.err == nil {
		c.err = errRefusedStream
	}
	c.signal()
}

func (c *h2Call) dialed(b *h2Back, err error) {
	if c.err != nil || c.u == nil {
		return
	}
	if b == nil {
		c.err = err
		if err == nil {
			c.err = errConnReset
		}
	} else if err := c.place(c.u, c.dial); err != nil {
		c.err = err
	}
	if c.err != nil {
		c.signal()
	}
}

func (c *h2Call) bodySent(int64) {}
