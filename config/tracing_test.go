package config

import "testing"

func TestValidateTracing(t *testing.T) {
	t.Parallel()
	runErrCases(t, []errCase{
		{"ratio above 1", minimal("", "", "", "[tracing]\notlp_endpoint = \"http://127.0.0.1:4318\"\nsample_ratio = 1.5 #<\n"), "tracing.sample_ratio", "from 0 to 1"},
		{"no endpoint", minimal("", "", "", "[tracing] #<\nsample_ratio = 0.5\n"), "tracing.otlp_endpoint", "needs otlp_endpoint"},
		{"not a URL", minimal("", "", "", "[tracing]\notlp_endpoint = \"127.0.0.1:4318\" #<\n"), "tracing.otlp_endpoint", "http or https base URL"},
		{"unknown key", minimal("", "", "", "[tracing]\notlp_endpoint = \"http://127.0.0.1:4318\"\nratio = 1 #<\n"), "tracing.ratio", ""},
	})
	cfg, err := Parse([]byte(minimal("", "", "", "[tracing]\notlp_endpoint = \"https://otel.internal:4318\"\nsample_ratio = 0.01\n")), "ok.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Tracing.OTLPEndpoint != "https://otel.internal:4318" || cfg.Tracing.SampleRatio != 0.01 {
		t.Errorf("tracing %+v", cfg.Tracing)
	}
}
