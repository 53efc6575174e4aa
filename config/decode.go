package config

import (
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// decoder copies the generic tree BurntSushi/toml parsed into the typed
// schema. Doing it by hand, rather than with toml.Decode into the structs,
// lets it go on after a problem: every unknown key, type mismatch and bad
// value in a file is reported at once, each with its full path (array
// indices included) and line. It also records which paths were written, so
// defaults can tell an unset key from an explicit zero.
type decoder struct {
	file string
	idx  *lineIndex
	// set holds the path of every value decoded without error.
	set map[string]bool
	// bad holds the path of every value that failed to decode; validation
	// does not report again on these.
	bad  map[string]bool
	errs []*Error
}

var (
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	durationType        = reflect.TypeFor[Duration]()
	statusRangeType     = reflect.TypeFor[StatusRange]()
	statusSetType       = reflect.TypeFor[StatusSet]()
)

func newDecoder(file string, idx *lineIndex) *decoder {
	return &decoder{file: file, idx: idx, set: make(map[string]bool), bad: make(map[string]bool)}
}

func (d *decoder) fail(path, msg string) {
	d.bad[path] = true
	d.errs = append(d.errs, &Error{File: d.file, Line: d.idx.line(path), Key: path, Msg: msg})
}

// value decodes data into v, which must be settable, and reports whether it
// did so without error.
func (d *decoder) value(path string, data any, v reflect.Value) bool {
	t := v.Type()
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return d.text(path, data, v)
	}
	ok := true
	switch t.Kind() {
	case reflect.Struct:
		m, isTable := data.(map[string]any)
		if !isTable {
			d.mismatch(path, "a table", data)
			return false
		}
		ok = d.table(path, m, v)
	case reflect.Pointer:
		// An optional table (nil: absent).
		e := reflect.New(t.Elem())
		if ok = d.value(path, data, e.Elem()); ok {
			v.Set(e)
		}
	case reflect.Map:
		ok = d.mapping(path, data, v)
	case reflect.Slice:
		ok = d.slice(path, data, v)
	case reflect.String:
		s, isString := data.(string)
		if !isString {
			d.mismatch(path, "a string", data)
			return false
		}
		v.SetString(s)
	case reflect.Bool:
		b, isBool := data.(bool)
		if !isBool {
			d.mismatch(path, "true or false", data)
			return false
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, isInt := data.(int64)
		if !isInt {
			d.mismatch(path, "an integer", data)
			return false
		}
		if v.OverflowInt(n) {
			d.fail(path, fmt.Sprintf("%d is too large", n))
			return false
		}
		v.SetInt(n)
	case reflect.Float64:
		switch f := data.(type) {
		case float64:
			v.SetFloat(f)
		case int64:
			v.SetFloat(float64(f))
		default:
			d.mismatch(path, "a number", data)
			return false
		}
	default:
		// A schema field of a kind this decoder does not know: a
		// programmer error in types.go, caught by the tests.
		d.fail(path, fmt.Sprintf("config: field of unsupported type %s", t))
		return false
	}
	if ok {
		d.set[path] = true
	}
	return ok
}

// text decodes a string into a type with UnmarshalText. expect_status also
// and failure_statuses also take a bare integer.
func (d *decoder) text(path string, data any, v reflect.Value) bool {
	s, isString := data.(string)
	if n, isInt := data.(int64); isInt && (v.Type() == statusRangeType || v.Type() == statusSetType) {
		s, isString = fmt.Sprint(n), true
	}
	if !isString {
		want := "a string"
		switch v.Type() {
		case durationType:
			want = `a duration string such as "2s" (with quotes)`
		case statusRangeType:
			want = `a status code such as 200 or a range such as "200-399"`
		case statusSetType:
			want = `a list of statuses such as "500,502-504"`
		}
		d.mismatch(path, want, data)
		return false
	}
	u, _ := v.Addr().Interface().(encoding.TextUnmarshaler)
	if err := u.UnmarshalText([]byte(s)); err != nil {
		d.fail(path, err.Error())
		return false
	}
	d.set[path] = true
	return true
}

// table decodes a TOML table into struct v, reporting unknown keys.
func (d *decoder) table(path string, m map[string]any, v reflect.Value) bool {
	t := v.Type()
	fields := make(map[string]int, t.NumField())
	var names []string
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("toml")
		if tag == "" || tag == "-" {
			continue
		}
		fields[tag] = i
		names = append(names, tag)
	}
	ok := true
	for _, k := range sortedKeys(m) {
		p := joinKey(path, k)
		i, known := fields[k]
		if !known {
			d.fail(p, unknownKeyMsg(k, names))
			ok = false
			continue
		}
		if !d.value(p, m[k], v.Field(i)) {
			ok = false
		}
	}
	return ok
}

