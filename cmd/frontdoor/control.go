package main

import (
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
	stop chan os.Signal // SIGTERM, SIGINT; room for the second one that cuts a drain short
}

// notifySignals starts delivery of the daemon's signals. Call close to stop it.
func notifySignals() *signals {
	s := &signals{
		hup:  make(chan os.Signal, 1),
		usr1: make(chan os.Signal, 1),
		stop: make(chan os.Signal, 2),
	}
	signal.Notify(s.hup, syscall.SIGHUP)
	signal.Notify(s.usr1, syscall.SIGUSR1)
	signal.Notify(s.stop, syscall.SIGTERM, syscall.SIGINT)
	return s
}

func (s *signals) close() {
	signal.Stop(s.hup)
	signal.Stop(s.usr1)
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
}

// run handles signals and ticks until SIGTERM or SIGINT and returns that
// signal.
func (c *controller) run() os.Signal {
	for {
		select {
		case <-c.tick:
			c.watchdog()
		case <-c.sigs.hup:
			c.reload()
		case <-c.sigs.usr1:
			c.reopen()
		case s := <-c.sigs.stop:
			return s
		}
	}
}
