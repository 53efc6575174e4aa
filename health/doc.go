// Package health decides whether backends may take traffic.
//
// A Checker runs one active check per target every interval, jittered by up
// to 10%, and applies HAProxy's rise/fall rule: rise consecutive successes
// bring a down target up, fall consecutive failures take an up target down.
// A target that has never been up since it was added goes up on its first
// successful check, so a new backend takes traffic as soon as it answers.
// The checks:
//
//   - tcp: a connect within the timeout, closed at once with a reset (as
//     HAProxy does, so checks leave no TIME_WAIT sockets).
//   - http: a prebuilt request (method, path, Host) over one kept-alive
//     connection per backend; a status within expect_status passes.
//   - grpc: grpc.health.v1.Health/Check for the configured service over one
//     h2c ClientConn per backend; SERVING passes, anything else fails.
//   - none: every target is marked up when Run starts; nothing is probed.
//
// A backend that accepts a connection and never answers fails by timeout.
// Probe times are aligned to a grid of interval/10 so that the wake-ups of
// many targets coalesce: 1,000 HTTP targets checked every second cost a few
// percent of one core (see TestCheckerCPU).
//
// An Ejector does passive health: the proxy reports each response through
// Success (the hot path: no allocation, one atomic load) and each connect
// failure, reset or 5xx through Failure. ConsecutiveFailures failures in a row
// eject a target for BaseEjection, doubled on each repeat ejection up to 32x,
// and never more than MaxEjectionPercent of a pool at once.
//
// The package reports through interfaces it defines (StatusSetter, Ejectable),
// which balancer.Backend satisfies; it imports nothing of frontdoor's except
// config. Every goroutine it starts is bound to the context given to Run,
// recovers panics and logs their stack, and is gone when Run returns. Logs
// carry one line per transition (keys pool, backend, reason, err), never one
// per probe.
package health
