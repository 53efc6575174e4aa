package transcode

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Error is an answer the Transcoder makes itself, or a gRPC status turned
// into one: the HTTP status, the google.rpc.Code and a message for the
// client. Its JSON form is AppendError's.
type Error struct {
	HTTPStatus int
	Code       int
	Message    string
}

func (e *Error) Error() string { return "transcode: " + e.Message }

func badRequest(format string, args ...any) *Error {
	return &Error{HTTPStatus: 400, Code: CodeInvalidArgument, Message: fmt.Sprintf(format, args...)}
}

// Errors of Match.
var (
	ErrNotFound         = &Error{HTTPStatus: 404, Code: CodeNotFound, Message: "Not Found"}
	ErrMethodNotAllowed = &Error{HTTPStatus: 405, Code: CodeUnimplemented, Message: "Method Not Allowed"}
)

// Match is the binding a request matched and where its path variables are.
// The zero value matches nothing.
type Match struct {
	Binding *Binding
	rawSegs []string
}

// Match finds the binding for an HTTP method and raw (percent-encoded,
// query removed) path: ErrNotFound when no template matches the path,
// ErrMethodNotAllowed when one does for another method, a 400 *Error for a
// path with bad percent-encoding. A literal segment beats "*", which beats
// "**"; a template with a verb (":verb") is tried before one without.
func (t *Transcoder) Match(method, rawPath string) (Match, error) {
	rawSegs, segs, err := splitPath(rawPath)
	if err != nil {
		return Match{}, badRequest("bad percent-encoding in the path")
	}
	if m, ok := find(t.trees[method], rawSegs, segs); ok {
		return m, nil
	}
	for other, tree := range t.trees {
		if other == method {
			continue
		}
		if _, ok := find(tree, rawSegs, segs); ok {
			return Match{}, ErrMethodNotAllowed
		}
	}
	return Match{}, ErrNotFound
}

func find(tree *node, rawSegs, segs []string) (Match, bool) {
	if tree == nil {
		return Match{}, false
	}
	last := len(rawSegs) - 1
	if i := strings.LastIndexByte(rawSegs[last], ':'); i >= 0 {
		verb, err1 := unescape(rawSegs[last][i+1:], true)
		stem, err2 := unescape(rawSegs[last][:i], true)
		if err1 == nil && err2 == nil {
			vs := append(segs[:last:last], stem)
			if b := tree.match(vs, verb); b != nil {
				rs := append(rawSegs[:last:last], rawSegs[last][:i])
				return Match{Binding: b, rawSegs: rs}, true
			}
		}
	}
	if b := tree.match(segs, ""); b != nil {
		return Match{Binding: b, rawSegs: rawSegs}, true
	}
	return Match{}, false
}

// Call is one HTTP request transcoded into a gRPC request message. It is
// not safe for concurrent use.
type Call struct {
	Binding *Binding
	t       *Transcoder
	msg     *dynamicpb.Message
}

