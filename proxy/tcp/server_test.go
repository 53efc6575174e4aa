package tcp

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"frontdoor/internal/loopback"
)

func TestEcho(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		size  int
		conns int
	}{
		{"empty", 0, 1},
		{"one byte", 1, 1},
		{"64KiB", 64 << 10, 4},
		{"4MiB", 4 << 20, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startProxy(t, Options{IdleTimeout: time.Minute}, &Upstream{Pool: newPool(t, serveBackend(t, echo))})
			payload := make([]byte, tc.size)
			_, _ = rand.Read(payload)
			var wg sync.WaitGroup
			errs := make(chan error, tc.conns)
			for range tc.conns {
				c := dial(t, p.addr)
				wg.Go(func() {
					go func() {
						_, _ = c.Write(payload)
						_ = c.CloseWrite()
					}()
					got, err := io.ReadAll(c)
					if err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(got, payload) {
						errs <- fmt.Errorf("got %d bytes back, want %d equal bytes", len(got), len(payload))
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			p.waitIdle(t)
			want := float64(tc.size * tc.conns)
			if up, down := p.bytes("upstream"), p.bytes("downstream"); up != want || down != want {
				t.Errorf("tcp_bytes_total upstream %v downstream %v, want %v each", up, down, want)
			}
			if got := p.counter(t, p.m.ConnsTotal.WithLabelValues("test")); got != float64(tc.conns) {
				t.Errorf("connections_total %v, want %d", got, tc.conns)
			}
			if got := p.counter(t, p.m.ConnsActive.WithLabelValues("test")); got != 0 {
				t.Errorf("connections_active %v after the sessions ended", got)
			}
		})
	}
}

func TestHalfClose(t *testing.T) {
	t.Parallel()
	t.Run("client first", func(t *testing.T) {
		t.Parallel()
		// The backend answers only after the client's FIN.
		backend := serveBackend(t, func(c *net.TCPConn) {
			n, _ := io.Copy(io.Discard, c)
			fmt.Fprintf(c, "got %d bytes", n)
		})
		p := startProxy(t, Options{}, &Upstream{Pool: newPool(t, backend)})
		c := dial(t, p.addr)
		if _, err := c.Write(make([]byte, 1<<20)); err != nil {
			t.Fatal(err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "got 1048576 bytes" {
			t.Fatalf("answer %q, %v", got, err)
		}
	})
	t.Run("backend first", func(t *testing.T) {
		t.Parallel()
		// The backend sends a banner and its FIN, then still reads.
		received := make(chan int64, 1)
		backend := serveBackend(t, func(c *net.TCPConn) {
			_, _ = io.WriteString(c, "banner")
			_ = c.CloseWrite()
			n, _ := io.Copy(io.Discard, c)
			received <- n
		})
		p := startProxy(t, Options{}, &Upstream{Pool: newPool(t, backend)})
		c := dial(t, p.addr)
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "banner" {
			t.Fatalf("banner %q, %v", got, err)
		}
		if _, err := c.Write(make([]byte, 300000)); err != nil {
			t.Fatalf("write after the backend's FIN: %v", err)
		}
		_ = c.CloseWrite()
		if n := <-received; n != 300000 {
			t.Fatalf("backend received %d bytes after its FIN, want 300000", n)
		}
		p.waitIdle(t)
	})
}

func TestResetPropagation(t *testing.T) {
	t.Parallel()
	t.Run("backend resets", func(t *testing.T) {
		t.Parallel()
		backend := serveBackend(t, func(c *net.TCPConn) {
			_, _ = c.Read(make([]byte, 1))
			_ = c.SetLinger(0)
			_ = c.Close()
		})
		p := startProxy(t, Options{}, &Upstream{Pool: newPool(t, backend)})
		c := dial(t, p.addr)
		_, _ = c.Write([]byte("x"))
		_, err := c.Read(make([]byte, 1))
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("client read: %v, want a reset", err)
		}
		eventually(t, "upstream_errors_total{reason=reset}", func() bool { return p.upstreamErrors(backend, "reset") == 1 })
	})
	t.Run("client resets", func(t *testing.T) {
		t.Parallel()
		readErr := make(chan error, 1)
		backend := serveBackend(t, func(c *net.TCPConn) {
			_, _ = c.Write([]byte("ready"))
			_, err := io.Copy(io.Discard, c)
			readErr <- err
		})
		p := startProxy(t, Options{}, &Upstream{Pool: newPool(t, backend)})
		c := dial(t, p.addr)
		if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetLinger(0)
		_ = c.Close()
		if err := <-readErr; !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("backend read: %v, want a reset", err)
		}
		p.waitIdle(t)
	})
}

func TestRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		retries int
		wantOK  int // of 6 connections
		refused int // round robin over [dead, live] starts every connection on dead
	}{
		{"retried on another backend", 1, 6, 6},
		{"no retries", 0, 3, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dead := closedAddr(t)
			p := startProxy(t, Options{}, &Upstream{Pool: newPool(t, dead, serveBackend(t, echo)), Retries: tc.retries})
			ok := 0
			for range 6 {
				c := dial(t, p.addr)
				_, _ = c.Write([]byte("ping"))
				buf := make([]byte, 4)
				if _, err := io.ReadFull(c, buf); err == nil && string(buf) == "ping" {
					ok++
				}
				_ = c.Close()
			}
			if ok != tc.wantOK {
				t.Errorf("%d of 6 connections echoed, want %d", ok, tc.wantOK)
			}
			p.waitIdle(t)
			// A refused connect is reason "connect", as in the HTTP engines.
			if got := p.upstreamErrors(dead, "connect"); got != float64(tc.refused) {
				t.Errorf("upstream_errors_total{reason=connect} = %v, want %d", got, tc.refused)
			}
			if got := p.counter(t, p.m.RetriesTotal.WithLabelValues("pool")); got != float64(tc.refused*tc.retries) {
				t.Errorf("retries_total = %v, want %d", got, tc.refused*tc.retries)
			}
		})
	}
}

