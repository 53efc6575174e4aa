package config

import "net/url"

// Tracing is the optional OpenTelemetry tracing of requests ([tracing]).
// Tracing is off while OTLPEndpoint is empty.
type Tracing struct {
	// OTLPEndpoint is the base URL of an OTLP/HTTP receiver
	// ("http://127.0.0.1:4318"); spans are POSTed to its /v1/traces.
	// Default "": no tracing.
	OTLPEndpoint string `toml:"otlp_endpoint"`
	// SampleRatio is the share of requests traced, 0 to 1, besides those
	// whose traceparent says sampled (always traced). Default 0.
	SampleRatio float64 `toml:"sample_ratio"`
	// ServiceName is the service.name of the spans. Default "frontdoor".
	ServiceName string `toml:"service_name"`
}

// DefaultServiceName is Tracing.ServiceName's default.
const DefaultServiceName = "frontdoor"

func (v *validator) tracing(c *Config) {
	t := &c.Tracing
	if t.SampleRatio < 0 || t.SampleRatio > 1 || t.SampleRatio != t.SampleRatio {
		v.add("tracing.sample_ratio", "sample_ratio %v: want a share from 0 to 1 (0.01 traces one request in a hundred)", t.SampleRatio)
	}
	if t.OTLPEndpoint == "" {
		if t.SampleRatio > 0 || t.ServiceName != "" {
			v.add("tracing.otlp_endpoint", "tracing needs otlp_endpoint, the OTLP/HTTP receiver's base URL such as http://127.0.0.1:4318")
		}
		return
	}
	u, err := url.Parse(t.OTLPEndpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" {
		v.add("tracing.otlp_endpoint", "otlp_endpoint %q: want an http or https base URL such as http://127.0.0.1:4318 (spans go to its /v1/traces)", t.OTLPEndpoint)
	}
}
