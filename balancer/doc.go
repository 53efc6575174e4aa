// Package balancer holds backends, pools and the strategies that pick a
// backend for a request (L7) or a connection (L4).
//
// A Backend is one address with live state (healthy, ejected, in-flight
// count, and what an operator set at runtime: AdminState and a weight
// override) that survives config reloads. A Pool is an immutable set of weighted
// members plus a strategy; Pick is lock-free and allocation-free. The package
// knows nothing of HTTP, sockets or metrics: callers turn requests into a
// uint64 key and report outcomes through Backend and Pool methods.
//
// Strategies:
//
//   - RoundRobin: smooth weighted round robin, one atomic add per pick, over
//     a schedule of the members that are up, rebuilt off the request path
//     when one goes up or down: a missing member's share goes to every up
//     member in proportion to its weight, as in nginx.
//   - LeastConn: fewest in-flight requests per unit of weight, ties broken at
//     random; an exact scan up to 8 members, power of two choices beyond.
//   - ConsistentHash: a Maglev lookup table (O(1) lookup, minimal disruption
//     when a member goes down or comes back, the same mapping in every
//     process with the same backends), optionally with bounded loads so that
//     hot keys spill to the next member in table order instead of
//     overloading one backend.
//
// Slow start (Options.SlowStart) ramps a member's effective weight linearly
// from about 0 to full after its Backend comes up (from down or ejected, or
// added by a reload), under RoundRobin and LeastConn; ConsistentHash is not
// ramped, so that keys stay put. The start of the ramp lives in the Backend
// and survives reloads.
//
// The request cycle is
//
//	i := pool.PickAcquire(key, tried) // or Pick then Acquire(i)
//	if i < 0 {
//		// ErrNoBackend: 503
//	}
//	b := pool.Members()[i].Backend
//	// ... forward to b.Address(); on failure, retry with tried |= 1 << (i % 64)
//	pool.Release(i)
package balancer
