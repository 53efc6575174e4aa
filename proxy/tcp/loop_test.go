package tcp

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"frontdoor/internal/testpki"
)

// goroutinePathTest is the name of the test that runs the engine's cases
// on the goroutine path (engineFor).
const goroutinePathTest = "TestGoroutinePath"

// engineFor makes a test that TestGoroutinePath runs serve with the
// goroutine path; every other test serves with the event loops.
func engineFor(t testing.TB, opts *Options) {
	if strings.HasPrefix(t.Name(), goroutinePathTest+"/") {
		opts.noLoops = true
	}
}

// TestGoroutinePath runs the engine's cases on the goroutine path, which
// serves listeners that do not yield *net.TCPConn and upstreams naming a
// backend by host name, so both engines keep every behaviour.
func TestGoroutinePath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"Echo", TestEcho},
		{"HalfClose", TestHalfClose},
		{"ResetPropagation", TestResetPropagation},
		{"Retries", TestRetries},
		{"ConnectTimeout", TestConnectTimeout},
		{"NoBackend", TestNoBackend},
		{"MaxConnections", TestMaxConnections},
		{"IdleTimeout", TestIdleTimeout},
		{"Shutdown", TestShutdown},
		{"InFlight", TestInFlight},
		{"ZeroCopy", TestZeroCopy},
		{"SendProxy", TestSendProxy},
		{"AcceptProxy", TestAcceptProxy},
		{"AcceptProxyRejects", TestAcceptProxyRejects},
		{"SNIRouting", TestSNIRouting},
		{"SNIBadInput", TestSNIBadInput},
		{"SNISendProxy", TestSNISendProxy},
		{"SNISessionLogPool", TestSNISessionLogPool},
		{"Engine", TestEngine},
	} {
		t.Run(tc.name, tc.fn)
	}
}

// TestEngine checks which engine serves: the event loops, one per
// GOMAXPROCS, for a TCP listener and backends named by IP address; the
// goroutine path for a backend named by host name (and in
// TestGoroutinePath).
func TestEngine(t *testing.T) {
	t.Parallel()
	backend := serveBackend(t, echo)
	_, port, _ := net.SplitHostPort(backend)
	for _, tc := range []struct {
		name, addr string
		loops      int
	}{
		{"ip address", backend, runtime.GOMAXPROCS(0)},
		{"host name", "localhost:" + port, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startProxy(t, Options{}, &Upstream{Pool: newPool(t, tc.addr)})
			if got := roundTrip(t, dial(t, p.addr), "engine"); got != "engine" {
				t.Fatalf("echo %q", got)
			}
			p.mu.Lock()
			n := len(p.loops)
			p.mu.Unlock()
			want := tc.loops
			if strings.HasPrefix(t.Name(), goroutinePathTest+"/") {
				want = 0
			}
			if n != want {
				t.Errorf("%d event loops, want %d", n, want)
			}
		})
	}
}

// panicLog panics on the first session it logs.
type panicLog struct {
	panicked atomic.Bool
	logged   atomic.Int64
}

func (l *panicLog) LogSession(*SessionRecord) {
	if l.panicked.CompareAndSwap(false, true) {
		panic("session log")
	}
	l.logged.Add(1)
}

// lockedBuffer is a bytes.Buffer for a slog handler written by the loops.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestLoopSurvivesPanic: a panic while a loop serves a session (here in
// the session log) is logged with its stack and closes that session only;
// the count, the backend's in-flight count (released once) and the loop
// go on.
func TestLoopSurvivesPanic(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	sl := &panicLog{}
	pool := newPool(t, serveBackend(t, echo))
	p := startProxy(t, Options{SessionLog: sl, Logger: slog.New(slog.NewTextHandler(&out, nil))}, &Upstream{Pool: pool})
	for i := range 3 {
		c := dial(t, p.addr)
		if got := roundTrip(t, c, "x"); got != "x" {
			t.Fatalf("session %d: echo %q", i, got)
		}
		_ = c.CloseWrite()
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		p.waitIdle(t)
	}
	// The session whose log line panicked is logged when the loop closes
	// it (discard), so every session has its line.
	if !sl.panicked.Load() || sl.logged.Load() != 3 {
		t.Fatalf("panicked %v, logged %d sessions; want true and 3", sl.panicked.Load(), sl.logged.Load())
	}
	if got := pool.Members()[0].Backend.InFlight(); got != 0 {
		t.Errorf("backend in flight %d after the sessions ended", got)
	}
	if log := out.String(); !strings.Contains(log, "tcp session panic") || !strings.Contains(log, "goroutine") {
		t.Errorf("no panic with its stack in the log:\n%s", log)
	}
}

// TestLoopFairness: with GOMAXPROCS loops busy with bulk sessions, a
// small round trip on another session still goes through promptly (a
// direction moves at most pumpRounds pipe loads per turn).
func TestLoopFairness(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	t.Parallel()
	p := startProxy(t, Options{}, &Upstream{Pool: newPool(t, serveBackend(t, echo))})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 * runtime.GOMAXPROCS(0) {
		c := dial(t, p.addr)
		wg.Go(func() {
			buf := make([]byte, 1<<20)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Write(buf); err != nil {
					return
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(100 * time.Millisecond)
	c := dial(t, p.addr)
	var worst time.Duration
	for range 20 {
		start := time.Now()
		if got := roundTrip(t, c, "ping"); got != "ping" {
			t.Fatalf("echo %q", got)
		}
		worst = max(worst, time.Since(start))
	}
	t.Logf("worst small round trip beside %d bulk sessions: %v", 2*runtime.GOMAXPROCS(0), worst)
	if worst > 2*time.Second {
		t.Errorf("a small round trip took %v beside bulk sessions", worst)
	}
}

// poolLog records the pool of every session it logs.
type poolLog struct {
	mu    sync.Mutex
	pools []string
}

func (l *poolLog) LogSession(rec *SessionRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pools = append(l.pools, rec.Pool)
}

func (l *poolLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.pools...)
}

// TestSNISessionLogPool: the log line of an SNI-routed session names the
// pool it was routed to, with or without a default pool.
func TestSNISessionLogPool(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "sni log CA")
	a, _ := tlsEcho(t, ca, "a.example.com")
	sl := &poolLog{}
	addr, _ := startSNI(t, Options{SessionLog: sl}, "", "a.example.com", a)
	if _, _, err := sniDial(t, addr, "a.example.com", ca, "hi"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the session's log line", func() bool { return len(sl.get()) == 1 })
	if got := sl.get(); got[0] != "a.example.com" {
		t.Errorf("logged pool %q, want the route's, a.example.com", got[0])
	}
}
