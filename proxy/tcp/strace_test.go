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

	"frontdoor/internal/splice"
)

// TestSpliceSyscalls proves the zero-copy path from the outside: it runs
// the engine in a child process under strace -c, pushes 32 MiB each way
// through one session, and checks that the child moved them with splice(2)
// and made next to no read/write-family calls (a user-space copy would need
// thousands), and that its backend dial did not bind(2). It skips when strace is not installed or may not trace.
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
		"-e", "trace=splice,read,write,readv,writev,recvfrom,sendto,recvmsg,sendmsg,bind",
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

	// Short sessions first, so that a bind per backend dial would show.
	const short = 10
	for range short {
		sc := dial(t, addr)
		roundTrip(t, sc, "x")
		_ = sc.Close()
	}

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
		if name != "splice" && name != "bind" {
			rw += n
		}
	}
	t.Logf("engine syscalls for 2 x 32 MiB and %d short sessions: %v", short, calls)
	if calls["splice"] < 2*2*size/splice.PipeSize {
		t.Errorf("%d splice calls for 64 MiB", calls["splice"])
	}
	// The runtime and the test harness make a few reads and writes of
	// their own (stdout, stdin, netpoll wake-ups); copying 64 MiB through
	// a user-space buffer would take thousands.
	// The listener and the runtime's IPv6 probes bind; the backend dials
	// must not (one per session would make more than short): they leave
	// the local port to connect(2), because bind-time allocation cannot
	// reuse ports held by TIME_WAIT sockets and fails under churn.
	if calls["bind"] >= short {
		t.Errorf("%d bind calls for %d sessions: the backend dial binds before connecting", calls["bind"], short+1)
	}
	if rw > 200 {
		t.Errorf("%d read/write-family calls: payload went through user space\n%s", rw, bytes.TrimSpace(out))
	}
}
