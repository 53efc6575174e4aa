package tcp

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestStalledSessionBlocksNothing guards the raw splice(2) calls (which
// keep their P while in the kernel): with GOMAXPROCS=1, a session whose
// backend has stopped reading must not hold up another session. It would
// if a splice into the full socket slept instead of returning EAGAIN. The
// engine runs in a child process so that a stuck P shows up here as a
// deadline, not as a hung test binary.
func TestStalledSessionBlocksNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	// The first byte picks the backend's behaviour: 'S' stops reading,
	// anything else is echoed with the rest.
	backend := serveBackend(t, func(c *net.TCPConn) {
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return
		}
		if b[0] == 'S' {
			<-release
			return
		}
		if _, err := c.Write(b[:]); err != nil {
			return
		}
		echo(c)
	})

	child := exec.Command(os.Args[0], "-test.run=^TestEngineChild$")
	child.Env = append(os.Environ(), "FRONTDOOR_ENGINE_CHILD="+backend, "GOMAXPROCS=1")
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = child.Process.Kill()
		_ = child.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("engine child: %v", err)
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, "listening "))

	// Session A: push bytes until every buffer on the way is full.
	stalled := dial(t, addr)
	var written atomic.Int64
	go func() {
		buf := make([]byte, 1<<20)
		buf[0] = 'S'
		for {
			n, err := stalled.Write(buf)
			written.Add(int64(n))
			if err != nil {
				return
			}
			buf[0] = 0
		}
	}()
	last, since := int64(-1), time.Now()
	eventually(t, "session A to stall", func() bool {
		if n := written.Load(); n != last {
			last, since = n, time.Now()
			return false
		}
		return time.Since(since) > 200*time.Millisecond
	})
	t.Logf("session A stalled after %d MiB", last>>20)

	// Session B must still be served, several round trips.
	c := dial(t, addr)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if got := roundTrip(t, c, "E"); got != "E" {
		t.Fatalf("echoed %q", got)
	}
	for range 10 {
		if got := roundTrip(t, c, "ping"); got != "ping" {
			t.Fatalf("echoed %q", got)
		}
	}
}
