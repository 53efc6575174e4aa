package tcp

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the package's place in the import graph (STYLE.md §1):
// of frontdoor's packages it may use only balancer, config and metrics, and
// the leaves internal/splice, internal/deadlines and internal/rawio.
func TestImports(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "frontdoor/proxy/tcp").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	allowed := map[string]bool{"frontdoor/proxy/tcp": true, "frontdoor/internal/splice": true, "frontdoor/internal/deadlines": true, "frontdoor/internal/rawio": true, "frontdoor/balancer": true, "frontdoor/config": true, "frontdoor/metrics": true}
	for dep := range strings.FieldsSeq(string(out)) {
		if (dep == "frontdoor" || strings.HasPrefix(dep, "frontdoor/")) && !allowed[dep] {
			t.Errorf("proxy/tcp depends on %s", dep)
		}
	}
}
