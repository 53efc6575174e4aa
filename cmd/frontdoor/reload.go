package main

import (
	"log/slog"
	"sync"
	"time"

	"frontdoor/config"
	"frontdoor/metrics"
	"frontdoor/proxy"
)

// reloadState is what /status tells about the config file and reloads.
type reloadState struct {
	mu      sync.Mutex
	path    string
	loaded  time.Time
	ok      bool
	lastErr []string
	tried   time.Time
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

// reload reads the config file again and applies it. A file that fails to
// load or apply changes nothing: the old config keeps serving, and the
// failure shows in the log, the metrics and /status. It returns the new
// drain timeout when the reload succeeded.
func reload(px *proxy.Proxy, m *metrics.Metrics, st *reloadState, n *notifier, logger *slog.Logger) (time.Duration, bool) {
	_ = n.reloading()
	defer func() { _ = n.send("READY=1") }()
	now := time.Now()
	st.mu.Lock()
	st.tried = now
	st.mu.Unlock()

	cfg, err := config.Load(st.path)
	if err == nil {
		err = px.Apply(cfg)
	}
	if err != nil {
		var msgs []string
		if errs := config.Errors(err); len(errs) > 0 {
			for _, e := range errs {
				msgs = append(msgs, e.Error())
			}
		} else {
			msgs = []string{err.Error()}
		}
		for _, msg := range msgs {
			logger.Error("reload failed; the previous config keeps serving", "err", msg)
		}
		m.ConfigReloads.WithLabelValues("failure").Inc()
		m.ReloadSuccessful.Set(0)
		st.mu.Lock()
		st.ok = false
		st.lastErr = msgs
		st.mu.Unlock()
		_ = n.send("STATUS=reload failed; serving the previous config")
		return 0, false
	}
	m.ConfigReloads.WithLabelValues("success").Inc()
	m.ReloadSuccessful.Set(1)
	m.ReloadTimestamp.Set(float64(now.Unix()))
	st.mu.Lock()
	st.ok = true
	st.loaded = now
	st.lastErr = nil
	st.mu.Unlock()
	logger.Info("config reloaded", "config", st.path)
	_ = n.send("STATUS=serving " + summary(cfg))
	return cfg.Global.DrainTimeout.Duration, true
}
