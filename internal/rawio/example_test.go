package rawio_test

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"frontdoor/internal/rawio"
)

// Reading a non-blocking socket: data, then EAGAIN when nothing is left.
func Example() {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])

	n, err := rawio.Write(fds[0], []byte("hello"))
	fmt.Println(n, err)
	buf := make([]byte, 16)
	n, err = rawio.Read(fds[1], buf)
	fmt.Printf("%d %q %v\n", n, buf[:n], err)
	_, err = rawio.Read(fds[1], buf)
	fmt.Println(errors.Is(err, unix.EAGAIN))
	// Output:
	// 5 <nil>
	// 5 "hello" <nil>
	// true
}