// fullBacklog returns the address of a listener whose accept queue is full,
// so that a new connect hangs until the client gives up.
func fullBacklog(t *testing.T) string {
	t.Helper()
	fd, addr := loopback.Bound(t)
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr // the queue is full
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	t.Skip("could not fill a listen backlog")
	return ""
}

func TestConnectTimeout(t *testing.T) {
	t.Parallel()
	hung := fullBacklog(t)
	p := startProxy(t, Options{}, &Upstream{Pool: newPool(t, hung), ConnectTimeout: 100 * time.Millisecond})
	c := dial(t, p.addr)
	start := time.Now()
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("read %d, %v: want the connection closed", n, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("closed after %v; connect_timeout is 100ms", d)
	}
	// A connect timeout is reason "connect", as in the HTTP engines, where
	// "timeout" means a backend that did not answer in response_timeout.
	eventually(t, "upstream_errors_total{reason=connect}", func() bool { return p.upstreamErrors(hung, "connect") == 1 })
	if got := p.upstreamErrors(hung, "timeout"); got != 0 {
		t.Errorf("upstream_errors_total{reason=timeout} = %v for a connect timeout, want 0", got)
	}
}

func TestNoBackend(t *testing.T) {
	t.Parallel()
	pool := newPool(t, serveBackend(t, echo))
	pool.Members()[0].Backend.SetHealthy(false)
	p := startProxy(t, Options{}, &Upstream{Pool: pool})
	c := dial(t, p.addr)
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("read %d, %v: want the connection closed", n, err)
	}
	eventually(t, "upstream_errors_total{reason=no_backend}", func() bool { return p.upstreamErrors("", "no_backend") == 1 })
}

