package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/genproto/googleapis/api/annotations"
	grpclib "google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"frontdoor/internal/transcodetest"
)

// The differential test: the same HTTP calls through frontdoor's
// transcoding and through a gateway built from grpc-gateway's runtime (the
// code its generator emits per method, written here once over the
// descriptors), to one grpc-go backend, must give the same status and the
// same JSON. grpc-gateway is a dependency of this test only, never of the
// binary (TestGatewayNotInBinary). Where frontdoor differs on purpose the
// case says so and README.md ("JSON/HTTP to gRPC", differences) says why.

var registerOnce sync.Once

// registerGlobally puts the test service's enums and messages in the global
// registry: grpc-gateway's query parser finds enums there (and Any
// resolves there), and generated code would have registered them.
func registerGlobally(files *protoregistry.Files) {
	registerOnce.Do(func() {
		files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
			if !strings.HasPrefix(string(fd.Package()), "bookstore.") {
				return true
			}
			for i := range fd.Enums().Len() {
				_ = protoregistry.GlobalTypes.RegisterEnum(dynamicpb.NewEnumType(fd.Enums().Get(i)))
			}
			var msgs func(ms protoreflect.MessageDescriptors)
			msgs = func(ms protoreflect.MessageDescriptors) {
				for i := range ms.Len() {
					m := ms.Get(i)
					if !m.IsMapEntry() {
						_ = protoregistry.GlobalTypes.RegisterMessage(dynamicpb.NewMessageType(m))
					}
					msgs(m.Messages())
				}
			}
			msgs(fd.Messages())
			return true
		})
	})
}

// respBody is a response whose response_body is one field, as grpc-gateway's
// generated response_XXX wrappers are.
type respBody struct {
	proto.Message
	field protoreflect.FieldDescriptor
}

func (r respBody) XXX_ResponseBody() any {
	v := r.ProtoReflect().Get(r.field)
	switch {
	case r.field.IsList() && r.field.Message() != nil:
		out := []*dynamicpb.Message{} // typed, as generated code's []*Book
		for i := range v.List().Len() {
			out = append(out, v.List().Get(i).Message().Interface().(*dynamicpb.Message))
		}
		return out
	case r.field.IsList():
		out := []any{}
		for i := range v.List().Len() {
			out = append(out, v.List().Get(i).Interface())
		}
		return out
	case r.field.Message() != nil:
		return v.Message().Interface()
	}
	return v.Interface()
}

// gatewayFor builds a grpc-gateway ServeMux for every binding of the test
// service, calling the backend through conn.
func gatewayFor(t *testing.T, files *protoregistry.Files, conn *grpclib.ClientConn, m *runtime.JSONPb) *runtime.ServeMux {
	t.Helper()
	// Path parameters decoded as google/api/http.proto says: all of a
	// single-segment variable, all but %2F of a multi-segment one.
	mux := runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard, m),
		runtime.WithUnescapingMode(runtime.UnescapingModeAllExceptReserved))
	d, err := files.FindDescriptorByName(transcodetest.Service)
	if err != nil {
		t.Fatal(err)
	}
	sd := d.(protoreflect.ServiceDescriptor)
	for i := range sd.Methods().Len() {
		md := sd.Methods().Get(i)
		opts := md.Options().(*descriptorpb.MethodOptions)
		if md.IsStreamingClient() || !proto.HasExtension(opts, annotations.E_Http) {
			continue
		}
		rule := proto.GetExtension(opts, annotations.E_Http).(*annotations.HttpRule)
		for _, r := range append([]*annotations.HttpRule{rule}, rule.GetAdditionalBindings()...) {
			var meth, path string
			switch p := r.GetPattern().(type) {
			case *annotations.HttpRule_Get:
				meth, path = "GET", p.Get
			case *annotations.HttpRule_Post:
				meth, path = "POST", p.Post
			case *annotations.HttpRule_Patch:
				meth, path = "PATCH", p.Patch
			case *annotations.HttpRule_Delete:
				meth, path = "DELETE", p.Delete
			case *annotations.HttpRule_Put:
				meth, path = "PUT", p.Put
			case *annotations.HttpRule_Custom:
				meth, path = p.Custom.GetKind(), p.Custom.GetPath()
			}
			if err := mux.HandlePath(meth, path, gatewayHandler(mux, conn, md, meth, path, r.GetBody(), r.GetResponseBody())); err != nil {
				t.Fatalf("%s %s: %v", meth, path, err)
			}
		}
	}
	return mux
}