// NewCall builds the gRPC request of a matched request: the body (the
// whole message for body "*", one field for body "field"), then the path
// variables, then the query parameters (none with body "*"; never a field
// the path or body set). rawQuery is the query string without '?'. A
// request that does not fit the message gets a 400 *Error saying what was
// wrong.
func (t *Transcoder) NewCall(m Match, rawQuery string, body []byte) (*Call, error) {
	b := m.Binding
	if b == nil {
		return nil, ErrNotFound
	}
	msg := dynamicpb.NewMessage(b.in)
	c := &Call{Binding: b, t: t, msg: msg}
	body = bytes.TrimSpace(body)
	switch {
	case len(body) == 0:
	case b.bodyAll:
		if err := t.unmarshal.Unmarshal(body, msg); err != nil {
			return nil, badRequest("bad JSON body: %v", cleanErr(err))
		}
	case b.bodyField != nil:
		if err := t.setBodyField(msg, b.bodyField, body); err != nil {
			return nil, err
		}
		if b.patchMask != nil {
			paths, err := maskFromJSON(body, b.bodyField.Message())
			if err != nil {
				return nil, badRequest("bad JSON body: %v", err)
			}
			fm := msg.NewField(b.patchMask).Message()
			list := fm.Mutable(fm.Descriptor().Fields().ByName("paths")).List()
			for _, p := range paths {
				list.Append(protoreflect.ValueOfString(p))
			}
			msg.Set(b.patchMask, protoreflect.ValueOfMessage(fm))
		}
	}
	for i, v := range b.tmpl.vars {
		end := v.end
		if end < 0 {
			end = len(m.rawSegs)
		}
		raw := strings.Join(m.rawSegs[v.start:end], "/")
		single := end == v.start+1 && b.tmpl.segs[v.start].kind == segStar
		val, err := unescape(raw, single)
		if err != nil {
			return nil, badRequest("path variable %s: bad percent-encoding", protoPath(b.varFields[i]))
		}
		if err := setPath(msg, b.varFields[i], []string{val}); err != nil {
			return nil, badRequest("path variable %s: %v", protoPath(b.varFields[i]), err)
		}
	}
	if !b.bodyAll && rawQuery != "" {
		if err := c.query(rawQuery); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Message returns the request message built. The caller must not keep it
// past the call.
func (c *Call) Message() proto.Message { return c.msg }

// AppendFrame appends the request as one gRPC length-prefixed message
// (uncompressed) to dst.
func (c *Call) AppendFrame(dst []byte) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0)
	dst, err := proto.MarshalOptions{}.MarshalAppend(dst, c.msg)
	if err != nil {
		return dst[:start], badRequest("the request does not make a %s: %v", c.Binding.in.FullName(), cleanErr(err))
	}
	n := len(dst) - start - 5
	if n > math.MaxUint32 {
		return dst[:start], errors.New("transcode: request message too large")
	}
	binary.BigEndian.PutUint32(dst[start+1:], uint32(n))
	return dst, nil
}

func (t *Transcoder) setBodyField(msg *dynamicpb.Message, fd protoreflect.FieldDescriptor, body []byte) error {
	if fd.Message() != nil && !fd.IsList() && !fd.IsMap() {
		v := msg.NewField(fd)
		if err := t.unmarshal.Unmarshal(body, v.Message().Interface()); err != nil {
			return badRequest("bad JSON body for %s: %v", fd.Name(), cleanErr(err))
		}
		msg.Set(fd, v)
		return nil
	}
	// A repeated, map or scalar field: read it as the one member of an
	// object of the request's type.
	wrapped := make([]byte, 0, len(body)+len(fd.Name())+8)
	wrapped = append(wrapped, `{"`...)
	wrapped = append(wrapped, fd.Name()...)
	wrapped = append(wrapped, `":`...)
	wrapped = append(wrapped, body...)
	wrapped = append(wrapped, '}')
	tmp := dynamicpb.NewMessage(msg.Descriptor())
	if err := t.unmarshal.Unmarshal(wrapped, tmp); err != nil {
		return badRequest("bad JSON body for %s: %v", fd.Name(), cleanErr(err))
	}
	if tmp.Has(fd) {
		msg.Set(fd, tmp.Get(fd))
	}
	return nil
}

// cleanErr drops protojson's "proto: " prefix and its syntax error
// wording's oddities, for a message a client reads.
func cleanErr(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "proto: ")
	s = strings.TrimPrefix(s, "(line 1:")
	return strings.ReplaceAll(s, "\u00a0", " ")
}

