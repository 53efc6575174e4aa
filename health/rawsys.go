package health

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The system calls of a probe, made with unix.RawSyscall rather than
// through x/sys/unix's wrappers, which use Syscall.
//
// Syscall tells the scheduler that the goroutine may block (entersyscall),
// and the first such call after the process was idle wakes the runtime's
// sysmon thread and resets its poll interval to 20µs: every slot of checks
// then cost about sixty sysmon wake-ups, some 15% of the checker's CPU time.
// None of these calls blocks (every socket is non-blocking, no poll or
// epoll_wait waits, no socket lingers on close), so the scheduler need not
// know, and a check neither pays for entersyscall nor wakes sysmon.
// (proxy/tcp calls splice the same way.) Reads and writes go through
// internal/rawio, which proxy's event loop shares.
//
// Pointers go into the calls directly as uintptr(unsafe.Pointer(p)) in the
// argument list, which keeps them valid for the call (unsafe.Pointer rule 4).

// errnoErr returns e as an error, nil for 0.
func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func rawSocket(family int) (int, error) {
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family),
		unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	return int(fd), errnoErr(e)
}

func rawConnect(fd int, sa unsafe.Pointer, n uintptr) error {
	_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(sa), n)
	return errnoErr(e)
}

func rawClose(fd int) {
	_, _, _ = unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}

// rawPollNow is ppoll of one descriptor that returns at once; zero is the
// zero timeout, passed in so that it is not allocated.
func rawPollNow(pfd *unix.PollFd, zero *unix.Timespec) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(pfd)), 1, uintptr(unsafe.Pointer(zero)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// rawEpollWaitNow is epoll_pwait that returns at once.
func rawEpollWaitNow(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd),
		uintptr(unsafe.Pointer(unsafe.SliceData(events))), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func rawEpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return errnoErr(e)
}
