package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"time"
	"unicode/utf8"

	"frontdoor/proxy/tcp"
)

// AccessLog writes one JSON line per request (and per tcp session). Lines
// are formatted on the request path into pooled buffers and handed to a
// single writer goroutine over a bounded channel, so a slow disk never
// blocks a request: when the channel is full the line is dropped and
// counted. The writer also hands each line to the followers of /logs
// (core_logtail.go). A nil *AccessLog is valid and costs nothing; one made
// for target "off" writes no file and formats lines only while somebody
// follows them.
type AccessLog struct {
	target  string // "stdout", "off" or a file path
	writes  bool   // target is not "off"
	lines   chan *logLine
	free    chan *logLine // recycled line buffers
	dropped func()
	reopen  chan reopenRequest
	done    chan struct{}
	logger  *slog.Logger
	hub     logHub
}

// accessLogQueue is how many formatted lines may wait for the writer.
const accessLogQueue = 8192

// NewAccessLog opens target ("stdout", "off", or a file path, appended to)
// and starts its writer goroutine, which runs until ctx ends (then flushes
// and closes). dropped, if not nil, is called once per line dropped because
// the writer fell behind.
func NewAccessLog(ctx context.Context, target string, dropped func(), logger *slog.Logger) (*AccessLog, error) {
	w, err := openAccessLog(target)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &AccessLog{
		target:  target,
		writes:  target != "off",
		lines:   make(chan *logLine, accessLogQueue),
		free:    make(chan *logLine, accessLogQueue),
		dropped: dropped,
		reopen:  make(chan reopenRequest),
		done:    make(chan struct{}),
		logger:  logger,
	}
	go a.run(ctx, w)
	return a, nil
}

// enabled reports whether a line is wanted now: the log writes a file or
// stdout, or somebody follows /logs.
func (a *AccessLog) enabled() bool {
	return a != nil && (a.writes || a.hub.n.Load() > 0)
}

