package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"frontdoor/config"
	"frontdoor/metrics"
	"frontdoor/proxy"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "ctl" {
		return runCtl(args[1:], stdout, stderr) // ctl.go
	}
	if len(args) > 0 && args[0] == "tail" {
		return runTail(args[1:], stdout, stderr) // tail.go
	}
	fs := flag.NewFlagSet("frontdoor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "/etc/frontdoor/frontdoor.toml", "config file")
	check := fs.Bool("check", false, "validate the config file, print every error with its line, and exit 0 (valid) or 1")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "frontdoor: unexpected argument %q; use -config FILE\n", fs.Arg(0))
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "frontdoor %s %s\n", version, runtime.Version())
		return 0
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	if *check {
		// What Load cannot see: the descriptor sets of transcoding routes.
		if err := proxy.Check(cfg); err != nil {
			printConfigErrors(stderr, err)
			return 1
		}
		// Certificates (certs.go): an expired one fails the check, one
		// close to its expiry is a warning.
		expired, soon := certExpiry(cfg, time.Now())
		for _, msg := range soon {
			fmt.Fprintln(stderr, "warning: "+msg)
		}
		if len(expired) > 0 {
			for _, msg := range expired {
				fmt.Fprintln(stderr, msg)
			}
			return 1
		}
		fmt.Fprintln(stdout, "config OK")
		return 0
	}
	if err := serve(cfg, *configPath, stderr); err != nil {
		fmt.Fprintln(stderr, "frontdoor:", err)
		return 1
	}
	return 0
}

func printConfigErrors(w io.Writer, err error) {
	for _, msg := range errorLines(err) {
		fmt.Fprintln(w, msg)
	}
}

// errorLines lists err one problem a line: each config error as
// FILE:LINE: KEY: MSG, anything else as its text.
func errorLines(err error) []string {
	errs := config.Errors(err)
	if len(errs) == 0 {
		return []string{err.Error()}
	}
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	return out
}

