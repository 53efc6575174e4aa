package proxy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// rooms of package proxy, by file name: the shared L7 core (core_*.go)
// and each engine that adapts its I/O to it: the event loop (loop*.go),
// the goroutine engine (goengine*.go) and the HTTP/2 engine
// (h2engine*.go). Everything else is the top: Proxy, listeners, runtime
// building.
func roomOf(file string) string {
	switch {
	case strings.HasPrefix(file, "core_"):
		return "core"
	case strings.HasPrefix(file, "loop"):
		return "loop"
	case strings.HasPrefix(file, "goengine"):
		return "goengine"
	case strings.HasPrefix(file, "h2engine"):
		return "h2engine"
	}
	return "top"
}

// mayUse says which rooms a room may name: engines use the core and the
// top, never each other; the core uses only the top's runtime types.
var mayUse = map[string][]string{
	"core":     {"core", "top"},
	"loop":     {"loop", "core", "top"},
	"goengine": {"goengine", "core", "top"},
	"h2engine": {"h2engine", "core", "top"},
	"top":      {"top", "core", "loop", "goengine", "h2engine"},
}

// TestRooms holds the layout of README's "Layout": the core never names
// anything an engine declares, and engines do not name each other's
// declarations, so a decision made in the core reaches every engine and
// an engine cannot grow a private copy of one. It reads the package's
// files: a package-level name used in a file (an identifier the parser
// left unresolved) or an unexported method or field selected by a name
// declared only in a forbidden room is a violation.
func TestRooms(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]*ast.File{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = f
	}
	// Where each package-level name and each method or field name is
	// declared.
	top := map[string]string{}
	members := map[string]map[string]bool{}
	addMember := func(name, room string) {
		if members[name] == nil {
			members[name] = map[string]bool{}
		}
		members[name][room] = true
	}
	for name, f := range files {
		room := roomOf(name)
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv != nil {
					addMember(d.Name.Name, room)
				} else {
					top[d.Name.Name] = room
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						top[s.Name.Name] = room
						switch ty := s.Type.(type) {
						case *ast.StructType:
							for _, fl := range ty.Fields.List {
								for _, n := range fl.Names {
									addMember(n.Name, room)
								}
							}
						case *ast.InterfaceType:
							for _, m := range ty.Methods.List {
								for _, n := range m.Names {
									addMember(n.Name, room)
								}
							}
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							top[n.Name] = room
						}
					}
				}
			}
		}
	}
	allowed := func(from, to string) bool {
		for _, r := range mayUse[from] {
			if r == to {
				return true
			}
		}
		return false
	}
	for name, f := range files {
		room := roomOf(name)
		for _, id := range f.Unresolved {
			if to, ok := top[id.Name]; ok && !allowed(room, to) {
				t.Errorf("%s (%s) uses %s, declared in the %s room", fset.Position(id.Pos()), room, id.Name, to)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			rooms := members[sel.Sel.Name]
			if len(rooms) == 0 || ast.IsExported(sel.Sel.Name) {
				// Exported methods (Read, Write, Close) are mostly
				// other packages' types' and interfaces'.
				return true
			}
			for r := range rooms {
				if allowed(room, r) {
					return true // declared somewhere this room may use
				}
			}
			t.Errorf("%s (%s) selects .%s, declared only in a room it may not use", fset.Position(sel.Pos()), room, sel.Sel.Name)
			return true
		})
	}
}
