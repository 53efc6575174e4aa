package rawio

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Read reads at most len(b) bytes from the non-blocking descriptor fd with
// one read(2), made as a raw system call and repeated while it fails with
// EINTR. It returns n == 0 and a nil error at end of stream, and n == 0 with
// the unix.Errno on failure: unix.EAGAIN when there is nothing to read now.
// It allocates nothing. fd must be non-blocking (see the package comment);
// b must not be shared with another goroutine during the call.
func Read(fd int, b []byte) (int, error) {
	return rawIO(unix.SYS_READ, fd, b)
}

// Write writes at most len(b) bytes to the non-blocking descriptor fd with
// one write(2), made as a raw system call and repeated while it fails with
// EINTR. It may write fewer bytes than len(b) without an error (the socket
// took no more for now); it returns n == 0 with the unix.Errno on failure:
// unix.EAGAIN when the socket takes nothing now. It allocates nothing. fd
// must be non-blocking (see the package comment).
func Write(fd int, b []byte) (int, error) {
	return rawIO(unix.SYS_WRITE, fd, b)
}

// rawIO is read(2) or write(2) (trap) on fd, retried on EINTR. The pointer
// goes into the call directly as uintptr(unsafe.Pointer(p)) in the argument
// list, which keeps b alive and in place for the call (unsafe.Pointer rule 4).
func rawIO(trap uintptr, fd int, b []byte) (int, error) {
	for {
		r, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		switch e {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		}
		return 0, e
	}
}
