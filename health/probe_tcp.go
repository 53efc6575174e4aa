package health

import (
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// tcpProber passes when a TCP connection is established within the timeout;
// it then ends the connection at once, with a reset (as HAProxy does, so
// checks leave no TIME_WAIT sockets).
//
// It drives one non-blocking socket with plain system calls rather than
// net.Dialer: a Go dial is about 14 system calls (socket, connect, netpoll
// registration and removal, SO_ERROR, getpeername, getsockname, TCP_NODELAY,
// four keep-alive options, close) plus a context and a goroutine wake-up.
// Here a check is three: connect; a poll that does not wait, which over
// loopback or a LAN already sees the handshake done; and a connect to
// AF_UNSPEC that resets the connection and leaves the socket to be used by
// the next check (see disconnect). Only a connect still in flight after the
// poll (a distant backend) goes into the engine's epoll set.
type tcpProber struct {
	ep      endpoint
	timeout time.Duration

	// sock is the socket kept from check to check (-1: none), of address
	// family family. waiting: a connect on it is in progress. registered:
	// it is in pl's epoll set, one-shot (disarmed by its event, rearmed
	// with EPOLL_CTL_MOD by the next connect that has to wait).
	sock       int
	family     int
	registered bool
	waiting    bool

	pl       *poller
	tag      int32
	deadline time.Time

	blk blockingRun
}

func newTCPProber(address string, timeout time.Duration) *tcpProber {
	return &tcpProber{ep: newEndpoint(address), timeout: timeout, sock: -1}
}

func (p *tcpProber) probe(ctx context.Context) error { return p.blk.run(ctx, p, p.timeout) }
func (p *tcpProber) close()                          { p.blk.close(p) }
func (p *tcpProber) named() bool                     { return p.ep.named }

func (p *tcpProber) start(ctx context.Context, pl *poller, tag int32, deadline time.Time) (bool, error) {
	p.pl, p.tag, p.deadline = pl, tag, deadline
	if err := p.ep.resolve(ctx, deadline); err != nil {
		return true, timeoutErr(err, p.timeout)
	}
	return p.connect()
}

// connect starts a connect to the endpoint's current address, going on to
// the next one (of a host name's) when it fails at once.
func (p *tcpProber) connect() (bool, error) {
	for {
		if p.sock >= 0 && p.family != p.ep.family() {
			p.closeSock()
		}
		if p.sock < 0 {
			sock, err := p.ep.socket()
			if err != nil {
				return true, err
			}
			p.sock, p.family = sock, p.ep.family()
		}
		connected, err := p.ep.connect(p.sock)
		switch {
		case err != nil:
			p.closeSock()
			if p.ep.next() {
				continue
			}
			return true, err
		case connected:
			return true, p.reset()
		}
		p.waiting = true
		if ended, events := p.ep.pollConnected(p.sock); ended {
			return p.ready(events)
		}
		op := unix.EPOLL_CTL_MOD
		if !p.registered {
			op = unix.EPOLL_CTL_ADD
		}
		if err := p.pl.ctl(op, p.sock, unix.EPOLLOUT|unix.EPOLLONESHOT, p.tag); err != nil {
			p.closeSock()
			return true, p.ep.opError("dial", os.NewSyscallError("epoll_ctl", err))
		}
		p.registered = true
		return false, nil
	}
}

func (p *tcpProber) ready(events uint32) (bool, error) {
	if !p.waiting {
		return false, nil // the one-shot event of a connect already ended
	}
	p.waiting = false
	if err := p.ep.connectResult(p.sock, events); err != nil {
		// A failed socket is not reused: the next connect gets a new one.
		p.closeSock()
		if p.ep.next() && time.Now().Before(p.deadline) {
			return p.connect()
		}
		return true, err
	}
	return true, p.reset()
}

// reset ends the established connection with a reset, keeping the socket
// for the next check. If that fails, the socket is closed with a reset.
func (p *tcpProber) reset() error {
	if err := p.ep.disconnect(p.sock); err != nil {
		_ = unix.SetsockoptLinger(p.sock, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		p.closeSock()
	}
	return nil
}

func (p *tcpProber) abort() error {
	if p.waiting {
		p.waiting = false
		p.closeSock()
	}
	return fmt.Errorf("%w after %s: %w", ErrTimeout, p.timeout, p.ep.opError("dial", os.ErrDeadlineExceeded))
}

func (p *tcpProber) release() {
	p.waiting = false
	p.closeSock()
}

// closeSock closes the socket (which takes it out of the epoll set).
func (p *tcpProber) closeSock() {
	if p.sock >= 0 {
		rawClose(p.sock)
		p.sock, p.registered = -1, false
	}
}
