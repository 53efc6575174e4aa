// Package health decides whether backends may take traffic.
//
// A Checker runs one active check per target (tcp connect, HTTP request or
// grpc.health.v1 Check) every interval, jittered by up to 10%, and applies
// HAProxy's rise/fall rule: rise consecutive successes bring a down target up,
// fall consecutive failures take an up target down. A target that has never
// been up since it was added goes up on its first successful check, so a new
// backend takes traffic as soon as it answers. Check "none" marks every target
// up when Run starts and probes nothing.
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
// recovers panics and logs their stack, and is gone when Run returns.
package health