func TestMaxConnections(t *testing.T) {
	t.Parallel()
	p := startProxy(t, Options{MaxConnections: 2}, &Upstream{Pool: newPool(t, serveBackend(t, echo))})
	a, b := dial(t, p.addr), dial(t, p.addr)
	for _, c := range []net.Conn{a, b} {
		if got := roundTrip(t, c, "hi"); got != "hi" {
			t.Fatalf("echo %q", got)
		}
	}
	over := dial(t, p.addr)
	if n, err := over.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("third connection read %d, %v: want it closed", n, err)
	}
	if got := p.rejected("max_connections"); got != 1 {
		t.Errorf("connections_rejected_total{reason=max_connections} = %v, want 1", got)
	}
	_ = a.Close()
	eventually(t, "a slot to free up", func() bool { return p.Active() == 1 })
	if got := roundTrip(t, dial(t, p.addr), "again"); got != "again" {
		t.Fatalf("echo %q", got)
	}
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	t.Run("idle session closed", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, Options{IdleTimeout: 200 * time.Millisecond}, &Upstream{Pool: newPool(t, serveBackend(t, echo))})
		start := time.Now()
		c := dial(t, p.addr)
		if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("read %d, %v: want EOF", n, err)
		}
		if d := time.Since(start); d < 190*time.Millisecond {
			t.Errorf("closed after %v, idle_timeout is 200ms", d)
		}
	})
	t.Run("one busy direction keeps it open", func(t *testing.T) {
		t.Parallel()
		// The backend trickles a byte every 150 ms for 3 s; the client
		// sends nothing. Its direction's deadline fires, but the session
		// is not idle. (The wide margin absorbs a loaded machine.)
		backend := serveBackend(t, func(c *net.TCPConn) {
			for range 20 {
				if _, err := c.Write([]byte{'.'}); err != nil {
					return
				}
				time.Sleep(150 * time.Millisecond)
			}
		})
		const idle, attempts = 1500 * time.Millisecond, 3
		p := startProxy(t, Options{IdleTimeout: idle}, &Upstream{Pool: newPool(t, backend)})
		// A close before the 20th byte is right only if the bytes really
		// stopped for idle_timeout, which only a machine stalled for 1.3 s
		// and more causes: such an attempt proves nothing either way and
		// is made again. A close sooner after a byte fails at once, and so
		// do attempts stalled every time.
		var stalls []string
		for range attempts {
			c := dial(t, p.addr)
			got, last := 0, time.Now()
			for {
				if _, err := c.Read(make([]byte, 1)); err != nil {
					break
				}
				got++
				last = time.Now()
			}
			_ = c.Close()
			if got == 20 {
				return
			}
			gap := time.Since(last)
			if gap < idle-200*time.Millisecond {
				t.Fatalf("closed %v after the last byte (%d of 20), idle_timeout is %v", gap, got, idle)
			}
			stalls = append(stalls, fmt.Sprintf("%d of 20 bytes, then nothing for %v", got, gap.Round(time.Millisecond)))
		}
		t.Fatalf("no attempt of %d ran without the bytes stalling for idle_timeout (%v): %q", attempts, idle, stalls)
	})
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	t.Run("drains", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, Options{}, &Upstream{Pool: newPool(t, serveBackend(t, echo))})
		c := dial(t, p.addr)
		if got := roundTrip(t, c, "before"); got != "before" {
			t.Fatal(got)
		}
		done := make(chan error, 1)
		go func() { done <- p.Shutdown(context.Background()) }()
		eventually(t, "Serve to stop", p.isStopping)
		if got := roundTrip(t, c, "during"); got != "during" {
			t.Fatalf("open session broke during Shutdown: %q", got)
		}
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned %v with a session open", err)
		default:
		}
		_ = c.Close()
		if err := <-done; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	})
	t.Run("deadline closes sessions", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, Options{}, &Upstream{Pool: newPool(t, serveBackend(t, echo))})
		c := dial(t, p.addr)
		_ = roundTrip(t, c, "x")
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: %v, want DeadlineExceeded", err)
		}
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Fatalf("read %d, %v after a forced Shutdown", n, err)
		}
	})
	t.Run("listener survives for the next server", func(t *testing.T) {
		t.Parallel()
		ln := listen(t)
		first := startProxy(t, Options{Listener: ln}, &Upstream{Pool: newPool(t, serveBackend(t, echo))})
		first.StopAccepting()
		second := startProxy(t, Options{Listener: ln}, &Upstream{Pool: newPool(t, serveBackend(t, echo))})
		if got := roundTrip(t, dial(t, ln.Addr().String()), "next"); got != "next" {
			t.Fatal(got)
		}
		if first.counter(t, first.m.ConnsTotal.WithLabelValues("test")) != 0 ||
			second.counter(t, second.m.ConnsTotal.WithLabelValues("test")) != 1 {
			t.Fatal("the connection did not go to the second server")
		}
	})
}

