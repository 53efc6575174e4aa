package tcp

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// startRedis runs redis-server on a free 127.0.0.1 port until the test ends.
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed")
	}
	port := closedAddr(t)
	_, portStr, _ := net.SplitHostPort(port)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--bind", "127.0.0.1", "--port", portStr,
		"--save", "", "--appendonly", "no", "--dir", t.TempDir(), "--protected-mode", "yes")
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	eventually(t, "redis-server to listen", func() bool {
		c, err := net.DialTimeout("tcp", port, time.Second)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	})
	return port
}

// resp is a minimal RESP2 client: enough for PING, SET and GET.
type resp struct {
	c net.Conn
	r *bufio.Reader
}

func (r *resp) do(args ...[]byte) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n", len(a))
		b.Write(a)
		b.WriteString("\r\n")
	}
	if _, err := r.c.Write(b.Bytes()); err != nil {
		return nil, err
	}
	line, err := r.r.ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	line = bytes.TrimSuffix(line, []byte("\r\n"))
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return nil, fmt.Errorf("redis: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(string(line[1:]))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("redis: bulk %q", line)
		}
		v := make([]byte, n+2)
		if _, err := io.ReadFull(r.r, v); err != nil {
			return nil, err
		}
		return v[:n], nil
	}
	return nil, fmt.Errorf("redis: reply %q", line)
}

func TestRedisThroughProxy(t *testing.T) {
	t.Parallel()
	p := startProxy(t, Options{IdleTimeout: time.Minute}, &Upstream{Pool: newPool(t, startRedis(t))})
	c := dial(t, p.addr)
	r := &resp{c: c, r: bufio.NewReader(c)}
	if got, err := r.do([]byte("PING")); err != nil || string(got) != "PONG" {
		t.Fatalf("PING: %q, %v", got, err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	for i := range 3 {
		key := []byte("k" + strconv.Itoa(i))
		if got, err := r.do([]byte("SET"), key, big); err != nil || string(got) != "OK" {
			t.Fatalf("SET: %q, %v", got, err)
		}
		got, err := r.do([]byte("GET"), key)
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("GET returned %d bytes, %v; want the 1 MiB value", len(got), err)
		}
	}
	if got, err := r.do([]byte("GET"), []byte("missing")); err == nil {
		t.Fatalf("GET missing: %q", got)
	}
	_ = c.Close()
	p.waitIdle(t)
	if up := p.bytes("upstream"); up < 3<<20 {
		t.Errorf("tcp_bytes_total{direction=upstream} = %v after 3 MiB of SETs", up)
	}
}
