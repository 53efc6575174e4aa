package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"frontdoor/config"
	"frontdoor/internal/rawio"
)

// httpBufSize is an HTTP check's read buffer. A response head (status line
// and headers) must fit in it, as in fasthttp's default ReadBufferSize; the
// body streams through it and is discarded.
const httpBufSize = 4096

// httpState is where an httpProber is in a probe.
type httpState uint8

const (
	httpIdle       httpState = iota // no probe running; fd, if open, is kept alive
	httpConnecting                  // waiting for fd's connect
	httpWriting                     // the socket buffer took part of the request
	httpReading                     // the request is sent; reading the response
)

// httpProber sends a prebuilt request over a connection it keeps open
// between probes (at most one per backend), reads the status line, skips
// the body (by Content-Length, chunked coding, or up to the close), and
// passes when the status is in range.
//
// Once connected, a probe allocates nothing and costs two system calls, a
// write and a read: the request bytes and a fixed read buffer are made
// once, the socket stays in the engine's epoll set between probes, and the
// response is read when the socket turns readable (one read usually holds
// all of it).
//
// A kept connection that the backend closes between probes is closed at
// once, so the next probe connects anew. One that turns out to be closed
// when used (EOF, reset or broken pipe before any response byte) is retried
// once on a new connection. Any other error, a timeout, "Connection: close",
// an HTTP/1.0 response without keep-alive, a body read to the close, or
// bytes past the response end the connection.
type httpProber struct {
	ep        endpoint
	timeout   time.Duration
	low, high int
	what      string // "GET /healthz", for errors
	req       []byte // the request, built once
	resp      respReader

	// The probe in progress and the kept connection (fd >= 0).
	pl       *poller
	tag      int32
	deadline time.Time
	fd       int
	state    httpState
	sent     int  // request bytes written
	reused   bool // fd was kept from an earlier probe
	retried  bool // the one retry on a new connection is spent

	blk blockingRun
}

func newHTTPProber(hc *config.HealthCheck, address string) *httpProber {
	method := hc.Method
	if method == "" {
		method = "GET"
	}
	host := hc.Host
	if host == "" {
		host = address
	}
	// The bytes fasthttp's HostClient sent for the same request.
	req := method + " " + hc.Path + " HTTP/1.1\r\nUser-Agent: frontdoor-health\r\nHost: " + host + "\r\n"
	if method != "GET" && method != "HEAD" {
		req += "Content-Length: 0\r\n"
	}
	req += "\r\n"
	return &httpProber{
		ep:      newEndpoint(address),
		timeout: hc.Timeout.Duration,
		low:     hc.ExpectStatus.Low,
		high:    hc.ExpectStatus.High,
		what:    method + " " + hc.Path,
		req:     []byte(req),
		resp:    respReader{buf: make([]byte, httpBufSize), headReq: method == "HEAD"},
		fd:      -1,
	}
}

func (p *httpProber) probe(ctx context.Context) error { return p.blk.run(ctx, p, p.timeout) }
func (p *httpProber) close()                          { p.blk.close(p) }
func (p *httpProber) named() bool                     { return p.ep.named }

func (p *httpProber) start(ctx context.Context, pl *poller, tag int32, deadline time.Time) (bool, error) {
	p.pl, p.tag, p.deadline = pl, tag, deadline
	p.retried = false
	if p.fd >= 0 {
		p.reused = true
		return p.send()
	}
	p.reused = false
	if err := p.ep.resolve(ctx, deadline); err != nil {
		return p.fail(err)
	}
	return p.connect()
}

// connect starts a connection to the endpoint's current address, going on
// to the next one (of a host name's) when it fails at once.
func (p *httpProber) connect() (bool, error) {
	for {
		fd, connected, err := p.ep.dial()
		if err != nil {
			if p.ep.next() {
				continue
			}
			return p.fail(err)
		}
		events := uint32(unix.EPOLLOUT)
		if connected {
			events = unix.EPOLLIN | unix.EPOLLRDHUP
		}
		if err := p.pl.add(fd, events, p.tag); err != nil {
			rawClose(fd)
			return p.fail(p.ep.opError("dial", os.NewSyscallError("epoll_ctl", err)))
		}
		p.fd = fd
		if connected {
			return p.send()
		}
		p.state = httpConnecting
		return false, nil
	}
}

// send starts the exchange on the open connection.
func (p *httpProber) send() (bool, error) {
	p.resp.reset()
	p.sent = 0
	p.state = httpReading
	return p.write()
}