func openAccessLog(target string) (io.WriteCloser, error) {
	switch target {
	case "stdout":
		return nopCloser{os.Stdout}, nil
	case "off":
		return nopCloser{io.Discard}, nil
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open access log %s: %w", target, err)
	}
	return f, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Reopen closes and reopens the log file (after logrotate moved it). It is a
// no-op for stdout and off.
func (a *AccessLog) Reopen() error { return a.switchTo("") }

// Retarget makes the log write to target ("stdout" or a file path, appended
// to) from now on: the lines queued so far go to the old target, then the
// new one is opened and the old one closed. When the new target cannot be
// opened the old one stays and the error says why. A reload that changes
// log.access calls it; a log made for "off" cannot be retargeted (nor one
// moved to "off"): the caller refuses that.
func (a *AccessLog) Retarget(target string) error { return a.switchTo(target) }

// reopenRequest asks the writer to reopen its target, or to move to target
// when it is not empty.
type reopenRequest struct {
	target string
	done   chan error
}

func (a *AccessLog) switchTo(target string) error {
	if a == nil || !a.writes {
		return nil
	}
	req := reopenRequest{target: target, done: make(chan error, 1)}
	select {
	case a.reopen <- req:
		return <-req.done
	case <-a.done:
		return nil
	}
}

// Done is closed when the writer has flushed and closed after ctx ended.
func (a *AccessLog) Done() <-chan struct{} { return a.done }

func (a *AccessLog) run(ctx context.Context, w io.WriteCloser) {
	defer close(a.done)
	defer a.hub.closeAll()
	defer func() {
		if r := recover(); r != nil {
			a.logger.Error("access log writer panicked", "panic", r)
		}
	}()
	bw := bufio.NewWriterSize(w, 64<<10)
	write := func(ln *logLine) {
		if a.writes {
			if _, err := bw.Write(ln.b); err != nil {
				a.logger.Warn("write access log", "err", err)
			}
		}
		a.hub.publish(ln)
		a.recycle(ln)
	}
	for {
		select {
		case ln := <-a.lines:
			write(ln)
			// Drain what queued meanwhile, then flush once: one write(2) for
			// a burst of lines.
			for n := len(a.lines); n > 0; n-- {
				write(<-a.lines)
			}
			_ = bw.Flush()
			a.hub.wake()
		case req := <-a.reopen:
			_ = bw.Flush()
			target := a.target
			if req.target != "" {
				target = req.target
			}
			if target == "stdout" && a.target == "stdout" {
				req.done <- nil
				continue
			}
			nw, err := openAccessLog(target)
			if err != nil {
				req.done <- err
				continue
			}
			_ = w.Close()
			w, a.target = nw, target
			bw.Reset(w)
			req.done <- nil
		case <-ctx.Done():
			for n := len(a.lines); n > 0; n-- {
				write(<-a.lines)
			}
			_ = bw.Flush()
			_ = w.Close()
			a.hub.wake()
			return
		}
	}
}

// accessRecord is what one access log line says. Byte slices point into
// fasthttp's request and must be used before the handler returns.
type accessRecord struct {
	start     time.Time
	duration  time.Duration
	requestID []byte
	listener  string
	route     string
	pool      string
	method    []byte
	host      []byte
	path      []byte
	userAgent []byte
	status    int
	// grpc marks a gRPC call; grpcStatus is its grpc-status (-1: none).
	grpc       bool
	grpcStatus int
	// grpcMethod is the gRPC method of a transcoded request
	// ("/pkg.Service/Method"), "" for others.
	grpcMethod string
	backend    string
	bytesIn    int
	bytesOut   int
	reason     string
	// client is the address frontdoor believes the request came from (the
	// peer, or what a trusted peer said in X-Forwarded-For); peer is the
	// connection's other end. Zero when not known (a head not read).
	client netip.Addr
	peer   netip.AddrPort
	// tlsVersion ("1.2", "1.3") and sni describe the client's TLS
	// connection; empty on plain connections.
	tlsVersion string
	sni        []byte
	// jwtSub is the sub claim of the token the route's JWT policy
	// verified; nil without one.
	jwtSub []byte

	// tried lists the first maxTried attempts in order; nTried counts them
	// all. retries is how many of them were retries.
	tried   [maxTried]attemptRecord
	nTried  int
	retries int
	// The timing split of the final attempt, from the request's start:
	// connect is how long its new connection took to open (newConn false:
	// a pooled one was reused), ttfb when the first byte of its answer
	// came (0: none came); attemptsFrom is when the first attempt started
	// (the upstream time runs from there to the end).
	newConn      bool
	connect      time.Duration
	ttfb         time.Duration
	attemptsFrom time.Duration
	// tcp marks a tcp listener's session line (LogSession).
	tcp bool
	// trace is the request's OpenTelemetry trace when it is sampled
	// (core_trace.go).
	trace traceState
}

// maxTried bounds the attempts an access line lists; more are counted in
// retries.
const maxTried = 8

// attemptRecord is one backend attempt of a request.
type attemptRecord struct {
	backend string
	outcome uint8
	status  int // the answer's status (outcomeAnswered)
	newConn bool
	from    time.Duration // when the attempt started, from the request's start
	connect time.Duration // time to connect (newConn)
	took    time.Duration // from the attempt's start to its outcome; 0: not measured
}

// Attempt outcomes, the "outcome" of an entry of "tried".
const (
	outcomeAnswered uint8 = iota
	outcomeConnectError
	outcomeConnectTimeout
	outcomeResponseTimeout
	outcomeReset
	outcomeLimit
	outcomeClientGone
	outcomeOther
	outcomeConnected // a tcp session's connect that worked
)

var outcomeNames = [...]string{"answered", "connect_error", "connect_timeout", "response_timeout", "reset", "limit", "client_gone", "error", "connected"}

// log formats rec and queues it for the writer. It does not allocate in
// steady state.
func (a *AccessLog) log(rec *accessRecord) {
	if !a.enabled() {
		return
	}
	var ln *logLine
	select {
	case ln = <-a.free:
	default:
		// Only while warming up: afterwards the writer recycles buffers.
		ln = &logLine{b: make([]byte, 0, 1024)}
	}
	ln.b = appendRecord(ln.b[:0], rec, &ln.keys)
	select {
	case a.lines <- ln:
	default:
		a.recycle(ln)
		if a.dropped != nil {
			a.dropped()
		}
	}
}

// recycle returns a line buffer for reuse. A free list on a channel, rather
// than a sync.Pool, because the buffers move from request goroutines to the
// writer and back: a pool's per-P caches would keep allocating on one side.
func (a *AccessLog) recycle(ln *logLine) {
	if cap(ln.b) > 8192 {
		return // an unusually long line: let it go
	}
	select {
	case a.free <- ln:
	default:
	}
}

// logLine is one formatted access line and what /logs filters match on.
type logLine struct {
	b    []byte
	keys lineKeys
}

// lineKeys locate a line's filter fields: spans of b holding the JSON
// string contents (escaped as in the line).
type lineKeys struct {
	id, route, pool, backend span
	tried                    [maxTried]span
	nTried                   int
	status                   int
	duration                 time.Duration
}

type span struct{ from, to int32 }

func (s span) of(b []byte) []byte { return b[s.from:s.to] }

// appendRecord appends r's line to b and notes where its filter fields are
// in k. The field names are documented in README.md (Access log) and
// stable.
func appendRecord(b []byte, r *accessRecord, k *lineKeys) []byte {
	*k = lineKeys{status: r.status, duration: r.duration}
	b = append(b, `{"time":"`...)
	b = r.start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, '"')
	if r.tcp {
		b = append(b, `,"mode":"tcp"`...)
	} else {
		b = append(b, `,"request_id":`...)
		b, k.id = appendKeyString(b, r.requestID)
	}
	b = append(b, `,"listener":`...)
	b = appendJSONStr(b, r.listener)
	if !r.tcp {
		b = append(b, `,"route":`...)
		b, k.route = appendKeyStr(b, r.route)
	}
	b = append(b, `,"pool":`...)
	b, k.pool = appendKeyStr(b, r.pool)
	if !r.tcp {
		b = append(b, `,"method":`...)
		b = appendJSONString(b, r.method)
		b = append(b, `,"host":`...)
		b = appendJSONString(b, r.host)
		b = append(b, `,"path":`...)
		b = appendJSONString(b, r.path)
		if len(r.userAgent) > 0 {
			b = append(b, `,"user_agent":`...)
			b = appendJSONString(b, r.userAgent)
		}
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(r.status), 10)
	}
	if r.grpcMethod != "" {
		b = append(b, `,"grpc_method":`...)
		b = appendJSONStr(b, r.grpcMethod)
	}
	if r.grpc {
		if r.grpcStatus >= 0 {
			b = append(b, `,"grpc_status":`...)
			b = strconv.AppendInt(b, int64(r.grpcStatus), 10)
		}
	}
	b = append(b, `,"backend":`...)
	b, k.backend = appendKeyStr(b, r.backend)
	if r.nTried > 0 {
		b = append(b, `,"tried":[`...)
		for i := range min(r.nTried, maxTried) {
			a := &r.tried[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"backend":`...)
			b, k.tried[i] = appendKeyStr(b, a.backend)
			k.nTried++
			b = append(b, `,"outcome":"`...)
			b = append(b, outcomeNames[a.outcome]...)
			b = append(b, '"')
			if a.outcome == outcomeAnswered {
				b = append(b, `,"status":`...)
				b = strconv.AppendInt(b, int64(a.status), 10)
			}
			if a.newConn {
				b = append(b, `,"connect":`...)
				b = appendSeconds(b, a.connect)
			}
			if a.took > 0 {
				b = append(b, `,"time":`...)
				b = appendSeconds(b, a.took)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if !r.tcp {
		b = append(b, `,"retries":`...)
		b = strconv.AppendInt(b, int64(r.retries), 10)
	}
	if r.client.IsValid() {
		b = append(b, `,"client":"`...)
		b = r.client.AppendTo(b)
		b = append(b, '"')
	}
	if r.peer.IsValid() {
		b = append(b, `,"peer":"`...)
		b = r.peer.AppendTo(b)
		b = append(b, '"')
	}
	if r.tlsVersion != "" {
		b = append(b, `,"tls_version":`...)
		b = appendJSONStr(b, r.tlsVersion)
		b = append(b, `,"sni":`...)
		b = appendJSONString(b, r.sni)
	}
	if r.jwtSub != nil {
		b = append(b, `,"jwt_sub":`...)
		b = appendJSONString(b, r.jwtSub)
	}
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, int64(r.bytesIn), 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, int64(r.bytesOut), 10)
	if r.nTried > 0 {
		if r.newConn {
			b = append(b, `,"connect":`...)
			b = appendSeconds(b, r.connect)
		}
		if r.ttfb > 0 {
			b = append(b, `,"ttfb":`...)
			b = appendSeconds(b, r.ttfb)
		}
		if up := r.duration - r.attemptsFrom; up > 0 {
			b = append(b, `,"upstream":`...)
			b = appendSeconds(b, up)
		}
	}
	b = append(b, `,"duration":`...)
	b = appendSeconds(b, r.duration)
	if r.reason != "" {
		b = append(b, `,"reason":`...)
		b = appendJSONStr(b, r.reason)
	}
	return append(b, "}\n"...)
}

// appendSeconds appends d in seconds with microsecond digits.
func appendSeconds(b []byte, d time.Duration) []byte {
	return strconv.AppendFloat(b, d.Seconds(), 'f', 6, 64)
}

// appendKeyStr and appendKeyString append a JSON string and return the
// span of its contents.
func appendKeyStr(b []byte, s string) ([]byte, span) {
	from := len(b) + 1
	b = appendJSONStr(b, s)
	return b, span{int32(from), int32(len(b) - 1)}
}

func appendKeyString(b []byte, s []byte) ([]byte, span) {
	from := len(b) + 1
	b = appendJSONString(b, s)
	return b, span{int32(from), int32(len(b) - 1)}
}

func appendJSONStr(b []byte, s string) []byte {
	b = append(b, '"')
	if plainJSON(s) {
		b = append(b, s...)
	} else {
		for i := 0; i < len(s); i++ {
			b = appendJSONByte(b, s[i])
		}
	}
	return append(b, '"')
}

// plainJSON reports whether s needs no escaping: printable ASCII without
// quotes or backslashes, the common case for hosts, paths and names.
func plainJSON[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// appendJSONString appends s as a JSON string. Bytes that are not valid
// UTF-8 become U+FFFD, so a hostile path cannot break the line.
func appendJSONString(b []byte, s []byte) []byte {
	b = append(b, '"')
	if plainJSON(s) {
		b = append(b, s...)
		return append(b, '"')
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			b = appendJSONByte(b, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

func appendJSONByte(b []byte, c byte) []byte {
	switch {
	case c == '"' || c == '\\':
		return append(b, '\\', c)
	case c == '\n':
		return append(b, '\\', 'n')
	case c == '\r':
		return append(b, '\\', 'r')
	case c == '\t':
		return append(b, '\\', 't')
	case c < 0x20 || c == 0x7f:
		return append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
	}
	return append(b, c)
}

// LogSession implements tcp.SessionLogger: a tcp listener's session
// becomes one line ("mode":"tcp") when it closes. It allocates nothing in
// steady state.
func (a *AccessLog) LogSession(s *tcp.SessionRecord) {
	if !a.enabled() {
		return
	}
	rec := accessRecord{
		tcp:      true,
		start:    s.Start,
		duration: s.Duration,
		listener: s.Listener,
		pool:     s.Pool,
		backend:  s.Backend,
		client:   s.Client.Addr(),
		peer:     s.Client,
		bytesIn:  int(s.BytesUp),
		bytesOut: int(s.BytesDown),
		reason:   s.End,
		nTried:   s.NAttempts,
	}
	if s.Peer.IsValid() {
		rec.peer = s.Peer // the balancer in front (PROXY protocol)
	}
	for i := range min(s.NAttempts, tcp.MaxSessionAttempts) {
		at := &s.Attempts[i]
		rec.tried[i] = attemptRecord{backend: at.Backend, outcome: sessionOutcome(at.Outcome)}
	}
	a.log(&rec)
}

func sessionOutcome(s string) uint8 {
	switch s {
	case "connected":
		return outcomeConnected
	case "connect_timeout":
		return outcomeConnectTimeout
	}
	return outcomeConnectError
}
