package config

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// lineIndex maps the TOML path of every table, key and array element written
// in a file ("listener[0].route[1].pool", "pool.api.backends[1].weight") to
// the 1-based line it is written on. BurntSushi/toml does not export key
// positions, so indexLines scans the text itself. It is only built for text
// the TOML parser accepted, but it never fails or panics on any input: on
// text it does not understand it records less.
type lineIndex struct {
	lines map[string]int
	// arrays counts the elements of each array of tables seen so far, keyed
	// by its resolved path without index ("listener", "listener[0].route").
	arrays map[string]int
}

// line returns the line of path, or of its nearest enclosing table or
// element that is written in the file, or 0.
func (x *lineIndex) line(path string) int {
	if x == nil {
		return 0
	}
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := x.lines[p]; ok {
			return l
		}
	}
	return 0
}

// keySeg renders one key as it appears in a path: bare when it is a TOML bare
// key, quoted otherwise.
func keySeg(k string) string {
	if k == "" {
		return `""`
	}
	for i := 0; i < len(k); i++ {
		if !isBareKeyChar(k[i]) {
			return strconv.Quote(k)
		}
	}
	return k
}

// joinKey appends key k to path p.
func joinKey(p, k string) string {
	if p == "" {
		return keySeg(k)
	}
	return p + "." + keySeg(k)
}

// indexKey appends an array index to path p.
func indexKey(p string, i int) string { return p + "[" + strconv.Itoa(i) + "]" }

// parentPath drops the last key or index of p; "" when p has one part.
func parentPath(p string) string {
	last := -1
	inQuote := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && (c == '.' || c == '['):
			last = i
		}
	}
	if last <= 0 {
		return ""
	}
	return p[:last]
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// scanner walks TOML text and fills a lineIndex.
type scanner struct {
	s    string
	i    int
	line int
	x    *lineIndex
}

// indexLines builds the line index of src.
func indexLines(src string) *lineIndex {
	x := &lineIndex{lines: make(map[string]int), arrays: make(map[string]int)}
	sc := &scanner{s: src, line: 1, x: x}
	sc.document()
	return x
}

func (sc *scanner) record(path string, line int) {
	if _, ok := sc.x.lines[path]; !ok {
		sc.x.lines[path] = line
	}
}

// recordKey records the (possibly dotted) key segs under base, and every
// table the dots define on the way, at line; it returns the key's path.
func (sc *scanner) recordKey(base string, segs []string, line int) string {
	p := base
	for _, k := range segs {
		p = joinKey(p, k)
		sc.record(p, line)
	}
	return p
}

func (sc *scanner) eof() bool { return sc.i >= len(sc.s) }

func (sc *scanner) peek(off int) byte {
	if sc.i+off < len(sc.s) {
		return sc.s[sc.i+off]
	}
	return 0
}

// advance moves past one byte, counting lines.
func (sc *scanner) advance() {
	if sc.s[sc.i] == '\n' {
		sc.line++
	}
	sc.i++
}

// skipBlank skips spaces and tabs.
func (sc *scanner) skipBlank() {
	for !sc.eof() && (sc.s[sc.i] == ' ' || sc.s[sc.i] == '\t') {
		sc.i++
	}
}

// skipComment skips a comment up to (not including) the newline.
func (sc *scanner) skipComment() {
	if sc.peek(0) != '#' {
		return
	}
	for !sc.eof() && sc.s[sc.i] != '\n' {
		sc.i++
	}
}

// skipSpace skips whitespace, newlines and comments.
func (sc *scanner) skipSpace() {
	for !sc.eof() {
		switch sc.s[sc.i] {
		case ' ', '\t', '\r', '\n':
			sc.advance()
		case '#':
			sc.skipComment()
		default:
			return
		}
	}
}

// skipLine skips the rest of the current line, newline included.
func (sc *scanner) skipLine() {
	for !sc.eof() && sc.s[sc.i] != '\n' {
		sc.i++
	}
	if !sc.eof() {
		sc.advance()
	}
}

func (sc *scanner) document() {
	table := ""
	for {
		sc.skipSpace()
		if sc.eof() {
			return
		}
		start := sc.i
		line := sc.line
		if sc.s[sc.i] == '[' {
			isArray := sc.peek(1) == '['
			if isArray {
				sc.i += 2
			} else {
				sc.i++
			}
			segs := sc.key()
			table = sc.header(segs, isArray)
			sc.record(table, line)
			sc.skipLine()
		} else {
			segs := sc.key()
			sc.skipBlank()
			if sc.peek(0) == '=' {
				sc.i++
				p := sc.recordKey(table, segs, line)
				sc.value(p)
			}
			sc.skipBlank()
			sc.skipComment()
		}
		if sc.i == start {
			sc.skipLine() // not understood: give up on this line
		}
	}
}

// header resolves the segments of a table header to a path, appending the
// index of the current element of every array of tables it passes through,
// and counts a new element when the header is [[...]].
func (sc *scanner) header(segs []string, isArray bool) string {
	p := ""
	for n, k := range segs {
		p = joinKey(p, k)
		count, seen := sc.x.arrays[p]
		switch {
		case isArray && n == len(segs)-1:
			sc.x.arrays[p] = count + 1
			p = indexKey(p, count)
		case seen && count > 0:
			p = indexKey(p, count-1)
		case n < len(segs)-1:
			// [pool.api] also defines the table "pool" here, unless an
			// earlier line did.
			sc.record(p, sc.line)
		}
	}
	return p
}

