package main

import (
	"fmt"
	"net"
	"sort"
	"syscall"

	"golang.org/x/sys/unix"
)

// fdStore keeps systemd's file descriptor store in step with the daemon's
// listening sockets: each is stored under its name (FDSTORE=1, FDNAME=),
// so that after `systemctl restart`, a crash or a SIGKILL systemd hands
// them to the next process (LISTEN_FDS, LISTEN_FDNAMES) and connections
// wait in the kernel backlog meanwhile. The unit must allow it with
// FileDescriptorStoreMax=. Only the controller goroutine calls it.
type fdStore struct {
	n      *notifier
	stored map[string]net.Listener // what systemd holds, by name
}

// sync stores the sockets of lns that systemd does not hold yet, and
// removes the names that are gone or whose socket changed (a listener
// moved to another bind). A no-op without a notify socket.
func (s *fdStore) sync(lns map[string]net.Listener) error {
	if s.n.conn == nil {
		return nil
	}
	if s.stored == nil {
		s.stored = map[string]net.Listener{}
	}
	var errs []error
	names := make([]string, 0, len(s.stored))
	for name := range s.stored {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if lns[name] != s.stored[name] {
			if err := s.n.send("FDSTOREREMOVE=1\nFDNAME=" + name); err != nil {
				errs = append(errs, err)
			}
			delete(s.stored, name)
		}
	}
	names = names[:0]
	for name := range lns {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ln := lns[name]
		if s.stored[name] == ln {
			continue
		}
		if err := s.n.sendFD("FDSTORE=1\nFDNAME="+name, ln); err != nil {
			errs = append(errs, err)
			continue
		}
		s.stored[name] = ln
	}
	if len(errs) > 0 {
		return fmt.Errorf("store listening sockets with systemd: %w", errs[0])
	}
	return nil
}

// sendFD writes one notification with ln's descriptor attached
// (SCM_RIGHTS).
func (n *notifier) sendFD(state string, ln net.Listener) error {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return errNotListener
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	nc, err := n.conn.SyscallConn()
	if err != nil {
		return err
	}
	// WriteMsgUnix refuses a connected datagram socket: sendmsg(2) on the
	// raw descriptor.
	var werr error
	if err := rc.Control(func(fd uintptr) {
		oob := unix.UnixRights(int(fd))
		if err := nc.Write(func(s uintptr) bool {
			werr = unix.Sendmsg(int(s), []byte(state), oob, nil, 0)
			return werr != unix.EAGAIN
		}); err != nil && werr == nil {
			werr = err
		}
	}); err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("notify systemd %q: %w", state, werr)
	}
	return nil
}
