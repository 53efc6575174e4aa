// Package metrics defines frontdoor's Prometheus families on an injected
// registry and serves the admin HTTP listener (/metrics, /healthz, /readyz,
// /status, the status page at / with its stream /status/events, the access
// log's live tail /logs, and the token-protected write endpoints under
// /backends/). request_duration_seconds is a collector of its own
// (DurationVec): a native and classic histogram with exemplars that never
// allocates when it observes. It
// imports nothing of frontdoor's: live backend state reaches it through the
// BackendSource interface, read only at scrape time, admin writes go out
// through the BackendController interface, and /logs reads a LogSource.
package metrics
