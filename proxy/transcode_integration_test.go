package proxy

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	jwtlib "github.com/golang-jwt/jwt/v5"
	grpclib "google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"frontdoor/config"
	"frontdoor/internal/transcodetest"
	"frontdoor/proxy/transcode"
)

// transcodeTOML is a listener with a transcoding route to pool "books"
// (the backends addrs), a pass-through gRPC route for the same service,
// and extra appended to the transcode table.
func transcodeTOML(pb, routeExtra, poolExtra string, addrs ...string) string {
	return listenerTOML + fmt.Sprintf(`
  [[listener.route]]
  path_prefix = "/bookstore."
  pool = "books"
  [[listener.route]]
  path_prefix = "/"
  pool = "books"
  transcode = { descriptor_set = %q, services = ["bookstore.v1.Bookstore"], forward_headers = ["X-Tenant"]%s }
`, pb, routeExtra) + poolTOML("books", "protocol = \"h2c\"\nhealth = { check = \"none\" }\n"+poolExtra, addrs...)
}

// getShelfClient connects to addr as a grpc-go client of the test
// bookstore (descriptor set pb) and returns a function that calls GetShelf
// for a shelf number and gives the answer's name. The connection closes
// when the test ends.
func getShelfClient(tb testing.TB, pb, addr string) func(shelf int64) (string, error) {
	tb.Helper()
	conn, err := grpclib.NewClient(addr, grpclib.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	files := transcodetest.Files(tb, pb)
	in, _ := files.FindDescriptorByName("bookstore.v1.GetShelfRequest")
	out, _ := files.FindDescriptorByName("bookstore.v1.Shelf")
	return func(shelf int64) (string, error) {
		req := dynamicpb.NewMessage(in.(protoreflect.MessageDescriptor))
		req.Set(req.Descriptor().Fields().ByName("shelf"), protoreflect.ValueOfInt64(shelf))
		resp := dynamicpb.NewMessage(out.(protoreflect.MessageDescriptor))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := conn.Invoke(ctx, "/bookstore.v1.Bookstore/GetShelf", req, resp)
		return resp.Get(resp.Descriptor().Fields().ByName("name")).String(), err
	}
}

type tcResponse struct {
	status int
	header http.Header
	body   string
}

func (r tcResponse) json(t *testing.T) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Fatalf("body %q is not JSON: %v", r.body, err)
	}
	return v
}