// write writes what is left of the request. If the socket buffer is full
// (never for a request this small on an idle connection) it waits for the
// socket to turn writable.
func (p *httpProber) write() (bool, error) {
	for p.sent < len(p.req) {
		n, err := rawio.Write(p.fd, p.req[p.sent:])
		switch {
		case err == unix.EAGAIN:
			if p.state != httpWriting {
				if err := p.pl.mod(p.fd, unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLRDHUP, p.tag); err != nil {
					return p.failed(p.ep.opError("write", os.NewSyscallError("epoll_ctl", err)))
				}
				p.state = httpWriting
			}
			return false, nil
		case err != nil:
			return p.failed(p.ep.opError("write", os.NewSyscallError("write", err)))
		}
		p.sent += n
	}
	if p.state == httpWriting {
		if err := p.pl.mod(p.fd, unix.EPOLLIN|unix.EPOLLRDHUP, p.tag); err != nil {
			return p.failed(p.ep.opError("write", os.NewSyscallError("epoll_ctl", err)))
		}
	}
	// The answer cannot be here yet: wait for the socket to turn
	// readable rather than pay a read that finds nothing.
	p.state = httpReading
	return false, nil
}

func (p *httpProber) ready(events uint32) (bool, error) {
	switch p.state {
	case httpIdle:
		// The backend closed the kept connection (or sent bytes nobody
		// asked for): close it, and connect anew on the next probe.
		p.closeConn()
		return false, nil
	case httpConnecting:
		if err := p.ep.connectResult(p.fd, events); err != nil {
			p.closeConn()
			if p.ep.next() && time.Now().Before(p.deadline) {
				return p.connect()
			}
			return p.fail(err)
		}
		if err := p.pl.mod(p.fd, unix.EPOLLIN|unix.EPOLLRDHUP, p.tag); err != nil {
			return p.failed(p.ep.opError("dial", os.NewSyscallError("epoll_ctl", err)))
		}
		return p.send()
	case httpWriting:
		return p.write()
	}
	return p.read()
}

// read reads what has come of the response, once: the epoll set is
// level-triggered, so bytes left unread are reported again.
func (p *httpProber) read() (bool, error) {
	buf := p.resp.space()
	if len(buf) == 0 {
		return p.failed(p.resp.tooLong())
	}
	n, err := rawio.Read(p.fd, buf)
	switch {
	case err == unix.EAGAIN:
		return false, nil
	case err != nil:
		return p.failed(p.ep.opError("read", os.NewSyscallError("read", err)))
	case n == 0:
		if err := p.resp.eof(); err != nil {
			return p.failed(p.ep.opError("read", err))
		}
		return p.done()
	}
	done, err := p.resp.feed(n)
	switch {
	case err != nil:
		return p.failed(err)
	case !done:
		return false, nil
	}
	return p.done()
}

// done ends a probe whose response was read whole.
func (p *httpProber) done() (bool, error) {
	p.state = httpIdle
	if !p.resp.keepAlive {
		p.closeConn()
	}
	if code := p.resp.status; code < p.low || code > p.high {
		return true, fmt.Errorf("http %s: %w: status %d, want %d-%d", p.what, ErrUnhealthy, code, p.low, p.high)
	}
	return true, nil
}

// failed ends an exchange that failed with err: a kept connection the
// backend had closed gets one retry on a new connection; otherwise the
// probe fails.
func (p *httpProber) failed(err error) (bool, error) {
	p.closeConn()
	if p.reused && !p.retried && !p.resp.got &&
		(errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		p.retried, p.reused = true, false
		return p.connect()
	}
	return p.fail(err)
}

// fail ends the probe with err, closing the connection.
func (p *httpProber) fail(err error) (bool, error) {
	p.closeConn()
	return true, fmt.Errorf("http %s: %w", p.what, timeoutErr(err, p.timeout))
}

func (p *httpProber) abort() error {
	op := "read"
	switch p.state {
	case httpConnecting:
		op = "dial"
	case httpWriting:
		op = "write"
	}
	_, err := p.fail(p.ep.opError(op, os.ErrDeadlineExceeded))
	return err
}

func (p *httpProber) release() { p.closeConn() }

// closeConn closes the connection, if any; the prober is idle after it.
func (p *httpProber) closeConn() {
	if p.fd >= 0 {
		rawClose(p.fd)
		p.fd = -1
	}
	p.state = httpIdle
}
