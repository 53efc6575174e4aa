package tcp

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestSoakIdleConnections opens many idle sessions through the engine,
// running in a child process of its own, and reports the child's RSS and
// file descriptors per session: at most 2 KiB (without -race) and 2. It needs FRONTDOOR_SOAK=1; the session count
// is FRONTDOOR_SOAK_CONNS (default 10000), lowered to fit RLIMIT_NOFILE
// (this process holds two descriptors per session: the client and the
// backend's end).
//
//	FRONTDOOR_SOAK=1 go test -run TestSoakIdleConnections -v ./proxy/tcp
func TestSoakIdleConnections(t *testing.T) {
	if os.Getenv("FRONTDOOR_SOAK") != "1" {
		t.Skip("set FRONTDOOR_SOAK=1 to run the 10,000-connection soak")
	}
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("FRONTDOOR_SOAK_CONNS")); err == nil && v > 0 {
		n = v
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if limit := int(lim.Cur-300) / 2; n > limit {
		t.Logf("RLIMIT_NOFILE %d: %d sessions instead of %d", lim.Cur, limit, n)
		n = limit
	}

	// The backend answers one byte, then holds the connection.
	backend := serveBackend(t, func(c *net.TCPConn) {
		b := make([]byte, 1)
		if _, err := c.Read(b); err != nil {
			return
		}
		_, _ = c.Write(b)
		_, _ = c.Read(b)
	})

	child := exec.Command(os.Args[0], "-test.run=^TestEngineChild$")
	child.Env = append(os.Environ(), "FRONTDOOR_ENGINE_CHILD="+backend)
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = stdin.Close()
		_ = child.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, "listening "))
	pid := child.Process.Pid

	// Warm up with a few sessions so the baseline includes the runtime's
	// fixed costs.
	open := func(k int) []net.Conn {
		conns := make([]net.Conn, k)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var firstErr error
		work := make(chan int)
		for range 16 {
			wg.Go(func() {
				for i := range work {
					c, err := net.DialTimeout("tcp", addr, 10*time.Second)
					if err == nil {
						_ = c.SetDeadline(time.Now().Add(30 * time.Second))
						if _, err = c.Write([]byte{'x'}); err == nil {
							_, err = io.ReadFull(c, make([]byte, 1))
						}
					}
					if err != nil {
						mu.Lock()
						firstErr = err
						mu.Unlock()
						continue
					}
					conns[i] = c
				}
			})
		}
		for i := range k {
			work <- i
		}
		close(work)
		wg.Wait()
		if firstErr != nil {
			t.Fatalf("opening sessions: %v", firstErr)
		}
		return conns
	}
	warm := open(100)
	time.Sleep(time.Second) // let the child settle; a measurement, not a synchronisation
	rss0, fds0 := procStats(t, pid)
	start := time.Now()
	conns := open(n)
	opened := time.Since(start)
	time.Sleep(2 * time.Second)
	rss1, fds1 := procStats(t, pid)
	perConn := float64(rss1-rss0) * 1024 / float64(n)
	t.Logf("%d idle sessions opened in %v: engine RSS %d KiB -> %d KiB, %.0f bytes (%.1f KiB) per session; fds %d -> %d, %.2f per session",
		n, opened.Round(time.Millisecond), rss0, rss1, perConn, perConn/1024, fds0, fds1, float64(fds1-fds0)/float64(n))
	// The event loops keep an idle session in its struct and two sockets
	// (doc.go, Memory per session); the race detector's shadow memory
	// multiplies that.
	if maxPer := 2048.0; !raceEnabled && perConn > maxPer {
		t.Errorf("%.0f bytes of RSS per idle session; want at most %.0f", perConn, maxPer)
	}
	if per := float64(fds1-fds0) / float64(n); per > 2.01 {
		t.Errorf("%.2f file descriptors per idle session; want 2 (no pipes held)", per)
	}
	for _, c := range append(conns, warm...) {
		_ = c.Close()
	}
}

// procStats reads VmRSS (KiB) and the number of open descriptors of pid.
func procStats(t *testing.T, pid int) (rssKiB, fds int) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			rssKiB, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return rssKiB, len(ents)
}

// TestEngineChild is the engine process of TestSoakIdleConnections and
// TestSpliceSyscalls: it forwards to FRONTDOOR_ENGINE_CHILD, prints its
// address and runs until its stdin closes.
func TestEngineChild(t *testing.T) {
	backend := os.Getenv("FRONTDOOR_ENGINE_CHILD")
	if backend == "" {
		t.Skip("runs only as a child of another test")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := startProxy(t, Options{IdleTimeout: time.Hour, Logger: log}, &Upstream{Pool: newPool(t, backend)})
	fmt.Printf("listening %s\n", p.addr)
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
}
