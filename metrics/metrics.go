package metrics

import (
	"runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "frontdoor"

// DurationBuckets are the classic buckets of request_duration_seconds.
var DurationBuckets = [...]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// ExemplarLabel is the exemplar label of request_duration_seconds: the
// request's ID, the trace-id of its traceparent when it came with one.
const ExemplarLabel = "trace_id"

// Code classes used as the code label of requests_total.
var CodeClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// CodeClass maps an HTTP status to its index in CodeClasses (0 for anything
// outside 100-599 other than 5xx ranges, which clamp to 5xx).
func CodeClass(status int) int {
	c := status/100 - 1
	if c < 0 {
		return 0
	}
	if c > 4 {
		return 4
	}
	return c
}

// Metrics holds every frontdoor metric family. Create it once per process
// with New; it is safe for concurrent use. Hot paths must bind label children
// (WithLabelValues) when a runtime is built, never per request.
type Metrics struct {
	RequestsTotal   *prometheus.CounterVec   // listener, pool, backend, code
	RequestDuration *DurationVec             // listener, pool, route, backend (native and classic, with exemplars)
	UpstreamErrors  *prometheus.CounterVec   // pool, backend, reason
	RetriesTotal    *prometheus.CounterVec   // pool
	HashKeyMissing  *prometheus.CounterVec   // pool
	QueueLength     *prometheus.GaugeVec     // pool
	QueueWait       *prometheus.HistogramVec // pool
	HealthChecks    *prometheus.CounterVec   // pool, backend, result
	// DiscoveryBackends, DiscoveryResolutions and DiscoverySuccess
	// describe DNS discovery (pool.NAME.discovery).
	DiscoveryBackends    *prometheus.GaugeVec   // pool
	DiscoveryResolutions *prometheus.CounterVec // pool, result (ok, error, empty)
	DiscoverySuccess     *prometheus.GaugeVec   // pool
	Ejections            *prometheus.CounterVec // pool, backend
	ConnsActive          *prometheus.GaugeVec   // listener
	ConnsTotal           *prometheus.CounterVec // listener
	ConnsRejected        *prometheus.CounterVec // listener, reason
	UpgradedActive       *prometheus.GaugeVec   // listener
	Panics               *prometheus.CounterVec // listener
	HTTP2GoAways         *prometheus.CounterVec // listener, code
	TCPBytes             *prometheus.CounterVec // listener, direction
	JWTVerified          *prometheus.CounterVec // policy
	JWTRejected          *prometheus.CounterVec // policy, reason
	ConfigReloads        *prometheus.CounterVec // result
	ReloadSuccessful     prometheus.Gauge
	ReloadTimestamp      prometheus.Gauge
	AccessLogDropped     prometheus.Counter
	BuildInfo            *prometheus.GaugeVec // version, goversion
	// TLS holds the TLS families (tls.go).
	TLS TLS

	backends backendCollector
}

// BackendSource reports live backend state at scrape time. EachBackend calls
// fn once per backend of every pool in the current runtime; ejectedUntil is
// the end of the backend's passive ejection, zero when it is not ejected.
type BackendSource interface {
	EachBackend(fn func(pool, backend string, up bool, inFlight int64, ejectedUntil time.Time))
}

// BackendAdminSource is what a BackendSource may also implement to report
// what an operator set per backend (backend_admin_state, backend_weight):
// EachBackendAdmin calls fn once per backend of every pool with its admin
// state ("ready", "drain" or "maint") and effective weight.
type BackendAdminSource interface {
	EachBackendAdmin(fn func(pool, backend, state string, weight int))
}

// adminStates are the values of backend_admin_state's state label.
var adminStates = [...]string{"ready", "drain", "maint"}

// New creates every family and registers it, with the Go runtime and process
// collectors, on reg. It panics if a family is already registered there
// (a programmer error: call New once per registry).
func New(reg prometheus.Registerer, version string) *Metrics {
	m := &Metrics{
		RequestsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "requests_total",
			Help: "HTTP requests and gRPC calls answered, by listener, pool, backend and status class.",
		}, []string{"listener", "pool", "backend", "code"}),
		// Native buckets (schema 3) for servers that scrape them, the
		// classic DurationBuckets for the others: both are exposed.
		RequestDuration: NewDurationVec(namespace+"_request_duration_seconds",
			"Time from reading a request to the end of its response, by listener, pool, route and backend (of the final attempt; \"\" when none).",
			[]string{"listener", "pool", "route", "backend"}),
		UpstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "upstream_errors_total",
			Help: "Failures talking to backends, by pool, backend and reason (connect, timeout, reset, status_5xx, no_backend, ...).",
		}, []string{"pool", "backend", "reason"}),
		DiscoveryBackends: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "discovery_backends",
			Help: "Backends the pool's DNS discovery currently contributes, by pool.",
		}, []string{"pool"}),
		DiscoveryResolutions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "discovery_resolutions_total",
			Help: "DNS discovery resolutions, by pool and result (ok, error, empty).",
		}, []string{"pool", "result"}),
		DiscoverySuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "discovery_last_success_timestamp_seconds",
			Help: "Unix time of the pool's last DNS discovery resolution that returned records.",
		}, []string{"pool"}),
		RetriesTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "retries_total",
			Help: "Requests retried on another backend, by pool.",
		}, []string{"pool"}),
		HashKeyMissing: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "hash_key_missing_total",
			Help: "Consistent-hash requests that lacked their hash_on key and fell back to the source address, by pool.",
		}, []string{"pool"}),
		QueueLength: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "queue_length",
			Help: "Requests waiting now in the pool's queue for a connection slot (pool queue), by pool.",
		}, []string{"pool"}),
		QueueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "queue_wait_seconds",
			Help:    "Time requests waited in the pool's queue, until a slot or the queue timeout, by pool.",
			Buckets: DurationBuckets[:],
		}, []string{"pool"}),
		HealthChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "health_checks_total",
			Help: "Active health checks run, by pool, backend and result (success, failure).",
		}, []string{"pool", "backend", "result"}),
		Ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "passive_ejections_total",
			Help: "Backends ejected by passive failure detection, by pool and backend.",
		}, []string{"pool", "backend"}),
		ConnsActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "connections_active",
			Help: "Client connections open now, by listener.",
		}, []string{"listener"}),
		ConnsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "connections_total",
			Help: "Client connections accepted, by listener.",
		}, []string{"listener"}),
		ConnsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "connections_rejected_total",
			Help: "Client connections closed at once, by listener and reason (max_connections, proxy_protocol).",
		}, []string{"listener", "reason"}),
		Panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "panics_total",
			Help: "Connections closed because handling them panicked (a bug: the stack is in the process log), by listener.",
		}, []string{"listener"}),
		HTTP2GoAways: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http2_goaway_total",
			Help: "HTTP/2 client connections frontdoor closed with an error GOAWAY, by listener and HTTP/2 error code (ENHANCE_YOUR_CALM: a flood limit; PROTOCOL_ERROR, COMPRESSION_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, STREAM_CLOSED: a broken client).",
		}, []string{"listener", "code"}),
		UpgradedActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "upgraded_connections_active",
			Help: "Upgraded connections (WebSocket and other Connection: Upgrade tunnels) open now, by listener.",
		}, []string{"listener"}),
		TCPBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "tcp_bytes_total",
			Help: "Bytes carried by tcp listeners, by listener and direction (upstream: client to backend, downstream: backend to client).",
		}, []string{"listener", "direction"}),
		JWTVerified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "jwt_verified_total",
			Help: "Requests whose JWT was accepted, by policy.",
		}, []string{"policy"}),
		JWTRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "jwt_rejected_total",
			Help: "Requests whose JWT was rejected, by policy and reason.",
		}, []string{"policy", "reason"}),
		ConfigReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "config_reloads_total",
			Help: "Config reloads attempted, by result (success, failure).",
		}, []string{"result"}),
		ReloadSuccessful: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "config_last_reload_successful",
			Help: "1 if the last config reload (or the initial load) succeeded, else 0.",
		}),
		ReloadTimestamp: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful config load or reload.",
		}),
		AccessLogDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "access_log_dropped_total",
			Help: "Access log lines dropped because the writer fell behind.",
		}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "build_info",
			Help: "Always 1; labels carry the frontdoor version and Go version.",
		}, []string{"version", "goversion"}),
	}
	m.backends.up = prometheus.NewDesc(namespace+"_backend_up",
		"1 if the backend takes new traffic (healthy, not ejected, not set to drain or maint, weight above 0), else 0.", []string{"pool", "backend"}, nil)
	m.backends.inFlight = prometheus.NewDesc(namespace+"_backend_in_flight",
		"Requests (http) or connections (tcp) in flight to the backend now.", []string{"pool", "backend"}, nil)
	m.backends.adminState = prometheus.NewDesc(namespace+"_backend_admin_state",
		"1 for the state an operator set for the backend (ready, drain, maint: frontdoor ctl), 0 for the others.", []string{"pool", "backend", "state"}, nil)
	m.backends.weight = prometheus.NewDesc(namespace+"_backend_weight",
		"The backend's effective weight: a runtime weight (frontdoor ctl weight) or the configured one; 0 takes no new requests.", []string{"pool", "backend"}, nil)
	m.backends.ejectedUntil = prometheus.NewDesc(namespace+"_backend_ejected_until_seconds",
		"End of the backend's passive ejection as a Unix time; 0 when it is not ejected.", []string{"pool", "backend"}, nil)
	reg.MustRegister(m.RequestsTotal, m.RequestDuration, m.UpstreamErrors, m.RetriesTotal,
		m.DiscoveryBackends, m.DiscoveryResolutions, m.DiscoverySuccess,
		m.HashKeyMissing, m.QueueLength, m.QueueWait, m.HealthChecks, m.Ejections, m.ConnsActive, m.ConnsTotal, m.ConnsRejected,
		m.UpgradedActive, m.Panics, m.HTTP2GoAways, m.TCPBytes, m.JWTVerified, m.JWTRejected, m.ConfigReloads, m.ReloadSuccessful,
		m.ReloadTimestamp, m.AccessLogDropped, m.BuildInfo, &m.backends,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.TLS = newTLS()
	reg.MustRegister(m.TLS.collectors()...)
	m.BuildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	return m
}

