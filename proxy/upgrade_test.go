package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/valyala/fasthttp"

	"frontdoor/config"
)

// startWebSocketEcho starts a net/http server on 127.0.0.1 whose /ws echoes
// every WebSocket message, and returns its address.
func startWebSocketEcho(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// dialWS opens a WebSocket through the proxy.
func dialWS(t testing.TB, p *testProxy) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+p.Addr("web").String()+"/ws", nil)
	if err != nil {
		t.Fatalf("dial through frontdoor: %v", err)
	}
	if resp.Header.Get("X-Request-ID") == "" {
		t.Errorf("101 answer lacks X-Request-ID")
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

// echo sends msg and expects it back.
func echo(c *websocket.Conn, msg []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo of %d bytes came back as %d different bytes", len(msg), len(got))
	}
	return nil
}

func tunnels(p *testProxy) (n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.http {
		_, u := l.live.counts()
		n += u
	}
	return n
}

// TestWebSocketEcho: a real WebSocket client and server (coder/websocket)
// talk through frontdoor; messages of several sizes echo intact, the tunnel
// counts as one in-flight request while it is open, and closing it frees
// everything.
func TestWebSocketEcho(t *testing.T) {
	t.Parallel()
	p := streamProxy(t, "", "", nil, startWebSocketEcho(t))
	c := dialWS(t, p)
	for _, n := range []int{1, 125, 126, 65535, 65536, 300000} {
		msg := bytes.Repeat([]byte{byte(n)}, n)
		if err := echo(c, msg); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
	}
	be := p.gen.Load().pools["s"].ups[0].be
	if got := tunnels(p); got != 1 {
		t.Errorf("%d tunnels, want 1", got)
	}
	if v := metricValue(t, p.reg, "frontdoor_upgraded_connections_active", nil); v != 1 {
		t.Errorf("upgraded_connections_active %v while the tunnel is open, want 1", v)
	}
	if be.InFlight() != 1 {
		t.Errorf("in flight %d while the tunnel is open, want 1", be.InFlight())
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close handshake: %v", err)
	}
	waitFor(t, 3*time.Second, "tunnel closed", func() bool { return tunnels(p) == 0 && be.InFlight() == 0 })
	if v := metricValue(t, p.reg, "frontdoor_connections_active", nil); v != 0 {
		t.Errorf("connections_active %v after close, want 0", v)
	}
	if v := metricValue(t, p.reg, "frontdoor_upgraded_connections_active", nil); v != 0 {
		t.Errorf("upgraded_connections_active %v after close, want 0", v)
	}
}

// lineEchoBackend answers "Upgrade: line-echo" with 101, then echoes bytes
// until the client half-closes, then writes "bye\n" and closes. Anything
// else gets 426.
func lineEchoBackend(t testing.TB) string {
	return startHandler(t, func(ctx *fasthttp.RequestCtx) {
		if !ctx.Request.Header.ConnectionUpgrade() || string(ctx.Request.Header.Peek("Upgrade")) != "line-echo" {
			ctx.SetStatusCode(fasthttp.StatusUpgradeRequired)
			ctx.SetBodyString("upgrade required")
			return
		}
		if string(ctx.Path()) == "/refuse" {
			ctx.SetStatusCode(fasthttp.StatusForbidden)
			return
		}
		ctx.SetStatusCode(fasthttp.StatusSwitchingProtocols)
		ctx.Response.Header.Set("Connection", "Upgrade, X-Hop")
		ctx.Response.Header.Set("Upgrade", "line-echo")
		ctx.Response.Header.Set("X-Hop", "must not pass")
		ctx.Response.Header.Set("Keep-Alive", "timeout=5")
		ctx.Hijack(func(c net.Conn) {
			_, _ = io.Copy(c, c)
			_, _ = c.Write([]byte("bye\n"))
		})
	})
}

// TestUpgradeHalfClose: an upgraded connection carries bytes both ways, and
// a half-close travels through: the client closes its sending side, the
// backend sees the end, answers, and closes, and the client sees the answer
// then the end.
func TestUpgradeHalfClose(t *testing.T) {
	t.Parallel()
	p := streamProxy(t, "", "", nil, lineEchoBackend(t))
	c, err := net.Dial("tcp", p.Addr("web").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /tunnel HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: line-echo\r\n\r\nearly\n")
	br := bufio.NewReader(c)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	if err := resp.Header.Read(br); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != 101 || !resp.Header.ConnectionUpgrade() || string(resp.Header.Peek("Upgrade")) != "line-echo" {
		t.Fatalf("answer %q", resp.Header.Header())
	}
	if len(resp.Header.Peek("X-Hop")) != 0 || len(resp.Header.Peek("Keep-Alive")) != 0 {
		t.Errorf("hop-by-hop headers passed on the 101: %q", resp.Header.Header())
	}
	// "early" was sent right behind the request head, before the 101.
	for _, want := range []string{"early\n", "hello\n"} {
		if want == "hello\n" {
			fmt.Fprint(c, want)
		}
		if got, err := br.ReadString('\n'); err != nil || got != want {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "bye\n" {
		t.Fatalf("after half-close read %q, %v; want \"bye\\n\" then EOF", rest, err)
	}
	waitFor(t, 3*time.Second, "tunnel closed", func() bool { return tunnels(p) == 0 })
}

// TestUpgradeAnswers: a backend that refuses an upgrade answers the client
// normally, and a backend that switches protocols unasked is a 502.
func TestUpgradeAnswers(t *testing.T) {
	t.Parallel()
	p := streamProxy(t, "", "", nil, lineEchoBackend(t))
	rogue := startHandler(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(fasthttp.StatusSwitchingProtocols)
		ctx.Response.Header.Set("Connection", "Upgrade")
		ctx.Response.Header.Set("Upgrade", "surprise")
		ctx.Hijack(func(net.Conn) {})
	})
	rp := streamProxy(t, "", "", nil, rogue)
	for _, tc := range []struct {
		name   string
		url    string
		hdr    []string
		status int
	}{
		{"refused", p.url(t, "web", "/refuse"), []string{"Connection", "Upgrade", "Upgrade", "line-echo"}, 403},
		{"not an upgrade", p.url(t, "web", "/plain"), nil, 426},
		{"unasked switch", rp.url(t, "web", "/"), nil, 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, err := get(t, &fasthttp.Client{}, tc.url, tc.hdr...)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode() != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode(), tc.status)
			}
		})
	}
}

