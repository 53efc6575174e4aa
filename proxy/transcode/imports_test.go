package transcode

import (
	"os/exec"
	"strings"
	"testing"
)

// TestGatewayNotInBinary keeps grpc-gateway a dependency of the
// differential test only: no frontdoor package imports it (the binary
// links its runtime all the same, through the OpenTelemetry OTLP protos
// the tracing exporter uses, go.opentelemetry.io/proto/otlp/collector),
// and this package imports nothing of frontdoor's.
func TestGatewayNotInBinary(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "-deps", "frontdoor/cmd/frontdoor").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		pkg, imports, _ := strings.Cut(line, " ")
		if !strings.HasPrefix(pkg, "frontdoor/") {
			continue
		}
		for _, dep := range strings.Fields(imports) {
			if strings.HasPrefix(dep, "github.com/grpc-ecosystem/") {
				t.Errorf("%s imports %s", pkg, dep)
			}
		}
	}
	out, err = exec.Command("go", "list", "-deps", "frontdoor/proxy/transcode").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "frontdoor/") && dep != "frontdoor/proxy/transcode" {
			t.Errorf("proxy/transcode imports %s", dep)
		}
	}
}
