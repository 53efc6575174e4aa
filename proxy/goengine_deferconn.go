package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"frontdoor/internal/rawio"
)

// Why deferConn exists.
//
// Go's netpoller makes every blocking Read try the read(2) first and wait
// only when it returns EAGAIN. A proxy's two waits per request are reads
// that are sure to find nothing: the response right after the request was
// sent to the backend, and the next request right after the response was
// sent to the client. Each is a syscall (measured: 6.1 syscalls per small
// keep-alive request against HAProxy's 4.3, on a VM where a syscall's entry
// alone is a fifth of the proxy's CPU).
//
// deferConn holds a small Write back until the next Read and makes the
// write(2) inside RawConn.Read's callback. RawConn.Read clears the socket's
// readiness before it calls the callback, so the answer to what the callback
// writes can only arrive after that point: the callback returns false after
// writing, the goroutine parks until the socket is readable, and the read
// that follows finds data. Ordering is kept: any Write, Close or CloseWrite
// sends held bytes first.
//
// The one case this cannot see is bytes that arrived before the held write
// went out: a client that pipelines its next request. Its readiness was
// cleared, so a client-side wait is bounded by skipWaitLimit; when that
// fires and a read then finds data, the connection stops deferring for good.
// A backend never sends before it was asked, so backend-side waits need no
// bound beyond the response deadline.
type deferConn struct {
	net.Conn // always a *net.TCPConn (newDeferConn)
	rc       syscall.RawConn
	// client marks a client connection: its waits are bounded by
	// skipWaitLimit.
	client bool
	// budget, on a backend connection, is the pool backend whose connection
	// budget it holds: Close gives it back, once (released).
	budget   *poolBackend
	released atomic.Bool
	// fresh: dialed for the request about to be sent (forward clears it).
	fresh bool
	// deferNext allows holding writes until the next Read, which clears
	// it. The owner sets it when that Read is sure to follow on the same
	// goroutine: the proxy for a request it is about to send (the response
	// is read next), the handler for a response whole in memory (the next
	// request is read next). Tunnels and streams never set it.
	deferNext bool
	// noSkip: this client pipelines; read the usual way from now on.
	noSkip bool
	// answered: awaitAnswer saw the socket readable, so the next Read
	// reads from the callback at once.
	answered bool

	mu      sync.Mutex // guards held against a Close from another goroutine
	held    *[deferMax]byte
	heldN   int
	heldWDL time.Time // the write deadline in force when the bytes were held

	rdl, wdl         time.Time // deadlines the caller set
	rdlSock, wdlSock time.Time // deadlines on the socket

	// State of one RawConn.Read callback run.
	p       []byte
	n       int
	err     error
	stuck   bool // the socket did not take every held byte at once
	await   bool // awaitAnswer: stop at readable, read nothing
	probing bool // a read after the wait bound fired: data now means a lost wakeup
	readFn  func(uintptr) bool
}

// deferMax is the largest write that is held: a small response or request,
// whose bytes are copied once. Larger writes go out at once.
const deferMax = 4096

// skipWaitLimit bounds a client-side wait that skipped the read: past it,
// the connection is read the usual way. Longer than the gap between requests
// of a busy keep-alive connection, short enough that a pipelining client
// waits once, noticeably but briefly.
const skipWaitLimit = 200 * time.Millisecond

var heldBufs = sync.Pool{New: func() any { return new([deferMax]byte) }}

// newDeferConn wraps tc; client selects the client-side behaviour.
func newDeferConn(tc *net.TCPConn, client bool) *deferConn {
	return &deferConn{Conn: tc, client: client}
}

// Write holds p for the next Read when it is small and holding is allowed;
// otherwise it sends anything held, then p.
func (c *deferConn) Write(p []byte) (int, error) {
	if c.heldN > 0 {
		if err := c.flush(); err != nil {
			return 0, err
		}
	}
	if len(p) == 0 || len(p) > deferMax || !c.deferNext || c.noSkip || !c.raw() {
		c.syncWrite()
		return c.Conn.Write(p)
	}
	c.mu.Lock()
	if c.held == nil {
		c.held = heldBufs.Get().(*[deferMax]byte)
	}
	c.heldN = copy(c.held[:], p)
	c.heldWDL = c.wdl
	c.mu.Unlock()
	return len(p), nil
}

