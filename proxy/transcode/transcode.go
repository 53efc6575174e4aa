package transcode

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Options choose what a Transcoder exposes and how it writes JSON. The zero
// value exposes nothing; Services is required.
type Options struct {
	// Services are the full names of the services to expose
	// ("bookstore.v1.Bookstore"); each must be in the descriptor set.
	// Only their methods with a google.api.http option are bound.
	Services []string
	// UseProtoNames writes JSON field names as in the .proto
	// ("book_count") instead of lowerCamelCase ("bookCount"). Requests
	// are read with either.
	UseProtoNames bool
	// EmitDefaults writes fields that hold their default value (0, "",
	// false, [] and {}), which protojson leaves out.
	EmitDefaults bool
	// EnumsAsInts writes enum values as numbers instead of their names.
	// Requests are read with either.
	EnumsAsInts bool
	// DiscardUnknown ignores JSON fields of a request body that the
	// message does not have; by default they are a 400.
	DiscardUnknown bool
}

// Transcoder turns HTTP/JSON requests into gRPC calls and their answers
// back, for the services of one descriptor set. Build it once with Load or
// New; it is immutable and safe for concurrent use.
type Transcoder struct {
	opts     Options
	files    *protoregistry.Files
	types    *dynamicpb.Types
	resolver resolver
	// trees are the matching trees by HTTP method.
	trees    map[string]*node
	bindings []*Binding
	// Skipped lists methods with a binding that are not served (client
	// or bidirectional streaming), as "pkg.Service.Method".
	skipped []string

	marshal   protojson.MarshalOptions
	unmarshal protojson.UnmarshalOptions
}

// Binding is one HTTP rule of one method: an HTTP method and path
// template, and where the request's body and the answer's body go.
type Binding struct {
	// HTTPMethod is GET, PUT, POST, DELETE, PATCH or a custom kind.
	HTTPMethod string
	// Template is the path template as written in the descriptor.
	Template string
	// GRPCMethod is the gRPC method path, "/pkg.Service/Method".
	GRPCMethod string
	// ServerStreaming is true for a method that answers with a stream.
	ServerStreaming bool

	tmpl      *template
	in, out   protoreflect.MessageDescriptor
	varFields [][]protoreflect.FieldDescriptor // per template variable
	bodyAll   bool                             // body: "*"
	bodyField protoreflect.FieldDescriptor     // body: "field"; nil with bodyAll or no body
	respField protoreflect.FieldDescriptor     // response_body; nil: the whole message
	// bound are the proto field paths set from the path or the body; the
	// query may not set them or anything under them.
	bound []string
	// patchMask is the request's update_mask (a FieldMask) that a PATCH
	// with a body field fills from the body's keys when the request does
	// not set it (as grpc-gateway does); nil: none.
	patchMask protoreflect.FieldDescriptor
}

// Load reads a descriptor set file (protoc --include_imports -o FILE) and
// builds a Transcoder from it; see New.
func Load(path string, opts Options) (*Transcoder, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read descriptor set: %w", err) // the path is in err
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("descriptor set %s is not a FileDescriptorSet (protoc --include_imports -o FILE): %w", path, err)
	}
	t, err := New(&set, opts)
	if err != nil {
		// Each problem on its own, named after the file.
		var list []error
		var joined interface{ Unwrap() []error }
		if errors.As(err, &joined) {
			list = joined.Unwrap()
		} else {
			list = []error{err}
		}
		for i, e := range list {
			list[i] = fmt.Errorf("descriptor set %s: %w", path, e)
		}
		return nil, errors.Join(list...)
	}
	return t, nil
}