// mapping decodes a table of named entries ([pool.NAME], forward_claims).
// An entry that fails to decode is still stored, so that references to it
// by name do not produce a second, misleading error.
func (d *decoder) mapping(path string, data any, v reflect.Value) bool {
	m, isTable := data.(map[string]any)
	if !isTable {
		d.mismatch(path, "a table", data)
		return false
	}
	t := v.Type()
	out := reflect.MakeMapWithSize(t, len(m))
	ok := true
	for _, k := range sortedKeys(m) {
		p := joinKey(path, k)
		var elem reflect.Value
		if t.Elem().Kind() == reflect.Pointer {
			elem = reflect.New(t.Elem().Elem())
			ok = d.value(p, m[k], elem.Elem()) && ok
		} else {
			elem = reflect.New(t.Elem()).Elem()
			ok = d.value(p, m[k], elem) && ok
		}
		out.SetMapIndex(reflect.ValueOf(k), elem)
	}
	v.Set(out)
	return ok
}

// slice decodes an array (or an array of tables) into slice v.
func (d *decoder) slice(path string, data any, v reflect.Value) bool {
	var items []any
	switch a := data.(type) {
	case []any:
		items = a
	case []map[string]any:
		items = make([]any, len(a))
		for i, m := range a {
			items[i] = m
		}
	default:
		d.mismatch(path, "an array", data)
		return false
	}
	out := reflect.MakeSlice(v.Type(), len(items), len(items))
	ok := true
	for i, item := range items {
		ok = d.value(indexKey(path, i), item, out.Index(i)) && ok
	}
	v.Set(out)
	return ok
}

// mismatch reports a value of the wrong TOML type, with a hint.
func (d *decoder) mismatch(path, want string, got any) {
	msg := "expected " + want + ", got " + describe(got)
	switch got.(type) {
	case int64, float64, bool:
		if strings.Contains(want, "string") {
			msg += "; put the value in double quotes"
		}
	case string:
		if want == "an integer" || want == "a number" || want == "true or false" {
			msg += "; write it without quotes"
		}
	}
	d.fail(path, msg)
}

// describe names a TOML value's type, with the value when it is short.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) > 40 {
			return "a string"
		}
		return fmt.Sprintf("the string %q", x)
	case int64:
		return fmt.Sprintf("the integer %d", x)
	case float64:
		return fmt.Sprintf("the number %g", x)
	case bool:
		return fmt.Sprintf("%t", x)
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return "a date/time"
}

// unknownKeyMsg says a key is unknown and suggests the nearest known one, or
// lists the known keys.
func unknownKeyMsg(k string, known []string) string {
	if s := nearest(k, known); s != "" {
		return fmt.Sprintf("unknown key; did you mean %q?", s)
	}
	sorted := slices.Clone(known)
	slices.Sort(sorted)
	return "unknown key; remove it or use one of: " + strings.Join(sorted, ", ")
}

// sortedKeys returns m's keys in sorted order, so that errors come out in a
// stable order.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// nearest returns the candidate closest to s when it is close enough to be
// a likely misspelling (a few edits, a swap of two letters, or one being a
// prefix of the other), else "".
func nearest(s string, candidates []string) string {
	if s == "" || len(s) > 64 {
		return ""
	}
	ls := strings.ToLower(s)
	best, bestDist := "", 0
	for _, c := range candidates {
		if len(c) > 64 || c == "" {
			continue
		}
		lc := strings.ToLower(c)
		dist := editDistance(ls, lc)
		limit := max(1, min(3, len(c)/3))
		isPrefix := min(len(ls), len(lc)) >= 3 && (strings.HasPrefix(ls, lc) || strings.HasPrefix(lc, ls))
		if (dist <= limit || isPrefix) && (best == "" || dist < bestDist) {
			best, bestDist = c, dist
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b, in
// bytes: insertions, deletions, substitutions and swaps of adjacent bytes
// each cost 1.
func editDistance(a, b string) int {
	rows := make([][]int, len(a)+1)
	for i := range rows {
		rows[i] = make([]int, len(b)+1)
		rows[i][0] = i
	}
	for j := range rows[0] {
		rows[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d := min(rows[i-1][j]+1, rows[i][j-1]+1, rows[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d = min(d, rows[i-2][j-2]+1)
			}
			rows[i][j] = d
		}
	}
	return rows[len(a)][len(b)]
}