// TestTakeOver: a Server that takes over its predecessor (a reload) serves
// new connections on the same listener while the old sessions go on; its
// Active and Shutdown cover the sessions of every Server it took over,
// directly or not, and it keeps only those that still have sessions.
func TestTakeOver(t *testing.T) {
	t.Parallel()
	for _, forced := range []bool{false, true} {
		name := "sessions end on their own"
		if forced {
			name = "the deadline closes every session"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ln := listen(t)
			first := startProxy(t, Options{Listener: ln}, &Upstream{Pool: newPool(t, serveBackend(t, echo))})
			a := dial(t, first.addr)
			if got := roundTrip(t, a, "a"); got != "a" {
				t.Fatal(got)
			}
			// A reload without a new session, then one with.
			second := successor(t, first.Server, ln)
			third := successor(t, second, ln)
			c := dial(t, first.addr)
			if got := roundTrip(t, c, "c"); got != "c" {
				t.Fatal(got)
			}
			if first.Active() != 1 || second.Active() != 0 || third.Active() != 2 {
				t.Fatalf("active: first %d, second %d, third %d; want 1, 0, 2", first.Active(), second.Active(), third.Active())
			}
			if len(third.retired) != 1 || third.retired[0] != first.Server {
				t.Fatalf("third took over %d servers, want only the first (the second has no session)", len(third.retired))
			}
			if got := roundTrip(t, a, "a again"); got != "a again" {
				t.Fatalf("old session after two reloads: %q", got)
			}

			if forced {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				if err := third.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Shutdown: %v, want DeadlineExceeded", err)
				}
				for _, s := range []*net.TCPConn{a, c} {
					if n, err := s.Read(make([]byte, 1)); n != 0 || err == nil {
						t.Fatalf("read %d, %v after a forced Shutdown", n, err)
					}
				}
				return
			}
			done := make(chan error, 1)
			go func() { done <- third.Shutdown(context.Background()) }()
			for _, s := range []*net.TCPConn{a, c} {
				if got := roundTrip(t, s, "during"); got != "during" {
					t.Fatalf("open session broke during Shutdown: %q", got)
				}
				select {
				case err := <-done:
					t.Fatalf("Shutdown returned %v with a session open", err)
				default:
				}
				_ = s.Close()
			}
			if err := <-done; err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		})
	}
}

// successor builds the Server of a reload on ln: it takes over prev and
// serves until the test ends.
func successor(t *testing.T, prev *Server, ln net.Listener) *Server {
	t.Helper()
	s := NewServer(Options{Name: "test", Listener: ln, Metrics: prev.metrics}, &Upstream{PoolName: "pool", Pool: newPool(t, serveBackend(t, echo))})
	s.TakeOver(prev)
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		_ = s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return s
}

func TestInFlight(t *testing.T) {
	t.Parallel()
	pool := newPool(t, serveBackend(t, echo))
	b := pool.Members()[0].Backend
	p := startProxy(t, Options{}, &Upstream{Pool: pool})
	var conns []net.Conn
	for range 3 {
		c := dial(t, p.addr)
		_ = roundTrip(t, c, "x")
		conns = append(conns, c)
	}
	if got := b.InFlight(); got != 3 {
		t.Fatalf("backend in flight %d with 3 open sessions", got)
	}
	for _, c := range conns {
		_ = c.Close()
	}
	eventually(t, "in-flight count to drop to 0", func() bool { return b.InFlight() == 0 })
}

// TestZeroCopy checks that payload moves only through splice(2) and that
// sessions hold no pipe while idle.
func TestZeroCopy(t *testing.T) {
	t.Parallel()
	p := startProxy(t, Options{}, &Upstream{Pool: newPool(t, serveBackend(t, echo))})
	const size = 8 << 20
	c := dial(t, p.addr)
	go func() {
		_, _ = c.Write(make([]byte, size))
		_ = c.CloseWrite()
	}()
	n, err := io.Copy(io.Discard, c)
	if err != nil || n != size {
		t.Fatalf("echoed %d, %v", n, err)
	}
	p.waitIdle(t)
	if got := p.spliced.Load(); got != 2*size {
		t.Errorf("spliced %d bytes, want %d", got, 2*size)
	}
	if got := p.copied.Load(); got != 0 {
		t.Errorf("copied %d bytes through user space", got)
	}

	// Idle sessions give their pipes back.
	var open []net.Conn
	for range 20 {
		c := dial(t, p.addr)
		_ = roundTrip(t, c, "hello")
		open = append(open, c)
	}
	eventually(t, "idle sessions to hold no pipe", func() bool { return p.pipes.InUse() == 0 })
	if p.Active() != 20 {
		t.Fatalf("%d sessions open, want 20", p.Active())
	}
	if created := p.pipes.Created(); !raceEnabled && created > 4 {
		t.Errorf("%d pipes created for sequential traffic; pooling is broken", created)
	}
	_ = open
}

// TestNonTCPListener: connections that are not *net.TCPConn (here a unix
// socket) are served with a user-space copy.
func TestNonTCPListener(t *testing.T) {
	t.Parallel()
	path := t.TempDir() + "/l.sock"
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	p := startProxy(t, Options{Listener: ln}, &Upstream{Pool: newPool(t, serveBackend(t, echo))})
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "over unix")
	_ = c.(*net.UnixConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "over unix" {
		t.Fatalf("echo %q, %v", got, err)
	}
	p.waitIdle(t)
	if p.copied.Load() != 18 || p.spliced.Load() != 0 {
		t.Fatalf("copied %d, spliced %d", p.copied.Load(), p.spliced.Load())
	}
}