// New builds a Transcoder for opts.Services from set, which must hold
// every file they need (protoc --include_imports). It reports every problem
// at once: a service missing from the set or with no binding, a template
// that does not parse, a variable, body or response_body naming no field,
// and two bindings that match the same requests (a conflict).
func New(set *descriptorpb.FileDescriptorSet, opts Options) (*Transcoder, error) {
	files, err := protodesc.NewFiles(set)
	if err != nil {
		return nil, fmt.Errorf("descriptors do not link (was it made with --include_imports?): %w", err)
	}
	types := dynamicpb.NewTypes(files)
	t := &Transcoder{
		opts:  opts,
		files: files,
		types: types,
		trees: map[string]*node{},
	}
	t.resolver = resolver{types}
	t.marshal = protojson.MarshalOptions{
		UseProtoNames: opts.UseProtoNames, EmitUnpopulated: opts.EmitDefaults, UseEnumNumbers: opts.EnumsAsInts, Resolver: t.resolver,
	}
	t.unmarshal = protojson.UnmarshalOptions{DiscardUnknown: opts.DiscardUnknown, Resolver: t.resolver}

	var errs []error
	if len(opts.Services) == 0 {
		errs = append(errs, errors.New("no services listed"))
	}
	for _, name := range opts.Services {
		d, err := files.FindDescriptorByName(protoreflect.FullName(name))
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if err != nil || !ok {
			errs = append(errs, fmt.Errorf("service %q is not in the descriptor set%s", name, suggest(name, serviceNames(files))))
			continue
		}
		n := 0
		methods := sd.Methods()
		for i := range methods.Len() {
			md := methods.Get(i)
			rule := httpRule(md)
			if rule == nil {
				continue
			}
			n++
			if md.IsStreamingClient() {
				t.skipped = append(t.skipped, string(md.FullName()))
				continue
			}
			rules := append([]*annotations.HttpRule{rule}, rule.GetAdditionalBindings()...)
			for j, r := range rules {
				if j > 0 && len(r.GetAdditionalBindings()) > 0 {
					errs = append(errs, fmt.Errorf("%s: an additional binding has additional bindings of its own", md.FullName()))
					continue
				}
				b, err := newBinding(md, r)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", md.FullName(), err))
					continue
				}
				tree := t.trees[b.HTTPMethod]
				if tree == nil {
					tree = &node{}
					t.trees[b.HTTPMethod] = tree
				}
				if old := tree.insert(b.tmpl, b); old != nil {
					errs = append(errs, fmt.Errorf("conflicting bindings: %s %s of %s and %s %s of %s match the same requests",
						old.HTTPMethod, old.Template, methodName(old.GRPCMethod), b.HTTPMethod, b.Template, md.FullName()))
					continue
				}
				t.bindings = append(t.bindings, b)
			}
		}
		if n == 0 {
			errs = append(errs, fmt.Errorf("service %s has no method with a google.api.http option", name))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// Bindings returns the bindings served, in descriptor order. The caller
// must not modify them.
func (t *Transcoder) Bindings() []*Binding { return t.bindings }

// Skipped returns the methods that have a binding but are not served:
// client and bidirectional streaming, as "pkg.Service.Method".
func (t *Transcoder) Skipped() []string { return slices.Clone(t.skipped) }

func methodName(grpcPath string) string {
	return strings.Replace(strings.TrimPrefix(grpcPath, "/"), "/", ".", 1)
}

// httpRule returns the method's google.api.http option, or nil.
func httpRule(md protoreflect.MethodDescriptor) *annotations.HttpRule {
	opts, ok := md.Options().(*descriptorpb.MethodOptions)
	if !ok || opts == nil || !proto.HasExtension(opts, annotations.E_Http) {
		return nil
	}
	r, _ := proto.GetExtension(opts, annotations.E_Http).(*annotations.HttpRule)
	return r
}

func newBinding(md protoreflect.MethodDescriptor, r *annotations.HttpRule) (*Binding, error) {
	b := &Binding{
		GRPCMethod:      "/" + string(md.Parent().FullName()) + "/" + string(md.Name()),
		ServerStreaming: md.IsStreamingServer(),
		in:              md.Input(),
		out:             md.Output(),
	}
	switch p := r.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		b.HTTPMethod, b.Template = "GET", p.Get
	case *annotations.HttpRule_Put:
		b.HTTPMethod, b.Template = "PUT", p.Put
	case *annotations.HttpRule_Post:
		b.HTTPMethod, b.Template = "POST", p.Post
	case *annotations.HttpRule_Delete:
		b.HTTPMethod, b.Template = "DELETE", p.Delete
	case *annotations.HttpRule_Patch:
		b.HTTPMethod, b.Template = "PATCH", p.Patch
	case *annotations.HttpRule_Custom:
		b.HTTPMethod, b.Template = p.Custom.GetKind(), p.Custom.GetPath()
		if !isToken(b.HTTPMethod) {
			return nil, fmt.Errorf("custom binding kind %q is not an HTTP method", b.HTTPMethod)
		}
	default:
		return nil, errors.New("binding has no pattern (get, put, post, delete, patch or custom)")
	}
	tmpl, err := parseTemplate(b.Template)
	if err != nil {
		return nil, err
	}
	b.tmpl = tmpl
	for _, v := range tmpl.vars {
		fds, err := fieldPath(b.in, v.field)
		if err != nil {
			return nil, fmt.Errorf("%s %s: variable %s: %w", b.HTTPMethod, b.Template, strings.Join(v.field, "."), err)
		}
		leaf := fds[len(fds)-1]
		if leaf.IsList() || leaf.IsMap() || leaf.Message() != nil && !scalarMessage(leaf.Message()) {
			return nil, fmt.Errorf("%s %s: variable %s: field %s is not a single value", b.HTTPMethod, b.Template, strings.Join(v.field, "."), leaf.FullName())
		}
		b.varFields = append(b.varFields, fds)
		b.bound = append(b.bound, protoPath(fds))
	}
	switch body := r.GetBody(); body {
	case "":
	case "*":
		b.bodyAll = true
	default:
		fd := b.in.Fields().ByName(protoreflect.Name(body))
		if fd == nil {
			return nil, fmt.Errorf("%s %s: body %q is not a field of %s", b.HTTPMethod, b.Template, body, b.in.FullName())
		}
		b.bodyField = fd
		b.bound = append(b.bound, body)
		if b.HTTPMethod == "PATCH" {
			if m := b.in.Fields().ByName("update_mask"); m != nil && m.Message() != nil &&
				m.Message().FullName() == "google.protobuf.FieldMask" && !m.IsList() && fd.Message() != nil && !fd.IsList() && !fd.IsMap() {
				b.patchMask = m
			}
		}
	}
	if rb := r.GetResponseBody(); rb != "" {
		fd := b.out.Fields().ByName(protoreflect.Name(rb))
		if fd == nil {
			return nil, fmt.Errorf("%s %s: response_body %q is not a field of %s", b.HTTPMethod, b.Template, rb, b.out.FullName())
		}
		b.respField = fd
	}
	return b, nil
}

// fieldPath resolves a dotted proto field path in md: every field but the
// last a singular message.
func fieldPath(md protoreflect.MessageDescriptor, path []string) ([]protoreflect.FieldDescriptor, error) {
	out := make([]protoreflect.FieldDescriptor, 0, len(path))
	for i, name := range path {
		if md == nil {
			return nil, fmt.Errorf("%s is not a message", strings.Join(path[:i], "."))
		}
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			return nil, fmt.Errorf("%s has no field %q", md.FullName(), name)
		}
		if i < len(path)-1 && (fd.IsList() || fd.IsMap()) {
			return nil, fmt.Errorf("%s is repeated", fd.FullName())
		}
		out = append(out, fd)
		md = fd.Message()
	}
	return out, nil
}