// SetBackendSource makes backend_up, backend_in_flight and
// backend_ejected_until_seconds report src from the next scrape on. Call it whenever a new runtime is published.
func (m *Metrics) SetBackendSource(src BackendSource) { m.backends.src.Store(&src) }

// backendCollector reads live backend state at scrape time, so the request
// path pays nothing for backend_up, backend_in_flight and
// backend_ejected_until_seconds.
type backendCollector struct {
	up, inFlight, ejectedUntil *prometheus.Desc
	adminState, weight         *prometheus.Desc
	src                        atomic.Pointer[BackendSource]
}

func (c *backendCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.inFlight
	ch <- c.ejectedUntil
	ch <- c.adminState
	ch <- c.weight
}

func (c *backendCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.src.Load()
	if p == nil || *p == nil {
		return
	}
	seen := make(map[[2]string]bool)
	(*p).EachBackend(func(pool, backend string, up bool, inFlight int64, ejectedUntil time.Time) {
		k := [2]string{pool, backend}
		if seen[k] {
			return
		}
		seen[k] = true
		v := 0.0
		if up {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, v, pool, backend)
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(inFlight), pool, backend)
		until := 0.0
		if !ejectedUntil.IsZero() {
			until = float64(ejectedUntil.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(c.ejectedUntil, prometheus.GaugeValue, until, pool, backend)
	})
	as, ok := (*p).(BackendAdminSource)
	if !ok {
		return
	}
	clear(seen)
	as.EachBackendAdmin(func(pool, backend, state string, weight int) {
		k := [2]string{pool, backend}
		if seen[k] {
			return
		}
		seen[k] = true
		for _, s := range adminStates {
			v := 0.0
			if s == state {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.adminState, prometheus.GaugeValue, v, pool, backend, s)
		}
		ch <- prometheus.MustNewConstMetric(c.weight, prometheus.GaugeValue, float64(weight), pool, backend)
	})
}