// query sets the fields the query parameters name: "a.b.c=v" (proto or
// JSON names), repeated by repeating the key, "m[key]=v" for a map.
// Unknown names are ignored, as grpc-gateway does (a cache-busting
// parameter must not fail a call); a field the path or body set is left
// alone.
func (c *Call) query(raw string) error {
	type param struct {
		key    string
		mapKey string
		hasKey bool
		values []string
	}
	var params []*param
	index := map[string]*param{}
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		key, err := queryUnescape(k)
		if err != nil {
			return badRequest("query parameter %q: bad percent-encoding", k)
		}
		val, err := queryUnescape(v)
		if err != nil {
			return badRequest("query parameter %s: bad percent-encoding", key)
		}
		p := index[key]
		if p == nil {
			p = &param{key: key}
			if i := strings.IndexByte(key, '['); i > 0 && strings.HasSuffix(key, "]") {
				p.key, p.mapKey, p.hasKey = key[:i], key[i+1:len(key)-1], true
			}
			index[key] = p
			params = append(params, p)
		}
		p.values = append(p.values, val)
	}
	for _, p := range params {
		fds, ok := lookupPath(c.msg.Descriptor(), strings.Split(p.key, "."))
		if !ok {
			continue
		}
		path := protoPath(fds)
		if c.Binding.boundBy(path) {
			continue
		}
		leaf := fds[len(fds)-1]
		var err error
		switch {
		case p.hasKey:
			if !leaf.IsMap() {
				return badRequest("query parameter %s: field %s is not a map", p.key+"["+p.mapKey+"]", path)
			}
			err = setMapEntry(c.msg, fds, p.mapKey, p.values)
		case leaf.IsMap():
			return badRequest("query parameter %s: set a map's entries as %s[KEY]=VALUE", p.key, p.key)
		default:
			err = setPath(c.msg, fds, p.values)
		}
		if err != nil {
			return badRequest("query parameter %s: %v", p.key, err)
		}
	}
	return nil
}

// boundBy reports whether the path or body of b sets the field at proto
// path p, or a field that holds it or that it holds.
func (b *Binding) boundBy(p string) bool {
	if b.bodyAll {
		return true
	}
	for _, f := range b.bound {
		if p == f || strings.HasPrefix(p, f+".") || strings.HasPrefix(f, p+".") {
			return true
		}
	}
	return false
}

// lookupPath resolves a field path of proto or JSON names; every field but
// the last a singular message.
func lookupPath(md protoreflect.MessageDescriptor, names []string) ([]protoreflect.FieldDescriptor, bool) {
	out := make([]protoreflect.FieldDescriptor, 0, len(names))
	for i, name := range names {
		if md == nil {
			return nil, false
		}
		fields := md.Fields()
		fd := fields.ByName(protoreflect.Name(name))
		if fd == nil {
			fd = fields.ByJSONName(name)
		}
		if fd == nil {
			return nil, false
		}
		if i < len(names)-1 && (fd.IsList() || fd.IsMap() || fd.Message() == nil || scalarMessage(fd.Message())) {
			return nil, false
		}
		out = append(out, fd)
		md = fd.Message()
	}
	return out, len(out) > 0
}

// setPath sets the field at fds (the last one a scalar, enum, well-known
// value message or a list of those) in msg from values.
func setPath(msg protoreflect.Message, fds []protoreflect.FieldDescriptor, values []string) error {
	m := msg
	for _, fd := range fds[:len(fds)-1] {
		m = m.Mutable(fd).Message()
	}
	leaf := fds[len(fds)-1]
	if od := leaf.ContainingOneof(); od != nil && !od.IsSynthetic() {
		if set := m.WhichOneof(od); set != nil && set != leaf {
			return fmt.Errorf("%s and %s are of one oneof", set.Name(), leaf.Name())
		}
	}
	if leaf.IsList() {
		list := m.Mutable(leaf).List()
		for _, s := range values {
			v, err := parseValue(leaf, list.NewElement, s)
			if err != nil {
				return err
			}
			list.Append(v)
		}
		return nil
	}
	if len(values) > 1 {
		return fmt.Errorf("%d values for field %s, which holds one", len(values), leaf.Name())
	}
	v, err := parseValue(leaf, func() protoreflect.Value { return m.NewField(leaf) }, values[0])
	if err != nil {
		return err
	}
	m.Set(leaf, v)
	return nil
}

