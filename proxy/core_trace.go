package proxy

import (
	"context"
	"encoding/hex"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"frontdoor/config"
)

// Tracing: OpenTelemetry spans over OTLP/HTTP for sampled requests
// ([tracing]). The decision is made in begin: a request is traced when its
// traceparent says sampled, or when its trace ID falls within sample_ratio.
// A traced request goes to the backend with a traceparent naming
// frontdoor's span as the parent (so the backend's spans hang below it);
// at its end (finish) one server span and one client span per backend
// attempt are made from the access record's timing points, with their
// real start and end times, and handed to the SDK's batch exporter.
//
// Off (no otlp_endpoint) a request pays one atomic load of a nil pointer.
// An untraced request with tracing on pays the parse of its traceparent (or
// a hash of its ID) and nothing else; only traced requests allocate.

// tracer is the running tracing configuration.
type tracer struct {
	cfg       config.Tracing
	provider  *sdktrace.TracerProvider
	tr        trace.Tracer
	threshold uint64 // a trace ID whose low 64 bits hash below this is sampled
}

// traceState is a request's trace when it is sampled.
type traceState struct {
	sampled bool
	traceID [16]byte
	parent  [8]byte // the incoming traceparent's span; zero: none
	span    [8]byte // frontdoor's server span, the backend's parent
}

// newTracer starts the exporter of cfg (it connects on the first export).
func newTracer(cfg config.Tracing, logger *slog.Logger) (*tracer, error) {
	exp, err := otlptracehttp.New(context.Background(),
		otlptracehttp.WithEndpointURL(cfg.OTLPEndpoint+"/v1/traces"),
		otlptracehttp.WithTimeout(5*time.Second))
	if err != nil {
		return nil, err
	}
	name := cfg.ServiceName
	if name == "" {
		name = config.DefaultServiceName
	}
	res := resource.NewSchemaless(attribute.String("service.name", name))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.AlwaysSample()), // begin decided
		sdktrace.WithIDGenerator(presetIDs{}),
	)
	t := &tracer{cfg: cfg, provider: tp, tr: tp.Tracer("frontdoor")}
	switch {
	case cfg.SampleRatio >= 1:
		t.threshold = math.MaxUint64
	case cfg.SampleRatio > 0:
		t.threshold = uint64(cfg.SampleRatio * (1 << 63) * 2)
	}
	_ = logger
	return t, nil
}

// shutdown exports what is queued and stops the exporter.
func (t *tracer) shutdown(ctx context.Context) error { return t.provider.Shutdown(ctx) }

// applyTracing starts, replaces or stops the tracer for cfg (Apply, with
// p.mu held). The old tracer is shut down in the background.
func (p *Proxy) applyTracing(cfg config.Tracing) {
	old := p.tracing.Load()
	if old != nil && old.cfg == cfg {
		return
	}
	var t *tracer
	if cfg.OTLPEndpoint != "" {
		var err error
		if t, err = newTracer(cfg, p.opts.Logger); err != nil {
			p.opts.Logger.Error("tracing off: start the OTLP exporter", "endpoint", cfg.OTLPEndpoint, "err", err)
			t = nil
		}
	}
	p.tracing.Store(t)
	if old != nil {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = old.shutdown(ctx)
		}()
	}
}

// sample decides whether the request with header h and ID id is traced,
// and if so fills ts and sends the backend a traceparent naming
// frontdoor's span. The caller must peek the request ID again afterwards
// (setting a header may move the header storage).
func (t *tracer) sample(h *fasthttp.RequestHeader, id []byte, ts *traceState) {
	tid, parent, flags, ok := parseTraceparent(h.PeekBytes(hdrTraceparent))
	switch {
	case ok && flags&1 != 0:
	case t.threshold == 0:
		return
	case ok:
		if binaryLow64(tid) >= t.threshold {
			return
		}
	default:
		if xxhash.Sum64(id) >= t.threshold {
			return
		}
		// No trace came: the request ID is the trace ID when it has the
		// form of one (frontdoor's own IDs do), else a new one.
		if n, err := hex.Decode(tid[:], id); err != nil || n != 16 || len(id) != 32 {
			randomBytes(tid[:])
		}
	}
	ts.sampled, ts.traceID, ts.parent = true, tid, parent
	randomBytes(ts.span[:])
	var buf [55]byte
	h.SetBytesKV(hdrTraceparent, appendTraceparent(buf[:0], tid, ts.span))
}

// tracer returns the running tracer, nil when tracing is off.
func (l *httpListener) tracer() *tracer {
	if l.tracing == nil {
		return nil
	}
	return l.tracing.Load()
}

func binaryLow64(tid [16]byte) uint64 {
	var v uint64
	for _, b := range tid[8:] {
		v = v<<8 | uint64(b)
	}
	return v
}

func randomBytes(b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := rand.Uint64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}