// raw sets up rc and readFn on the first held write: a connection that
// never holds one (Connection: close) pays nothing for them.
func (c *deferConn) raw() bool {
	if c.rc != nil {
		return true
	}
	rc, err := c.Conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		return false
	}
	c.mu.Lock() // Close reads rc
	c.rc = rc
	c.mu.Unlock()
	c.readFn = c.onReadable
	return true
}

// Read sends held bytes and waits for the answer without a read that would
// find nothing (see the type's comment).
func (c *deferConn) Read(p []byte) (int, error) {
	if c.deferNext {
		c.deferNext = false // written only when set: tunnels share the conn
	}
	if c.answered && c.heldN == 0 && len(p) > 0 {
		// The answer awaitAnswer waited for: read it as the callback
		// would have (a spurious wakeup waits in rc.Read as usual).
		c.answered = false
		c.syncRead()
		c.p, c.n, c.err = p, 0, nil
		err := c.rc.Read(c.readFn)
		c.p = nil
		return c.result(err)
	}
	if c.heldN == 0 || len(p) == 0 || c.noSkip {
		if err := c.flush(); err != nil {
			return 0, err
		}
		c.syncRead()
		return c.Conn.Read(p)
	}
	bounded := false
	if c.client {
		// The bound replaces the caller's deadline on the socket until
		// the next read or deadline change puts that one back.
		if lim := time.Now().Add(skipWaitLimit); c.rdl.IsZero() || lim.Before(c.rdl) {
			bounded = true
			c.rdlSock = lim
			_ = c.Conn.SetReadDeadline(lim)
		}
	}
	if !bounded {
		c.syncRead()
	}
	c.p, c.n, c.err, c.stuck = p, 0, nil, false
	err := c.rc.Read(c.readFn)
	switch {
	case c.stuck:
		if err := c.flush(); err != nil {
			return 0, err
		}
		c.syncRead()
		return c.Conn.Read(p)
	case bounded && errors.Is(err, os.ErrDeadlineExceeded) && (c.rdl.IsZero() || time.Now().Before(c.rdl)):
		// Our bound fired, not the caller's deadline: an idle client, or
		// a pipelined request whose wakeup was cleared. Read; data found
		// at once means the latter.
		c.syncRead()
		c.probing = true
		err = c.rc.Read(c.readFn)
	}
	c.p = nil
	return c.result(err)
}

// awaitAnswer sends held bytes and returns once the connection is readable,
// without reading: the caller takes its read buffer only then, so the wait
// for a backend's answer holds none. The Read that follows finds data and
// reads it from RawConn.Read's callback, as Read would have. Backend
// connections only; without held bytes it returns at once and Read waits as
// usual.
func (c *deferConn) awaitAnswer() error {
	if c.deferNext {
		c.deferNext = false
	}
	if c.heldN == 0 || c.client || c.noSkip {
		return nil
	}
	c.syncRead()
	c.p, c.n, c.err, c.stuck, c.await = nil, 0, nil, false, true
	err := c.rc.Read(c.readFn)
	c.await = false
	switch {
	case c.stuck:
		return c.flush()
	case err != nil:
		return err
	case c.err != nil:
		return &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("write", c.err)}
	}
	c.answered = true
	return nil
}

// result turns one callback run into Read's return values.
func (c *deferConn) result(waitErr error) (int, error) {
	if waitErr != nil {
		return 0, waitErr
	}
	switch {
	case c.err != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", c.err)}
	case c.n == 0:
		return 0, io.EOF
	}
	return c.n, nil
}

