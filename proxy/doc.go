// Package proxy is frontdoor's Layer-7 engine and runtime owner.
//
// A Proxy binds the listeners of a config, builds an immutable runtime from
// it (route tables, pools, health checkers, stages, pre-bound metric
// children) and publishes that runtime through atomic pointers. Each request
// loads its listener's pointer once and uses that snapshot to the end. Apply
// builds the next runtime beside the old one, keeping listener sockets whose
// bind is unchanged and Backend objects (health state, pooled connections)
// whose pool and address are unchanged, swaps it in, and lets the old one
// drain.
//
// HTTP/1.1 is served by fasthttp. The forwarding path allocates nothing per
// request in steady state (see BenchmarkForward).
package proxy
