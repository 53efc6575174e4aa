package proxy

import (
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is a minimal OTLP/HTTP trace receiver on 127.0.0.1: it
// decodes each export with the official OTLP protobuf types.
type otlpReceiver struct {
	url   string
	spans chan *tracepb.Span
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{url: "http://" + ln.Addr().String(), spans: make(chan *tracepb.Span, 100)}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("export to %s as %s", req.URL.Path, req.Header.Get("Content-Type"))
		}
		var ex coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &ex); err != nil {
			t.Errorf("export does not decode: %v", err)
			w.WriteHeader(400)
			return
		}
		for _, rs := range ex.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					r.spans <- s
				}
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

func (r *otlpReceiver) next(t *testing.T) *tracepb.Span {
	t.Helper()
	select {
	case s := <-r.spans:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no span exported within 10s")
		return nil
	}
}

func spanAttr(s *tracepb.Span, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value.GetStringValue()
		}
	}
	return ""
}

func spanAttrInt(s *tracepb.Span, key string) int64 {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value.GetIntValue()
		}
	}
	return 0
}

// TestTracingOTLP: a request whose traceparent is sampled is traced: a
// server span whose parent is the caller's span, a client span per
// backend attempt (a connect failure, then the answer), with attributes
// and real timings, received by an OTLP/HTTP receiver; the backend got a
// traceparent naming frontdoor's span.
func TestTracingOTLP(t *testing.T) {
	t.Parallel()
	recv := startOTLPReceiver(t)
	dead := refusingAddr(t)
	a := startBackend(t, "a")
	a.delay.Store(int64(30 * time.Millisecond))
	p := startProxy(t, `
[admin]
bind = "off"
[log]
access = "off"
[tracing]
otlp_endpoint = "`+recv.url+`"
sample_ratio = 0
[[listener]]
name = "web"
bind = "127.0.0.1:0"
  [[listener.route]]
  path_prefix = "/api/"
  pool = "demo"
`+poolTOML("demo", "retries = 1\nstrategy = \"round_robin\"\nhealth = { check = \"none\" }", dead, a.addr), nil)
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	const parent = "00f067aa0ba902b7"
	client := &fasthttp.Client{}
	// Unsampled: not traced. Then sampled ones until one tried the dead
	// backend first (round robin).
	if _, err := get(t, client, p.url(t, "web", "/api/x"), "traceparent", "00-"+tid+"-"+parent+"-00"); err != nil {
		t.Fatal(err)
	}
	var server *tracepb.Span
	var attempts []*tracepb.Span
	for i := 0; i < 3 && len(attempts) < 2; i++ {
		start := time.Now()
		resp, err := get(t, client, p.url(t, "web", "/api/x"), "traceparent", "00-"+tid+"-"+parent+"-01")
		if err != nil || resp.StatusCode() != 200 {
			t.Fatalf("%v %v", resp, err)
		}
		took := time.Since(start)
		server, attempts = nil, nil
		for server == nil || len(attempts) < int(spanAttrInt(server, "frontdoor.retries"))+1 {
			s := recv.next(t)
			if s.Kind == tracepb.Span_SPAN_KIND_SERVER {
				server = s
			} else {
				attempts = append(attempts, s)
			}
		}
		if d := time.Duration(server.EndTimeUnixNano - server.StartTimeUnixNano); d < 30*time.Millisecond || d > took+time.Millisecond {
			t.Errorf("server span lasted %v; the request took %v with a 30ms backend", d, took)
		}
	}
	if hex.EncodeToString(server.TraceId) != tid || hex.EncodeToString(server.ParentSpanId) != parent {
		t.Errorf("server span trace %x parent %x; want %s %s", server.TraceId, server.ParentSpanId, tid, parent)
	}
	if got := spanAttr(server, "http.request.method"); got != "GET" {
		t.Errorf("http.request.method = %q", got)
	}
	if got := spanAttr(server, "frontdoor.backend"); got != a.addr {
		t.Errorf("frontdoor.backend = %q, want %s", got, a.addr)
	}
	if len(attempts) != 2 {
		t.Fatalf("%d attempt spans, want 2 (connect failure, answer)", len(attempts))
	}
	for i, s := range attempts {
		if string(s.ParentSpanId) != string(server.SpanId) || string(s.TraceId) != string(server.TraceId) {
			t.Errorf("attempt %d: parent %x, want the server span %x", i, s.ParentSpanId, server.SpanId)
		}
		if s.StartTimeUnixNano < server.StartTimeUnixNano || s.EndTimeUnixNano > server.EndTimeUnixNano {
			t.Errorf("attempt %d lies outside the server span", i)
		}
	}
	first, second := attempts[0], attempts[1]
	if first.StartTimeUnixNano > second.StartTimeUnixNano {
		first, second = second, first
	}
	if spanAttr(first, "server.address") != dead || spanAttr(first, "frontdoor.outcome") != "connect_error" ||
		spanAttr(second, "server.address") != a.addr || spanAttr(second, "frontdoor.outcome") != "answered" {
		t.Errorf("attempts: %v then %v", first.Attributes, second.Attributes)
	}
	want := "traceparent: 00-" + tid + "-" + hex.EncodeToString(server.SpanId) + "-01"
	if !strings.Contains(strings.ToLower(a.header()), want) {
		t.Errorf("the backend did not get %q:\n%s", want, a.header())
	}
	select {
	case s := <-recv.spans:
		t.Errorf("a span more: %v (the unsampled request?)", s)
	default:
	}
}

// TestTracingRatio: with sample_ratio 1 a request without traceparent is
// traced with its request ID as the trace ID.
func TestTracingRatio(t *testing.T) {
	t.Parallel()
	recv := startOTLPReceiver(t)
	a := startBackend(t, "a")
	p := startProxy(t, `
[admin]
bind = "off"
[log]
access = "off"
[tracing]
otlp_endpoint = "`+recv.url+`"
sample_ratio = 1.0
service_name = "edge"
[[listener]]
name = "web"
bind = "127.0.0.1:0"
  [[listener.route]]
  pool = "demo"
`+poolTOML("demo", "health = { check = \"none\" }", a.addr), nil)
	resp, err := get(t, &fasthttp.Client{}, p.url(t, "web", "/x"))
	if err != nil {
		t.Fatal(err)
	}
	id := string(resp.Header.Peek("X-Request-ID"))
	var server *tracepb.Span
	for server == nil {
		if s := recv.next(t); s.Kind == tracepb.Span_SPAN_KIND_SERVER {
			server = s
		}
	}
	if hex.EncodeToString(server.TraceId) != id || len(server.ParentSpanId) != 0 {
		t.Errorf("trace %x parent %x; want trace %s, no parent", server.TraceId, server.ParentSpanId, id)
	}
}
