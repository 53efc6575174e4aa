package balancer

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the package at the bottom of frontdoor's import
// graph: nothing of frontdoor's, no network stack, no HTTP, no metrics.
func TestDependencies(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	forbidden := []string{"frontdoor/", "net", "github.com/valyala/", "github.com/prometheus/", "google.golang.org/grpc", "golang.org/x/net"}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "frontdoor/balancer" {
			continue
		}
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, strings.TrimSuffix(f, "/")+"/") {
				t.Errorf("balancer depends on %s", dep)
			}
		}
	}
}
