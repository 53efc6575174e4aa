package proxy

import (
	"runtime/debug"

	"github.com/valyala/fasthttp"
)

// The goroutine engine: fasthttp's server, one goroutine per connection,
// serves what the event loop hands over (loop_handoff.go) and every
// connection of a listener without loops. It adapts fasthttp's
// RequestCtx to the core's phases (core_exchange.go) and owns the I/O
// around them: forwarding through HostClient's pool and streamed bodies
// (goengine_stream.go), spliced bodies (goengine_splice.go), upgrades
// (goengine_tunnel.go) and deferred writes (goengine_deferconn.go).

// handle is the fasthttp request handler: route, stages, pick, forward.
// It allocates nothing in steady state; keep it that way (BenchmarkForward,
// TestForwardAllocs).
func (l *httpListener) handle(ctx *fasthttp.RequestCtx) {
	defer l.handled(ctx)
	var x exchange
	if sc, ok := ctx.Conn().(*sniffConn); ok {
		x.via = sc.via // the peer, when a PROXY protocol header named the client
		x.tlsc = sc.tlsc
	}
	var idBuf [32]byte
	if !l.begin(ctx, &x, &idBuf) {
		addHSTS(ctx, x.rt) // tls_route.go
		return
	}
	if x.r.transcode != nil {
		l.serveTranscode(ctx, &x) // transcodeengine.go
		l.end(ctx, &x)
		return
	}
	for {
		i := l.pick(ctx, &x)
		if i == pickQueue {
			i = l.await(ctx, &x) // goengine_queue.go
		}
		if i < 0 {
			break
		}
		u := x.p.ups[i]
		x.fw.slot, x.slot = x.slot, false
		err := l.forward(ctx, u, x.p, i, &x.fw)
		if !l.attempted(ctx, &x, i, err) {
			break
		}
	}
	l.end(ctx, &x)
	addHSTS(ctx, x.rt)
}

// handled runs when handle returns: it survives a panic of the request (a
// bug; fasthttp's server would let it end the process) by logging it with
// the stack, counting it and closing the connection, and else lets the
// answer's last write wait (answered).
func (l *httpListener) handled(ctx *fasthttp.RequestCtx) {
	if r := recover(); r != nil {
		l.panics.Inc()
		l.logger.Error("listener: panic while serving a request; the connection is closed",
			"listener", l.name, "request_id", string(ctx.Request.Header.PeekBytes(hdrXRequestID)),
			"panic", r, "stack", string(debug.Stack()))
		ctx.Response.Reset()
		ctx.SetStatusCode(fasthttp.StatusInternalServerError)
		ctx.SetConnectionClose()
		return
	}
	answered(ctx)
}

// answered lets the client connection hold the response's last write until
// its next read (goengine_deferconn.go): only for a response that is whole in memory
// on a connection that stays open and is not handed to a tunnel.
func answered(ctx *fasthttp.RequestCtx) {
	if ctx.Response.IsBodyStream() || ctx.Hijacked() || ctx.Response.ConnectionClose() {
		return
	}
	if c, ok := ctx.Conn().(*sniffConn); ok {
		c.answered()
	}
}
