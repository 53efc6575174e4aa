package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminOptions configure the admin listener. Gatherer is required; the
// functions may be nil.
type AdminOptions struct {
	// Bind is host:port; the caller supplies the default (127.0.0.1:9901).
	Bind string
	// Listener, when set, is the socket to serve instead of binding Bind
	// (one a previous process passed on); Shutdown closes it. nil binds
	// Bind.
	Listener net.Listener
	// Gatherer serves /metrics.
	Gatherer prometheus.Gatherer
	// Ready answers /readyz: true once listeners are bound and the first
	// health round finished. nil means always ready.
	Ready func() bool
	// Status returns the value /status encodes as JSON. nil serves {}.
	Status func() any
	// Control carries out the write endpoints (POST
	// /backends/{pool}/{address}/state, /weight, /uneject). nil turns them
	// off: they answer 403 saying how to turn them on.
	Control BackendController
	// Token returns the bearer token the write endpoints require, called
	// per write request (the daemon swaps it on reload). nil, or an empty
	// result, turns the write endpoints off (403). The caller must not
	// modify a returned slice.
	Token func() []byte
	// Logs serves GET /logs?follow=1 (the access log's live tail); nil
	// answers 404. When Token returns a token, /logs requires it as the
	// write endpoints do.
	Logs LogSource
	// StatusEvery is how often GET /status/events (the status page's
	// stream) sends /status; default 1s.
	StatusEvery time.Duration
	// Logger receives serve errors; nil discards them.
	Logger *slog.Logger
}

// Admin is the admin HTTP server. Create it with NewAdmin (which binds), run
// Serve in a goroutine, and stop it with Shutdown.
type Admin struct {
	ln  net.Listener
	srv *http.Server
}

// NewAdmin binds opts.Bind and returns a server ready to Serve.
func NewAdmin(opts AdminOptions) (*Admin, error) {
	ln := opts.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", opts.Bind); err != nil {
			return nil, fmt.Errorf("bind admin listener %s: %w", opts.Bind, err)
		}
	}
	mux := http.NewServeMux()
	// OpenMetrics (asked for by Prometheus) carries the exemplars; the
	// protobuf format (asked for when native histograms are on) carries
	// native histograms; plain text stays the default.
	mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if opts.Ready != nil && !opts.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		var v any = struct{}{}
		if opts.Status != nil {
			v = opts.Status()
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
	})
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctl := &control{ctl: opts.Control, token: opts.Token, log: logger}
	lg := &logs{src: opts.Logs, token: opts.Token, log: logger}
	mux.HandleFunc("GET /logs", lg.serve)
	sp := &statusPage{status: opts.Status, every: opts.StatusEvery}
	mux.HandleFunc("GET /{$}", sp.page)
	mux.HandleFunc("GET /status/events", sp.events)
	for _, op := range []string{OpState, OpWeight, OpUneject} {
		mux.HandleFunc("POST /backends/{pool}/{address}/"+op, ctl.handle(op))
	}
	errLog := slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)
	if opts.Logger != nil {
		errLog = slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn)
	}
	return &Admin{ln: ln, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          errLog,
	}}, nil
}

// Addr is the bound address (useful with port 0).
func (a *Admin) Addr() net.Addr { return a.ln.Addr() }

// Listener returns the admin listening socket, for passing it on to the
// next process; the caller must not close it or accept on it.
func (a *Admin) Listener() net.Listener { return a.ln }

// Serve answers requests until Shutdown; it returns nil after Shutdown.
func (a *Admin) Serve() error {
	if err := a.srv.Serve(a.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve admin listener: %w", err)
	}
	return nil
}

// Shutdown stops the server, waiting for open requests until ctx ends.
func (a *Admin) Shutdown(ctx context.Context) error { return a.srv.Shutdown(ctx) }
