package transcode

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"frontdoor/internal/transcodetest"
)

// bookstore returns a Transcoder of the test service.
func bookstore(t testing.TB, opts Options) *Transcoder {
	t.Helper()
	opts.Services = []string{transcodetest.Service}
	tc, err := Load(transcodetest.DescriptorSet(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

func TestParseTemplate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, src, shape, verb string
		vars                   int
		err                    string
	}{
		{name: "literal", src: "/v1/shelves", shape: "/v1/shelves"},
		{name: "variable", src: "/v1/shelves/{shelf}", shape: "/v1/shelves/*", vars: 1},
		{name: "multi", src: "/v1/{name=shelves/*/books/*}", shape: "/v1/shelves/*/books/*", vars: 1},
		{name: "double star", src: "/v1/{name=**}", shape: "/v1/**", vars: 1},
		{name: "verb", src: "/v1/{parent=shelves/*}/books:watch", shape: "/v1/shelves/*/books:watch", verb: "watch", vars: 1},
		{name: "verb after variable", src: "/v1/{name=shelves/*}:cancel", shape: "/v1/shelves/*:cancel", verb: "cancel", vars: 1},
		{name: "nested field", src: "/v1/{book.name=shelves/*/books/*}", shape: "/v1/shelves/*/books/*", vars: 1},
		{name: "wildcards", src: "/v1/*/x/**", shape: "/v1/*/x/**"},
		{name: "no slash", src: "v1/x", err: "must start"},
		{name: "double star not last", src: "/v1/**/x", err: "last segment"},
		{name: "unclosed", src: "/v1/{name", err: "unclosed"},
		{name: "bad field", src: "/v1/{1x}", err: "bad field path"},
		{name: "empty segment", src: "/v1//x", err: "empty segment"},
		{name: "trailing slash", src: "/v1/", err: "ends with"},
		{name: "twice", src: "/v1/{a}/{a}", err: "bound twice"},
		{name: "partial segment", src: "/v1/x{a}", err: "bad literal"},
		{name: "empty verb", src: "/v1/x:", err: "bad verb"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tm, err := parseTemplate(tc.src)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, errTemplate) {
					t.Fatalf("parseTemplate(%q) = %v, want an error with %q", tc.src, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tm.shape(); got != tc.shape {
				t.Errorf("shape %q, want %q", got, tc.shape)
			}
			if tm.verb != tc.verb || len(tm.vars) != tc.vars {
				t.Errorf("verb %q vars %d, want %q %d", tm.verb, len(tm.vars), tc.verb, tc.vars)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	tc := bookstore(t, Options{})
	cases := []struct {
		method, path string
		want         string // gRPC method, or the error's HTTP status
	}{
		{"GET", "/v1/shelves/7", "GetShelf"},
		{"POST", "/v1/shelves", "CreateShelf"},
		{"GET", "/v1/shelves/1/books/2", "GetBook"},
		{"GET", "/v1/books/a/b/c", "GetBook"},
		{"GET", "/v1/books", "GetBook"}, // "**" matches no segment too
		{"POST", "/v1/shelves/1/books", "CreateBook"},
		{"GET", "/v1/shelves/1/books", "ListBooks"},
		{"GET", "/v1/shelves/1/books:titles", "ListBooks"},
		{"GET", "/v1/shelves/1/books:watch", "WatchBooks"},
		{"PATCH", "/v1/shelves/1/books/2", "UpdateBook"},
		{"DELETE", "/v1/shelves/1/books/2", "DeleteBook"},
		{"HEAD", "/v1/echo:head", "Echo"},
		{"GET", "/v1/%65cho", "Echo"}, // literals compare decoded
		{"GET", "/v1/nothing", "404"},
		{"GET", "/v1/shelves/", "404"},
		{"GET", "/v2/shelves/1", "404"},
		{"PUT", "/v1/shelves/1", "405"},
		{"POST", "/v1/books:upload", "404"}, // client streaming: not served
		{"GET", "/v1/shelves/%zz", "400"},
	}
	for _, c := range cases {
		m, err := tc.Match(c.method, c.path)
		got := ""
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%s %s: %v is not an *Error", c.method, c.path, err)
			}
			got = strconv.Itoa(e.HTTPStatus)
		} else {
			got = m.Binding.GRPCMethod[strings.LastIndexByte(m.Binding.GRPCMethod, '/')+1:]
		}
		if got != c.want {
			t.Errorf("%s %s: %s, want %s", c.method, c.path, got, c.want)
		}
	}
	if s := tc.Skipped(); len(s) != 1 || s[0] != "bookstore.v1.Bookstore.UploadBooks" {
		t.Errorf("Skipped() = %v", s)
	}
}

// call transcodes one request and returns the request message as JSON
// (proto names, defaults left out), or the error.
func call(t *testing.T, tc *Transcoder, method, target, body string) (map[string]any, error) {
	t.Helper()
	path, query, _ := strings.Cut(target, "?")
	m, err := tc.Match(method, path)
	if err != nil {
		return nil, err
	}
	c, err := tc.NewCall(m, query, []byte(body))
	if err != nil {
		return nil, err
	}
	frame, err := c.AppendFrame(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(frame) < 5 || int(frame[1])<<24|int(frame[2])<<16|int(frame[3])<<8|int(frame[4]) != len(frame)-5 {
		t.Fatalf("bad frame prefix % x", frame[:5])
	}
	again := proto.Clone(c.Message())
	proto.Reset(again)
	if err := proto.Unmarshal(frame[5:], again); err != nil {
		t.Fatal(err)
	}
	j, err := protojson.MarshalOptions{UseProtoNames: true, Resolver: tc.resolver}.Marshal(again)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(j, &out); err != nil {
		t.Fatal(err)
	}
	return out, nil
}

func mustJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return m
}

func TestNewCall(t *testing.T) {
	t.Parallel()
	tc := bookstore(t, Options{})
	cases := []struct {
		name, method, target, body string
		want                       string // the request, JSON with proto names
	}{
		{"path variable int64", "GET", "/v1/shelves/42", "", `{"shelf":"42"}`},
		{"multi-segment variable", "GET", "/v1/shelves/1/books/b%2Fx%20y", "", `{"name":"shelves/1/books/b%2Fx y"}`},
		{"double star variable", "GET", "/v1/books/a/b%20c/d", "", `{"name":"a/b c/d"}`},
		{"single segment decodes slash", "GET", "/v1/echo/a%2Fb/-5/BLUE/true", "", `{"s":"a/b","i64":"-5","nested":{"color":"BLUE"},"b":true}`},
		{"body star", "POST", "/v1/shelves/3/books", `{"book":{"title":"T","genre":"HISTORY","createTime":"2024-01-02T03:04:05Z"}}`,
			`{"parent":"shelves/3","book":{"title":"T","genre":"HISTORY","create_time":"2024-01-02T03:04:05Z"}}`},
		{"body star ignores query", "POST", "/v1/echo?s=q", `{"s":"body"}`, `{"s":"body"}`},
		{"path beats body star", "POST", "/v1/shelves/3/books", `{"parent":"shelves/9"}`, `{"parent":"shelves/3"}`},
		{"empty body", "POST", "/v1/shelves", ``, `{}`},
		{"body field", "POST", "/v1/shelves?request_id=r1", `{"theme":"sea","book_count":"3"}`,
			`{"shelf":{"theme":"sea","book_count":"3"},"request_id":"r1"}`},
		{"query may not set the body field", "POST", "/v1/shelves?shelf.theme=q", `{"theme":"sea"}`, `{"shelf":{"theme":"sea"}}`},
		{"patch mask from body", "PATCH", "/v1/shelves/1/books/2", `{"title":"New","createTime":"2024-01-02T03:04:05Z","tags":["x"]}`,
			`{"book":{"name":"shelves/1/books/2","title":"New","create_time":"2024-01-02T03:04:05Z","tags":["x"]},"update_mask":"createTime,tags,title"}`},
		{"patch mask from query", "PATCH", "/v1/shelves/1/books/2?update_mask=title", `{"title":"New","author":"B"}`,
			`{"book":{"name":"shelves/1/books/2","title":"New","author":"B"},"update_mask":"title"}`},
		{"every scalar kind", "GET", "/v1/echo?d=1.5&f=-2.25&i32=-32&i64=-9007199254740993&u32=32&u64=18446744073709551615" +
			"&s32=-7&s64=-8&fx32=9&fx64=10&sfx32=-11&sfx64=-12&b=true&s=hello+w%C3%B6rld&by=AQID&color=GREEN",
			"", `{"d":1.5,"f":-2.25,"i32":-32,"i64":"-9007199254740993","u32":32,"u64":"18446744073709551615","s32":-7,"s64":"-8",` +
				`"fx32":9,"fx64":"10","sfx32":-11,"sfx64":"-12","b":true,"s":"hello wörld","by":"AQID","color":"GREEN"}`},
		{"enum by number, json names", "GET", "/v1/echo?color=3&snakeCaseName=x", "", `{"color":"BLUE","snake_case_name":"x"}`},
		{"repeated", "GET", "/v1/echo?tags=a&tags=b&nums=1&nums=2&colors=RED&colors=2", "",
			`{"tags":["a","b"],"nums":[1,2],"colors":["RED","GREEN"]}`},
		{"nested", "GET", "/v1/echo?nested.i32=5&nested.inner.s=deep&nested.ids=1&nested.ids=2", "",
			`{"nested":{"i32":5,"inner":{"s":"deep"},"ids":["1","2"]}}`},
		{"map", "GET", "/v1/echo?labels[a]=1&labels%5Bb%5D=2", "", `{"labels":{"a":"1","b":"2"}}`},
		{"well-known types", "GET", "/v1/echo?ts=2024-01-02T03:04:05.5Z&dur=1.5s&w_i64=7&w_s=x&w_b=false&fm=a,b.c&val=%7B%22k%22:1%7D&opt=0&pick_b=3", "",
			`{"ts":"2024-01-02T03:04:05.500Z","dur":"1.500s","w_i64":"7","w_s":"x","w_b":false,"fm":"a,b.c","val":{"k":1},"opt":0,"pick_b":3}`},
		{"unknown query ignored", "GET", "/v1/echo?nope=1&_=123&s=x", "", `{"s":"x"}`},
		{"query beside path", "GET", "/v1/shelves/1/books?page_size=5&parent=shelves/9", "", `{"parent":"shelves/1","page_size":5}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := call(t, tc, c.method, c.target, c.body)
			if err != nil {
				t.Fatal(err)
			}
			if want := mustJSON(t, c.want); !reflect.DeepEqual(got, want) {
				gj, _ := json.Marshal(got)
				t.Errorf("%s %s %s\n got %s\nwant %s", c.method, c.target, c.body, gj, c.want)
			}
		})
	}
}

func TestNewCallRefuses(t *testing.T) {
	t.Parallel()
	tc := bookstore(t, Options{})
	cases := []struct {
		name, method, target, body, want string
	}{
		{"bad int path variable", "GET", "/v1/shelves/abc", "", `path variable shelf: "abc" is not a 64-bit integer`},
		{"bad bool path variable", "GET", "/v1/echo/s/1/RED/maybe", "", `path variable b: "maybe" is not a bool`},
		{"bad enum path variable", "GET", "/v1/echo/s/1/PINK/true", "", `"PINK" is not a value of bookstore.v1.Color`},
		{"bad JSON", "POST", "/v1/shelves/1/books", `{"book":`, "bad JSON body"},
		{"unknown JSON field", "POST", "/v1/shelves/1/books", `{"nope":1}`, `unknown field "nope"`},
		{"wrong JSON type", "POST", "/v1/shelves", `{"book_count":"x"}`, "bad JSON body for shelf"},
		{"int overflow", "GET", "/v1/echo?i32=4294967296", "", `query parameter i32: "4294967296" is not a 32-bit integer`},
		{"two values for one", "GET", "/v1/echo?s=a&s=b", "", "2 values for field s"},
		{"message in query", "GET", "/v1/echo?nested=x", "", "is a message"},
		{"bad timestamp", "GET", "/v1/echo?ts=yesterday", "", "not an RFC 3339 time"},
		{"bad bytes", "GET", "/v1/echo?by=%%%", "", "bad percent-encoding"},
		{"map without key", "GET", "/v1/echo?labels=x", "", "labels[KEY]=VALUE"},
		{"oneof twice", "GET", "/v1/echo?pick_a=x&pick_b=1", "", "of one oneof"},
		{"invalid UTF-8 in a string", "GET", "/v1/shelves/1/books/%80", "", "not valid UTF-8"},
		{"mask of unknown field", "PATCH", "/v1/shelves/1/books/2", `{"nope":1}`, "bad JSON body"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := call(t, tc, c.method, c.target, c.body)
			var e *Error
			if !errors.As(err, &e) || e.HTTPStatus != 400 || e.Code != CodeInvalidArgument || !strings.Contains(e.Message, c.want) {
				t.Fatalf("%s %s %s: %v, want a 400 with %q", c.method, c.target, c.body, err, c.want)
			}
		})
	}
	// DiscardUnknown lets unknown fields through.
	lax := bookstore(t, Options{DiscardUnknown: true})
	if _, err := call(t, lax, "POST", "/v1/shelves/1/books", `{"nope":1}`); err != nil {
		t.Errorf("DiscardUnknown: %v", err)
	}
}

// frame marshals m as a gRPC message body (no prefix).
func frameOf(t *testing.T, tc *Transcoder, typ, js string) []byte {
	t.Helper()
	mt, err := tc.types.FindMessageByName(protoreflect.FullName(typ))
	if err != nil {
		t.Fatal(err)
	}
	m := mt.New().Interface()
	if err := (protojson.UnmarshalOptions{Resolver: tc.resolver}).Unmarshal([]byte(js), m); err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAppendResponse(t *testing.T) {
	t.Parallel()
	book := `{"name":"shelves/1/books/2","title":"T","createTime":"2024-01-02T03:04:05Z","genre":"HISTORY","pages":"1099511627776"}`
	cases := []struct {
		name   string
		opts   Options
		method string
		path   string
		typ    string
		msg    string
		want   string
	}{
		{"lowerCamel, int64 as string, enums by name", Options{}, "GET", "/v1/shelves/1/books/2", "bookstore.v1.Book", book, book},
		{"proto names", Options{UseProtoNames: true}, "GET", "/v1/shelves/1/books/2", "bookstore.v1.Book", book,
			`{"name":"shelves/1/books/2","title":"T","create_time":"2024-01-02T03:04:05Z","genre":"HISTORY","pages":"1099511627776"}`},
		{"enums as numbers", Options{EnumsAsInts: true}, "GET", "/v1/shelves/1/books/2", "bookstore.v1.Book", book,
			`{"name":"shelves/1/books/2","title":"T","createTime":"2024-01-02T03:04:05Z","genre":2,"pages":"1099511627776"}`},
		{"emit defaults", Options{EmitDefaults: true}, "GET", "/v1/shelves/1", "bookstore.v1.Shelf", `{"name":"shelves/1"}`,
			`{"name":"shelves/1","theme":"","bookCount":"0"}`},
		{"response_body list", Options{}, "GET", "/v1/shelves/1/books:titles", "bookstore.v1.ListBooksResponse",
			`{"books":[{"title":"A"},{"title":"B"}],"nextPageToken":"n"}`, `[{"title":"A"},{"title":"B"}]`},
		{"response_body empty list", Options{}, "GET", "/v1/shelves/1/books:titles", "bookstore.v1.ListBooksResponse", `{}`, `[]`},
		{"whole list response", Options{}, "GET", "/v1/shelves/1/books", "bookstore.v1.ListBooksResponse",
			`{"books":[{"title":"A"}],"nextPageToken":"n"}`, `{"books":[{"title":"A"}],"nextPageToken":"n"}`},
		{"well-known types", Options{}, "GET", "/v1/echo", "bookstore.v1.Everything",
			`{"ts":"2024-01-02T03:04:05Z","dur":"2s","wI64":"5","st":{"a":[1,"x"]},"fm":"a.b,c","any":{"@type":"type.googleapis.com/bookstore.v1.Shelf","name":"s"}}`,
			`{"ts":"2024-01-02T03:04:05Z","dur":"2s","wI64":"5","st":{"a":[1,"x"]},"fm":"a.b,c","any":{"@type":"type.googleapis.com/bookstore.v1.Shelf","name":"s"}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tc := bookstore(t, c.opts)
			m, err := tc.Match(c.method, c.path)
			if err != nil {
				t.Fatal(err)
			}
			call, err := tc.NewCall(m, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := call.AppendResponse([]byte("prefix"), frameOf(t, tc, c.typ, c.msg))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(got), "prefix") {
				t.Fatalf("dst lost: %s", got)
			}
			var g, w any
			if err := json.Unmarshal(got[6:], &g); err != nil {
				t.Fatalf("%s: %v", got[6:], err)
			}
			_ = json.Unmarshal([]byte(c.want), &w)
			if !reflect.DeepEqual(g, w) {
				t.Errorf("got %s\nwant %s", got[6:], c.want)
			}
		})
	}
}

func TestHTTPStatus(t *testing.T) {
	t.Parallel()
	want := map[int]int{0: 200, 1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400,
		10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401, 17: 500, 99: 500}
	for code, status := range want {
		if got := HTTPStatus(code); got != status {
			t.Errorf("HTTPStatus(%d) = %d, want %d", code, got, status)
		}
	}
}

func TestStatusAndStream(t *testing.T) {
	t.Parallel()
	tc := bookstore(t, Options{})
	st, ok := ParseStatus("5", "shelf%2042%20not%20found", "")
	if !ok || st.Code != 5 || st.Message != "shelf 42 not found" {
		t.Fatalf("ParseStatus = %+v %v", st, ok)
	}
	if _, ok := ParseStatus("", "", ""); ok {
		t.Error("ParseStatus of nothing is ok")
	}
	if got := string(tc.AppendError(nil, st)); !jsonEqual(got, `{"code":5,"message":"shelf 42 not found","details":[]}`) {
		t.Errorf("AppendError = %s", got)
	}
	// Details with a type frontdoor knows (google.rpc.ErrorInfo).
	info, _ := anypb.New(&errdetails.ErrorInfo{Reason: "r", Domain: "frontdoor.test"})
	raw, _ := proto.Marshal(&spb.Status{Code: 3, Message: "bad!", Details: []*anypb.Any{info}})
	st, _ = ParseStatus("3", "bad%21", base64.RawStdEncoding.EncodeToString(raw))
	if got := string(tc.AppendError(nil, st)); !jsonEqual(got,
		`{"code":3,"message":"bad!","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"r","domain":"frontdoor.test"}]}`) {
		t.Errorf("AppendError with details = %s", got)
	}
	if FormatFor("text/event-stream") != SSE || FormatFor("application/json") != NDJSON || FormatFor("") != NDJSON {
		t.Error("FormatFor")
	}
	m, err := tc.Match("GET", "/v1/shelves/1/books:watch")
	if err != nil {
		t.Fatal(err)
	}
	c, err := tc.NewCall(m, "count=2", nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := frameOf(t, tc, "bookstore.v1.Book", `{"title":"A"}`)
	nd, _ := c.AppendStreamMessage(nil, NDJSON, msg)
	nd = tc.AppendStreamError(nd, NDJSON, Status{Code: 14, Message: "gone"})
	if want := "{\"result\":{\"title\":\"A\"}}\n{\"error\":{\"code\":14,\"message\":\"gone\",\"details\":[]}}\n"; squash(string(nd)) != want {
		t.Errorf("NDJSON %q, want %q", nd, want)
	}
	sse, _ := c.AppendStreamMessage(nil, SSE, msg)
	sse = tc.AppendStreamError(sse, SSE, Status{Code: 14, Message: "gone"})
	if want := "data: {\"title\":\"A\"}\n\nevent: error\ndata: {\"code\":14,\"message\":\"gone\",\"details\":[]}\n\n"; squash(string(sse)) != want {
		t.Errorf("SSE %q, want %q", sse, want)
	}
}

// squash removes the spaces protojson adds at random after ':' and ','.
func squash(s string) string {
	s = strings.ReplaceAll(s, `": `, `":`)
	return strings.ReplaceAll(s, `, "`, `,"`)
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func TestLoadReportsEveryProblem(t *testing.T) {
	t.Parallel()
	pb := transcodetest.Protoc(t, "broken.proto")
	_, err := Load(pb, Options{Services: []string{"broken.v1.Broken", "broken.v1.Bare", "broken.v1.Missing"}})
	if err == nil {
		t.Fatal("Load of broken.proto succeeded")
	}
	for _, want := range []string{
		`broken.v1.Broken.BadTemplate: transcode: bad path template "/v1/{name=**}/tail": "**" must be the last segment`,
		`broken.v1.Broken.NoSuchField: GET /v1/things/{nope}: variable nope: broken.v1.Req has no field "nope"`,
		`broken.v1.Broken.BadBody: POST /v1/things: body "missing" is not a field of broken.v1.Req`,
		`broken.v1.Broken.BadResponseBody: GET /v1/things: response_body "missing" is not a field of broken.v1.Req`,
		`conflicting bindings: GET /v1/items/{name} of broken.v1.Broken.First and GET /v1/items/{id} of broken.v1.Broken.Second match the same requests`,
		`service broken.v1.Bare has no method with a google.api.http option`,
		`service "broken.v1.Missing" is not in the descriptor set (it has broken.v1.Bare, broken.v1.Broken)`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := Load(pb+".missing", Options{Services: []string{"x"}}); err == nil || !strings.Contains(err.Error(), "read descriptor set") {
		t.Errorf("missing file: %v", err)
	}
	notSet := transcodetest.Dir() + "/bookstore.proto"
	if _, err := Load(notSet, Options{Services: []string{"x"}}); err == nil || !strings.Contains(err.Error(), "is not a FileDescriptorSet") {
		t.Errorf("a .proto instead of a set: %v", err)
	}
}
