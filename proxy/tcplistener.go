package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"frontdoor/config"
	"frontdoor/proxy/tcp"
)

// tcpListener is one bound tcp listener. The socket outlives reloads; the
// tcp.Server on it is replaced on every reload (StopAccepting hands the
// socket over), so changed listener settings apply to new connections while
// open sessions finish on the server and upstream they started with.
type tcpListener struct {
	name string
	bind string
	ln   net.Listener
	srv  *tcp.Server
}

// applyTCP starts (ln != nil: a newly bound socket) or re-arms a tcp
// listener for gen. It runs in Apply's commit phase and cannot fail.
func (p *Proxy) applyTCP(lc *config.Listener, gen *generation, ln net.Listener, drain time.Duration) {
	pr := gen.pools[lc.Pool]
	var passive tcp.Reporter
	if pr.ejector != nil {
		passive = pr.ejector
	}
	up := tcp.UpstreamFor(lc, pr.cfg, pr.pool, passive)
	l := p.tcp[lc.Bind]
	if l == nil {
		l = &tcpListener{name: lc.Name, bind: lc.Bind, ln: ln}
		p.tcp[lc.Bind] = l
	} else {
		old := l.srv
		old.StopAccepting()
		go l.retire(old, l.name, drain, false, p.opts.Logger)
		l.name = lc.Name
	}
	l.srv = tcp.NewServer(tcp.OptionsFor(lc, l.ln, p.opts.Metrics, p.opts.Logger), up)
	srv := l.srv
	go func() {
		if err := srv.Serve(); err != nil && !errors.Is(err, tcp.ErrServerClosed) {
			p.opts.Logger.Error("tcp listener stopped", "listener", lc.Name, "bind", lc.Bind, "err", err)
		}
	}()
}

// retire lets srv's open sessions finish for drain, then closes what is
// left, and the socket too when the listener was removed.
func (l *tcpListener) retire(srv *tcp.Server, name string, drain time.Duration, closeSocket bool, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if closeSocket {
		srv.StopAccepting()
		_ = l.ln.Close()
	}
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("tcp sessions closed at the end of the drain", "listener", name, "err", err)
	}
}