func protoPath(fds []protoreflect.FieldDescriptor) string {
	var b strings.Builder
	for i, fd := range fds {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(string(fd.Name()))
	}
	return b.String()
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func serviceNames(files *protoregistry.Files) []string {
	var out []string
	files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			out = append(out, string(fd.Services().Get(i).FullName()))
		}
		return true
	})
	sort.Strings(out)
	return out
}

// suggest names the services of the set, for an error about a missing one.
func suggest(_ string, have []string) string {
	if len(have) == 0 {
		return " (it has no services)"
	}
	if len(have) > 8 {
		have = append(have[:8:8], "...")
	}
	return " (it has " + strings.Join(have, ", ") + ")"
}

// resolver finds the message and extension types of Any values and of
// error details: the descriptor set's first, then the ones compiled into
// frontdoor (google.rpc error details among them).
type resolver struct{ set *dynamicpb.Types }

func (r resolver) FindMessageByName(name protoreflect.FullName) (protoreflect.MessageType, error) {
	if mt, err := r.set.FindMessageByName(name); err == nil {
		return mt, nil
	}
	return protoregistry.GlobalTypes.FindMessageByName(name)
}

func (r resolver) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	if mt, err := r.set.FindMessageByURL(url); err == nil {
		return mt, nil
	}
	return protoregistry.GlobalTypes.FindMessageByURL(url)
}

func (r resolver) FindExtensionByName(field protoreflect.FullName) (protoreflect.ExtensionType, error) {
	if xt, err := r.set.FindExtensionByName(field); err == nil {
		return xt, nil
	}
	return protoregistry.GlobalTypes.FindExtensionByName(field)
}

func (r resolver) FindExtensionByNumber(message protoreflect.FullName, field protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	if xt, err := r.set.FindExtensionByNumber(message, field); err == nil {
		return xt, nil
	}
	return protoregistry.GlobalTypes.FindExtensionByNumber(message, field)
}