func logLevel(name string) slog.Level {
	switch name {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// daemon is the running process: the proxy and what the controller needs to
// reload, report and stop it. Only the controller's goroutine touches cfg.
type daemon struct {
	path     string
	cfg      *config.Config // the running config
	px       *proxy.Proxy
	m        *metrics.Metrics
	state    *reloadState
	notify   *notifier
	logger   *slog.Logger
	level    *slog.LevelVar
	access   *proxy.AccessLog
	admin    *metrics.Admin
	check    *selfCheck // nil: the watchdog proves only the controller
	reg      *prometheus.Registry
	wd       time.Duration // watchdog interval; 0: none
	inh      *inherited    // sockets a previous process passed on
	fds      *fdStore      // systemd's file descriptor store
	draining atomic.Bool
	wasReady atomic.Bool
	// token is the admin write endpoints' bearer token (admin.token_file),
	// read at start and on every reload; nil: the endpoints are off.
	token atomic.Pointer[[]byte]
}

// ready answers /readyz: ready once the listeners are bound and the first
// round of health checks has finished, and from then on until the drain
// starts. Reloads and backend health do not change it: a load balancer in
// front should take this instance out when it stops, not when its backends
// are down (every instance would drop out together) or while a reload
// starts new health checkers.
func (d *daemon) ready() bool {
	if d.draining.Load() {
		return false
	}
	if d.wasReady.Load() {
		return true
	}
	if d.px.Ready() {
		d.wasReady.Store(true)
		return true
	}
	return false
}

// serve runs the daemon until SIGTERM or SIGINT, then drains.
func serve(cfg *config.Config, path string, stderr io.Writer) error {
	level := new(slog.LevelVar)
	level.Set(logLevel(cfg.Log.Level))
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	notify, err := newNotifier()
	if err != nil {
		return err
	}
	defer notify.close()

	// Signals first: from here on a SIGHUP or SIGTERM during start-up waits
	// in its channel instead of killing the process.
	sigs := notifySignals()
	defer sigs.close()

	reg := prometheus.NewRegistry()
	m := metrics.New(reg, version)
	// Both results exist from the start, so rate() and alerts on failures
	// see a 0 before the first failure.
	m.ConfigReloads.WithLabelValues("success")
	m.ConfigReloads.WithLabelValues("failure")

	logCtx, stopLog := context.WithCancel(context.Background())
	// With log.access = "off" the log writes nothing and formats lines
	// only while somebody follows /logs.
	access, err := proxy.NewAccessLog(logCtx, cfg.Log.Access, m.AccessLogDropped.Inc, logger)
	if err != nil {
		stopLog()
		return err
	}
	defer func() {
		stopLog()
		<-access.Done()
	}()

	d := &daemon{
		path: path, cfg: cfg, m: m, notify: notify, logger: logger, level: level, access: access,
		state: &reloadState{path: path}, inh: inheritListeners(logger), fds: &fdStore{n: notify},
	}
	popts := proxy.Options{Metrics: m, Logger: logger, AccessLog: access, Listen: d.inh.listen}
	if d.inh.source != "" {
		// Clients may already wait in the inherited sockets' backlog:
		// they meet checked backends, not a 503.
		popts.FirstRoundWait = firstRoundWait
	}
	d.px = proxy.New(popts)
	tok, err := readAdminToken(cfg)
	if err != nil {
		return err
	}
	d.token.Store(tok)
	if err := d.px.Apply(cfg); err != nil {
		d.inh.closeRest(logger)
		return err
	}
	d.state.succeeded(time.Now())
	m.ReloadSuccessful.Set(1)
	m.ReloadTimestamp.Set(float64(time.Now().Unix()))
	logCertExpiry(logger, cfg) // certs.go

	wd, err := watchdogInterval()
	if err != nil {
		logger.Warn("watchdog disabled", "err", err)
	}
	d.reg, d.wd = reg, wd
	if d.admin, err = d.startAdmin(cfg.Admin.Bind); err != nil {
		d.inh.closeRest(logger)
		_ = d.px.Shutdown(context.Background())
		return err
	}
	d.inh.closeRest(logger)
	if err := d.fds.sync(d.listeners()); err != nil {
		logger.Warn("listening sockets not kept by systemd; a restart will refuse connections", "err", err)
	}
	for _, l := range d.px.Status(proxy.ConfigStatus{}).Listeners {
		logger.Info("listening", "listener", l.Name, "mode", l.Mode, "addr", l.Addr)
	}
	logger.Info("frontdoor started", "version", version, "config", path, "listeners", len(cfg.Listeners), "pools", len(cfg.Pools))
	_ = notify.send("READY=1\nSTATUS=" + d.statusLine())
	if err := reportReady(); err != nil {
		logger.Error("upgrade", "err", err)
	}

	var tick <-chan time.Time
	if wd > 0 {
		t := time.NewTicker(wd)
		defer t.Stop()
		tick = t.C
		d.watchdog()
		logger.Info("watchdog on", "interval", wd)
	}
	ctl := &controller{sigs: sigs, tick: tick, reload: d.reload, reopen: d.reopen, watchdog: d.watchdog, upgrade: d.upgrade, logger: logger}
	sig, next := ctl.run()
	if next != nil {
		d.handOver(next, sigs, tick)
		return nil
	}
	d.drain(sig, sigs, tick)
	return nil
}

// startAdmin binds and serves the admin listener on bind ("off": none, nil)
// and points the watchdog's self-check at it.
func (d *daemon) startAdmin(bind string) (*metrics.Admin, error) {
	d.check = nil
	if bind == "off" {
		return nil, nil
	}
	admin, err := metrics.NewAdmin(metrics.AdminOptions{
		Bind:     bind,
		Listener: d.inh.take(adminFDName, bind),
		Gatherer: d.reg,
		Ready:    d.ready,
		Status:   func() any { return d.px.Status(d.state.snapshot()) },
		Control:  d.px,
		Token:    d.adminToken,
		Logs:     d.access,
		Logger:   d.logger,
	})
	if err != nil {
		return nil, err
	}
	go func() {
		if err := admin.Serve(); err != nil {
			d.logger.Error("admin listener stopped", "err", err)
		}
	}()
	d.logger.Info("admin listening", "addr", admin.Addr().String())
	if d.wd > 0 {
		d.check = newSelfCheck(admin.Addr(), d.wd)
	}
	return admin, nil
}

// readAdminToken reads cfg's admin.token_file; nil (write endpoints off)
// when it names none.
func readAdminToken(cfg *config.Config) (*[]byte, error) {
	if cfg.Admin.TokenFile == "" {
		return nil, nil
	}
	tok, err := metrics.ReadTokenFile(cfg.Admin.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("admin.token_file: %w", err)
	}
	return &tok, nil
}

// adminToken is the admin listener's Token: the token in force, nil when
// the write endpoints are off.
func (d *daemon) adminToken() []byte {
	if p := d.token.Load(); p != nil {
		return *p
	}
	return nil
}

// stopAdmin closes an admin listener, giving its requests a second.
func stopAdmin(admin *metrics.Admin) {
	if admin == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = admin.Shutdown(ctx)
}

// reopen reopens the access log file (SIGUSR1).
func (d *daemon) reopen() {
	if err := d.access.Reopen(); err != nil {
		d.logger.Error("reopen access log", "err", err)
		return
	}
	d.logger.Info("access log reopened")
}

// announceShutdown waits shutdown_delay after sig with /readyz answering
// 503 and the listeners serving as before, so that a load balancer in front
// sees the instance leave before it stops accepting. A second stop signal
// ends the wait.
func (d *daemon) announceShutdown(sig os.Signal, delay time.Duration, sigs *signals, tick <-chan time.Time) {
	d.logger.Info("shutting down: not ready, still serving", "signal", sig.String(), "shutdown_delay", delay)
	_ = d.notify.send("STATUS=not ready after " + sig.String() + "; draining in " + delay.String())
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return
		case s := <-sigs.stop:
			d.logger.Warn("second stop signal: draining now", "signal", s.String())
			return
		case <-tick:
			_ = d.notify.send("WATCHDOG=1")
		}
	}
}

