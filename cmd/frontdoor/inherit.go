package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"frontdoor/config"
)

// Environment variables of the handover between processes. envFDs lists
// the listening sockets a parent passed to its child on SIGUSR2 as
// NAME=FD pairs separated by commas; envReadyFD is the pipe on which the
// child reports that it serves. Under systemd the sockets come from its
// file descriptor store instead: LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID.
const (
	envFDs     = "FRONTDOOR_FDS"
	envReadyFD = "FRONTDOOR_READY_FD"
)

// adminFDName names the admin listener's socket when it is passed on; it
// cannot be a listener name (those have no '@').
const adminFDName = "@admin"

// inherited holds the listening sockets a previous process passed on, by
// name, until the config takes them. Safe for concurrent use.
type inherited struct {
	mu     sync.Mutex
	lns    map[string]net.Listener
	source string // "upgrade", "systemd" or "" (none)
}

// inheritListeners takes the sockets passed in the environment (envFDs,
// else systemd's LISTEN_FDS when LISTEN_PID is this process) and removes
// the variables, so that nothing the daemon starts inherits them. A
// passed descriptor that is not a listening socket is closed and logged.
func inheritListeners(logger *slog.Logger) *inherited {
	inh := &inherited{lns: map[string]net.Listener{}}
	type passed struct {
		name string
		fd   int
	}
	var fds []passed
	if v, ok := os.LookupEnv(envFDs); ok {
		inh.source = "upgrade"
		for pair := range strings.SplitSeq(v, ",") {
			name, n, ok := strings.Cut(pair, "=")
			fd, err := strconv.Atoi(n)
			if !ok || err != nil || fd < 3 {
				logger.Warn("ignoring a malformed inherited socket", "env", envFDs, "entry", pair)
				continue
			}
			fds = append(fds, passed{name, fd})
		}
	} else if pid, _ := strconv.Atoi(os.Getenv("LISTEN_PID")); pid == os.Getpid() {
		inh.source = "systemd"
		n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS"))
		names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
		for i := range n {
			name := "unknown"
			if i < len(names) {
				name = names[i]
			}
			fds = append(fds, passed{name, 3 + i})
		}
	}
	for _, k := range []string{envFDs, "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID"} {
		_ = os.Unsetenv(k)
	}
	for _, p := range fds {
		f := os.NewFile(uintptr(p.fd), p.name)
		ln, err := net.FileListener(f) // a close-on-exec duplicate
		_ = f.Close()
		if err != nil {
			logger.Warn("closing an inherited descriptor that is not a listening socket", "name", p.name, "fd", p.fd, "err", err)
			continue
		}
		if prev := inh.lns[p.name]; prev != nil {
			_ = prev.Close() // systemd may store a name twice; the last wins
		}
		inh.lns[p.name] = ln
		logger.Info("inherited listening socket", "name", p.name, "addr", ln.Addr().String(), "from", inh.source)
	}
	return inh
}

// take returns the inherited socket for the listener name bound to bind, and
// forgets it; nil if there is none. A socket of that name on another
// address is not taken (the bind changed), but one of another name on the
// same address is (the listener was renamed).
func (inh *inherited) take(name, bind string) net.Listener {
	inh.mu.Lock()
	defer inh.mu.Unlock()
	if ln := inh.lns[name]; ln != nil && sameAddr(bind, ln.Addr()) {
		delete(inh.lns, name)
		return ln
	}
	if strings.HasSuffix(bind, ":0") {
		return nil
	}
	for n, ln := range inh.lns {
		if sameAddr(bind, ln.Addr()) {
			delete(inh.lns, n)
			return ln
		}
	}
	return nil
}

// sameAddr reports whether bind names the bound address a; port 0 matches
// any port.
func sameAddr(bind string, a net.Addr) bool {
	want, err := net.ResolveTCPAddr("tcp", bind)
	got, ok := a.(*net.TCPAddr)
	if err != nil || !ok {
		return false
	}
	if want.Port != 0 && want.Port != got.Port {
		return false
	}
	if want.IP == nil || want.IP.IsUnspecified() {
		return got.IP == nil || got.IP.IsUnspecified()
	}
	return want.IP.Equal(got.IP)
}

// closeRest closes the sockets no listener took: the config no longer has
// them.
func (inh *inherited) closeRest(logger *slog.Logger) {
	inh.mu.Lock()
	defer inh.mu.Unlock()
	names := make([]string, 0, len(inh.lns))
	for n := range inh.lns {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		logger.Info("closing an inherited socket the config no longer has", "name", n, "addr", inh.lns[n].Addr().String())
		_ = inh.lns[n].Close()
		delete(inh.lns, n)
	}
}

// listen is proxy.Options.Listen: the inherited socket of the listener, else
// a new one bound to its address.
func (inh *inherited) listen(lc *config.Listener) (net.Listener, error) {
	if ln := inh.take(lc.Name, lc.Bind); ln != nil {
		return ln, nil
	}
	// No TCP keepalive on client connections, as the proxy binds them.
	return (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", lc.Bind)
}

// errNotListener is returned for a socket that cannot be passed on.
var errNotListener = errors.New("frontdoor: listener has no file descriptor")

// listenerFile returns a duplicate of ln's descriptor; the caller closes it.
// Not ln.File(): exec calls Fd on what it passes, which puts a File from
// net in blocking mode, and the flag is shared with ln's own descriptor,
// whose accepts would then block.
func listenerFile(ln net.Listener) (*os.File, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil, errNotListener
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	dup := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 3)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("dup listening socket: %w", derr)
	}
	return os.NewFile(uintptr(dup), "listener"), nil
}
