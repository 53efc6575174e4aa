// Package balancer holds backends, pools and the strategies that pick a
// backend for a request (L7) or a connection (L4).
//
// A Backend is one address with live state (healthy, ejected, in-flight
// count) that survives config reloads. A Pool is an immutable set of weighted
// members plus a strategy; Pick is lock-free and allocation-free. The package
// knows nothing of HTTP, sockets or metrics: callers turn requests into a
// uint64 key and report outcomes through Backend methods.
package balancer
