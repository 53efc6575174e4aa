package main

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// signals are the channels the daemon's signals arrive on. Each kind has a
// channel of its own, because os/signal drops a signal whose channel is full:
// with one shared channel a burst of SIGHUPs could crowd out a SIGTERM.
//
// hup holds one signal. The controller takes a SIGHUP out before it reads
// the config file, so a SIGHUP that arrives while a reload runs waits in the
// channel and causes exactly one more reload, which reads the file as it is
// then; more SIGHUPs meanwhile merge into that one. A reload request is never
// lost, and a burst costs at most two reloads.
type signals struct {
	hup  chan os.Signal // SIGHUP
	usr1 chan os.Signal // SIGUSR1
	usr2 chan os.Signal // SIGUSR2
	stop chan os.Signal // SIGTERM, SIGINT; room for the second one that cuts a drain short
}

// notifySignals starts delivery of the daemon's signals. Call close to stop it.
func notifySignals() *signals {
	s := &signals{
		hup:  make(chan os.Signal, 1),
		usr1: make(chan os.Signal, 1),
		usr2: make(chan os.Signal, 1),
		stop: make(chan os.Signal, 2),
	}
	signal.Notify(s.hup, syscall.SIGHUP)
	signal.Notify(s.usr1, syscall.SIGUSR1)
	signal.Notify(s.usr2, syscall.SIGUSR2)
	signal.Notify(s.stop, syscall.SIGTERM, syscall.SIGINT)
	return s
}

func (s *signals) close() {
	signal.Stop(s.hup)
	signal.Stop(s.usr1)
	signal.Stop(s.usr2)
	signal.Stop(s.stop)
}

// controller is the daemon's control goroutine: it turns signals and
// watchdog ticks into reloads, access log reopens and watchdog pings, one
// thing at a time, until a stop signal arrives. Because the watchdog is fed
// from here, a reload that hangs starves it and systemd restarts the
// service.
type controller struct {
	sigs     *signals
	tick     <-chan time.Time // watchdog ticks; nil when there is no watchdog
	reload   func()
	reopen   func()
	watchdog func()
	// upgrade starts a binary upgrade (SIGUSR2) and reports its outcome
	// on the channel it returns; cancel kills a new process that is not
	// ready yet.
	upgrade func() (result <-chan upgradeResult, cancel func())
	logger  *slog.Logger
}

// run handles signals and ticks until SIGTERM or SIGINT and returns that
// signal, or until an upgrade's new process serves and returns that
// process. One upgrade runs at a time: a SIGUSR2 meanwhile is logged and
// dropped. Reloads and watchdog pings go on while an upgrade waits.
func (c *controller) run() (os.Signal, *upgraded) {
	var upgrading <-chan upgradeResult
	var cancel func()
	for {
		select {
		case <-c.sigs.usr2:
			if upgrading != nil {
				c.logger.Warn("upgrade: SIGUSR2 ignored, an upgrade is already under way")
				continue
			}
			upgrading, cancel = c.upgrade()
		case r := <-upgrading:
			upgrading = nil
			if r.err == nil {
				return nil, r.next
			}
			c.logger.Error("upgrade failed; this process keeps serving", "err", r.err)
		case <-c.tick:
			c.watchdog()
		case <-c.sigs.hup:
			c.reload()
		case <-c.sigs.usr1:
			c.reopen()
		case s := <-c.sigs.stop:
			if upgrading != nil {
				c.logger.Warn("upgrade: cancelled by a stop signal", "signal", s.String())
				cancel()
			}
			return s, nil
		}
	}
}
