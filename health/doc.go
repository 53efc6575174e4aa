// Package health decides whether backends may take traffic.
//
// A Checker runs one active check per target every interval, jittered by up
// to 10%, and applies HAProxy's rise/fall rule: rise consecutive successes
// bring a down target up, fall consecutive failures take an up target down.
// A target that has never been up since it was added goes up on its first
// successful check, so a new backend takes traffic as soon as it answers.
// The checks:
//
//   - tcp: a connect within the timeout, then reset at once (as HAProxy
//     does, so checks leave no TIME_WAIT sockets). One socket per backend
//     is reused from check to check.
//   - http: a prebuilt request (method, path, Host) over one kept-alive
//     connection per backend; a status within expect_status passes. The
//     body is read and dropped (at most 1 MiB); the head must fit in 4 KiB.
//   - grpc: grpc.health.v1.Health/Check for the configured service over one
//     h2c ClientConn per backend; SERVING passes, anything else fails.
//   - none: every target is marked up when Run starts; nothing is probed.
//
// A backend that accepts a connection and never answers fails by timeout.
// Probe times are aligned to a grid of interval/10 so that the wake-ups of
// many targets coalesce.
//
// tcp and http checks of targets given by IP address run on one goroutine
// per Checker, the engine: it drives non-blocking sockets with plain system
// calls and waits for all of them on an epoll instance of its own, which Go's
// netpoller waits for in turn. Checking 1,000 backends every second costs
// about 2-3% of one core for either kind (TestCheckerCPU; it was 4-10% with
// a goroutine, a timer and a net.Dialer or fasthttp client per target).
// grpc checks (grpc-go) and targets given by host name (resolved before
// each connect) run on a goroutine each; grpc costs about 15% of a core per
// 1,000 checks a second. The package is Linux-only (epoll).
//
// An Ejector does passive health: the proxy reports each response through
// Success (the hot path: no allocation, one atomic load) and each connect
// failure, reset, timeout or failing status through Failure (the caller
// applies count_timeouts and failure_statuses). ConsecutiveFailures failures
// in a row eject a target for BaseEjection, doubled on each repeat ejection
// up to MaxEjectionTime, and never more than MaxEjectionPercent of a pool at
// once. An ejection ends when its time is over or, with
// UnejectOnActivePass, when a Checker given the Ejector sees the target
// recover (down to up); "backend up" is logged when the target takes traffic
// again.
//
// The package reports through interfaces it defines (StatusSetter, Ejectable),
// which balancer.Backend satisfies; it imports nothing of frontdoor's except
// config. Every goroutine it starts is bound to the context given to Run,
// recovers panics and logs their stack, and is gone when Run returns. Logs
// carry one line per transition (keys pool, backend, reason, err), never one
// per probe.
package health
