package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"frontdoor/internal/loopback"
	"frontdoor/internal/uring"
)

// TestMain runs the relay itself when the test binary is started as one
// (TestRelayModes).
func TestMain(m *testing.M) {
	if os.Getenv("URINGRELAY_CHILD") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// echoBackend answers every read with "re:" and the bytes read.
func echoBackend(t *testing.T) string {
	t.Helper()
	return loopback.Serve(t, func(c net.Conn) {
		buf := make([]byte, 512)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if _, err := c.Write(append([]byte("re:"), buf[:n]...)); err != nil {
				return
			}
		}
	})
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestRelayModes sends request/answer exchanges through each back end of
// the relay (a child process) to a real backend and checks every byte.
func TestRelayModes(t *testing.T) {
	t.Parallel()
	r, err := uring.New(8, 0, 0)
	haveUring := err == nil
	if haveUring {
		r.Close()
	} else if !errors.Is(err, uring.ErrUnsupported) {
		t.Fatalf("uring.New: %v", err)
	}
	backend := echoBackend(t)
	for _, tc := range []struct{ name, mode, flags string }{
		{"epoll", "epoll", "coop"},
		{"uring", "uring", "coop"},
		{"uring-defer", "uring", "defer"},
		{"uring-fixed", "uring", "fixed"},
		{"uring-skip", "uring", "skip"},
		{"uringw", "uringw", "coop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.mode != "epoll" && !haveUring {
				t.Skip("io_uring unavailable here")
			}
			addr := freePort(t)
			cmd := exec.Command(os.Args[0], "-listen", addr, "-backend", backend, "-mode", tc.mode, "-flags", tc.flags, "-max", "30s")
			cmd.Env = append(os.Environ(), "URINGRELAY_CHILD=1", "GOMAXPROCS=1")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			})
			var conns []net.Conn
			deadline := time.Now().Add(5 * time.Second)
			for len(conns) < 4 {
				c, err := net.Dial("tcp4", addr)
				if err != nil {
					if time.Now().After(deadline) {
						t.Fatalf("dial relay: %v; relay says %q", err, stderr.String())
					}
					time.Sleep(10 * time.Millisecond)
					continue
				}
				defer c.Close()
				conns = append(conns, c)
			}
			buf := make([]byte, 64)
			for i := range 50 {
				for j, c := range conns {
					msg := fmt.Sprintf("req-%d-%d", j, i)
					_ = c.SetDeadline(time.Now().Add(5 * time.Second))
					if _, err := c.Write([]byte(msg)); err != nil {
						t.Fatalf("write: %v", err)
					}
					want := "re:" + msg
					if _, err := io.ReadFull(c, buf[:len(want)]); err != nil || string(buf[:len(want)]) != want {
						t.Fatalf("exchange %d on conn %d: got %q, %v; want %q", i, j, buf[:len(want)], err, want)
					}
				}
			}
		})
	}
}