// gatewayHandler is what protoc-gen-grpc-gateway generates for a method,
// over dynamic messages.
func gatewayHandler(mux *runtime.ServeMux, conn *grpclib.ClientConn, md protoreflect.MethodDescriptor, meth, path, body, respField string) runtime.HandlerFunc {
	method := "/" + string(md.Parent().FullName()) + "/" + string(md.Name())
	var bound [][]string
	for _, seg := range strings.Split(path, "{")[1:] {
		name, _, _ := strings.Cut(seg, "}")
		name, _, _ = strings.Cut(name, "=")
		bound = append(bound, strings.Split(name, "."))
	}
	if body != "" && body != "*" {
		bound = append(bound, []string{body})
	}
	filter := utilities.NewDoubleArray(bound)
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		ctx := r.Context()
		inbound, outbound := runtime.MarshalerForRequest(mux, r)
		req := dynamicpb.NewMessage(md.Input())
		fail := func(err error) { runtime.HTTPError(ctx, mux, outbound, w, r, err) }
		raw, _ := io.ReadAll(r.Body)
		switch body {
		case "":
		case "*":
			if err := inbound.NewDecoder(bytes.NewReader(raw)).Decode(req); err != nil && err != io.EOF {
				fail(status.Error(codes.InvalidArgument, err.Error()))
				return
			}
		default:
			fd := req.Descriptor().Fields().ByName(protoreflect.Name(body))
			sub := req.Mutable(fd).Message().Interface()
			if err := inbound.NewDecoder(bytes.NewReader(raw)).Decode(sub); err != nil && err != io.EOF {
				fail(status.Error(codes.InvalidArgument, err.Error()))
				return
			}
			if mf := req.Descriptor().Fields().ByName("update_mask"); meth == "PATCH" && mf != nil && len(raw) > 0 {
				fm, err := runtime.FieldMaskFromRequestBody(bytes.NewReader(raw), sub)
				if err != nil {
					fail(status.Error(codes.InvalidArgument, err.Error()))
					return
				}
				req.Set(mf, protoreflect.ValueOfMessage(fm.ProtoReflect()))
			}
		}
		for k, v := range params {
			if err := runtime.PopulateFieldFromPath(req, k, v); err != nil {
				fail(status.Errorf(codes.InvalidArgument, "type mismatch, parameter: %s, error: %v", k, err))
				return
			}
		}
		if body != "*" {
			if err := r.ParseForm(); err != nil {
				fail(status.Error(codes.InvalidArgument, err.Error()))
				return
			}
			if err := runtime.PopulateQueryParameters(req, r.Form, filter); err != nil {
				fail(status.Error(codes.InvalidArgument, err.Error()))
				return
			}
		}
		var smd runtime.ServerMetadata
		if md.IsStreamingServer() {
			cs, err := conn.NewStream(ctx, &grpclib.StreamDesc{ServerStreams: true}, method)
			if err == nil {
				err = cs.SendMsg(req)
			}
			if err == nil {
				err = cs.CloseSend()
			}
			if err == nil {
				smd.HeaderMD, err = cs.Header()
			}
			if err != nil {
				fail(err)
				return
			}
			ctx = runtime.NewServerMetadataContext(ctx, smd)
			runtime.ForwardResponseStream(ctx, mux, outbound, w, r, func() (proto.Message, error) {
				m := dynamicpb.NewMessage(md.Output())
				err := cs.RecvMsg(m)
				return m, err
			})
			return
		}
		resp := dynamicpb.NewMessage(md.Output())
		err := conn.Invoke(ctx, method, req, resp, grpclib.Header(&smd.HeaderMD), grpclib.Trailer(&smd.TrailerMD))
		ctx = runtime.NewServerMetadataContext(ctx, smd)
		if err != nil {
			fail(err)
			return
		}
		var out proto.Message = resp
		if respField != "" {
			out = respBody{Message: resp, field: resp.Descriptor().Fields().ByName(protoreflect.Name(respField))}
		}
		runtime.ForwardResponseMessage(ctx, mux, outbound, w, r, out)
	}
}

type diffAnswer struct {
	status int
	ctype  string
	body   string
}

func doDiff(t *testing.T, base, method, path, body, accept string) diffAnswer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s%s: %v", method, base, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return diffAnswer{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), body: string(b)}
}

