// Package metrics defines frontdoor's Prometheus families on an injected
// registry and serves the admin HTTP listener (/metrics, /healthz, /readyz,
// /status, and the token-protected write endpoints under /backends/). It
// imports nothing of frontdoor's: live backend state reaches it through the
// BackendSource interface, read only at scrape time, and admin writes go out
// through the BackendController interface.
package metrics
