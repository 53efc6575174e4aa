package main

import (
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestSIGHUPDuringReloadIsNotLost sends real signals to the test process:
// SIGHUPs that arrive while a reload runs cause exactly one more reload
// after it, and neither they nor a SIGUSR1 crowd out the SIGTERM that
// follows.
func TestSIGHUPDuringReloadIsNotLost(t *testing.T) {
	// Not parallel: it signals the whole test process.
	sigs := notifySignals()
	defer sigs.close()
	var reloads, reopens atomic.Int32
	running := make(chan struct{})
	release := make(chan struct{})
	c := &controller{
		sigs: sigs,
		reload: func() {
			if reloads.Add(1) == 1 {
				close(running)
				<-release
			}
		},
		reopen:   func() { reopens.Add(1) },
		watchdog: func() { t.Error("watchdog fed without a ticker") },
	}
	stopped := make(chan os.Signal, 1)
	go func() { s, _ := c.run(); stopped <- s }()

	kill := func(sig syscall.Signal) {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), sig); err != nil {
			t.Fatal(err)
		}
	}
	kill(syscall.SIGHUP)
	select {
	case <-running:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGHUP did not start a reload")
	}
	// While the first reload runs: a burst of SIGHUPs, then a SIGUSR1. A
	// signal sent to the own process is handled before kill returns, and
	// os/signal hands pending signals on in signal-number order, so once
	// SIGUSR1 (10) is in its channel every SIGHUP (1) has been dealt with.
	for range 5 {
		kill(syscall.SIGHUP)
	}
	kill(syscall.SIGUSR1)
	waitFor(t, 10*time.Second, "SIGUSR1 queued", func() bool { return len(sigs.usr1) == 1 })
	if n := len(sigs.hup); n != 1 {
		t.Fatalf("%d SIGHUPs queued during the reload, want 1", n)
	}
	close(release)
	waitFor(t, 10*time.Second, "the queued reload and reopen", func() bool { return reloads.Load() == 2 && reopens.Load() == 1 })

	kill(syscall.SIGTERM)
	select {
	case sig := <-stopped:
		if sig != syscall.SIGTERM {
			t.Errorf("controller stopped on %v, want SIGTERM", sig)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not stop the controller")
	}
	if n := reloads.Load(); n != 2 {
		t.Errorf("%d reloads, want 2: the first and one for the SIGHUPs that came during it", n)
	}
}
