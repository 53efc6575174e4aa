// Command frontdoor is the frontdoor load balancer daemon.
//
//	frontdoor -config FILE           run
//	frontdoor -check -config FILE    validate FILE, print every error, exit 0 or 1
//	frontdoor -version               print the version
//
// Signals: SIGHUP reloads the config, SIGTERM and SIGINT drain and exit 0,
// SIGUSR1 reopens the access log file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
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
	fs := flag.NewFlagSet("frontdoor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "/etc/frontdoor/frontdoor.toml", "config file")
	check := fs.Bool("check", false, "validate the config file, print every error with its line, and exit 0 (valid) or 1")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "frontdoor %s %s\n", version, runtime.Version())
		return 0
	}
	cfg, err := config.Load(*configPath)
	if *check {
		if err != nil {
			printConfigErrors(stderr, err)
			return 1
		}
		fmt.Fprintln(stdout, "config OK")
		return 0
	}
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	if err := serve(cfg, *configPath, stderr); err != nil {
		fmt.Fprintln(stderr, "frontdoor:", err)
		return 1
	}
	return 0
}

func printConfigErrors(w io.Writer, err error) {
	if errs := config.Errors(err); len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintln(w, e)
		}
		return
	}
	fmt.Fprintln(w, err)
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	switch level {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// serve runs the daemon until SIGTERM or SIGINT, then drains.
func serve(cfg *config.Config, path string, stderr io.Writer) error {
	logger := newLogger(stderr, cfg.Log.Level)
	notify, err := newNotifier()
	if err != nil {
		return err
	}
	defer notify.close()

	reg := prometheus.NewRegistry()
	m := metrics.New(reg, version)

	// Signals first, so that a SIGHUP during start-up is not lost.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	defer signal.Stop(sigs)

	logCtx, stopLog := context.WithCancel(context.Background())
	var access *proxy.AccessLog
	if cfg.Log.Access != "off" {
		access, err = proxy.NewAccessLog(logCtx, cfg.Log.Access, m.AccessLogDropped.Inc, logger)
		if err != nil {
			stopLog()
			return err
		}
	}
	defer func() {
		stopLog()
		if access != nil {
			<-access.Done()
		}
	}()

	px := proxy.New(proxy.Options{Metrics: m, Logger: logger, AccessLog: access})
	if err := px.Apply(cfg); err != nil {
		m.ConfigReloads.WithLabelValues("failure").Inc()
		return err
	}
	state := &reloadState{path: path, loaded: time.Now(), ok: true}
	m.ReloadSuccessful.Set(1)
	m.ReloadTimestamp.Set(float64(time.Now().Unix()))

	var admin *metrics.Admin
	if cfg.Admin.Bind != "off" {
		admin, err = metrics.NewAdmin(metrics.AdminOptions{
			Bind:     cfg.Admin.Bind,
			Gatherer: reg,
			Ready:    px.Ready,
			Status:   func() any { return px.Status(state.snapshot()) },
			Logger:   logger,
		})
		if err != nil {
			_ = px.Shutdown(context.Background())
			return err
		}
		go func() {
			if err := admin.Serve(); err != nil {
				logger.Error("admin listener stopped", "err", err)
			}
		}()
	}
	logger.Info("frontdoor started", "version", version, "config", path, "listeners", len(cfg.Listeners), "pools", len(cfg.Pools))
	_ = notify.send("READY=1\nSTATUS=serving " + summary(cfg))

	wd, err := watchdogInterval()
	if err != nil {
		logger.Warn("watchdog disabled", "err", err)
	}
	var wdTick <-chan time.Time
	if wd > 0 {
		t := time.NewTicker(wd)
		defer t.Stop()
		wdTick = t.C
		_ = notify.send("WATCHDOG=1")
	}

	drain := cfg.Global.DrainTimeout.Duration
	for {
		select {
		case <-wdTick:
			_ = notify.send("WATCHDOG=1")
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				// Coalesce: reloads that arrived meanwhile are served by
				// this one, which reads the file as it is now.
				drainSignals(sigs, syscall.SIGHUP)
				if d, ok := reload(px, m, state, notify, logger); ok {
					drain = d
				}
			case syscall.SIGUSR1:
				if err := access.Reopen(); err != nil {
					logger.Error("reopen access log", "err", err)
				} else {
					logger.Info("access log reopened")
				}
			default:
				logger.Info("draining", "signal", sig.String(), "drain_timeout", drain)
				_ = notify.send("STOPPING=1\nSTATUS=draining")
				ctx, cancel := context.WithTimeout(context.Background(), drain)
				err := px.Shutdown(ctx)
				cancel()
				if admin != nil {
					actx, acancel := context.WithTimeout(context.Background(), time.Second)
					_ = admin.Shutdown(actx)
					acancel()
				}
				if err != nil && !errors.Is(err, context.DeadlineExceeded) {
					logger.Warn("drain", "err", err)
				}
				logger.Info("stopped")
				return nil
			}
		}
	}
}

// drainSignals removes queued copies of sig so a burst of SIGHUPs costs one
// reload. Other signals are put back.
func drainSignals(sigs chan os.Signal, sig os.Signal) {
	var keep []os.Signal
	for {
		select {
		case s := <-sigs:
			if s != sig {
				keep = append(keep, s)
			}
		default:
			for _, s := range keep {
				sigs <- s
			}
			return
		}
	}
}

func summary(cfg *config.Config) string {
	backends := 0
	for _, p := range cfg.Pools {
		backends += len(p.Backends)
	}
	return fmt.Sprintf("%d listeners, %d pools, %d backends", len(cfg.Listeners), len(cfg.Pools), backends)
}
