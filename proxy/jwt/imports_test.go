package jwt

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the package's dependencies to the ones its design
// allows: of frontdoor only config and metrics, never another stage or proxy.
func TestImports(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"frontdoor/config": true, "frontdoor/metrics": true}
	external := []string{
		"github.com/golang-jwt/jwt/v5", "github.com/go-jose/go-jose/v4", "github.com/valyala/fasthttp",
		"github.com/cespare/xxhash/v2", "github.com/prometheus/client_golang/prometheus",
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range af.Imports {
			path, _ := strconv.Unquote(im.Path.Value)
			switch {
			case strings.HasPrefix(path, "frontdoor/"):
				if !allowed[path] {
					t.Errorf("%s imports %s", f, path)
				}
			case strings.Contains(strings.SplitN(path, "/", 2)[0], "."):
				ok := false
				for _, e := range external {
					ok = ok || path == e
				}
				if !ok {
					t.Errorf("%s imports %s", f, path)
				}
			}
		}
	}
}
