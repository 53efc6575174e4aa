package proxy

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawIO is read(2) or write(2) on a non-blocking socket, retried on EINTR.
func rawIO(trap, fd uintptr, b []byte) (int, error) {
	for {
		r, _, e := unix.RawSyscall(trap, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		switch e {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		}
		return 0, e
	}
}
