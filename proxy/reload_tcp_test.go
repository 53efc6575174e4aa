package proxy

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"frontdoor/internal/loopback"
)

// TestReloadKeepsTCPSession: a reload that leaves a tcp listener as it was
// must leave its open sessions alone, also after drain_timeout (a pooled
// PostgreSQL connection lives for hours). drain_timeout bounds sessions of
// removed listeners and the drain on SIGTERM, not the life of a session
// across reloads.
func TestReloadKeepsTCPSession(t *testing.T) {
	t.Parallel()
	echo := loopback.Echo(t, "echo")
	toml := `
[global]
drain_timeout = "200ms"
[admin]
bind = "off"
[log]
access = "off"
[[listener]]
name = "l4"
bind = "127.0.0.1:0"
mode = "tcp"
pool = "echo"
` + poolTOML("echo", `health = { check = "none" }`, echo)
	p := startProxy(t, toml, nil)
	c, err := net.Dial("tcp", p.Addr("l4").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(msg string) error {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, msg+"\n"); err != nil {
			return err
		}
		_, err := r.ReadString('\n')
		return err
	}
	if err := say("before"); err != nil {
		t.Fatal(err)
	}
	if err := reloadApply(t, p, toml); err != nil {
		t.Fatal(err)
	}
	// The property is about time passing: wait out the drain, twice over.
	time.Sleep(400 * time.Millisecond)
	if err := say("after"); err != nil {
		t.Errorf("session closed by a reload that changed nothing: %v", err)
	}
}