func tcDo(t *testing.T, p *testProxy, method, path, body string, hdr ...string) tcResponse {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, p.url(t, "web", path), rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return tcResponse{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func jsonOf(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return v
}

// TestTranscode runs the acceptance cases of issue #21 against a real
// grpc-go backend and descriptors compiled by protoc.
func TestTranscode(t *testing.T) {
	t.Parallel()
	pb := transcodetest.DescriptorSet(t)
	be := transcodetest.StartBackend(t, pb)
	access, readLog := testAccessLog(t)
	p := startProxy(t, strings.Replace(transcodeTOML(pb, "", "", be.Addr), `access = "off"`, `access = "stdout"`, 1), access)

	cases := []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		want                     string
	}{
		{"GET with a path variable", "GET", "/v1/shelves/7", "", nil, 200, `{"name":"shelves/7","theme":"theme","bookCount":"70"}`},
		{"GET with a multi-segment variable", "GET", "/v1/shelves/1/books/2", "", nil, 200,
			`{"name":"shelves/1/books/2","title":"Title of shelves/1/books/2","author":"Ann Author","createTime":"2023-11-14T22:13:20.500Z","genre":"FICTION","tags":["a","b"],"pages":"1099511627776"}`},
		{"POST with body *", "POST", "/v1/shelves/3/books", `{"book":{"title":"New","genre":"HISTORY","pages":"12"}}`, nil, 200,
			`{"name":"shelves/3/books/1","title":"New","genre":"HISTORY","pages":"12"}`},
		{"POST with a body field", "POST", "/v1/shelves", `{"theme":"sea","bookCount":"3"}`, nil, 200, `{"name":"shelves/new","theme":"sea","bookCount":"3"}`},
		{"PATCH with a body field and a FieldMask", "PATCH", "/v1/shelves/1/books/2", `{"title":"T2","author":"B"}`, nil, 200,
			`{"book":{"name":"shelves/1/books/2","title":"T2","author":"B"},"updateMask":"author,title"}`},
		{"PATCH with the mask in the query", "PATCH", "/v1/shelves/1/books/2?update_mask=title", `{"title":"T2","author":"B"}`, nil, 200,
			`{"book":{"name":"shelves/1/books/2","title":"T2","author":"B"},"updateMask":"title"}`},
		{"DELETE", "DELETE", "/v1/shelves/1/books/2", "", nil, 200, `{}`},
		{"query parameters of every scalar kind", "GET", "/v1/echo?d=1.5&f=-2.5&i32=-32&i64=-9007199254740993&u32=32&u64=18446744073709551615" +
			"&s32=-7&s64=-8&fx32=9&fx64=10&sfx32=-11&sfx64=-12&b=true&s=h%C3%A9+llo&by=AQID&color=GREEN", "", nil, 200,
			`{"d":1.5,"f":-2.5,"i32":-32,"i64":"-9007199254740993","u32":32,"u64":"18446744073709551615","s32":-7,"s64":"-8",` +
				`"fx32":9,"fx64":"10","sfx32":-11,"sfx64":"-12","b":true,"s":"hé llo","by":"AQID","color":"GREEN"}`},
		{"repeated and nested query parameters", "GET", "/v1/echo?tags=a&tags=b&colors=RED&colors=3&nested.i32=5&nested.inner.s=x&nested.ids=1&nested.ids=2&labels[k]=v", "", nil, 200,
			`{"tags":["a","b"],"colors":["RED","BLUE"],"nested":{"i32":5,"inner":{"s":"x"},"ids":["1","2"]},"labels":{"k":"v"}}`},
		{"well-known types in a body", "POST", "/v1/echo", `{"ts":"2024-05-06T07:08:09Z","dur":"3.5s","wI64":"9","st":{"a":[1,true]},"fm":"a.b","any":{"@type":"type.googleapis.com/bookstore.v1.Shelf","name":"s"}}`, nil, 200,
			`{"ts":"2024-05-06T07:08:09Z","dur":"3.500s","wI64":"9","st":{"a":[1,true]},"fm":"a.b","any":{"@type":"type.googleapis.com/bookstore.v1.Shelf","name":"s"}}`},
		{"path variables of several kinds", "GET", "/v1/echo/a%2Fb/-5/BLUE/true", "", nil, 200, `{"s":"a/b","i64":"-5","nested":{"color":"BLUE"},"b":true}`},
		{"response_body", "GET", "/v1/shelves/1/books:titles?page_size=1", "", nil, 200,
			`[{"name":"shelves/1/books/1","title":"Title of shelves/1/books/1","author":"Ann Author","createTime":"2023-11-14T22:13:20.500Z","genre":"FICTION","tags":["a","b"],"pages":"1099511627776"}]`},
		{"backend NOT_FOUND", "GET", "/v1/shelves/404", "", nil, 404, `{"code":5,"message":"shelf 404 not found","details":[]}`},
	}
	for _, c := range cases {
		r := tcDo(t, p, c.method, c.path, c.body, c.hdr...)
		if r.status != c.status || !reflect.DeepEqual(r.json(t), jsonOf(t, c.want)) {
			t.Errorf("%s: %s %s: %d %s\nwant %d %s", c.name, c.method, c.path, r.status, r.body, c.status, c.want)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", c.name, ct)
		}
		if r.header.Get("X-Request-Id") == "" {
			t.Errorf("%s: no X-Request-Id", c.name)
		}
	}

	// The h2c connection counts in the backend's connection budget.
	if n := p.gen.Load().pools["books"].ups[0].conns.Load(); n < 1 {
		t.Errorf("connections counted against the backend's budget: %d", n)
	}

	// Metadata both ways.
	r := tcDo(t, p, "GET", "/v1/shelves/8", "", "X-Request-ID", "req-8", "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"X-Tenant", "acme", "X-Secret", "no")
	if r.header.Get("Grpc-Metadata-X-Shelf") != "8" || r.header.Get("Grpc-Trailer-X-Trailer") != "done" {
		t.Errorf("response metadata: %v", r.header)
	}
	md := be.LastMetadata()
	if got := md.Get("x-request-id"); len(got) != 1 || got[0] != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("x-request-id to the backend %v (the traceparent's trace-id wins)", got)
	}
	if md.Get("x-tenant")[0] != "acme" || len(md.Get("traceparent")) != 1 || len(md.Get("x-secret")) != 0 || len(md.Get("x-forwarded-for")) != 1 {
		t.Errorf("metadata to the backend: %v", md)
	}
	if v := md.Get("grpc-timeout"); len(v) != 0 && v[0] == "" {
		t.Errorf("grpc-timeout %v", v)
	}

	// Every error code maps to its HTTP status with {code, message, details}.
	for code := 1; code <= 16; code++ {
		r := tcDo(t, p, "GET", fmt.Sprintf("/v1/fail/%d?message=m%d", code, code), "")
		want := fmt.Sprintf(`{"code":%d,"message":"m%d","details":[]}`, code, code)
		if code == 3 {
			want = `{"code":3,"message":"m3","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"TEST_REASON","domain":"frontdoor.test","metadata":{"k":"v"}}]}`
		}
		if r.status != transcode.HTTPStatus(code) || !reflect.DeepEqual(r.json(t), jsonOf(t, want)) {
			t.Errorf("code %d: %d %s, want %d %s", code, r.status, r.body, transcode.HTTPStatus(code), want)
		}
	}

	// Unknown paths, other methods and bad requests never reach the backend.
	before := be.Calls.Load()
	for _, c := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"GET", "/v1/nothing", "", 404, `{"code":5,"message":"Not Found","details":[]}`},
		{"GET", "/v2/shelves/1", "", 404, `{"code":5,"message":"Not Found","details":[]}`},
		{"PUT", "/v1/shelves/1", "", 405, `{"code":12,"message":"Method Not Allowed","details":[]}`},
		{"POST", "/v1/books:upload", "{}", 404, `{"code":5,"message":"Not Found","details":[]}`},
		{"GET", "/v1/shelves/abc", "", 400, `{"code":3,"message":"path variable shelf: \"abc\" is not a 64-bit integer","details":[]}`},
		{"POST", "/v1/shelves/1/books", `{"book":`, 400, ``},
		{"GET", "/v1/echo?i32=x", "", 400, `{"code":3,"message":"query parameter i32: \"x\" is not a 32-bit integer","details":[]}`},
	} {
		r := tcDo(t, p, c.method, c.path, c.body)
		if r.status != c.status || c.want != "" && !reflect.DeepEqual(r.json(t), jsonOf(t, c.want)) {
			t.Errorf("%s %s: %d %s, want %d %s", c.method, c.path, r.status, r.body, c.status, c.want)
		}
	}
	if n := be.Calls.Load() - before; n != 0 {
		t.Errorf("the backend got %d calls for requests frontdoor answers itself", n)
	}

	// gRPC callers are passed through by the same route table.
	got, err := getShelfClient(t, pb, p.Addr("web").String())(5)
	if err != nil {
		t.Fatalf("gRPC pass-through: %v", err)
	}
	if got != "shelves/5" {
		t.Errorf("gRPC pass-through answered %q", got)
	}

	lines := readLog()
	if !strings.Contains(lines, `"grpc_method":"/bookstore.v1.Bookstore/GetShelf","grpc_status":0`) ||
		!strings.Contains(lines, `"grpc_method":"/bookstore.v1.Bookstore/GetShelf","grpc_status":5`) ||
		!strings.Contains(lines, `"path":"/v1/nothing",`) || !strings.Contains(lines, `"status":404,`) {
		t.Errorf("access log lacks the gRPC method and status:\n%s", lines)
	}
	if got := metricValue(t, p.reg, "frontdoor_requests_total", map[string]string{"listener": "web", "pool": "books", "backend": be.Addr, "code": "2xx"}); got < 10 {
		t.Errorf("requests_total 2xx = %v", got)
	}
}

