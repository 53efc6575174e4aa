package proxy

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"frontdoor/config"
	"frontdoor/internal/loopback"
)

// TestTCPListenerThroughApply drives a tcp listener configured from TOML, and
// reloads it with another backend while a session stays open.
func TestTCPListenerThroughApply(t *testing.T) {
	t.Parallel()
	a, b := loopback.Echo(t, "a"), loopback.Echo(t, "b")
	toml := func(addr string) string {
		return `
[admin]
bind = "off"
[log]
access = "off"
[[listener]]
name = "l4"
bind = "127.0.0.1:0"
mode = "tcp"
pool = "echo"
` + poolTOML("echo", `health = { check = "tcp", interval = "1s" }`, addr)
	}
	p := startProxy(t, toml(a), nil)
	addr := p.Addr("l4").String()
	say := func(c net.Conn, r *bufio.Reader, msg string) string {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, msg+"\n"); err != nil {
			t.Fatal(err)
		}
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(line)
	}
	c1, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	r1 := bufio.NewReader(c1)
	if got := say(c1, r1, "hi"); got != "a hi" {
		t.Fatalf("got %q, want %q", got, "a hi")
	}

	// Reload: same bind (socket kept), pool now points at b. The open
	// session stays on a; new connections go to b.
	// The bind is unchanged ("127.0.0.1:0" is the key), so the socket is
	// kept, as an operator's unchanged bind would be.
	cfg, err := config.Parse([]byte(toml(b)), "reload.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "backend b healthy", p.Ready)
	if got := say(c1, r1, "still"); got != "a still" {
		t.Errorf("open session after reload: got %q, want %q", got, "a still")
	}
	var got string
	waitFor(t, 5*time.Second, "new connections on b", func() bool {
		c2, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		got = say(c2, bufio.NewReader(c2), "new")
		return got == "b new"
	})
}
