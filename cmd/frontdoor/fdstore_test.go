package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeSystemd plays systemd's side of the notify protocol for a test: it
// keeps the descriptors a daemon stores (FDSTORE=1, FDNAME=, removed with
// FDSTOREREMOVE=1) and starts the next daemon with them as systemd does,
// from descriptor 3 on with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID.
type fakeSystemd struct {
	path string
	mu   sync.Mutex
	fds  map[string]*os.File
}

func newFakeSystemd(t *testing.T) *fakeSystemd {
	t.Helper()
	s := &fakeSystemd{path: filepath.Join(t.TempDir(), "notify"), fds: map[string]*os.File{}}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: s.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		oob := make([]byte, unix.CmsgSpace(4*64))
		for {
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			var fds []int
			if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for i := range msgs {
					if r, err := unix.ParseUnixRights(&msgs[i]); err == nil {
						fds = append(fds, r...)
					}
				}
			}
			s.handle(string(buf[:n]), fds)
		}
	}()
	t.Cleanup(func() {
		_ = conn.Close()
		<-done
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, f := range s.fds {
			_ = f.Close()
		}
	})
	return s
}

func (s *fakeSystemd) handle(msg string, fds []int) {
	kv := map[string]string{}
	for line := range strings.Lines(msg) {
		k, v, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
		kv[k] = v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	name := kv["FDNAME"]
	switch {
	case kv["FDSTORE"] == "1" && len(fds) == 1:
		if old := s.fds[name]; old != nil {
			_ = old.Close()
		}
		s.fds[name] = os.NewFile(uintptr(fds[0]), name)
		return
	case kv["FDSTOREREMOVE"] == "1":
		if old := s.fds[name]; old != nil {
			_ = old.Close()
			delete(s.fds, name)
		}
	}
	for _, fd := range fds {
		_ = unix.Close(fd)
	}
}

func (s *fakeSystemd) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for n := range s.fds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// start runs the daemon as systemd would: the stored descriptors from 3 on,
// LISTEN_PID set to the daemon's own pid (by a shell that execs it).
func (s *fakeSystemd) start(t *testing.T, cfg string) *proc {
	t.Helper()
	s.mu.Lock()
	names := make([]string, 0, len(s.fds))
	for n := range s.fds {
		names = append(names, n)
	}
	sort.Strings(names)
	// Copies: the daemon stores its sockets again while it starts, which
	// closes the descriptors this map held.
	files := make([]*os.File, len(names))
	for i, n := range names {
		fd, err := unix.FcntlInt(s.fds[n].Fd(), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			s.mu.Unlock()
			t.Fatal(err)
		}
		files[i] = os.NewFile(uintptr(fd), n)
	}
	s.mu.Unlock()
	defer func() {
		for _, f := range files {
			_ = f.Close()
		}
	}()
	cmd := exec.Command("/bin/sh", "-c",
		`LISTEN_PID=$$ LISTEN_FDS=$1 LISTEN_FDNAMES=$2; export LISTEN_PID LISTEN_FDS LISTEN_FDNAMES; shift 2; exec "$@"`,
		"sh", strconv.Itoa(len(names)), strings.Join(names, ":"), binPath, "-config", cfg)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+s.path)
	cmd.ExtraFiles = files
	return startCmd(t, cfg, cmd)
}

var startedRe = regexp.MustCompile(`msg="frontdoor started"`)

// TestSystemdFDStoreRestart plays systemd: the daemon stores its listening
// sockets, the test restarts it (SIGTERM, then a new process with the
// stored sockets) and later kills it (SIGKILL, then a new process), under a
// bounded load of new-connection requests through an http and a tcp
// listener. No connection attempt is refused: clients wait in the
// backlog. Across the restart no request fails; a request the killed
// process had accepted is reset and sent once more on a new connection.
func TestSystemdFDStoreRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := startBackend(t, "b1")
	cfg := filepath.Join(dir, "frontdoor.toml")
	writeConfig(t, cfg, upgradeConfig(b.addr))
	sd := newFakeSystemd(t)
	p1 := sd.start(t, cfg)
	admin, web := p1.started("web")
	_, l4 := p1.started("l4")
	waitFor(t, 10*time.Second, "/readyz", func() bool { c, _ := adminGet(t, admin, "/readyz"); return c == 200 })
	want := "@admin l4 web"
	waitFor(t, 10*time.Second, "three stored sockets", func() bool { return strings.Join(sd.names(), " ") == want })

	l := &loadLoop{}
	l.run([]string{"new:" + web, "new:" + l4}, 8, 12*time.Second, true)
	time.Sleep(300 * time.Millisecond)

	// systemctl restart: SIGTERM, wait for the exit, start again.
	p1.signal(syscall.SIGTERM)
	select {
	case <-p1.done:
	case <-time.After(20 * time.Second):
		t.Fatal("daemon still running 20s after SIGTERM")
	}
	if p1.err != nil {
		t.Errorf("first daemon: %v", p1.err)
	}
	p2 := sd.start(t, cfg)
	p2.waitLog(startedRe, 30*time.Second)
	time.Sleep(300 * time.Millisecond)
	if n := l.retried.Load(); n > 0 {
		t.Errorf("%d requests needed a second attempt across a restart", n)
	}

	// A crash: SIGKILL, then systemd's Restart=.
	p2.signal(syscall.SIGKILL)
	<-p2.done
	p3 := sd.start(t, cfg)
	p3.waitLog(startedRe, 30*time.Second)
	time.Sleep(300 * time.Millisecond)
	l.finish(t)
	if got := strings.Join(sd.names(), " "); got != want {
		t.Errorf("stored sockets after two restarts: %s, want %s", got, want)
	}
	if c, _ := adminGet(t, admin, "/readyz"); c != 200 {
		t.Errorf("admin /readyz on the kept admin socket: %d", c)
	}
	p3.stop(30 * time.Second)
	p1.noRaces()
	p2.noRaces()
	p3.noRaces()
}
