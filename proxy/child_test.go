package proxy

import (
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startChild runs this test binary again as a process of its own that runs
// only test name, with GOMAXPROCS=1 and env added: for measurements that
// must see one proxy's CPU, descriptors or scheduler alone. It returns the
// child's pid, stdin and stdout; the child ends when its stdin closes,
// which the test's cleanup does (killing it after 10 s).
func startChild(tb testing.TB, name string, env ...string) (pid int, stdin io.WriteCloser, stdout io.Reader) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), "GOMAXPROCS=1"), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err = cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return cmd.Process.Pid, stdin, stdout
}

// procCPUSeconds is the user and system CPU time of process pid so far.
func procCPUSeconds(tb testing.TB, pid int) float64 {
	tb.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		tb.Fatal(err)
	}
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100 // clock ticks; USER_HZ is 100 on Linux
}

// procSyscalls is the count of read- and write-like system calls of
// process pid so far (/proc/PID/io: syscr and syscw).
func procSyscalls(tb testing.TB, pid int) float64 {
	tb.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		tb.Fatal(err)
	}
	n := 0.0
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok && (k == "syscr" || k == "syscw") {
			f, _ := strconv.ParseFloat(v, 64)
			n += f
		}
	}
	return n
}
