//go:build linux

package health

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
)

// helperEnv carries "kind count" to the helper process.
const helperEnv = "FRONTDOOR_HEALTH_HELPER"

// startHelper starts this test binary again as TestHelperBackends serving
// n backends of kind on 127.0.0.1, and returns their addresses and the
// child's pid. The child exits when the test ends.
func startHelper(t testing.TB, kind string, n int) (addrs []string, pid int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperBackends$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d", helperEnv, kind, n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close() // the helper exits on EOF
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "READY" {
		if strings.HasPrefix(sc.Text(), "127.0.0.1:") {
			addrs = append(addrs, sc.Text())
		} else {
			t.Log("helper:", sc.Text())
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	if len(addrs) != n {
		t.Fatalf("helper gave %d addresses, want %d", len(addrs), n)
	}
	return addrs, cmd.Process.Pid
}

// cpuTime is user and system CPU time.
type cpuTime struct{ user, sys time.Duration }

func (c cpuTime) total() time.Duration { return c.user + c.sys }

// selfCPU is this process's CPU time.
func selfCPU(t *testing.T) cpuTime {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return cpuTime{time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())}
}

// childCPU is a running process's user+system CPU time from /proc.
func childCPU(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the parenthesised command: state is field 3, utime 14,
	// stime 15, in clock ticks (USER_HZ, 100 on Linux).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("parse /proc/%d/stat: %v %v", pid, err1, err2)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// TestHelperBackends is not a test: run by TestCheckerCPU with helperEnv
// set, it serves "count" backends of "kind" on 127.0.0.1, prints their
// addresses and READY, and exits when its stdin closes.
func TestHelperBackends(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("helper process for TestCheckerCPU")
	}
	var kind string
	var n int
	if _, err := fmt.Sscanf(spec, "%s %d", &kind, &n); err != nil {
		t.Fatal(err)
	}
	lns := make([]net.Listener, n)
	for i := range lns {
		lns[i] = listen(t)
	}
	switch kind {
	case "http":
		srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok\n") }}
		for _, ln := range lns {
			go func() { _ = srv.Serve(ln) }()
		}
	case "tcp":
		for _, ln := range lns {
			closeAccepted(ln, nil)
		}
	case "grpc":
		srv := grpc.NewServer()
		grpc_health_v1.RegisterHealthServer(srv, grpchealth.NewServer())
		for _, ln := range lns {
			go func() { _ = srv.Serve(ln) }()
		}
	default:
		t.Fatalf("unknown kind %q", kind)
	}
	w := bufio.NewWriter(os.Stdout)
	for _, ln := range lns {
		fmt.Fprintln(w, ln.Addr().String())
	}
	fmt.Fprintln(w, "READY")
	_ = w.Flush()
	_, _ = io.Copy(io.Discard, os.Stdin)
}