// parseTraceparent parses a W3C traceparent of version 00.
func parseTraceparent(v []byte) (tid [16]byte, parent [8]byte, flags byte, ok bool) {
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || (len(v) > 55 && v[55] != '-') || string(v[:2]) == "ff" {
		return
	}
	var f [1]byte
	if _, err := hex.Decode(tid[:], v[3:35]); err != nil {
		return
	}
	if _, err := hex.Decode(parent[:], v[36:52]); err != nil {
		return
	}
	if _, err := hex.Decode(f[:], v[53:55]); err != nil {
		return
	}
	if tid == ([16]byte{}) || parent == ([8]byte{}) {
		return
	}
	return tid, parent, f[0], true
}

func appendTraceparent(b []byte, tid [16]byte, span [8]byte) []byte {
	b = append(b, "00-"...)
	b = hex.AppendEncode(b, tid[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, span[:])
	return append(b, "-01"...)
}

// presetIDs is the SDK's ID generator: a span's IDs come from the context
// when export set them (the server span's, already sent to the backend),
// else they are random.
type presetIDs struct{}

type presetKey struct{}

type presetSpan struct {
	trace trace.TraceID
	span  trace.SpanID
}

func (presetIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if p, ok := ctx.Value(presetKey{}).(*presetSpan); ok {
		return p.trace, p.span
	}
	var t trace.TraceID
	var s trace.SpanID
	randomBytes(t[:])
	randomBytes(s[:])
	return t, s
}

func (presetIDs) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if p, ok := ctx.Value(presetKey{}).(*presetSpan); ok {
		return p.span
	}
	var s trace.SpanID
	randomBytes(s[:])
	return s
}

// export makes the spans of a finished, traced request from its record.
func (t *tracer) export(rec *accessRecord, ts *traceState) {
	ctx := context.WithValue(context.Background(), presetKey{}, &presetSpan{trace: ts.traceID, span: ts.span})
	if ts.parent != ([8]byte{}) {
		ctx = trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: ts.traceID, SpanID: ts.parent, TraceFlags: trace.FlagsSampled, Remote: true,
		}))
	}
	end := rec.start.Add(rec.duration)
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", string(rec.method)),
		attribute.String("url.path", string(rec.path)),
		attribute.String("server.address", string(rec.host)),
		attribute.Int("http.response.status_code", rec.status),
		attribute.String("http.route", rec.route),
		attribute.String("frontdoor.listener", rec.listener),
		attribute.String("frontdoor.pool", rec.pool),
		attribute.String("frontdoor.backend", rec.backend),
		attribute.String("frontdoor.request_id", string(rec.requestID)),
		attribute.Int("frontdoor.retries", rec.retries),
		attribute.Int("http.request.body.size", rec.bytesIn),
		attribute.Int("http.response.body.size", rec.bytesOut),
	}
	if rec.client.IsValid() {
		attrs = append(attrs, attribute.String("client.address", rec.client.String()))
	}
	if len(rec.userAgent) > 0 {
		attrs = append(attrs, attribute.String("user_agent.original", string(rec.userAgent)))
	}
	if rec.reason != "" {
		attrs = append(attrs, attribute.String("frontdoor.reason", rec.reason))
	}
	if rec.jwtSub != nil {
		attrs = append(attrs, attribute.String("enduser.id", string(rec.jwtSub)))
	}
	ctx, span := t.tr.Start(ctx, string(rec.method)+" "+rec.route,
		trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(rec.start), trace.WithAttributes(attrs...))
	if rec.status >= 500 {
		span.SetStatus(codes.Error, strconv.Itoa(rec.status))
	}
	// Children: a context holding the server span but not the preset IDs.
	child := trace.ContextWithSpan(context.Background(), span)
	_ = ctx
	for i := range min(rec.nTried, maxTried) {
		a := &rec.tried[i]
		start := rec.start.Add(a.from)
		aEnd := start.Add(a.took)
		if a.took == 0 {
			aEnd = end
		}
		at := []attribute.KeyValue{
			attribute.String("server.address", a.backend),
			attribute.Int("frontdoor.attempt", i+1),
			attribute.String("frontdoor.outcome", outcomeNames[a.outcome]),
		}
		if a.outcome == outcomeAnswered {
			at = append(at, attribute.Int("http.response.status_code", a.status))
		}
		if a.newConn {
			at = append(at, attribute.Float64("frontdoor.connect_seconds", a.connect.Seconds()))
		}
		_, as := t.tr.Start(child, "attempt "+strconv.Itoa(i+1)+" "+a.backend,
			trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(start), trace.WithAttributes(at...))
		if a.outcome != outcomeAnswered {
			as.SetStatus(codes.Error, outcomeNames[a.outcome])
		}
		as.End(trace.WithTimestamp(aEnd))
	}
	span.End(trace.WithTimestamp(end))
}