func setMapEntry(msg protoreflect.Message, fds []protoreflect.FieldDescriptor, key string, values []string) error {
	m := msg
	for _, fd := range fds[:len(fds)-1] {
		m = m.Mutable(fd).Message()
	}
	leaf := fds[len(fds)-1]
	if len(values) > 1 {
		return fmt.Errorf("%d values for the map key %q", len(values), key)
	}
	k, err := parseValue(leaf.MapKey(), nil, key)
	if err != nil {
		return fmt.Errorf("map key: %w", err)
	}
	mp := m.Mutable(leaf).Map()
	v, err := parseValue(leaf.MapValue(), mp.NewValue, values[0])
	if err != nil {
		return err
	}
	mp.Set(k.MapKey(), v)
	return nil
}

// scalarMessage reports whether md is a well-known type that a single
// string (a path variable, a query value) sets.
func scalarMessage(md protoreflect.MessageDescriptor) bool {
	switch md.FullName() {
	case "google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask",
		"google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
		"google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue",
		"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.Empty":
		return true
	}
	return false
}

// parseValue parses s as a value of fd's kind. newMsg makes an empty
// message of fd's type (for message kinds).
func parseValue(fd protoreflect.FieldDescriptor, newMsg func() protoreflect.Value, s string) (protoreflect.Value, error) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		v, err := strconv.ParseBool(s)
		if err != nil {
			return protoreflect.Value{}, fmt.Errorf("%q is not a bool", s)
		}
		return protoreflect.ValueOfBool(v), nil
	case protoreflect.EnumKind:
		ed := fd.Enum()
		if ev := ed.Values().ByName(protoreflect.Name(s)); ev != nil {
			return protoreflect.ValueOfEnum(ev.Number()), nil
		}
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil || ed.Values().ByNumber(protoreflect.EnumNumber(n)) == nil {
			return protoreflect.Value{}, fmt.Errorf("%q is not a value of %s", s, ed.FullName())
		}
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		v, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return protoreflect.Value{}, numErr(s, "a 32-bit integer")
		}
		return protoreflect.ValueOfInt32(int32(v)), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return protoreflect.Value{}, numErr(s, "a 64-bit integer")
		}
		return protoreflect.ValueOfInt64(v), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return protoreflect.Value{}, numErr(s, "an unsigned 32-bit integer")
		}
		return protoreflect.ValueOfUint32(uint32(v)), nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return protoreflect.Value{}, numErr(s, "an unsigned 64-bit integer")
		}
		return protoreflect.ValueOfUint64(v), nil
	case protoreflect.FloatKind:
		v, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return protoreflect.Value{}, numErr(s, "a number")
		}
		return protoreflect.ValueOfFloat32(float32(v)), nil
	case protoreflect.DoubleKind:
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return protoreflect.Value{}, numErr(s, "a number")
		}
		return protoreflect.ValueOfFloat64(v), nil
	case protoreflect.StringKind:
		if !utf8.ValidString(s) {
			return protoreflect.Value{}, errors.New("not valid UTF-8")
		}
		return protoreflect.ValueOfString(s), nil
	case protoreflect.BytesKind:
		b, err := decodeBytes(s)
		if err != nil {
			return protoreflect.Value{}, fmt.Errorf("%q is not base64", s)
		}
		return protoreflect.ValueOfBytes(b), nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if newMsg == nil || !scalarMessage(fd.Message()) {
			return protoreflect.Value{}, fmt.Errorf("field %s is a message (%s): set its fields one by one (%s.FIELD=...)", fd.Name(), fd.Message().FullName(), fd.Name())
		}
		v := newMsg()
		if err := parseMessage(v.Message(), s); err != nil {
			return protoreflect.Value{}, err
		}
		return v, nil
	}
	return protoreflect.Value{}, fmt.Errorf("field %s of kind %s cannot be set from a string", fd.Name(), fd.Kind())
}

func numErr(s, what string) error { return fmt.Errorf("%q is not %s", s, what) }

func decodeBytes(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errEscape
}

