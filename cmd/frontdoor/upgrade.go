package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// upgradeTimeout bounds how long the new process of a binary upgrade
// (SIGUSR2) may take to report ready; after it the new process is killed
// and the old one serves on.
const upgradeTimeout = 30 * time.Second

// firstRoundWait bounds how long a process that inherited its sockets waits
// for the first round of health checks before it accepts (and before it
// reports ready to the old process).
const firstRoundWait = 10 * time.Second

// upgraded is a new process that reported ready.
type upgraded struct {
	pid int
}

// upgrade starts the binary at this process's path (os.Executable: the file
// an upgrade installed there) with the same arguments, passing it every
// listening socket by name and a pipe to report ready on. The result
// arrives on the returned channel: the new process once it serves, or an
// error after it failed to start, exited, or was not ready within
// upgradeTimeout (then it is killed and reaped). The old process keeps
// serving meanwhile. Called from the controller goroutine.
func (d *daemon) upgrade() (<-chan upgradeResult, func()) {
	out := make(chan upgradeResult, 1)
	abort := make(chan struct{})
	cancel := sync.OnceFunc(func() { close(abort) })
	cmd, ready, err := d.startNext()
	if err != nil {
		out <- upgradeResult{err: err}
		return out, cancel
	}
	pid := cmd.Process.Pid
	d.logger.Info("upgrade: started the new process; waiting for it to serve", "pid", pid, "binary", cmd.Path, "timeout", upgradeTimeout)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	go func() {
		defer ready.Close()
		line := make(chan string, 1)
		go func() {
			s, _ := bufio.NewReader(ready).ReadString('\n')
			line <- s
		}()
		t := time.NewTimer(upgradeTimeout)
		defer t.Stop()
		var err error
		reaped := false
		select {
		case s := <-line:
			if s == "ready\n" {
				out <- upgradeResult{next: &upgraded{pid: pid}}
				return
			}
			// The pipe closed without a word: the process exited or
			// closed it; its exit status says more.
			select {
			case err = <-exited:
				reaped = true
				err = fmt.Errorf("new process %d exited before it was ready: %w", pid, exitErr(err))
			case <-time.After(time.Second):
				err = fmt.Errorf("new process %d closed its ready pipe without reporting ready", pid)
			}
		case err = <-exited:
			reaped = true
			err = fmt.Errorf("new process %d exited before it was ready: %w", pid, exitErr(err))
		case <-t.C:
			err = fmt.Errorf("new process %d not ready after %v", pid, upgradeTimeout)
		case <-abort:
			err = fmt.Errorf("new process %d killed: this process is stopping", pid)
		}
		if !reaped {
			_ = cmd.Process.Kill()
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
			}
		}
		out <- upgradeResult{err: err}
	}()
	return out, cancel
}

// upgradeResult is the outcome of an upgrade: next is set once the new
// process serves, err otherwise.
type upgradeResult struct {
	next *upgraded
	err  error
}

func exitErr(err error) error {
	if err == nil {
		return errors.New("exit status 0")
	}
	return err
}

// startNext starts the new process with the listening sockets and the
// write end of a ready pipe, and returns the read end.
func (d *daemon) startNext() (*exec.Cmd, *os.File, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("find the binary to start: %w", err)
	}
	lns := d.listeners()
	names := make([]string, 0, len(lns))
	for n := range lns {
		names = append(names, n)
	}
	sort.Strings(names)
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("ready pipe: %w", err)
	}
	files := []*os.File{w}
	defer func() {
		for _, f := range files {
			_ = f.Close()
		}
	}()
	pairs := make([]string, 0, len(names))
	for _, n := range names {
		f, err := listenerFile(lns[n])
		if err != nil {
			_ = r.Close()
			return nil, nil, fmt.Errorf("pass listener %s on: %w", n, err)
		}
		// ExtraFiles[i] is descriptor 3+i in the new process.
		pairs = append(pairs, n+"="+strconv.Itoa(3+len(files)))
		files = append(files, f)
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	cmd.ExtraFiles = files
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case envFDs, envReadyFD, "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID", "WATCHDOG_PID":
			// The new process watches over itself once it is the main
			// process (MAINPID=).
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, envFDs+"="+strings.Join(pairs, ","), envReadyFD+"=3")
	for try := 0; ; try++ {
		err := cmd.Start()
		if err == nil {
			return cmd, r, nil
		}
		// A binary installed a moment ago can still be open for writing
		// in a process that forked before the installer closed it (ETXTBSY,
		// golang/go#22315): try again for up to a second.
		if !errors.Is(err, syscall.ETXTBSY) || try == 20 {
			_ = r.Close()
			return nil, nil, fmt.Errorf("start %s: %w", exe, err)
		}
		time.Sleep(50 * time.Millisecond)
		next := exec.Command(exe, os.Args[1:]...)
		next.Stdin, next.Stdout, next.Stderr = nil, os.Stdout, os.Stderr
		next.ExtraFiles, next.Env = cmd.ExtraFiles, cmd.Env
		cmd = next
	}
}

// listeners returns every listening socket by the name it is passed on
// under: the proxy's listeners by listener name, the admin listener as
// adminFDName.
func (d *daemon) listeners() map[string]net.Listener {
	lns := d.px.Listeners()
	if d.admin != nil {
		lns[adminFDName] = d.admin.Listener()
	}
	return lns
}

// reportReady tells the process that started this one (envReadyFD) that it
// serves. A no-op when not started by an upgrade.
func reportReady() error {
	v, ok := os.LookupEnv(envReadyFD)
	if !ok {
		return nil
	}
	_ = os.Unsetenv(envReadyFD)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return fmt.Errorf("%s=%q is not a descriptor", envReadyFD, v)
	}
	f := os.NewFile(uintptr(fd), "ready")
	defer f.Close()
	if _, err := f.WriteString("ready\n"); err != nil {
		return fmt.Errorf("report ready to the old process: %w", err)
	}
	return nil
}

// handOver ends this process after an upgrade: the new process serves, so
// this one closes its admin listener, tells systemd (if any) that the new
// process is the main one, stops accepting, drains its connections for up
// to drain_timeout and returns.
func (d *daemon) handOver(next *upgraded, sigs *signals, tick <-chan time.Time) {
	d.draining.Store(true)
	go stopAdmin(d.admin)
	d.admin = nil
	if err := d.notify.send("MAINPID=" + strconv.Itoa(next.pid) + "\nSTATUS=upgraded: process " + strconv.Itoa(next.pid) + " serves"); err != nil {
		d.logger.Warn("tell systemd the new main process", "err", err)
	}
	timeout := d.cfg.Global.DrainTimeout.Duration
	d.logger.Info("upgrade: the new process serves; draining this one", "pid", next.pid, "drain_timeout", timeout)
	d.shutdown(timeout, sigs, tick)
}
