package rawio

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// pair returns both ends of a non-blocking stream socket pair and a close
// function for either end. The cleanup closes only the ends not closed
// already: closing a number twice could close another parallel test's
// socket that reused it.
func pair(t *testing.T) (a, b int, closeEnd func(fd int)) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	open := map[int]bool{fds[0]: true, fds[1]: true}
	closeEnd = func(fd int) {
		if !open[fd] {
			return
		}
		open[fd] = false
		if err := unix.Close(fd); err != nil {
			t.Errorf("close %d: %v", fd, err)
		}
	}
	t.Cleanup(func() {
		closeEnd(fds[0])
		closeEnd(fds[1])
	})
	return fds[0], fds[1], closeEnd
}

// EINTR is not exercised here: a read or write of a non-blocking socket
// does not sleep, so no signal interrupts it. The retry is for the
// descriptors of the kernel that may (and for being sure).
func TestReadWrite(t *testing.T) {
	t.Parallel()
	a, b, closeEnd := pair(t)
	buf := make([]byte, 64)
	if n, err := Read(b, buf); n != 0 || !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("read of an empty socket = %d, %v; want 0, EAGAIN", n, err)
	}
	if n, err := Write(a, []byte("hello")); n != 5 || err != nil {
		t.Fatalf("write = %d, %v", n, err)
	}
	if n, err := Read(b, buf); n != 5 || err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read = %d %q, %v; want 5 \"hello\"", n, buf[:n], err)
	}
	if n, err := Write(a, nil); n != 0 || err != nil {
		t.Fatalf("empty write = %d, %v; want 0, nil", n, err)
	}

	// A full socket takes nothing more: EAGAIN, never a partial count with
	// an error.
	big := make([]byte, 1<<20)
	total := 0
	for {
		n, err := Write(a, big)
		if errors.Is(err, unix.EAGAIN) {
			if n != 0 {
				t.Fatalf("EAGAIN with n = %d", n)
			}
			break
		}
		if err != nil || n <= 0 {
			t.Fatalf("write = %d, %v", n, err)
		}
		total += n
	}
	if total == 0 {
		t.Fatal("the socket took nothing")
	}

	// Drain it, then the peer's close is the end of stream: 0, nil.
	closeEnd(a)
	for read := 0; ; {
		n, err := Read(b, big)
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", read, total, err)
		}
		if n == 0 {
			if read != total {
				t.Fatalf("end of stream after %d of %d bytes", read, total)
			}
			break
		}
		read += n
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	a, b, closeEnd := pair(t)
	if _, err := Read(-1, make([]byte, 1)); !errors.Is(err, unix.EBADF) {
		t.Errorf("read of fd -1: %v, want EBADF", err)
	}
	closeEnd(b)
	if n, err := Write(a, []byte("x")); n != 0 || !errors.Is(err, unix.EPIPE) {
		t.Errorf("write to a closed peer = %d, %v; want 0, EPIPE", n, err)
	}
}
