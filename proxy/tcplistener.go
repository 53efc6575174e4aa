package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"

	"frontdoor/config"
	"frontdoor/proxy/tcp"
)

// tcpListener is one bound tcp listener. The socket outlives reloads; the
// tcp.Server on it is replaced on every reload (TakeOver hands the socket
// over), so changed listener settings apply to new connections while open
// sessions finish on the server and upstream they started with. The current
// server's Shutdown covers those sessions too: SIGTERM gives every session
// drain_timeout, whichever config it was opened under.
type tcpListener struct {
	name string
	bind string
	ln   net.Listener
	srv  *tcp.Server
}

// applyTCP starts (ln != nil: a newly bound socket) or re-arms a tcp
// listener for gen. It runs in Apply's commit phase and cannot fail.
func (p *Proxy) applyTCP(lc *config.Listener, gen *generation, ln net.Listener) {
	upstream := func(pool string) *tcp.Upstream {
		pr := gen.pools[pool]
		if pr == nil {
			return nil // sni_route without a default pool
		}
		var passive tcp.Reporter
		if pr.ejector != nil {
			passive = pr.ejector
		}
		return tcp.UpstreamFor(lc, pr.cfg, pr.pool, passive)
	}
	up := upstream(lc.Pool)
	opts := tcp.OptionsFor(lc, nil, p.opts.Metrics, p.opts.Logger)
	for _, r := range lc.SNIRoutes {
		opts.SNIRoutes = append(opts.SNIRoutes, tcp.SNIRoute{ServerName: r.ServerName, Upstream: upstream(r.Pool)})
	}
	key := listenerKey(lc)
	l := p.tcp[key]
	var old *tcp.Server
	if l == nil {
		l = &tcpListener{name: lc.Name, bind: lc.Bind, ln: ln}
		p.tcp[key] = l
	} else {
		old = l.srv
		l.name = lc.Name
	}
	opts.Listener = l.ln
	if p.opts.AccessLog != nil {
		opts.SessionLog = p.opts.AccessLog // a line per session (core_accesslog.go)
	}
	srv := tcp.NewServer(opts, up)
	if old != nil {
		// Sessions of the old server go on until they end: a reload never
		// cuts a database connection. The new server takes them over, so
		// Shutdown (SIGTERM) waits for them and ends them with its drain.
		srv.TakeOver(old)
	}
	l.srv = srv
	go func() {
		if err := srv.Serve(); err != nil && !errors.Is(err, tcp.ErrServerClosed) {
			p.opts.Logger.Error("tcp listener stopped", "listener", lc.Name, "bind", lc.Bind, "err", err)
		}
	}()
}

// retire lets srv's open sessions (those of the servers it took over
// included) finish until ctx ends, then closes what is left, and the socket
// too when the listener was removed.
func (l *tcpListener) retire(ctx context.Context, srv *tcp.Server, name string, closeSocket bool, logger *slog.Logger) {
	if closeSocket {
		srv.StopAccepting()
		_ = l.ln.Close()
	}
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("tcp sessions closed at the end of the drain", "listener", name, "err", err)
	}
}
