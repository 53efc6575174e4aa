//go:build !race

package rawio

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestAllocs: a read or write allocates nothing, EAGAIN included (the
// event loop's hot path takes both).
func TestAllocs(t *testing.T) {
	a, b, _ := pair(t)
	msg, buf := []byte("ping"), make([]byte, 16)
	n := testing.AllocsPerRun(200, func() {
		if _, err := Write(a, msg); err != nil {
			t.Fatal(err)
		}
		if _, err := Read(b, buf); err != nil {
			t.Fatal(err)
		}
		if _, err := Read(b, buf); err != unix.EAGAIN {
			t.Fatalf("read of a drained socket: %v, want EAGAIN", err)
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per write, read and EAGAIN read, want 0", n)
	}
}
