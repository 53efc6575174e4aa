package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"frontdoor/balancer"
)

// Upgrades (WebSocket and any other "Connection: Upgrade" protocol).
//
// An upgrade request keeps its Connection and Upgrade headers on the way to
// the backend. If the backend answers 101 Switching Protocols, the answer is
// relayed to the client and the two connections become a tunnel: bytes are
// copied both ways until either side closes (a half-close is passed on as a
// half-close), either side fails, or neither side sent anything for
// idle_timeout. The backend connection leaves the pool for good and counts as
// one in-flight request of its member while the tunnel lives. A reload leaves
// tunnels alone; Shutdown, or a reload that removes the listener, gives them
// drain_timeout and then closes them.

// tunnelStartTimeout bounds the wait for fasthttp to hand over the client
// connection after the 101 answer was queued; if the answer could not be
// written it never does, and the backend connection would leak.
const tunnelStartTimeout = 10 * time.Second

// tunneler marks a liveConn that is an upgraded connection.
type tunneler interface{ isTunnel() }

// tunnel joins a client connection and a backend connection after a 101. C
// is fasthttp's unexported connection type (see upstreamBody).
type tunnel[C interface{ Conn() net.Conn }] struct {
	hc      *fasthttp.HostClient
	cc      C
	discard func(*fasthttp.HostClient, C)
	up      net.Conn
	upr     *bufio.Reader // holds what the backend sent after its 101
	pool    *balancer.Pool
	member  int
	live    *liveSet
	idle    time.Duration
	logger  fasthttp.Logger
	last    atomic.Int64 // unix nanoseconds of the last byte either way
	timer   *time.Timer

	mu      sync.Mutex
	started bool
	done    bool     // aborted before start, or ended
	client  net.Conn // the hijacked connection, once started
}

func (t *tunnel[C]) isTunnel() {}

// startTunnel takes over the backend connection of a 101 answer and asks
// fasthttp to hand over the client connection once the answer is written.
func startTunnel[C interface{ Conn() net.Conn }](ctx *fasthttp.RequestCtx, l *httpListener, hc *fasthttp.HostClient, cc C,
	discard func(*fasthttp.HostClient, C), br *bufio.Reader, pool *balancer.Pool, member int) {
	t := &tunnel[C]{hc: hc, cc: cc, discard: discard, up: cc.Conn(), upr: br, pool: pool, member: member,
		live: &l.live, idle: l.server.IdleTimeout, logger: l.server.Logger}
	pool.Acquire(member)
	t.last.Store(time.Now().UnixNano())
	if !l.live.add(t) {
		t.finish()
		ctx.SetConnectionClose()
		return
	}
	t.timer = time.AfterFunc(tunnelStartTimeout, t.abandon)
	ctx.Hijack(t.run)
}

// abandon ends a tunnel whose client connection never arrived.
func (t *tunnel[C]) abandon() {
	t.mu.Lock()
	if t.started || t.done {
		t.mu.Unlock()
		return
	}
	t.done = true
	t.mu.Unlock()
	t.finish()
}

// run is the hijack handler: it owns the client connection until it returns
// (fasthttp then closes it).
func (t *tunnel[C]) run(c net.Conn) {
	t.mu.Lock()
	if t.done {
		t.mu.Unlock()
		return
	}
	t.started = true
	t.client = c
	t.mu.Unlock()
	t.timer.Stop()
	defer t.finish()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer t.recover()
		t.pipe(t.up, c) // client → backend
	}()
	func() {
		defer t.recover()
		t.pipe(c, t.upr) // backend → client, starting with what the backend sent after its 101
	}()
	wg.Wait()
}

// recover keeps a bug in a pipe from taking the process down: it logs the
// stack and closes the tunnel.
func (t *tunnel[C]) recover() {
	if r := recover(); r != nil {
		t.abort()
		if t.logger != nil {
			t.logger.Printf("proxy: tunnel panicked: %v\n%s", r, debug.Stack())
		}
	}
}

// pipe copies src to dst until src ends (then half-closes dst) or either side
// fails (then closes both). A read that waited idle_timeout ends the tunnel
// only if the other direction was idle as long.
func (t *tunnel[C]) pipe(dst net.Conn, src io.Reader) {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	srcConn := t.up
	if dst == t.up {
		srcConn = t.client
	}
	for {
		if t.idle > 0 {
			_ = srcConn.SetReadDeadline(time.Now().Add(t.idle))
		}
		n, err := src.Read(buf)
		if n > 0 {
			now := time.Now()
			t.last.Store(now.UnixNano())
			if t.idle > 0 {
				_ = dst.SetWriteDeadline(now.Add(t.idle))
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				t.abort()
				return
			}
		}
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, t.last.Load())) < t.idle {
			continue // the other direction is busy
		}
		if err == io.EOF {
			closeWrite(dst)
			return
		}
		t.abort()
		return
	}
}

// abort closes both connections; the pipes then end.
func (t *tunnel[C]) abort() {
	_ = t.up.Close()
	t.mu.Lock()
	c := t.client
	t.mu.Unlock()
	if c != nil {
		_ = rawConn(c).Close()
	}
}

// finish releases the backend connection and the in-flight count.
func (t *tunnel[C]) finish() {
	t.live.remove(t)
	t.hc.ReleaseReader(t.upr)
	t.discard(t.hc, t.cc)
	t.pool.Release(t.member)
}

// rawConn unwraps fasthttp's hijacked connection, whose Close does nothing.
func rawConn(c net.Conn) net.Conn {
	if u, ok := c.(interface{ UnsafeConn() net.Conn }); ok {
		return u.UnsafeConn()
	}
	return c
}

// closeWrite half-closes c's TCP connection, looking through the wrappers the
// listener and fasthttp put around it.
func closeWrite(c net.Conn) {
	for c != nil {
		switch v := c.(type) {
		case interface{ CloseWrite() error }:
			_ = v.CloseWrite()
			return
		case interface{ UnsafeConn() net.Conn }:
			c = v.UnsafeConn()
		case *sniffConn:
			c = v.Conn
		case *replayConn:
			c = v.Conn
		default:
			return
		}
	}
}