// key reads a possibly dotted key and returns its decoded parts.
func (sc *scanner) key() []string {
	var segs []string
	for {
		sc.skipBlank()
		if sc.eof() {
			return segs
		}
		switch sc.s[sc.i] {
		case '"':
			segs = append(segs, sc.basicString())
		case '\'':
			segs = append(segs, sc.literalString())
		default:
			start := sc.i
			for !sc.eof() && isBareKeyChar(sc.s[sc.i]) {
				sc.i++
			}
			if sc.i == start {
				return segs
			}
			segs = append(segs, sc.s[start:sc.i])
		}
		sc.skipBlank()
		if sc.peek(0) != '.' {
			return segs
		}
		sc.i++
	}
}

// value reads one value and records the elements of arrays and the keys of
// inline tables under path.
func (sc *scanner) value(path string) {
	sc.skipBlank()
	if sc.eof() {
		return
	}
	switch sc.s[sc.i] {
	case '"':
		if strings.HasPrefix(sc.s[sc.i:], `"""`) {
			sc.multiline(`"""`, true)
		} else {
			sc.basicString()
		}
	case '\'':
		if strings.HasPrefix(sc.s[sc.i:], `'''`) {
			sc.multiline(`'''`, false)
		} else {
			sc.literalString()
		}
	case '[':
		sc.i++
		for n := 0; ; n++ {
			sc.skipSpace()
			if sc.eof() {
				return
			}
			if sc.s[sc.i] == ']' {
				sc.i++
				return
			}
			start := sc.i
			p := indexKey(path, n)
			sc.record(p, sc.line)
			sc.value(p)
			sc.skipSpace()
			if sc.peek(0) == ',' {
				sc.i++
			} else if sc.i == start {
				sc.advance() // not understood: move on
			}
		}
	case '{':
		sc.i++
		for {
			sc.skipSpace()
			if sc.eof() {
				return
			}
			if sc.s[sc.i] == '}' {
				sc.i++
				return
			}
			start := sc.i
			line := sc.line
			segs := sc.key()
			sc.skipBlank()
			if sc.peek(0) == '=' {
				sc.i++
				p := sc.recordKey(path, segs, line)
				sc.value(p)
			}
			sc.skipSpace()
			if sc.peek(0) == ',' {
				sc.i++
			} else if sc.i == start {
				sc.advance()
			}
		}
	default:
		// A number, boolean or date: up to the next delimiter.
		for !sc.eof() && strings.IndexByte(",]}#\n", sc.s[sc.i]) < 0 {
			sc.i++
		}
	}
}

// basicString reads a single-line "..." string and returns its value.
func (sc *scanner) basicString() string {
	sc.i++ // opening quote
	var b strings.Builder
	for !sc.eof() {
		c := sc.s[sc.i]
		switch c {
		case '"':
			sc.i++
			return b.String()
		case '\n':
			return b.String()
		case '\\':
			sc.i++
			if sc.eof() {
				return b.String()
			}
			sc.escape(&b)
			continue
		}
		b.WriteByte(c)
		sc.i++
	}
	return b.String()
}

// escape decodes the escape sequence after a backslash.
func (sc *scanner) escape(b *strings.Builder) {
	c := sc.s[sc.i]
	sc.i++
	switch c {
	case 'b':
		b.WriteByte('\b')
	case 't':
		b.WriteByte('\t')
	case 'n':
		b.WriteByte('\n')
	case 'f':
		b.WriteByte('\f')
	case 'r':
		b.WriteByte('\r')
	case 'e':
		b.WriteByte(0x1b)
	case 'u', 'U', 'x':
		n := 4
		switch c {
		case 'U':
			n = 8
		case 'x':
			n = 2
		}
		if sc.i+n > len(sc.s) {
			sc.i = len(sc.s)
			return
		}
		v, err := strconv.ParseUint(sc.s[sc.i:sc.i+n], 16, 32)
		sc.i += n
		if err == nil && v <= utf8.MaxRune {
			b.WriteRune(rune(v))
		}
	default:
		b.WriteByte(c)
	}
}

// literalString reads a single-line '...' string and returns its value.
func (sc *scanner) literalString() string {
	sc.i++
	start := sc.i
	for !sc.eof() && sc.s[sc.i] != '\'' && sc.s[sc.i] != '\n' {
		sc.i++
	}
	v := sc.s[start:sc.i]
	if sc.peek(0) == '\'' {
		sc.i++
	}
	return v
}

// multiline skips a multi-line string delimited by delim, counting lines.
// The closing delimiter may be followed by up to two more quotes, which
// belong to the string.
func (sc *scanner) multiline(delim string, escapes bool) {
	sc.i += len(delim)
	for !sc.eof() {
		if escapes && sc.s[sc.i] == '\\' {
			sc.i++
			if !sc.eof() {
				sc.advance()
			}
			continue
		}
		if strings.HasPrefix(sc.s[sc.i:], delim) {
			sc.i += len(delim)
			for extra := 0; extra < 2 && sc.peek(0) == delim[0]; extra++ {
				sc.i++
			}
			return
		}
		sc.advance()
	}
}
