package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// The watchdog. systemd restarts the service when WATCHDOG=1 stops coming
// for WatchdogSec. The daemon sends it every WatchdogSec/2, and only:
//
//   - from the controller itself (controller.run), so a stuck reload, a
//     deadlock on the proxy's lock or a starved scheduler stops the pings;
//     and
//   - after a self-check passes: a GET of the admin listener's /healthz over
//     loopback, which proves that the network poller, the scheduler and an
//     accept loop of this process still work end to end. It costs one
//     loopback request per interval (a kept-alive connection), and it does
//     not touch the proxy listeners, so it adds nothing to their metrics or
//     access log. With the admin listener off, the controller's liveness is
//     the whole check.
//
// During a drain the pings go on (the drain is bounded by drain_timeout, and
// by TimeoutStopSec in the unit).

// selfCheck GETs the admin /healthz.
type selfCheck struct {
	url    string
	client *http.Client
}

// newSelfCheck checks the admin listener at addr, giving each check half the
// watchdog interval and at most 2s.
func newSelfCheck(addr net.Addr, interval time.Duration) *selfCheck {
	host, port := "127.0.0.1", ""
	if ta, ok := addr.(*net.TCPAddr); ok {
		port = strconv.Itoa(ta.Port)
		switch {
		case ta.IP.IsUnspecified() && ta.IP.To4() == nil:
			host = "::1"
		case !ta.IP.IsUnspecified():
			host = ta.IP.String()
		}
	} else {
		_, port, _ = net.SplitHostPort(addr.String())
	}
	timeout := min(interval/2, 2*time.Second)
	return &selfCheck{
		url: "http://" + net.JoinHostPort(host, port) + "/healthz",
		client: &http.Client{
			Timeout: timeout,
			Transport: &http.Transport{
				Proxy:               nil,
				MaxIdleConnsPerHost: 1,
				IdleConnTimeout:     2*interval + time.Second,
			},
		},
	}
}

// run returns nil when /healthz answered 200 within the timeout. A nil
// selfCheck always passes.
func (c *selfCheck) run() error {
	if c == nil {
		return nil
	}
	resp, err := c.client.Get(c.url)
	if err != nil {
		return fmt.Errorf("self-check %s: %w", c.url, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("self-check %s: status %d", c.url, resp.StatusCode)
	}
	return nil
}

// watchdog sends WATCHDOG=1 if the self-check passes, else logs why not.
func (d *daemon) watchdog() {
	if err := d.check.run(); err != nil {
		d.logger.Warn("watchdog: self-check failed; WATCHDOG=1 withheld", "err", err)
		return
	}
	_ = d.notify.send("WATCHDOG=1")
}