// fullStatus adds to a google.rpc.Status in JSON (a line, or a stream's
// {"error": ...}) the message and details that protojson leaves out when
// they are empty: frontdoor always writes all three (README.md).
func fullStatus(line string) string {
	var v map[string]any
	if json.Unmarshal([]byte(line), &v) != nil {
		return line
	}
	st := v
	if e, ok := v["error"].(map[string]any); ok && len(v) == 1 {
		st = e
	}
	if _, ok := st["code"]; !ok {
		return line
	}
	if _, ok := st["message"]; !ok {
		st["message"] = ""
	}
	if _, ok := st["details"]; !ok {
		st["details"] = []any{}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// sameJSON compares two bodies as JSON values, line by line (streams).
func sameJSON(a, b string) bool {
	la, lb := strings.Split(strings.TrimSpace(a), "\n"), strings.Split(strings.TrimSpace(b), "\n")
	if len(la) != len(lb) {
		return false
	}
	for i := range la {
		var x, y any
		if err := json.Unmarshal([]byte(la[i]), &x); err != nil {
			return la[i] == lb[i]
		}
		if err := json.Unmarshal([]byte(fullStatus(lb[i])), &y); err != nil || !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

func TestTranscodeMatchesGRPCGateway(t *testing.T) {
	t.Parallel()
	pb := transcodetest.DescriptorSet(t)
	be := transcodetest.StartBackend(t, pb)
	files := transcodetest.Files(t, pb)
	registerGlobally(files)
	conn, err := grpclib.NewClient(be.Addr, grpclib.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	type call struct{ method, path, body string }
	same := []call{
		{"GET", "/v1/shelves/7", ""},
		{"GET", "/v1/shelves/1/books/2", ""},
		{"GET", "/v1/books/a/b%20c", ""},
		{"POST", "/v1/shelves/3/books", `{"book":{"title":"New","genre":"HISTORY","pages":"12","createTime":"2024-01-02T03:04:05Z"}}`},
		{"POST", "/v1/shelves?request_id=r", `{"theme":"sea","bookCount":"3"}`},
		{"PATCH", "/v1/shelves/1/books/2", `{"title":"T2","author":"B","createTime":"2024-01-02T03:04:05Z"}`},
		{"PATCH", "/v1/shelves/1/books/2?update_mask=title", `{"title":"T2","author":"B"}`},
		{"DELETE", "/v1/shelves/1/books/2", ""},
		{"GET", "/v1/echo?d=1.5&f=-2.5&i32=-32&i64=-9007199254740993&u32=32&u64=18446744073709551615" +
			"&s32=-7&s64=-8&fx32=9&fx64=10&sfx32=-11&sfx64=-12&b=true&s=h%C3%A9+llo&by=AQID&color=GREEN", ""},
		{"GET", "/v1/echo?tags=a&tags=b&nums=1&nums=2&colors=RED&colors=3&nested.i32=5&nested.inner.s=x&nested.ids=1&nested.ids=2&labels[k]=v", ""},
		{"GET", "/v1/echo?ts=2024-01-02T03:04:05.5Z&dur=1.5s&w_i64=7&w_s=x&w_b=false&fm=a,b&opt=0&pick_b=3&snakeCaseName=y", ""},
		{"GET", "/v1/echo?nope=1&s=x", ""},
		{"POST", "/v1/echo", `{"ts":"2024-05-06T07:08:09Z","dur":"3.5s","wI64":"9","st":{"a":[1,true]},"val":null,"fm":"a.b","any":{"@type":"type.googleapis.com/bookstore.v1.Shelf","name":"s"},"items":[{"i32":1}],"labels":{"x":"y"},"u64":"7"}`},
		{"GET", "/v1/echo/a%2Fb/-5/BLUE/true", ""},
		{"GET", "/v1/shelves/1/books", ""},
		{"GET", "/v1/shelves/1/books:titles?page_size=3", ""},
		{"GET", "/v1/shelves/404", ""},
		{"GET", "/v1/fail/3?message=bad", ""},
		{"GET", "/v1/fail/14?message=down", ""},
		{"GET", "/v1/fail/16", ""},
		{"GET", "/v1/nothing", ""},
		{"GET", "/v1/shelves/1/books:watch?count=3", ""},
		{"GET", "/v1/shelves/1/books:watch?count=2&fail_code=9", ""},
	}
	// Requests both refuse: the same status and code, in messages of
	// their own.
	refused := []call{
		{"POST", "/v1/shelves/1/books", `{"nope":1}`},
		{"POST", "/v1/shelves/1/books", `{"book":`},
		{"GET", "/v1/shelves/abc", ""},
		{"GET", "/v1/echo?i32=x", ""},
		{"GET", "/v1/echo?s=a&s=b", ""},
	}
	for _, opts := range []struct {
		name  string
		route string
		json  protojson.MarshalOptions
	}{
		{"defaults", "", protojson.MarshalOptions{}},
		{"proto names, emit defaults, enums as numbers", ", use_proto_names = true, emit_defaults = true, enums_as_ints = true",
			protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true, UseEnumNumbers: true}},
	} {
		t.Run(opts.name, func(t *testing.T) {
			gw := httptest.NewServer(gatewayFor(t, files, conn, &runtime.JSONPb{MarshalOptions: opts.json}))
			defer gw.Close()
			p := startProxy(t, transcodeTOML(pb, opts.route, "", be.Addr), nil)
			fd := "http://" + p.Addr("web").String()
			for _, c := range same {
				a, b := doDiff(t, fd, c.method, c.path, c.body, ""), doDiff(t, gw.URL, c.method, c.path, c.body, "")
				if a.status != b.status || !sameJSON(a.body, b.body) {
					t.Errorf("%s %s %s\nfrontdoor    %d %s\ngrpc-gateway %d %s", c.method, c.path, c.body, a.status, a.body, b.status, b.body)
				}
			}
			for _, c := range refused {
				a, b := doDiff(t, fd, c.method, c.path, c.body, ""), doDiff(t, gw.URL, c.method, c.path, c.body, "")
				var x, y struct{ Code int }
				_ = json.Unmarshal([]byte(a.body), &x)
				_ = json.Unmarshal([]byte(b.body), &y)
				if a.status != 400 || b.status != 400 || x.Code != 3 || y.Code != 3 {
					t.Errorf("%s %s %s\nfrontdoor    %d %s\ngrpc-gateway %d %s", c.method, c.path, c.body, a.status, a.body, b.status, b.body)
				}
			}
		})
	}

	// The differences, each on purpose (README.md says why).
	gw := httptest.NewServer(gatewayFor(t, files, conn, &runtime.JSONPb{}))
	defer gw.Close()
	p := startProxy(t, transcodeTOML(pb, "", "", be.Addr), nil)
	fd := "http://" + p.Addr("web").String()
	differ := []struct {
		what                     string
		method, path, body       string
		accept                   string
		frontdoor, gateway       diffAnswer
		compareStatusAndJSONOnly bool
	}{
		{what: "a server stream's Content-Type", method: "GET", path: "/v1/shelves/1/books:watch?count=1",
			frontdoor: diffAnswer{200, "application/x-ndjson", ""}, gateway: diffAnswer{200, "application/json", ""}},
		{what: "a stream that fails before its first message", method: "GET", path: "/v1/shelves/1/books:watch?count=0&fail_code=5",
			frontdoor: diffAnswer{404, "application/json", `{"code":5,"message":"watch failed","details":[]}`},
			gateway:   diffAnswer{404, "application/json", `{"error":{"code":5,"message":"watch failed"}}`}},
		{what: "an empty error message and no details", method: "GET", path: "/v1/fail/16",
			frontdoor: diffAnswer{401, "application/json", `{"code":16,"message":"","details":[]}`},
			gateway:   diffAnswer{401, "application/json", `{"code":16}`}},
		{what: "an unknown method on a known path", method: "PUT", path: "/v1/shelves/1",
			frontdoor: diffAnswer{405, "application/json", `{"code":12,"message":"Method Not Allowed","details":[]}`},
			gateway:   diffAnswer{501, "application/json", `{"code":12,"message":"Method Not Allowed"}`}},
	}
	for _, d := range differ {
		a, b := doDiff(t, fd, d.method, d.path, d.body, d.accept), doDiff(t, gw.URL, d.method, d.path, d.body, d.accept)
		check := func(who string, got, want diffAnswer) {
			var x, y any
			_ = json.Unmarshal([]byte(got.body), &x)
			_ = json.Unmarshal([]byte(want.body), &y)
			if got.status != want.status || want.ctype != "" && !strings.HasPrefix(got.ctype, want.ctype) || want.body != "" && !reflect.DeepEqual(x, y) {
				t.Errorf("%s, %s: %d %q %s, want %d %q %s", d.what, who, got.status, got.ctype, got.body, want.status, want.ctype, want.body)
			}
		}
		check("frontdoor", a, d.frontdoor)
		check("grpc-gateway", b, d.gateway)
	}
}
