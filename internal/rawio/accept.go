package rawio

import (
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ListenerFD returns the descriptor of ln for an event loop that accepts
// on it itself, with TCP_NODELAY set on it so that the sockets accepted
// from it inherit it (no setsockopt per connection, as the net package
// makes on each). It returns -1 when ln is not a *net.TCPListener. ln
// keeps the descriptor: the loop must not close it.
func ListenerFD(ln net.Listener) int {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return -1
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return -1
	}
	lfd := -1
	_ = rc.Control(func(fd uintptr) {
		lfd = int(fd)
		_ = unix.SetsockoptInt(lfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	})
	return lfd
}

// Accept takes one connection from the non-blocking listening socket lfd
// with one accept4(2) (non-blocking, close-on-exec), made as a raw system
// call and repeated on EINTR and ECONNABORTED (a client that left while it
// waited); rsa gets the peer's address. It returns the new descriptor, or
// -1 with the unix.Errno: unix.EAGAIN when none waits, and one for which
// OutOfResources is true when the process cannot take more now. It
// allocates nothing.
func Accept(lfd int, rsa *unix.RawSockaddrAny, rsaLen *uint32) (int, unix.Errno) {
	for {
		*rsaLen = unix.SizeofSockaddrAny
		r, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(rsa)),
			uintptr(unsafe.Pointer(rsaLen)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		switch e {
		case 0:
			return int(r), 0
		case unix.EINTR, unix.ECONNABORTED:
			continue
		}
		return -1, e
	}
}

// OutOfResources reports whether an Accept error means the process is out
// of descriptors or memory: a loop pauses accepting rather than spin.
func OutOfResources(e unix.Errno) bool {
	return e == unix.EMFILE || e == unix.ENFILE || e == unix.ENOBUFS || e == unix.ENOMEM
}
