// Package tcp is frontdoor's Layer-4 engine: it accepts TCP connections on a
// listener that the caller bound, picks a backend from a balancer.Pool for
// each one, and moves bytes between the two sockets with splice(2) through a
// kernel pipe, so payload never enters user space.
//
// A Server serves one listener with one Upstream (the pool, connect timeout,
// retries and PROXY protocol setting), both fixed when NewServer builds it.
// A config reload builds a new Server for the same listener, which takes the
// old one over (TakeOver): StopAccepting, Shutdown and Close stop a Server
// without closing its listener, which stays with the caller so it can
// survive reloads, and sessions already open finish on the Server and
// Upstream they started with.
//
// TCP semantics are kept end to end: a FIN from one side becomes a
// shutdown(SHUT_WR) towards the other and the session lasts until both
// directions are done; a reset from one side is passed on as a reset (linger
// 0) to the other; a session with no bytes in either direction for
// Options.IdleTimeout is closed. Connect failures are retried on another
// backend before any byte is sent. PROXY protocol v1 and v2 headers are read
// from clients (Options.AcceptProxy) and written to backends
// (Upstream.SendProxy) in the format HAProxy uses.
//
// With Options.SNIRoutes a Server routes TLS without terminating it
// (sni.go): it peeks at each connection's ClientHello (ParseClientHello,
// clienthello.go), picks the Upstream by its server name, and splices the
// connection, hello included, as any other. Refused hellos are counted in
// the TLS metrics by reason.
//
// # Metrics
//
// Per listener (Options.Name): connections_active, connections_total
// (connections admitted; those closed at once are counted only in
// connections_rejected_total{reason="max_connections"|"proxy_protocol"}),
// tcp_bytes_total{direction="upstream"|"downstream"} (added when a direction
// ends and at most once a second while it runs). Per pool and backend:
// upstream_errors_total{reason="connect"|"reset"} with the meaning the HTTP
// engines give them ("connect": a connect failed, refused or timed out after
// connect_timeout; "reset": the backend connection broke once made) and,
// with an empty backend label, reason="no_backend"; retries_total{pool}.
// backend_in_flight is a session's Backend.Acquire, held from dial to close.
//
// # Wiring
//
// The caller binds the listener, builds the pool, and calls NewServer and
// go Serve. On reload, when the listener stays, it calls NewServer with the
// new settings and Upstream, TakeOver of the old Server (which hands the
// listener over) and Serve; the old Server's sessions go on until they end,
// and the new Server's Shutdown bounds them with its own when the process
// stops (proxy/tcplistener.go). When the listener goes, it calls Shutdown
// with the drain timeout and then closes the listener itself.
//
// # Engines
//
// A Server on a *net.TCPListener whose upstreams name their backends by IP
// address serves every session on event loops (loop.go, loop_session.go):
// one per GOMAXPROCS, each a goroutine with its own epoll set
// (edge-triggered, non-blocking sockets) that accepts with accept4, reads
// the PROXY protocol header and the ClientHello by peeking as the
// goroutine path does, connects to the backend without blocking (the
// connect timeout is a deadline in the loop's lists, and a failed or timed
// out connect is retried on another member before any byte is sent) and
// splices both directions. Deadlines (PROXY header, ClientHello, connect,
// idle) are FIFO lists, one per duration: no runtime timer. Any other
// Server, a listener that does not yield *net.TCPConn or an upstream with
// a backend given by host name (the loops do not resolve names), serves
// each session with goroutines (session.go, splice.go): the goroutine
// path, which behaves the same (TestGoroutinePath runs the engine's cases
// through it). A panic while a loop serves a session is logged with its
// stack and closes that session only.
//
// # Memory per session
//
// On the event loops, an idle session is its pooled session struct (1,264
// bytes, in the 1,280-byte size class), its two sockets in the loop's
// epoll set and a slot in the loop's table: no goroutine, no timer, no
// buffer. TestSoakIdleConnections measures about 1.5 KiB of RSS per idle
// session (9,850 sessions) and asserts at most 2 KiB; the goroutine path
// costs about 13 KiB (two goroutine stacks). A session holds a pipe (two
// file descriptors) only while bytes are in flight: a direction that
// finds its source empty returns the pipe to a pool before it waits, so
// idle sessions cost no pipes and no copy buffers. (The standard library's
// splice path, io.Copy between two *net.TCPConn, keeps a pipe per
// direction for as long as the copy runs: six file descriptors per idle
// session instead of two.) The PROXY header and ClientHello buffers are
// the loop's, lent to a session while it reads one. Pipes are sized 1 MiB,
// as the standard library sizes its own; an unprivileged process past the
// kernel's pipe-user-pages-soft (64 MiB of pipes per user) gets smaller
// pipes, which still work but cost more system calls per byte.
//
// # CPU
//
// Each splice(2) is made as a raw system call that keeps the goroutine's P:
// it never blocks (non-blocking pipe and sockets), and as an ordinary system
// call anything longer than a sysmon tick handed the P to another thread,
// which cost more CPU in thread wake-ups than the copy itself when
// GOMAXPROCS is 1. While a call moves its bytes, nothing else runs on that
// P and a garbage-collection stop-the-world waits for it. A loop moves at
// most four pipe loads of one direction per turn before it serves its
// other sessions, and yields its P once per batch of events.
package tcp
