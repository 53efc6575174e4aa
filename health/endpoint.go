package health

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// endpoint is where a prober connects, with plain non-blocking sockets. An
// IP address is parsed once. A host name is resolved again before each
// connect (resolve), and its addresses are tried in turn, as net.Dialer
// tries them one after the other; resolving blocks, so probers of named
// targets run on a goroutine of their own rather than in the engine.
type endpoint struct {
	address string // host:port as configured
	named   bool   // address holds a host name (or a zoned IPv6 address)

	addrs []netip.AddrPort // candidates: the literal one, or the resolved ones
	cur   int              // the candidate being connected to

	// Connect's arguments, kept so that a connect does not allocate.
	sa4    unix.RawSockaddrInet4
	sa6    unix.RawSockaddrInet6
	unspec unix.RawSockaddrInet4
	zero   unix.Timespec // ppoll's timeout
}

func newEndpoint(address string) endpoint {
	e := endpoint{address: address}
	ap, err := netip.ParseAddrPort(address)
	if err != nil || ap.Addr().Zone() != "" {
		e.named = true
		return e
	}
	e.addrs = []netip.AddrPort{netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
	return e
}

// resolve looks a named endpoint's host up (and its port, if it is a
// service name) and starts over with its first address. It does nothing
// for an IP address.
func (e *endpoint) resolve(ctx context.Context, deadline time.Time) error {
	if !e.named {
		e.cur = 0
		return nil
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	host, service, err := net.SplitHostPort(e.address)
	if err != nil {
		return &net.OpError{Op: "dial", Net: "tcp", Err: err}
	}
	port, err := strconv.ParseUint(service, 10, 16)
	if err != nil {
		p, perr := net.DefaultResolver.LookupPort(ctx, "tcp", service)
		if perr != nil {
			return &net.OpError{Op: "dial", Net: "tcp", Err: perr}
		}
		port = uint64(p)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return &net.OpError{Op: "dial", Net: "tcp", Err: err}
	}
	e.addrs = e.addrs[:0]
	for _, ip := range ips {
		e.addrs = append(e.addrs, netip.AddrPortFrom(ip.Unmap(), uint16(port)))
	}
	e.cur = 0
	if len(e.addrs) == 0 {
		return &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("lookup %s: no addresses", host)}
	}
	return nil
}

// next moves to the next candidate address, reporting false when there is
// none left.
func (e *endpoint) next() bool {
	if e.cur+1 >= len(e.addrs) {
		return false
	}
	e.cur++
	return true
}

// socket opens a non-blocking TCP socket of the current candidate's
// family.
func (e *endpoint) socket() (int, error) {
	fd, err := rawSocket(e.family())
	if err != nil {
		return -1, e.opError("dial", os.NewSyscallError("socket", err))
	}
	return fd, nil
}

// family is the current candidate's address family.
func (e *endpoint) family() int {
	if e.addrs[e.cur].Addr().Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// connect starts connecting fd, a socket of family(), to the current
// candidate. connected reports a connect that completed at once; otherwise
// it is in progress, and the socket turns writable when it ends.
func (e *endpoint) connect(fd int) (connected bool, err error) {
	ap := e.addrs[e.cur]
	port := ap.Port()
	if ap.Addr().Is4() {
		e.sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ap.Addr().As4()}
		// Port is in network byte order.
		p := (*[2]byte)(unsafe.Pointer(&e.sa4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		err = rawConnect(fd, unsafe.Pointer(&e.sa4), unix.SizeofSockaddrInet4)
	} else {
		e.sa6 = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ap.Addr().As16()}
		p := (*[2]byte)(unsafe.Pointer(&e.sa6.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		err = rawConnect(fd, unsafe.Pointer(&e.sa6), unix.SizeofSockaddrInet6)
	}
	switch err {
	case nil:
		return true, nil
	case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
		return false, nil
	}
	return false, e.opError("dial", os.NewSyscallError("connect", err))
}

// dial opens a socket and starts connecting it (see connect). On error no
// socket is left open.
func (e *endpoint) dial() (fd int, connected bool, err error) {
	if fd, err = e.socket(); err != nil {
		return -1, false, err
	}
	if connected, err = e.connect(fd); err != nil {
		rawClose(fd)
		return -1, false, err
	}
	return fd, connected, nil
}

// pollConnected polls a socket whose connect is in progress, without
// waiting: over loopback or a LAN the handshake is mostly done when connect
// returns (for loopback the kernel runs the peer's side within the call),
// and then the socket needs no epoll set. It reports whether the connect
// ended, and the events to give connectResult.
func (e *endpoint) pollConnected(fd int) (ended bool, events uint32) {
	pfd := unix.PollFd{Fd: int32(fd), Events: unix.POLLOUT}
	if n, err := rawPollNow(&pfd, &e.zero); n <= 0 || err != nil {
		return false, 0
	}
	if pfd.Revents&(unix.POLLERR|unix.POLLHUP) != 0 {
		return true, unix.EPOLLERR
	}
	return true, unix.EPOLLOUT
}

// connectResult is the outcome of a connect in progress on fd that polled
// with events: nil once it is established, else why it failed.
func (e *endpoint) connectResult(fd int, events uint32) error {
	if events&(unix.EPOLLERR|unix.EPOLLHUP) == 0 {
		return nil
	}
	soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	switch {
	case err != nil:
		return e.opError("dial", os.NewSyscallError("getsockopt", err))
	case soErr != 0:
		return e.opError("dial", os.NewSyscallError("connect", unix.Errno(soErr)))
	}
	return e.opError("dial", os.NewSyscallError("connect", unix.ECONNRESET))
}

// opError words err as net's errors do ("dial tcp 10.0.0.1:80: connect:
// connection refused"), so /status reads as it did when checks used
// net.Dialer.
func (e *endpoint) opError(op string, err error) error {
	oe := &net.OpError{Op: op, Net: "tcp", Err: err}
	if e.cur < len(e.addrs) {
		oe.Addr = net.TCPAddrFromAddrPort(e.addrs[e.cur])
	}
	return oe
}

// disconnect ends fd's connection with a reset and leaves the socket
// unconnected, to connect again: connect(2) to an AF_UNSPEC address, which
// for TCP aborts the connection as SO_LINGER 0 and close would (RST, no
// TIME_WAIT), without freeing the socket. A TCP check reuses one socket so:
// allocating and freeing a socket (socket, file, inode; close) is about a
// third of a loopback check's kernel time.
func (e *endpoint) disconnect(fd int) error {
	e.unspec = unix.RawSockaddrInet4{Family: unix.AF_UNSPEC}
	return rawConnect(fd, unsafe.Pointer(&e.unspec), unix.SizeofSockaddrInet4)
}
