package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one child process the harness started. Only the harness's own
// children are ever signalled, always by PID.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string        // path of the file holding its stdout and stderr
	done chan struct{} // closed when it has exited
	err  error         // exit status, valid after done is closed
}

// startProc starts argv pinned with taskset to cpus ("" means no pinning),
// with extraEnv added to the environment and output going to logPath. The
// child is killed if the harness dies (Pdeathsig).
func startProc(name, cpus string, argv, extraEnv []string, logPath string) (*proc, error) {
	if cpus != "" {
		argv = append([]string{"taskset", "-c", cpus}, argv...)
	}
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// pid returns the process id (taskset execs its command, so it is the
// program's own).
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process, waits up to grace, then sends SIGKILL
// to it and to every descendant it had (each by PID).
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	var tree []int
	if pids, err := descendants("/proc", p.pid()); err == nil {
		tree = pids
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		for _, pid := range tree {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	// Workers that outlived their master (nginx after a SIGKILL) are ours too.
	for _, pid := range tree[min(1, len(tree)):] {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
			if s, err := parseStat(b); err == nil && s.PPID == 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// logTail returns the last few lines of the process's output, for error
// messages.
func (p *proc) logTail() string {
	b, err := os.ReadFile(p.log)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	lines = lines[max(0, len(lines)-3):]
	return strings.Join(lines, " | ")
}

// descendants returns pid followed by all its live descendants.
func descendants(root string, pid int) ([]int, error) {
	dirs, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, d := range dirs {
		n, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(root + "/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		if s, err := parseStat(b); err == nil {
			children[s.PPID] = append(children[s.PPID], n)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out, nil
}

// listening reports whether something listens on 127.0.0.1:port (or any
// IPv4 address:port), read from a /proc/net/tcp table, without connecting.
func listening(tcpTable []byte, port int) bool {
	want1 := fmt.Sprintf("0100007F:%04X", port)
	want2 := fmt.Sprintf("00000000:%04X", port)
	sc := bufio.NewScanner(bytes.NewReader(tcpTable))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// sl local_address rem_address st ...
		if len(f) < 4 || f[3] != "0A" {
			continue
		}
		if f[1] == want1 || f[1] == want2 {
			return true
		}
	}
	return false
}

// waitListening polls /proc/net/tcp until port is in LISTEN state, p exits,
// or the deadline passes.
func waitListening(ctx context.Context, p *proc, port int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		if b, err := os.ReadFile("/proc/net/tcp"); err == nil && listening(b, port) {
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited before listening on %d: %v: %s", p.name, port, p.err, p.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: nothing listens on 127.0.0.1:%d after %v", nameOf(p), port, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func nameOf(p *proc) string {
	if p == nil {
		return "backend"
	}
	return p.name
}

// waitHTTP polls GET url until it answers 200, p exits, or the deadline
// passes.
func waitHTTP(ctx context.Context, p *proc, url string, within time.Duration) error {
	// TLS targets serve a self-signed bench certificate (tls.go).
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(within)
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited: %v: %s", p.name, p.err, p.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: GET %s: %w", nameOf(p), url, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ports hands out listening ports below the kernel's ephemeral range, so
// that the many outgoing connections of a run (wrk, proxies to backends)
// never take a port the next target wants to bind. Each port is handed out
// at most once per run. Not safe for concurrent use.
type ports struct {
	next, end int
}

// newPorts reads the ephemeral range from localRange (the contents of
// /proc/sys/net/ipv4/ip_local_port_range; empty means the Linux default
// 32768-60999) and returns ports counting up from just below it, starting
// at an offset derived from seed so concurrent harnesses rarely meet.
func newPorts(localRange string, seed int) (*ports, error) {
	low := 32768
	if f := strings.Fields(localRange); len(f) == 2 {
		n, err := strconv.Atoi(f[0])
		if err != nil {
			return nil, fmt.Errorf("ip_local_port_range %q: %w", localRange, err)
		}
		low = n
	}
	const first = 10000
	if low-first < 1000 {
		return nil, fmt.Errorf("ephemeral ports start at %d: no room below for listeners", low)
	}
	span := low - first
	return &ports{next: first + (seed%span+span)%span/2, end: low}, nil
}

// get returns the next port in the range that a probe listener can bind on
// 127.0.0.1.
func (p *ports) get() (int, error) {
	for ; p.next < p.end; p.next++ {
		ln, err := net.Listen("tcp4", addr(p.next))
		if err != nil {
			continue
		}
		ln.Close()
		p.next++
		return p.next - 1, nil
	}
	return 0, errors.New("no free port below the ephemeral range")
}
