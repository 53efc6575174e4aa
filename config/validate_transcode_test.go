package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// transcodeCfg is a valid config whose route carries transcode = { extra }
// to an h2c pool; the route line is marked.
func transcodeCfg(extra string) string {
	return minimal("", "  transcode = { descriptor_set = \"api.pb\", services = [\"a.v1.S\"]"+extra+" } #<", `protocol = "h2c"`, "")
}

func TestValidateTranscode(t *testing.T) {
	t.Parallel()
	runErrCases(t, []errCase{
		{"no descriptor_set", minimal("", `  transcode = { services = ["a.v1.S"] } #<`, `protocol = "h2c"`, ""),
			"listener[0].route[0].transcode", "transcode has no descriptor_set"},
		{"missing descriptor_set", minimal("", `  transcode = { descriptor_set = "nope.pb", services = ["a.v1.S"] } #<`, `protocol = "h2c"`, ""),
			"listener[0].route[0].transcode.descriptor_set", `nope.pb" does not exist`},
		{"no services", minimal("", `  transcode = { descriptor_set = "api.pb" } #<`, `protocol = "h2c"`, ""),
			"listener[0].route[0].transcode", "transcode has no services"},
		{"bad service name", minimal("", `  transcode = { descriptor_set = "api.pb", services = ["a..S"] } #<`, `protocol = "h2c"`, ""),
			"listener[0].route[0].transcode.services[0]", `"a..S" is not a full service name`},
		{"service twice", minimal("", `  transcode = { descriptor_set = "api.pb", services = ["a.S", "a.S"] } #<`, `protocol = "h2c"`, ""),
			"listener[0].route[0].transcode.services[1]", `service "a.S" is listed twice`},
		{"strip_prefix with slash", transcodeCfg(`, strip_prefix = "/api/"`), "listener[0].route[0].transcode.strip_prefix", "must start with"},
		{"strip_prefix not in path_prefix", transcodeCfg(`, strip_prefix = "/api"`), "listener[0].route[0].transcode.strip_prefix", `must begin the route's path_prefix "/"`},
		{"bad forward header", transcodeCfg(`, forward_headers = ["x y"]`), "listener[0].route[0].transcode.forward_headers[0]", `"x y" is not a header name`},
		{"unknown key", transcodeCfg(`, use_proto_name = true`), "listener[0].route[0].transcode.use_proto_name", `did you mean "use_proto_names"`},
		{"http1 pool", minimal("", `  transcode = { descriptor_set = "api.pb", services = ["a.v1.S"] } #<`, "", ""),
			"listener[0].route[0].transcode", `pool "api" needs protocol = "h2c"`},
	})
}

func TestTranscodeLoads(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, minimal("", `  path_prefix = "/api/v1/"
  transcode = { descriptor_set = "testdata/api.pb", services = ["a.v1.S", "b.S"], strip_prefix = "/api", use_proto_names = true, emit_defaults = true, enums_as_ints = true, discard_unknown = true, forward_headers = ["X-Tenant"] }`, `protocol = "h2c"`, ""))
	tc := cfg.Listeners[0].Routes[0].Transcode
	if tc == nil || tc.DescriptorSet != "testdata/api.pb" || len(tc.Services) != 2 || tc.StripPrefix != "/api" ||
		!tc.UseProtoNames || !tc.EmitDefaults || !tc.EnumsAsInts || !tc.DiscardUnknown || len(tc.ForwardHeaders) != 1 {
		t.Fatalf("transcode = %+v", tc)
	}
	// A relative descriptor_set is relative to the config file.
	cfg, err := Parse([]byte(transcodeCfg("")), filepath.Join("testdata", "case.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Listeners[0].Routes[0].Transcode.DescriptorSet; got != filepath.Join("testdata", "api.pb") {
		t.Errorf("descriptor_set = %q", got)
	}
	// ErrorAt finds the line of a key in the file.
	e := cfg.ErrorAt("listener[0].route[0].transcode", "x")
	if e.Line != 0 { // testdata/case.toml does not exist: no line
		t.Errorf("ErrorAt line %d for a file that is not there", e.Line)
	}
	full, err := Load("testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	if e := full.ErrorAt("pool.api", "bad"); e.Line == 0 || e.File != "testdata/full.toml" || !strings.HasSuffix(e.Error(), ": pool.api: bad") {
		t.Errorf("ErrorAt = %+v (%s)", e, e)
	}
}
