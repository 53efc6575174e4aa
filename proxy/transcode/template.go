package transcode

import (
	"errors"
	"fmt"
	"strings"
)

// Path templates of google.api.http (the grammar of google/api/http.proto):
//
//	Template = "/" Segments [ Verb ] ;
//	Segments = Segment { "/" Segment } ;
//	Segment  = "*" | "**" | LITERAL | Variable ;
//	Variable = "{" FieldPath [ "=" Segments ] "}" ;
//	FieldPath = IDENT { "." IDENT } ;
//	Verb     = ":" LITERAL ;
//
// "{var}" is "{var=*}". "**" matches zero or more segments and must be the
// last segment (before the verb). A variable may not hold another.

type segKind uint8

const (
	segLiteral    segKind = iota
	segStar               // "*": one segment
	segDoubleStar         // "**": the rest of the path
)

type segment struct {
	kind segKind
	lit  string
}

// variable binds the path segments [start, end) to a field path; end is -1
// when the variable ends with "**" (to the end of the path).
type variable struct {
	field      []string
	start, end int
}

// template is a compiled path template.
type template struct {
	src  string
	segs []segment
	verb string
	vars []variable
}

// shape is the template with variables erased: two templates of one shape
// match exactly the same paths.
func (t *template) shape() string {
	var b strings.Builder
	for _, s := range t.segs {
		b.WriteByte('/')
		switch s.kind {
		case segStar:
			b.WriteString("*")
		case segDoubleStar:
			b.WriteString("**")
		default:
			b.WriteString(s.lit)
		}
	}
	if t.verb != "" {
		b.WriteByte(':')
		b.WriteString(t.verb)
	}
	return b.String()
}

var errTemplate = errors.New("transcode: bad path template")

// parseTemplate compiles a path template; its error says what is wrong and
// where.
func parseTemplate(src string) (*template, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", errTemplate, src, fmt.Sprintf(format, args...))
	}
	if !strings.HasPrefix(src, "/") {
		return nil, bad("must start with \"/\"")
	}
	t := &template{src: src}
	rest := src[1:]
	// The verb: a ':' after the last '/' and outside braces.
	if i := verbIndex(rest); i >= 0 {
		t.verb = rest[i+1:]
		rest = rest[:i]
		if t.verb == "" || strings.ContainsAny(t.verb, "/{}*:") {
			return nil, bad("bad verb %q", t.verb)
		}
	}
	if rest == "" {
		return nil, bad("no segments")
	}
	for len(rest) > 0 {
		if rest[0] == '{' {
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				return nil, bad("unclosed \"{\"")
			}
			inner := rest[1:end]
			rest = rest[end+1:]
			name, segs, hasSegs := strings.Cut(inner, "=")
			field := strings.Split(name, ".")
			for _, f := range field {
				if !isIdent(f) {
					return nil, bad("bad field path %q in a variable", name)
				}
			}
			v := variable{field: field, start: len(t.segs)}
			if !hasSegs {
				segs = "*"
			}
			if segs == "" {
				return nil, bad("variable %q binds no segments", name)
			}
			for s := range strings.SplitSeq(segs, "/") {
				seg, err := parseSegment(s)
				if err != nil {
					return nil, bad("variable %q: %v", name, err)
				}
				t.segs = append(t.segs, seg)
			}
			v.end = len(t.segs)
			if t.segs[len(t.segs)-1].kind == segDoubleStar {
				v.end = -1
			}
			for _, o := range t.vars {
				if strings.Join(o.field, ".") == name {
					return nil, bad("field %q bound twice", name)
				}
			}
			t.vars = append(t.vars, v)
		} else {
			i := strings.IndexByte(rest, '/')
			s := rest
			if i >= 0 {
				s = rest[:i]
			}
			rest = rest[len(s):]
			seg, err := parseSegment(s)
			if err != nil {
				return nil, bad("%v", err)
			}
			t.segs = append(t.segs, seg)
		}
		if len(rest) > 0 {
			if rest[0] != '/' {
				return nil, bad("a variable must be a whole segment")
			}
			rest = rest[1:]
			if rest == "" {
				return nil, bad("ends with \"/\"")
			}
		}
	}
	for i, s := range t.segs {
		if s.kind == segDoubleStar && i != len(t.segs)-1 {
			return nil, bad("\"**\" must be the last segment")
		}
	}
	return t, nil
}

// verbIndex returns the index in s (a template without its leading '/') of
// the ':' that starts the verb, or -1.
func verbIndex(s string) int {
	depth, lastSlash := 0, -1
	colon := -1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			depth--
		case '/':
			if depth == 0 {
				lastSlash, colon = i, -1
			}
		case ':':
			if depth == 0 && i > lastSlash && colon < 0 {
				colon = i
			}
		}
	}
	return colon
}

func parseSegment(s string) (segment, error) {
	switch s {
	case "*":
		return segment{kind: segStar}, nil
	case "**":
		return segment{kind: segDoubleStar}, nil
	case "":
		return segment{}, errors.New("empty segment")
	}
	if strings.ContainsAny(s, "{}*=?#") {
		return segment{}, fmt.Errorf("bad literal %q", s)
	}
	lit, err := unescape(s, true)
	if err != nil {
		return segment{}, fmt.Errorf("bad literal %q: %v", s, err)
	}
	return segment{kind: segLiteral, lit: lit}, nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return true
}

// node is one level of a method's matching tree: children by segment kind,
// and the bindings whose template ends here, by verb.
type node struct {
	lits   map[string]*node
	star   *node
	dstar  *node
	leaves map[string]*Binding // by verb ("" for none)
}

func (n *node) insert(t *template, b *Binding) *Binding {
	cur := n
	for _, s := range t.segs {
		var next **node
		switch s.kind {
		case segStar:
			next = &cur.star
		case segDoubleStar:
			next = &cur.dstar
		default:
			if cur.lits == nil {
				cur.lits = map[string]*node{}
			}
			c := cur.lits[s.lit]
			if c == nil {
				c = &node{}
				cur.lits[s.lit] = c
			}
			cur = c
			continue
		}
		if *next == nil {
			*next = &node{}
		}
		cur = *next
	}
	if cur.leaves == nil {
		cur.leaves = map[string]*Binding{}
	}
	if old := cur.leaves[t.verb]; old != nil {
		return old
	}
	cur.leaves[t.verb] = b
	return nil
}

// match finds the binding for path segments segs (percent-decoded for
// literal comparison) and verb: literals before "*", "*" before "**", so a
// more specific template wins.
func (n *node) match(segs []string, verb string) *Binding {
	if len(segs) == 0 {
		if b := n.leaves[verb]; b != nil {
			return b
		}
		if n.dstar != nil {
			return n.dstar.leaves[verb]
		}
		return nil
	}
	if c := n.lits[segs[0]]; c != nil {
		if b := c.match(segs[1:], verb); b != nil {
			return b
		}
	}
	if n.star != nil && segs[0] != "" {
		if b := n.star.match(segs[1:], verb); b != nil {
			return b
		}
	}
	if n.dstar != nil {
		return n.dstar.leaves[verb]
	}
	return nil
}