// onReadable is the RawConn.Read callback: the first call sends the held
// bytes and waits; later calls read. The socket is non-blocking, so the
// syscalls are raw: they cannot block, and skip the scheduler's bookkeeping
// for one that could.
func (c *deferConn) onReadable(fd uintptr) bool {
	if c.heldN > 0 {
		c.mu.Lock()
		n, err := rawio.Write(int(fd), c.held[:c.heldN])
		c.heldN = copy(c.held[:], c.held[n:c.heldN])
		if c.heldN == 0 {
			heldBufs.Put(c.held)
			c.held = nil
		}
		c.mu.Unlock()
		switch {
		case err == unix.EAGAIN || (err == nil && c.heldN > 0):
			c.stuck = true
			return true
		case err != nil:
			c.err = err
			return true
		}
		return false
	}
	if c.await {
		return true
	}
	n, err := rawio.Read(int(fd), c.p)
	if err == unix.EAGAIN {
		c.probing = false
		return false
	}
	if c.probing && n > 0 {
		c.noSkip = true
	}
	c.probing = false
	c.n, c.err = n, err
	return true
}

// flush sends held bytes, waiting as an ordinary Write would, under the
// write deadline that was in force when they were held.
func (c *deferConn) flush() error {
	if c.heldN == 0 {
		return nil // read only: a tunnel's other goroutine reads it too
	}
	c.mu.Lock()
	b, n := c.held, c.heldN
	c.held, c.heldN = nil, 0
	c.mu.Unlock()
	if !c.wdlSock.Equal(c.heldWDL) {
		c.wdlSock = c.heldWDL
		_ = c.Conn.SetWriteDeadline(c.heldWDL)
	}
	_, err := c.Conn.Write(b[:n])
	heldBufs.Put(b)
	return err
}

// Deadlines. A deadline set while the connection is in a request's fast path
// (a write may be held, or is held) is only recorded: the next Read or write
// on the same goroutine puts it on the socket if it differs from what is
// there, so a request costs about two timer changes instead of six. Outside
// that path (tunnels, streams) they go to the socket at once, as other
// goroutines may rely on them to end a blocked call.

// SetReadDeadline sets or records the read deadline.
func (c *deferConn) SetReadDeadline(t time.Time) error {
	c.rdl = t
	if c.deferNext || c.heldN > 0 {
		return nil
	}
	c.rdlSock = t
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline sets or records the write deadline.
func (c *deferConn) SetWriteDeadline(t time.Time) error {
	c.wdl = t
	if c.deferNext || c.heldN > 0 {
		return nil
	}
	c.wdlSock = t
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline sets or records both deadlines.
func (c *deferConn) SetDeadline(t time.Time) error {
	_ = c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *deferConn) syncRead() {
	if !c.rdlSock.Equal(c.rdl) {
		c.rdlSock = c.rdl
		_ = c.Conn.SetReadDeadline(c.rdl)
	}
}

func (c *deferConn) syncWrite() {
	if !c.wdlSock.Equal(c.wdl) {
		c.wdlSock = c.wdl
		_ = c.Conn.SetWriteDeadline(c.wdl)
	}
}

// CloseWrite sends held bytes, then half-closes the connection.
func (c *deferConn) CloseWrite() error {
	if err := c.flush(); err != nil {
		return err
	}
	return c.Conn.(*net.TCPConn).CloseWrite()
}

// Close makes one attempt to send held bytes (a response with
// Connection: close is held like any other), then closes. It may run on
// another goroutine than the connection's (a server shutting down), so it
// only reads the held bytes, under mu.
func (c *deferConn) Close() error {
	c.mu.Lock()
	if c.heldN > 0 {
		b := c.held[:c.heldN]
		_ = c.rc.Write(func(fd uintptr) bool {
			_, _ = rawio.Write(int(fd), b)
			return true
		})
	}
	c.mu.Unlock()
	if c.budget != nil && c.released.CompareAndSwap(false, true) {
		c.budget.giveConn()
	}
	return c.Conn.Close()
}
