package tcp

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSpliceSyscalls proves the zero-copy path from the outside: it runs
// the engine in a child process under strace -c, pushes 32 MiB each way
// through one session, and checks that the child moved them with splice(2)
// and made next to no read/write-family calls (a user-space copy would need
// thousands). It skips when strace is not installed or may not trace.
func TestSpliceSyscalls(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace is not installed")
	}
	t.Parallel()
	backend := serveBackend(t, echo)
	summary := filepath.Join(t.TempDir(), "strace.txt")
	child := exec.Command(strace, "-f", "-qq", "-c", "-o", summary,
		"-e", "trace=splice,read,write,readv,writev,recvfrom,sendto,recvmsg,sendmsg",
		os.Args[0], "-test.run=^TestEngineChild$")
	child.Env = append(os.Environ(), "FRONTDOOR_ENGINE_CHILD="+backend)
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = child.Process.Kill()
			_ = child.Wait()
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Skipf("the engine did not start under strace (ptrace not allowed?): %v", err)
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, "listening "))

	const size = 32 << 20
	c := dial(t, addr)
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	go func() {
		_, _ = c.Write(make([]byte, size))
		_ = c.CloseWrite()
	}()
	if n, err := io.Copy(io.Discard, c); err != nil || n != size {
		t.Fatalf("echoed %d bytes, %v", n, err)
	}
	_ = stdin.Close()
	_ = child.Wait()
	exited = true

	out, err := os.ReadFile(summary)
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for l := range strings.SplitSeq(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || f[len(f)-1] == "total" || f[len(f)-1] == "syscall" {
			continue
		}
		// % time, seconds, usecs/call, calls, [errors,] syscall
		if n, err := strconv.Atoi(f[3]); err == nil {
			calls[f[len(f)-1]] = n
		}
	}
	rw := 0
	for name, n := range calls {
		if name != "splice" {
			rw += n
		}
	}
	t.Logf("engine syscalls for 2 x 32 MiB: %v", calls)
	if calls["splice"] < 2*2*size/pipeSize {
		t.Errorf("%d splice calls for 64 MiB", calls["splice"])
	}
	// The runtime and the test harness make a few reads and writes of
	// their own (stdout, stdin, netpoll wake-ups); copying 64 MiB through
	// a user-space buffer would take thousands.
	if rw > 200 {
		t.Errorf("%d read/write-family calls: payload went through user space\n%s", rw, bytes.TrimSpace(out))
	}
}