// TestTranscodeServerStream reads a server stream as NDJSON and as
// server-sent events, with and without an error at its end.
func TestTranscodeServerStream(t *testing.T) {
	t.Parallel()
	pb := transcodetest.DescriptorSet(t)
	be := transcodetest.StartBackend(t, pb)
	p := startProxy(t, transcodeTOML(pb, "", "", be.Addr), nil)
	book := func(i int) string {
		return fmt.Sprintf(`{"name":"shelves/1/books/%d","title":"Title of shelves/1/books/%d","author":"Ann Author","createTime":"2023-11-14T22:13:20.500Z","genre":"FICTION","tags":["a","b"],"pages":"1099511627776"}`, i, i)
	}
	// NDJSON: one {"result": ...} a line, then {"error": ...} on failure.
	r := tcDo(t, p, "GET", "/v1/shelves/1/books:watch?count=3", "")
	if r.status != 200 || r.header.Get("Content-Type") != "application/x-ndjson" || r.header.Get("Grpc-Metadata-X-Watch") != "1" {
		t.Fatalf("NDJSON: %d %v", r.status, r.header)
	}
	lines := strings.Split(strings.TrimSuffix(r.body, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("NDJSON lines: %q", r.body)
	}
	for i, l := range lines {
		if !reflect.DeepEqual(jsonOf(t, l), jsonOf(t, `{"result":`+book(i+1)+`}`)) {
			t.Errorf("line %d: %s", i, l)
		}
	}
	r = tcDo(t, p, "GET", "/v1/shelves/1/books:watch?count=2&fail_code=14", "")
	lines = strings.Split(strings.TrimSuffix(r.body, "\n"), "\n")
	if r.status != 200 || len(lines) != 3 || !reflect.DeepEqual(jsonOf(t, lines[2]), jsonOf(t, `{"error":{"code":14,"message":"watch failed","details":[]}}`)) {
		t.Errorf("NDJSON ending in an error: %d %q", r.status, r.body)
	}
	// An error before the first message is a plain error answer.
	r = tcDo(t, p, "GET", "/v1/shelves/1/books:watch?count=0&fail_code=7", "")
	if r.status != 403 || !reflect.DeepEqual(r.json(t), jsonOf(t, `{"code":7,"message":"watch failed","details":[]}`)) {
		t.Errorf("stream failing at once: %d %s", r.status, r.body)
	}
	// SSE, chosen by Accept.
	r = tcDo(t, p, "GET", "/v1/shelves/1/books:watch?count=2&fail_code=5", "", "Accept", "text/event-stream")
	if r.status != 200 || r.header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("SSE: %d %v", r.status, r.header)
	}
	events := strings.Split(strings.TrimSuffix(r.body, "\n\n"), "\n\n")
	if len(events) != 3 {
		t.Fatalf("SSE events: %q", r.body)
	}
	for i := range 2 {
		data, ok := strings.CutPrefix(events[i], "data: ")
		if !ok || !reflect.DeepEqual(jsonOf(t, data), jsonOf(t, book(i+1))) {
			t.Errorf("event %d: %q", i, events[i])
		}
	}
	data, ok := strings.CutPrefix(events[2], "event: error\ndata: ")
	if !ok || !reflect.DeepEqual(jsonOf(t, data), jsonOf(t, `{"code":5,"message":"watch failed","details":[]}`)) {
		t.Errorf("error event: %q", events[2])
	}
	// Messages reach the client as they come: the first line arrives
	// before the stream ends (a long stream, read line by line).
	req, _ := http.NewRequest("GET", p.url(t, "web", "/v1/shelves/1/books:watch?count=200"), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		n++
	}
	if n != 200 {
		t.Errorf("read %d lines of 200", n)
	}
}

