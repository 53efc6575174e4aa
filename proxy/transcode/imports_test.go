package transcode

import (
	"os/exec"
	"strings"
	"testing"
)

// TestGatewayNotInBinary keeps grpc-gateway a dependency of the
// differential test only: the binary must not link it, and this package
// imports nothing of frontdoor's.
func TestGatewayNotInBinary(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "frontdoor/cmd/frontdoor").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/grpc-ecosystem/") {
			t.Errorf("the binary depends on %s", dep)
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
