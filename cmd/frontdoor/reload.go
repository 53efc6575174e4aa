package main

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"frontdoor/config"
	"frontdoor/proxy"
)

// reloadState is what /status and STATUS= tell about the config file and
// reloads. The controller writes it; admin requests read it.
type reloadState struct {
	mu        sync.Mutex
	path      string
	ok        bool
	loaded    time.Time // last successful load or reload
	tried     time.Time // last reload attempt
	lastErr   []string
	successes int // reloads, not counting the initial load
	failures  int
}

func (s *reloadState) snapshot() proxy.ConfigStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return proxy.ConfigStatus{
		File:                 s.path,
		LastReloadSuccessful: s.ok,
		LastSuccess:          s.loaded,
		LastAttempt:          s.tried,
		LastErrors:           append([]string(nil), s.lastErr...),
	}
}

func (s *reloadState) succeeded(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.loaded.IsZero() {
		s.successes++
		s.tried = now
	}
	s.ok, s.loaded, s.lastErr = true, now, nil
}

func (s *reloadState) failed(now time.Time, msgs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures++
	s.ok, s.tried, s.lastErr = false, now, msgs
}

// reload reads the config file again and applies it (SIGHUP). A file that
// fails to load or apply changes nothing: the old config keeps serving, every
// error is logged with its line, config_last_reload_successful drops to 0,
// config_reloads_total{result="failure"} counts it, and /status lists the
// errors. systemd hears RELOADING=1 before and READY=1 after, either way.
func (d *daemon) reload() {
	start := time.Now()
	_ = d.notify.reloading("STATUS=reloading " + d.path)
	// Latch readiness now: the new runtime's health checkers start over,
	// and /readyz must not drop while they do.
	d.ready()

	cfg, err := config.Load(d.path)
	var commit, undo func()
	var tok *[]byte
	if err == nil {
		// The token file is read again: a reload rotates the token, or
		// turns the write endpoints on or off. Unreadable: the reload
		// fails and the old token stays.
		tok, err = readAdminToken(cfg)
	}
	if err == nil {
		commit, undo, err = d.moveOutside(cfg)
	}
	if err == nil {
		if err = d.px.Apply(cfg); err != nil {
			undo()
		}
	}
	if err != nil {
		msgs := errorLines(err)
		for _, msg := range msgs {
			d.logger.Error("reload failed; the previous config keeps serving", "config", d.path, "err", msg)
		}
		d.m.ConfigReloads.WithLabelValues("failure").Inc()
		d.m.ReloadSuccessful.Set(0)
		d.state.failed(start, msgs)
		_ = d.notify.send("READY=1\nSTATUS=" + d.statusLine())
		return
	}
	commit()
	if err := d.fds.sync(d.listeners()); err != nil {
		d.logger.Warn("listening sockets not kept by systemd; a restart will refuse connections", "err", err)
	}
	d.token.Store(tok)
	d.level.Set(logLevel(cfg.Log.Level))
	d.cfg = cfg
	d.m.ConfigReloads.WithLabelValues("success").Inc()
	d.m.ReloadSuccessful.Set(1)
	d.m.ReloadTimestamp.Set(float64(start.Unix()))
	d.state.succeeded(start)
	d.logger.Info("config reloaded", "config", d.path, "took", time.Since(start).Round(time.Microsecond))
	logCertExpiry(d.logger, cfg) // certs.go
	_ = d.notify.send("READY=1\nSTATUS=" + d.statusLine())
}

// moveOutside applies the settings that live outside the proxy before the
// proxy takes the new config: the admin listener's bind (the new socket is
// bound first, the old one closed only once the reload succeeds) and the
// access log's destination (lines queued so far go to the old one). Either
// failing fails the reload with nothing changed. Turning the access log on
// or off needs a restart: the proxy was built with it, or without it.
// commit finishes the move once the reload succeeded (the old admin
// listener closes); undo puts back what was applied, for an Apply that
// fails after it.
func (d *daemon) moveOutside(cfg *config.Config) (commit, undo func(), err error) {
	oldBind, newBind := d.cfg.Admin.Bind, cfg.Admin.Bind
	oldLog, newLog := d.cfg.Log.Access, cfg.Log.Access
	if (oldLog == "off") != (newLog == "off") {
		return nil, nil, fmt.Errorf("log.access: %q -> %q: turning the access log on or off takes a restart (systemctl restart frontdoor); a reload can only move it between stdout and files", oldLog, newLog)
	}
	if oldLog != newLog {
		if err := d.access.Retarget(newLog); err != nil {
			return nil, nil, fmt.Errorf("log.access: move the access log to %s: %w; the old one stays", newLog, err)
		}
		d.logger.Info("access log moved", "from", oldLog, "to", newLog)
	}
	undoLog := func() {
		if oldLog != newLog {
			_ = d.access.Retarget(oldLog)
		}
	}
	if oldBind == newBind {
		return func() {}, undoLog, nil
	}
	oldAdmin, oldCheck := d.admin, d.check
	admin, err := d.startAdmin(newBind)
	if err != nil {
		d.check = oldCheck
		undoLog()
		return nil, nil, fmt.Errorf("admin.bind: %w; the admin listener stays on %s", err, oldBind)
	}
	d.admin = admin
	// The old admin listener closes once the reload is done; a request it
	// is serving gets a second.
	commit = func() { go stopAdmin(oldAdmin) }
	return commit, func() {
		stopAdmin(admin)
		d.admin, d.check = oldAdmin, oldCheck
		undoLog()
	}, nil
}

// statusLine is the STATUS= text systemctl status shows.
func (d *daemon) statusLine() string {
	backends := 0
	for _, p := range d.cfg.Pools {
		backends += len(p.Backends)
	}
	s := fmt.Sprintf("serving %d listeners, %d pools, %d backends", len(d.cfg.Listeners), len(d.cfg.Pools), backends)
	d.state.mu.Lock()
	defer d.state.mu.Unlock()
	if d.state.successes+d.state.failures > 0 {
		s += "; reloads: " + strconv.Itoa(d.state.successes) + " ok, " + strconv.Itoa(d.state.failures) + " failed"
	}
	if !d.state.ok {
		s += "; LAST RELOAD FAILED at " + d.state.tried.Format(time.TimeOnly) + ", previous config kept: " + d.state.lastErr[0]
	}
	return s
}