// TestTranscodeUpstreamFailures covers the core's decisions on the way to
// the backend: a connect failure is retried on another backend, a
// response_timeout answers 504, no backend answers 503, a dead backend
// 502.
func TestTranscodeUpstreamFailures(t *testing.T) {
	t.Parallel()
	pb := transcodetest.DescriptorSet(t)
	be := transcodetest.StartBackend(t, pb)
	dead := refusingAddr(t)
	p := startProxy(t, transcodeTOML(pb, "", "response_timeout = \"300ms\"\nretries = 1\n", dead, be.Addr), nil)
	for range 6 {
		r := tcDo(t, p, "GET", "/v1/shelves/1", "")
		if r.status != 200 {
			t.Fatalf("with one backend refusing: %d %s", r.status, r.body)
		}
	}
	if got := metricValue(t, p.reg, "frontdoor_retries_total", map[string]string{"pool": "books"}); got < 1 {
		t.Errorf("retries_total = %v, want some", got)
	}
	if got := metricValue(t, p.reg, "frontdoor_upstream_errors_total", map[string]string{"pool": "books", "backend": dead, "reason": "connect"}); got < 1 {
		t.Errorf("upstream_errors_total connect = %v", got)
	}
	start := time.Now()
	r := tcDo(t, p, "POST", "/v1/echo", `{"delay":"3s"}`)
	if r.status != 504 || !reflect.DeepEqual(r.json(t), jsonOf(t, `{"code":4,"message":"backend timed out","details":[]}`)) {
		t.Errorf("response_timeout: %d %s", r.status, r.body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("response_timeout took %v", d)
	}

	// Every backend refusing: 502 once the retries are spent.
	p2 := startProxy(t, transcodeTOML(pb, "", "retries = 1\n", refusingAddr(t), refusingAddr(t)), nil)
	if r := tcDo(t, p2, "GET", "/v1/shelves/1", ""); r.status != 502 || !strings.Contains(r.body, `"code":14`) {
		t.Errorf("all refusing: %d %s", r.status, r.body)
	}
	// No backend up: 503 with Retry-After.
	p3 := startProxy(t, strings.Replace(transcodeTOML(pb, "", "", be.Addr), `health = { check = "none" }`,
		"[pool.books.health]\ncheck = \"tcp\"\ninterval = \"50ms\"\ntimeout = \"40ms\"\nfall = 1\nrise = 1", 1), nil)
	waitFor(t, 5*time.Second, "backend up", func() bool { return tcDo(t, p3, "GET", "/v1/shelves/1", "").status == 200 })
	be.Stop()
	waitFor(t, 5*time.Second, "503", func() bool {
		r := tcDo(t, p3, "GET", "/v1/shelves/1", "")
		return r.status == 503 && r.header.Get("Retry-After") == "1" && strings.Contains(r.body, `"no healthy backend"`)
	})
}

// TestTranscodeStripPrefixAndJWT: strip_prefix and the JWT stage on a
// transcoding route.
func TestTranscodeStripPrefix(t *testing.T) {
	t.Parallel()
	pb := transcodetest.DescriptorSet(t)
	be := transcodetest.StartBackend(t, pb)
	toml := strings.Replace(transcodeTOML(pb, `, strip_prefix = "/api"`, "", be.Addr), "path_prefix = \"/\"\n", "path_prefix = \"/api/\"\n", 1)
	p := startProxy(t, toml, nil)
	if r := tcDo(t, p, "GET", "/api/v1/shelves/2", ""); r.status != 200 || !strings.Contains(r.body, `"shelves/2"`) {
		t.Errorf("strip_prefix: %d %s", r.status, r.body)
	}
	if r := tcDo(t, p, "GET", "/api", ""); r.status != 404 {
		t.Errorf("the prefix alone: %d %s", r.status, r.body)
	}
}

// TestTranscodeReload: a reload reads the descriptor set again; a broken
// one fails the reload with a clear message and the old config serves on.
func TestTranscodeReload(t *testing.T) {
	t.Parallel()
	pb := transcodetest.DescriptorSet(t)
	be := transcodetest.StartBackend(t, pb)
	toml := transcodeTOML(pb, "", "", be.Addr)
	p := startProxy(t, toml, nil)
	if r := tcDo(t, p, "GET", "/v1/shelves/1", ""); r.status != 200 {
		t.Fatalf("before: %d", r.status)
	}
	data, err := os.ReadFile(pb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pb, []byte("not a descriptor set"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(toml), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	err = p.Apply(cfg)
	if err == nil || !strings.Contains(err.Error(), "listener[0].route[1].transcode: descriptor set "+pb+" is not a FileDescriptorSet") {
		t.Fatalf("reload with a broken set: %v", err)
	}
	if r := tcDo(t, p, "GET", "/v1/shelves/1", ""); r.status != 200 {
		t.Errorf("after a failed reload: %d", r.status)
	}
	// A set without the service fails too; the right one applies.
	other := transcodetest.Protoc(t, "broken.proto")
	if err := os.WriteFile(pb, mustRead(t, other), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(cfg); err == nil || !strings.Contains(err.Error(), `service "bookstore.v1.Bookstore" is not in the descriptor set`) {
		t.Errorf("reload without the service: %v", err)
	}
	if err := os.WriteFile(pb, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(cfg); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if r := tcDo(t, p, "GET", "/v1/shelves/3", ""); r.status != 200 {
		t.Errorf("after the reload: %d", r.status)
	}
	if err := Check(cfg); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTranscodeJWT: the JWT stage runs on a transcoding route; the claim
// it forwards reaches the backend as metadata, a forged one never does.
func TestTranscodeJWT(t *testing.T) {
	t.Parallel()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	pb := transcodetest.DescriptorSet(t)
	be := transcodetest.StartBackend(t, pb)
	toml := strings.Replace(transcodeTOML(pb, "", "", be.Addr), "  transcode = {", "  jwt = \"users\"\n  transcode = {", 1) + `
[jwt.users]
public_key_file = "` + keyFile + `"
issuer = "https://auth.test/"
audiences = ["api"]
algorithms = ["EdDSA"]
forward_claims = { sub = "X-User-ID" }
`
	p := startProxy(t, toml, nil)
	before := be.Calls.Load()
	r := tcDo(t, p, "GET", "/v1/shelves/1", "", "X-User-ID", "mallory")
	if r.status != 401 || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") || be.Calls.Load() != before {
		t.Fatalf("no token: %d %v", r.status, r.header)
	}
	tok, err := jwtlib.NewWithClaims(jwtlib.SigningMethodEdDSA, jwtlib.MapClaims{"sub": "alice", "iss": "https://auth.test/", "aud": "api",
		"exp": time.Now().Add(time.Hour).Unix()}).SignedString(priv)
	if err != nil {
		t.Fatal(err)
	}
	r = tcDo(t, p, "GET", "/v1/shelves/1", "", "Authorization", "Bearer "+tok, "X-User-ID", "mallory")
	if r.status != 200 {
		t.Fatalf("good token: %d %s", r.status, r.body)
	}
	if got := be.LastMetadata().Get("x-user-id"); len(got) != 1 || got[0] != "alice" {
		t.Errorf("x-user-id to the backend: %v", got)
	}
}