// drain stops the proxy after sig (and shutdown_delay): /readyz turns 503, listeners stop
// accepting and requests in flight get up to drain_timeout. A second stop
// signal cuts the drain short. The watchdog keeps being fed meanwhile: the
// drain is bounded by drain_timeout, and systemd's TimeoutStopSec bounds it
// again.
func (d *daemon) drain(sig os.Signal, sigs *signals, tick <-chan time.Time) {
	timeout := d.cfg.Global.DrainTimeout.Duration
	d.draining.Store(true)
	if delay := d.cfg.Global.ShutdownDelay.Duration; delay > 0 {
		d.announceShutdown(sig, delay, sigs, tick)
	}
	d.logger.Info("draining", "signal", sig.String(), "drain_timeout", timeout)
	_ = d.notify.send("STOPPING=1\nSTATUS=draining after " + sig.String() + ", up to " + timeout.String())
	d.shutdown(timeout, sigs, tick)
}

// shutdown stops accepting and lets connections finish for up to timeout
// (less if a second stop signal arrives), feeding the watchdog meanwhile,
// then closes the admin listener.
func (d *daemon) shutdown(timeout time.Duration, sigs *signals, tick <-chan time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.px.Shutdown(ctx) }()
	var err error
wait:
	for {
		select {
		case err = <-done:
			break wait
		case s := <-sigs.stop:
			d.logger.Warn("second stop signal: closing open connections now", "signal", s.String())
			cancel()
		case <-tick:
			_ = d.notify.send("WATCHDOG=1")
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		d.logger.Warn("drain ended with connections still open; closing them", "err", err)
	} else if err != nil {
		d.logger.Warn("drain", "err", err)
	}
	stopAdmin(d.admin)
	d.logger.Info("stopped")
}
