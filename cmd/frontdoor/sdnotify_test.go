package main

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// notifySocket is a fake systemd notify socket: a unixgram socket in a temp
// dir whose datagrams arrive on msgs.
type notifySocket struct {
	path string
	msgs chan string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	s := &notifySocket{path: path, msgs: make(chan string, 1024)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(s.msgs)
				return
			}
			s.msgs <- string(buf[:n])
		}
	}()
	return s
}

// next returns the next datagram that has a line starting with key (such
// as "READY=1"), counting the WATCHDOG=1 datagrams it skips.
func (s *notifySocket) next(t *testing.T, key string, watchdogs *int) string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case msg, ok := <-s.msgs:
			if !ok {
				t.Fatalf("notify socket closed while waiting for %s", key)
			}
			if msg == "WATCHDOG=1" {
				*watchdogs++
			}
			for line := range strings.Lines(msg) {
				if strings.HasPrefix(strings.TrimSpace(line), key) {
					return msg
				}
			}
		case <-deadline:
			t.Fatalf("no %s on the notify socket after 20s", key)
		}
	}
}

// TestSystemdNotify runs the daemon as systemd would with Type=notify and
// WatchdogSec: it must say READY=1, then RELOADING=1 (with MONOTONIC_USEC)
// and READY=1 around a SIGHUP reload, STOPPING=1 after SIGTERM, with
// WATCHDOG=1 pings at half of WATCHDOG_USEC in between.
func TestSystemdNotify(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b0")
	sock := listenNotify(t)
	cfgPath := filepath.Join(t.TempDir(), "frontdoor.toml")
	writeConfig(t, cfgPath, simpleConfig(b.addr, ""))
	const watchdogUsec = 400_000 // pings every 200ms
	d := startDaemon(t, cfgPath, "NOTIFY_SOCKET="+sock.path, "WATCHDOG_USEC="+strconv.Itoa(watchdogUsec))

	watchdogs := 0
	ready := sock.next(t, "READY=1", &watchdogs)
	if !strings.Contains(ready, "STATUS=serving 1 listeners, 1 pools, 1 backends") {
		t.Errorf("READY=1 without the expected STATUS=: %q", ready)
	}
	admin, addr := d.started("web")
	if code, body, err := get(addr, "/"); err != nil || code != 200 || body != "b0" {
		t.Fatalf("not serving after READY=1: %d %q %v", code, body, err)
	}
	// Pings keep coming while the daemon idles: at least 3 (600ms worth).
	start := time.Now()
	for watchdogs < 3 {
		sock.next(t, "WATCHDOG=1", &watchdogs)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Errorf("3 pings in %v: faster than every WATCHDOG_USEC/2", el)
	}

	before := monotonicUsec(t)
	d.signal(syscall.SIGHUP)
	reloading := sock.next(t, "RELOADING=1", &watchdogs)
	m := regexp.MustCompile(`(?m)^MONOTONIC_USEC=(\d+)$`).FindStringSubmatch(reloading)
	if m == nil {
		t.Fatalf("RELOADING=1 without MONOTONIC_USEC: %q", reloading)
	}
	if usec, _ := strconv.ParseInt(m[1], 10, 64); usec < before || usec > monotonicUsec(t) {
		t.Errorf("MONOTONIC_USEC=%d is not the CLOCK_MONOTONIC time of the reload (sent after %d)", usec, before)
	}
	ready = sock.next(t, "READY=1", &watchdogs)
	if !strings.Contains(ready, "STATUS=serving") || !strings.Contains(ready, "reloads: 1 ok, 0 failed") {
		t.Errorf("READY=1 after the reload without the expected STATUS=: %q", ready)
	}
	waitMetric(t, admin, `frontdoor_config_reloads_total{result="success"}`, 1, 10*time.Second)

	d.signal(syscall.SIGTERM)
	stopping := sock.next(t, "STOPPING=1", &watchdogs)
	if !strings.Contains(stopping, "STATUS=draining") {
		t.Errorf("STOPPING=1 without STATUS=draining: %q", stopping)
	}
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatal("daemon still running 15s after SIGTERM")
	}
	if d.err != nil {
		t.Fatalf("daemon exit: %v", d.err)
	}
	d.noRaces()
}

func monotonicUsec(t *testing.T) int64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Sec*1_000_000 + ts.Nsec/1000
}

func TestWatchdogInterval(t *testing.T) {
	// Not parallel: it sets environment variables.
	tests := []struct {
		name, usec, pid string
		want            time.Duration
		err             bool
	}{
		{name: "unset", want: 0},
		{name: "half of WatchdogSec", usec: "30000000", want: 15 * time.Second},
		{name: "for this process", usec: "2000000", pid: strconv.Itoa(os.Getpid()), want: time.Second},
		{name: "for another process", usec: "2000000", pid: "1", want: 0},
		{name: "garbage", usec: "soon", err: true},
		{name: "zero", usec: "0", err: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tc.usec)
			t.Setenv("WATCHDOG_PID", tc.pid)
			got, err := watchdogInterval()
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("watchdogInterval() = %v, %v; want %v, error %v", got, err, tc.want, tc.err)
			}
		})
	}
}

// TestSystemdNotifyAbstractSocket: NOTIFY_SOCKET may name an abstract
// socket ("@name"), as systemd in containers does.
func TestSystemdNotifyAbstractSocket(t *testing.T) {
	t.Parallel()
	name := "@frontdoor-test-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	b := startBackend(t, "b0")
	cfgPath := filepath.Join(t.TempDir(), "frontdoor.toml")
	writeConfig(t, cfgPath, simpleConfig(b.addr, ""))
	d := startDaemon(t, cfgPath, "NOTIFY_SOCKET="+name)
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	// The listening sockets go to the fd store first (fdstore.go).
	for err == nil && strings.HasPrefix(string(buf[:n]), "FDSTORE=1\n") {
		n, err = conn.Read(buf)
	}
	if err != nil || !strings.HasPrefix(string(buf[:n]), "READY=1\n") {
		t.Fatalf("first datagram after FDSTORE on the abstract socket: %q %v; want READY=1", buf[:n], err)
	}
	d.stop(15 * time.Second)
}
