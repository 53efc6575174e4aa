package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestLoopAcceptOutOfDescriptors: when accept4 fails for want of file
// descriptors, the event loop pauses accepting instead of spinning on the
// listening socket (which stays readable while connections wait in its
// backlog), and accepts again once descriptors are free. The proxy runs in
// a child process (this test binary again) whose descriptor limit is set
// just above what it holds at start, so the test's own process is not
// limited.
func TestLoopAcceptOutOfDescriptors(t *testing.T) {
	if os.Getenv("FRONTDOOR_EMFILE_CHILD") != "" {
		emfileChild(t)
		return
	}
	t.Parallel()
	backend := startHandler(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") })
	pid, _, stdout := startChild(t, "TestLoopAcceptOutOfDescriptors", "FRONTDOOR_EMFILE_CHILD="+backend)
	addr := ""
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		t.Fatal("the child did not report its address")
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()

	// More connections than the child has descriptors left: each sends a
	// request (TCP_DEFER_ACCEPT holds back connections that sent nothing)
	// and stays open.
	var held []net.Conn
	for range 48 {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	}
	answered := 0
	wait := time.Now().Add(500 * time.Millisecond)
	for _, c := range held {
		_ = c.SetReadDeadline(wait)
		var resp fasthttp.Response
		if resp.Read(bufio.NewReader(c)) == nil && resp.StatusCode() == 200 {
			answered++
		}
	}
	if answered == 0 || answered == len(held) {
		t.Fatalf("%d of %d connections answered: the descriptor limit did not bite", answered, len(held))
	}

	// Out of descriptors, with connections waiting: CPU over one second.
	before := procCPUSeconds(t, pid)
	time.Sleep(time.Second)
	if used := procCPUSeconds(t, pid) - before; used > 0.25 {
		t.Errorf("the proxy used %.2f s of CPU in 1 s while out of descriptors: it spins on accept", used)
	}

	for _, c := range held {
		_ = c.Close()
	}
	// Descriptors are free again: a new connection is served within the
	// longest pause (1 s) and the backlog's closed connections.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			var resp fasthttp.Response
			err = resp.Read(bufio.NewReader(c))
			_ = c.Close()
			if err == nil && resp.StatusCode() == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not served again after descriptors were freed: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// emfileChild runs the proxy of TestLoopAcceptOutOfDescriptors with a
// descriptor limit 16 above what it holds, reports its address and serves
// until its stdin closes.
func emfileChild(t *testing.T) {
	backend := os.Getenv("FRONTDOOR_EMFILE_CHILD")
	p := upProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "s"
`+poolTOML("s", `health = { check = "none" }`, backend), nil)
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	lim := syscall.Rlimit{Cur: uint64(len(entries) + 16), Max: uint64(len(entries) + 16)}
	var old syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old)
	lim.Max = old.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	fmt.Println("ADDR " + p.Addr("web").String())
	_, _ = io.Copy(io.Discard, os.Stdin)
}
