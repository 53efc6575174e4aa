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
)

// AccessLog writes one JSON line per request. Lines are formatted on the
// request path into pooled buffers and handed to a single writer goroutine
// over a bounded channel, so a slow disk never blocks a request: when the
// channel is full the line is dropped and counted. A nil *AccessLog is valid
// and costs nothing (access = "off").
type AccessLog struct {
	target  string // "stdout" or a file path
	lines   chan *[]byte
	free    chan *[]byte // recycled line buffers
	dropped func()
	reopen  chan reopenRequest
	done    chan struct{}
	logger  *slog.Logger
}

// accessLogQueue is how many formatted lines may wait for the writer.
const accessLogQueue = 8192

// NewAccessLog opens target ("stdout" or a file path, appended to) and starts
// its writer goroutine, which runs until ctx ends (then flushes and closes).
// dropped, if not nil, is called once per line dropped because the writer
// fell behind.
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
		lines:   make(chan *[]byte, accessLogQueue),
		free:    make(chan *[]byte, accessLogQueue),
		dropped: dropped,
		reopen:  make(chan reopenRequest),
		done:    make(chan struct{}),
		logger:  logger,
	}
	go a.run(ctx, w)
	return a, nil
}

func openAccessLog(target string) (io.WriteCloser, error) {
	if target == "stdout" {
		return nopCloser{os.Stdout}, nil
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
// no-op for stdout.
func (a *AccessLog) Reopen() error { return a.switchTo("") }

// Retarget makes the log write to target ("stdout" or a file path, appended
// to) from now on: the lines queued so far go to the old target, then the
// new one is opened and the old one closed. When the new target cannot be
// opened the old one stays and the error says why. A reload that changes
// log.access calls it.
func (a *AccessLog) Retarget(target string) error { return a.switchTo(target) }

// reopenRequest asks the writer to reopen its target, or to move to target
// when it is not empty.
type reopenRequest struct {
	target string
	done   chan error
}

func (a *AccessLog) switchTo(target string) error {
	if a == nil {
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
	defer func() {
		if r := recover(); r != nil {
			a.logger.Error("access log writer panicked", "panic", r)
		}
	}()
	bw := bufio.NewWriterSize(w, 64<<10)
	write := func(line *[]byte) {
		if _, err := bw.Write(*line); err != nil {
			a.logger.Warn("write access log", "err", err)
		}
		a.recycle(line)
	}
	for {
		select {
		case line := <-a.lines:
			write(line)
			// Drain what queued meanwhile, then flush once: one write(2) for
			// a burst of lines.
			for n := len(a.lines); n > 0; n-- {
				write(<-a.lines)
			}
			_ = bw.Flush()
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
	method    []byte
	host      []byte
	path      []byte
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
}

// log formats rec and queues it for the writer. It does not allocate in
// steady state.
func (a *AccessLog) log(rec *accessRecord) {
	if a == nil {
		return
	}
	var bp *[]byte
	select {
	case bp = <-a.free:
	default:
		// Only while warming up: afterwards the writer recycles buffers.
		b := make([]byte, 0, 512)
		bp = &b
	}
	*bp = appendAccessRecord((*bp)[:0], rec)
	select {
	case a.lines <- bp:
	default:
		a.recycle(bp)
		if a.dropped != nil {
			a.dropped()
		}
	}
}

// recycle returns a line buffer for reuse. A free list on a channel, rather
// than a sync.Pool, because the buffers move from request goroutines to the
// writer and back: a pool's per-P caches would keep allocating on one side.
func (a *AccessLog) recycle(bp *[]byte) {
	if cap(*bp) > 4096 {
		return // an unusually long line: let it go
	}
	select {
	case a.free <- bp:
	default:
	}
}

func appendAccessRecord(b []byte, r *accessRecord) []byte {
	b = append(b, `{"time":"`...)
	b = r.start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `","request_id":`...)
	b = appendJSONString(b, r.requestID)
	b = append(b, `,"listener":`...)
	b = appendJSONStr(b, r.listener)
	b = append(b, `,"route":`...)
	b = appendJSONStr(b, r.route)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, r.method)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, r.host)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, r.path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.status), 10)
	if r.grpcMethod != "" {
		b = append(b, `,"grpc_method":`...)
		b = appendJSONStr(b, r.grpcMethod)
	}
	if r.grpc && r.grpcStatus >= 0 {
		b = append(b, `,"grpc_status":`...)
		b = strconv.AppendInt(b, int64(r.grpcStatus), 10)
	}
	b = append(b, `,"backend":`...)
	b = appendJSONStr(b, r.backend)
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
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, int64(r.bytesIn), 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, int64(r.bytesOut), 10)
	b = append(b, `,"duration":`...)
	b = strconv.AppendFloat(b, r.duration.Seconds(), 'f', 6, 64)
	if r.reason != "" {
		b = append(b, `,"reason":`...)
		b = appendJSONStr(b, r.reason)
	}
	return append(b, "}\n"...)
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