// parseMessage sets m, a well-known value type (scalarMessage), from s, as
// grpc-gateway reads one: RFC 3339 timestamps, Go durations ("1.5s",
// "1h30m"), comma-separated field masks, JSON for Struct and Value.
func parseMessage(m protoreflect.Message, s string) error {
	md := m.Descriptor()
	fields := md.Fields()
	switch md.FullName() {
	case "google.protobuf.Timestamp":
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil || t.Year() < 1 || t.Year() > 9999 {
			return fmt.Errorf("%q is not an RFC 3339 time", s)
		}
		m.Set(fields.ByName("seconds"), protoreflect.ValueOfInt64(t.Unix()))
		m.Set(fields.ByName("nanos"), protoreflect.ValueOfInt32(int32(t.Nanosecond())))
	case "google.protobuf.Duration":
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 1.5s", s)
		}
		m.Set(fields.ByName("seconds"), protoreflect.ValueOfInt64(int64(d/time.Second)))
		m.Set(fields.ByName("nanos"), protoreflect.ValueOfInt32(int32(d%time.Second)))
	case "google.protobuf.FieldMask":
		if !utf8.ValidString(s) {
			return errors.New("not valid UTF-8") // its paths are strings
		}
		list := m.Mutable(fields.ByName("paths")).List()
		if s != "" {
			for p := range strings.SplitSeq(s, ",") {
				list.Append(protoreflect.ValueOfString(p))
			}
		}
	case "google.protobuf.Struct", "google.protobuf.Value":
		if err := protojson.Unmarshal([]byte(s), m.Interface()); err != nil {
			return fmt.Errorf("%q is not JSON of a %s", s, md.Name())
		}
	case "google.protobuf.Empty":
		if s != "" && s != "{}" {
			return fmt.Errorf("expected nothing or {} for an Empty, got %q", s)
		}
	default: // the wrappers: one field, "value"
		fd := fields.ByName("value")
		v, err := parseValue(fd, nil, s)
		if err != nil {
			return err
		}
		m.Set(fd, v)
	}
	return nil
}

// maskFromJSON lists the field paths a JSON object sets, for the
// update_mask of a PATCH: an object that fills a message field is
// descended into; a list, a map, an Any or a scalar ends a path; a Struct
// or Value is descended into by its keys. Paths use proto field names and
// come sorted (grpc-gateway's FieldMaskFromRequestBody).
func maskFromJSON(body []byte, md protoreflect.MessageDescriptor) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var paths []string
	var walk func(prefix string, v any, md protoreflect.MessageDescriptor, depth int) error
	walk = func(prefix string, v any, md protoreflect.MessageDescriptor, depth int) error {
		if depth > 100 {
			return errors.New("JSON nested too deep")
		}
		obj, ok := v.(map[string]any)
		if !ok || len(obj) == 0 {
			if prefix != "" {
				paths = append(paths, prefix)
			}
			return nil
		}
		if md == nil {
			return errors.New("JSON structure does not match the request type")
		}
		for k, child := range obj {
			fd := md.Fields().ByName(protoreflect.Name(k))
			if fd == nil {
				fd = md.Fields().ByJSONName(k)
			}
			if fd == nil {
				return fmt.Errorf("%s has no field %q", md.FullName(), k)
			}
			p := string(fd.Name())
			if prefix != "" {
				p = prefix + "." + p
			}
			switch {
			case fd.IsList() || fd.IsMap():
				paths = append(paths, p)
			case fd.Message() != nil && (fd.Message().FullName() == "google.protobuf.Struct" || fd.Message().FullName() == "google.protobuf.Value"):
				blindPaths(p, child, &paths, depth+1)
			case fd.Message() != nil && fd.Message().FullName() == "google.protobuf.Any":
				paths = append(paths, p)
			case fd.Message() != nil:
				if err := walk(p, child, fd.Message(), depth+1); err != nil {
					return err
				}
			default:
				paths = append(paths, p)
			}
		}
		return nil
	}
	if err := walk("", root, md, 0); err != nil {
		return nil, err
	}
	sort.Strings(paths)
	return paths, nil
}

// blindPaths lists the paths of a JSON value by its object keys alone.
func blindPaths(prefix string, v any, out *[]string, depth int) {
	obj, ok := v.(map[string]any)
	if !ok || len(obj) == 0 || depth > 100 {
		*out = append(*out, prefix)
		return
	}
	for k, child := range obj {
		blindPaths(prefix+"."+k, child, out, depth+1)
	}
}
