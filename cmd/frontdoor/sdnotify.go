package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// notifier speaks systemd's notify protocol: datagrams of KEY=VALUE lines to
// the unix socket named by $NOTIFY_SOCKET. With no socket (not started by
// systemd, or Type is not notify) every call is a no-op.
type notifier struct {
	conn *net.UnixConn
}

// newNotifier opens $NOTIFY_SOCKET if set. An abstract socket ("@name") is
// supported.
func newNotifier() (*notifier, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return &notifier{}, nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("open NOTIFY_SOCKET %s: %w", os.Getenv("NOTIFY_SOCKET"), err)
	}
	return &notifier{conn: conn}, nil
}

// send writes one notification; state is one or more "KEY=VALUE" lines.
func (n *notifier) send(state string) error {
	if n.conn == nil {
		return nil
	}
	if _, err := n.conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify systemd %q: %w", state, err)
	}
	return nil
}

// reloading announces a reload, with the MONOTONIC_USEC that systemd
// requires for Type=notify-reload and accepts for Type=notify, and extra
// lines such as a STATUS=.
func (n *notifier) reloading(extra string) error {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return fmt.Errorf("read monotonic clock: %w", err)
	}
	usec := ts.Sec*1_000_000 + ts.Nsec/1000
	return n.send("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(usec, 10) + "\n" + extra)
}

// watchdogInterval returns half of $WATCHDOG_USEC (how often to send
// WATCHDOG=1), or 0 when systemd asked for no watchdog or asked another
// process ($WATCHDOG_PID).
func watchdogInterval() (time.Duration, error) {
	v := os.Getenv("WATCHDOG_USEC")
	if v == "" {
		return 0, nil
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0, nil
	}
	usec, err := strconv.ParseInt(v, 10, 64)
	if err != nil || usec <= 0 {
		return 0, errors.New("WATCHDOG_USEC is not a positive integer: " + v)
	}
	return time.Duration(usec) * time.Microsecond / 2, nil
}

func (n *notifier) close() {
	if n.conn != nil {
		_ = n.conn.Close()
	}
}