// TestReloadKeepsStreamsAndTunnels: a config reload on the same bind, while
// a WebSocket session and an endless event stream are open, leaves both
// running, and new requests see the new config.
func TestReloadKeepsStreamsAndTunnels(t *testing.T) {
	t.Parallel()
	sse := startHandler(t, sseHandler(0, 20*time.Millisecond))
	ws := startWebSocketEcho(t)
	toml := func(extra string) string {
		return listenerTOML + `
  [[listener.route]]
  path_prefix = "/ws"
  pool = "ws"
  [[listener.route]]
  path_prefix = "/events"
  pool = "sse"
` + extra + poolTOML("ws", `health = { check = "none" }`, ws) + poolTOML("sse", `health = { check = "none" }`, sse)
	}
	p := upProxy(t, toml(""), nil)
	c := dialWS(t, p)
	if err := echo(c, []byte("before")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(p.url(t, "web", "/events"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan int64, 1000)
	go func() {
		defer close(events)
		for ev := range readEvents(resp.Body) {
			events <- ev
		}
	}()
	<-events

	cfg, err := config.Parse([]byte(toml(`  [[listener.route]]
  path_prefix = "/new"
  pool = "ws"
`)), "reload.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	reloaded := time.Now().UnixNano()
	if err := echo(c, []byte("after the reload")); err != nil {
		t.Fatalf("WebSocket after reload: %v", err)
	}
	after := 0
	for after < 5 {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("event stream ended by the reload")
			}
			if ev > reloaded {
				after++
			}
		case <-time.After(3 * time.Second):
			t.Fatal("no events after the reload")
		}
	}
	// The new route leads to the WebSocket server, which wants an upgrade.
	r2, err := get(t, &fasthttp.Client{}, p.url(t, "web", "/new"))
	if err != nil || r2.StatusCode() != fasthttp.StatusUpgradeRequired {
		t.Errorf("new route after reload: %v, %v; want 426 from the WebSocket server", r2.StatusCode(), err)
	}
}

// TestShutdownDrainsThenClosesTunnelsAndStreams: Shutdown lets an open
// WebSocket and event stream run until its deadline, then closes them, and
// reports that it had to.
func TestShutdownDrainsThenClosesTunnelsAndStreams(t *testing.T) {
	t.Parallel()
	sse := startHandler(t, sseHandler(0, 20*time.Millisecond))
	ws := startWebSocketEcho(t)
	p := upProxy(t, listenerTOML+`
  [[listener.route]]
  path_prefix = "/ws"
  pool = "ws"
  [[listener.route]]
  path_prefix = "/events"
  pool = "sse"
`+poolTOML("ws", `health = { check = "none" }`, ws)+poolTOML("sse", `health = { check = "none" }`, sse), nil)
	c := dialWS(t, p)
	resp, err := http.Get(p.url(t, "web", "/events"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	streamEnded := make(chan struct{})
	go func() {
		defer close(streamEnded)
		_, _ = io.Copy(io.Discard, resp.Body)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	start := time.Now()
	go func() { shut <- p.Shutdown(ctx) }()
	if err := echo(c, []byte("during the drain")); err != nil {
		t.Fatalf("WebSocket during the drain: %v", err)
	}
	select {
	case <-streamEnded:
		t.Fatal("event stream ended before the drain deadline")
	default:
	}
	var serr error
	select {
	case serr = <-shut:
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if !errors.Is(serr, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want the deadline error (connections had to be closed)", serr)
	}
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Errorf("Shutdown returned after %v, before its 500ms deadline", took)
	}
	select {
	case <-streamEnded:
	case <-time.After(3 * time.Second):
		t.Fatal("event stream still open 3s after the drain deadline")
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer rcancel()
	if _, _, err := c.Read(rctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WebSocket read after shutdown: %v, want the connection closed", err)
	}
	waitFor(t, 3*time.Second, "tunnel gone", func() bool { return tunnels(p) == 0 })
}
