package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The HTTP/2 side of the parity suite (issue 19): every case whose request
// can be said in HTTP/2 runs a third time, sent as HTTP/2 with prior
// knowledge (h2c) by a raw client (x/net/http2's Framer and hpack, nothing
// else: the client decodes every header block itself, so it sees exactly
// what frontdoor sent). Pool s speaks HTTP/1.1, so the HTTP/2 engine
// translates each stream to HTTP/1.1 for the scripted backends. The run is
// reduced to the observables of the HTTP/1.1 runs (parityAnswer) and must
// meet the case's expectation and agree with the event loop's run, after
// the differences HTTP/2 itself makes are normalised away (h2Compared).

// notHTTP2 are the cases that cannot be expressed in HTTP/2, by name, with
// why: they run through the HTTP/1.1 engines only.
var notHTTP2 = map[string]string{
	"200 content-length, client close":                                        clientClose,
	"400 malformed":                                                           "no request line: HTTP/2 has no text framing to get wrong (its malformed requests are RST_STREAM PROTOCOL_ERROR, h2_attack_test.go)",
	"400 malformed header line, client close":                                 "a header line without a colon is HTTP/1.1 text framing; HPACK fields always have a name and a value",
	"400 malformed after a request on the same connection":                    "no request line after a good request: HTTP/1.1 text framing",
	"404 no route, client close":                                              clientClose,
	"408 read timeout":                                                        unfinishedHead,
	"408 read timeout, client close":                                          unfinishedHead,
	"413 declared Content-Length over max_body_bytes, client close":           clientClose,
	"413 declared Content-Length over max_body_bytes, streamed, client close": clientClose,
	"431 header block over max_header_bytes, client close":                    clientClose,
	"401 JWT rejected, client close":                                          clientClose,
	"404 affinity unknown session, client close":                              clientClose,
	"502 refused, client close":                                               clientClose,
	"502 reset before answer, client close":                                   clientClose,
	"503 no healthy backend, client close":                                    clientClose,
	"504 response timeout, client close":                                      clientClose,
	"h2c pool, plain HTTP/1.1 request":                                        "the case is an HTTP/1.1 request meeting an h2c pool (answered 426); over HTTP/2 the same request is relayed to the h2c backend as HTTP/2 (h2_interop_test.go)",
}

const (
	clientClose    = "Connection: close is connection-specific, forbidden in HTTP/2 (RFC 9113 8.2.2); a client ends an HTTP/2 connection with GOAWAY, not per request"
	unfinishedHead = "a head that never ends: in HTTP/2 a header block cut short (HEADERS without END_HEADERS) is a connection error, never a stream's 408 (RFC 9113 4.3, 6.10)"
)

// h2Defect is a defect of the HTTP/2 engine that the suite found: a
// divergence from the HTTP/1.1 engines that HTTP/2 does not call for.
type h2Defect struct {
	// what: what the HTTP/2 engine does, and what the event loop and the
	// goroutine engine do instead.
	what string
	// undo reverts the defect's effect on the HTTP/2 run h, to what the
	// event loop's run l shows, and reports whether it found the effect;
	// false means the defect no longer shows in the case.
	undo func(l, h *parityRun) bool
}

// h2Divergences are the cases in which the HTTP/2 engine's run shows
// defects, by name, with the defects. The test undoes each listed defect
// on the run and logs it; the run must then meet the expectation and agree
// with the event loop, so an unlisted divergence fails the test, and so
// does a listed defect that no longer shows (delete it then). Empty: the
// ten defects the suite found when it first ran are fixed.
var h2Divergences = map[string][]*h2Defect{}

// h2Hop are the response fields the HTTP/1.1 answers may carry and HTTP/2
// forbids (connection-specific, RFC 9113 8.2.2): they are left out of the
// comparison, and an HTTP/2 answer that carries one is malformed.
var h2Hop = []string{"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}

// h2Request is an HTTP/1.1 request of the table said in HTTP/2.
type h2Request struct {
	fields []hpack.HeaderField
	body   []byte
	end    bool // the body is whole: END_STREAM on its last frame
	head   bool // a HEAD request
}

// h2RequestOf says raw in HTTP/2: the request line becomes :method and
// :path, Host :authority, header names are lower-cased, and the body
// (what of it raw holds) goes in DATA, ending the stream when it is as
// long as Content-Length says. An error says why raw has no HTTP/2 form.
func h2RequestOf(raw string) (*h2Request, error) {
	head, body, ok := strings.Cut(raw, "\r\n\r\n")
	if !ok {
		return nil, errors.New("the head does not end")
	}
	lines := strings.Split(head, "\r\n")
	f := strings.Split(lines[0], " ")
	if len(f) != 3 || f[2] != "HTTP/1.1" || f[0] == "" || !strings.HasPrefix(f[1], "/") {
		return nil, fmt.Errorf("request line %q", lines[0])
	}
	r := &h2Request{body: []byte(body), head: f[0] == "HEAD"}
	var authority string
	var regular []hpack.HeaderField
	length := 0
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ":")
		if !ok || strings.ContainsAny(l, "\r\n") {
			return nil, fmt.Errorf("header line %q", l)
		}
		name, value = strings.ToLower(name), strings.TrimSpace(value)
		switch {
		case slices.Contains(h2Hop, name), name == "expect":
			return nil, fmt.Errorf("%s is HTTP/1.1's", name)
		case name == "te" && value != "trailers":
			return nil, fmt.Errorf("te %q", value)
		case name == "host":
			authority = value
			continue
		case name == "content-length":
			n, err := strconv.Atoi(value)
			if err != nil {
				return nil, fmt.Errorf("content-length %q", value)
			}
			length = n
		case name == "cookie":
			// Split into crumbs, as browsers send it (RFC 9113
			// 8.2.3): the engine must join them for HTTP/1.1.
			for crumb := range strings.SplitSeq(value, "; ") {
				regular = append(regular, hpack.HeaderField{Name: name, Value: crumb})
			}
			continue
		}
		regular = append(regular, hpack.HeaderField{Name: name, Value: value})
	}
	if authority == "" {
		return nil, errors.New("no Host")
	}
	if len(body) > length {
		return nil, errors.New("bytes after the body: a second request")
	}
	if len(body) > 65535 {
		// The client sends before it reads frontdoor's SETTINGS and
		// does no flow control: RFC 9113's initial windows bound it.
		return nil, errors.New("a body over 65535 bytes: the test's client would need flow control")
	}
	r.end = len(body) == length
	r.fields = append(hf(":method", f[0], ":scheme", "http", ":authority", authority, ":path", f[1]), regular...)
	return r, nil
}

// exchangeH2 is exchange over HTTP/2: a new connection, the warm-up (if
// any) on stream 1 and the request on the next stream, each read to its
// end; then 300 ms for anything more (the connection must stay open), and
// the drain. It must not call t's methods.
func (r *parityRun) exchangeH2() {
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.drainErr = r.p.Shutdown(ctx)
	}()
	c, err := net.DialTimeout("tcp", r.p.Addr("web").String(), 2*time.Second)
	if err != nil {
		r.answer = &parityAnswer{err: err}
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(parityH2Deadline))
	h := newParityH2(c)
	if err := h.start(); err != nil {
		r.answer = &parityAnswer{err: err}
		return
	}
	if w := r.tc.warmup; w != "" {
		r.warmup = h.roundTrip(w)
		time.Sleep(300 * time.Millisecond) // as exchange does
	}
	r.sent = time.Now()
	r.answer = h.roundTrip(r.tc.req)
	h.afterAnswer(r.answer, 300*time.Millisecond)
	r.done = time.Now()
}

// parityH2 is the raw client of an HTTP/2 run. It reads and writes from
// one goroutine: it writes a request whole, in one write and frames of at
// most 16 KiB (what every peer takes), then reads until its stream ends,
// answering SETTINGS and PING meanwhile.
type parityH2 struct {
	c      net.Conn
	bw     *bufio.Writer
	fr     *http2.Framer
	enc    *hpack.Encoder
	encBuf bytes.Buffer
	dec    *hpack.Decoder
	nextID uint32
	last   uint32 // the stream of the last request
}

// parityH2Deadline bounds an HTTP/2 run's exchange: the slowest case
// answers within a second, and a stream the engine never answers must not
// hold the suite for long.
const parityH2Deadline = 3 * time.Second

// parityH2Window is the client's window, stream and connection: large
// enough for every answer of the table, so flow control never waits.
const parityH2Window = 1 << 24

func newParityH2(c net.Conn) *parityH2 {
	h := &parityH2{c: c, bw: bufio.NewWriterSize(c, 64<<10), nextID: 1}
	h.fr = http2.NewFramer(h.bw, c)
	h.enc = hpack.NewEncoder(&h.encBuf)
	h.dec = hpack.NewDecoder(4096, nil)
	return h
}

// start sends the preface, the client's SETTINGS and window.
func (h *parityH2) start() error {
	if _, err := io.WriteString(h.bw, http2.ClientPreface); err != nil {
		return fmt.Errorf("write preface: %w", err)
	}
	if err := h.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: parityH2Window}); err != nil {
		return fmt.Errorf("write SETTINGS: %w", err)
	}
	if err := h.fr.WriteWindowUpdate(0, parityH2Window-65535); err != nil {
		return fmt.Errorf("write WINDOW_UPDATE: %w", err)
	}
	return h.bw.Flush()
}

// roundTrip sends raw as HTTP/2 on a new stream and reads the answer.
func (h *parityH2) roundTrip(raw string) *parityAnswer {
	req, err := h2RequestOf(raw)
	if err != nil {
		return &parityAnswer{err: fmt.Errorf("no HTTP/2 form: %w", err)}
	}
	id := h.nextID
	h.nextID += 2
	h.last = id
	if err := h.send(id, req); err != nil {
		return &parityAnswer{err: err}
	}
	return h.read(id, req.head)
}

func (h *parityH2) send(id uint32, req *h2Request) error {
	h.encBuf.Reset()
	for _, f := range req.fields {
		if err := h.enc.WriteField(f); err != nil {
			return fmt.Errorf("hpack: %w", err)
		}
	}
	block := h.encBuf.Bytes()
	noBody := len(req.body) == 0
	first := block[:min(len(block), 16384)]
	rest := block[len(first):]
	err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first,
		EndStream: noBody && req.end, EndHeaders: len(rest) == 0})
	for err == nil && len(rest) > 0 {
		frag := rest[:min(len(rest), 16384)]
		rest = rest[len(frag):]
		err = h.fr.WriteContinuation(id, len(rest) == 0, frag)
	}
	for b := req.body; err == nil && len(b) > 0; {
		chunk := b[:min(len(b), 16384)]
		b = b[len(chunk):]
		err = h.fr.WriteData(id, len(b) == 0 && req.end, chunk)
	}
	if err == nil {
		err = h.bw.Flush() // the request goes out in one write, as the HTTP/1.1 runs' does
	}
	if err != nil {
		return fmt.Errorf("write request: %w", err)
	}
	return nil
}

// frame reads the next frame that is not the connection's business
// (SETTINGS, PING, WINDOW_UPDATE), with a header block decoded whole
// (CONTINUATION frames included) into fields.
func (h *parityH2) frame() (http2.Frame, []hpack.HeaderField, error) {
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return nil, nil, err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			if err := h.fr.WriteSettingsAck(); err != nil {
				return nil, nil, err
			}
			if err := h.bw.Flush(); err != nil {
				return nil, nil, err
			}
			continue
		case *http2.PingFrame:
			if !f.IsAck() {
				if err := h.fr.WritePing(true, f.Data); err != nil {
					return nil, nil, err
				}
				if err := h.bw.Flush(); err != nil {
					return nil, nil, err
				}
			}
			continue
		case *http2.WindowUpdateFrame:
			continue
		case *http2.GoAwayFrame:
			return f, nil, nil
		case *http2.HeadersFrame:
			block := bytes.Clone(f.HeaderBlockFragment())
			for ended := f.HeadersEnded(); !ended; {
				next, err := h.fr.ReadFrame()
				if err != nil {
					return nil, nil, err
				}
				cf, ok := next.(*http2.ContinuationFrame)
				if !ok || cf.StreamID != f.StreamID {
					return nil, nil, fmt.Errorf("%v in a header block of stream %d (RFC 9113 6.10)", next.Header(), f.StreamID)
				}
				block = append(block, cf.HeaderBlockFragment()...)
				ended = cf.HeadersEnded()
			}
			fields, err := h.dec.DecodeFull(block)
			if err != nil {
				return nil, nil, fmt.Errorf("hpack: %w", err)
			}
			return f, fields, nil
		}
		return f, nil, nil
	}
}

// read collects stream id's answer until its END_STREAM or RST_STREAM.
// Its raw bytes are a transcript of the frames, for messages.
func (h *parityH2) read(id uint32, head bool) *parityAnswer {
	a := &parityAnswer{h2: true}
	note := func(format string, args ...any) { a.raw = fmt.Appendf(a.raw, format+"\n", args...) }
	sawData := false
	for {
		f, fields, err := h.frame()
		if err != nil {
			a.err = fmt.Errorf("stream %d: %w", id, err)
			a.closed = true
			return a
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			note("GOAWAY %v last stream %d %q", f.ErrCode, f.LastStreamID, f.DebugData())
			if f.LastStreamID < id {
				a.err = fmt.Errorf("GOAWAY %v before stream %d's answer", f.ErrCode, id)
				a.closed = true
				return a
			}
			continue
		case *http2.RSTStreamFrame:
			note("RST_STREAM %v on stream %d", f.ErrCode, f.StreamID)
			if f.StreamID == id {
				a.err = fmt.Errorf("stream %d reset with %v after %d fields and %d body bytes", id, f.ErrCode, len(a.headers), len(a.body))
				return a
			}
			continue
		case *http2.HeadersFrame:
			note("HEADERS on stream %d (end stream %v) %v", f.StreamID, f.StreamEnded(), fields)
			if f.StreamID != id {
				a.wire = append(a.wire, fmt.Sprintf("HEADERS on stream %d, not ours", f.StreamID))
				continue
			}
			switch {
			case a.status == 0:
				a.wire = append(a.wire, h2FieldProblems(fields, true)...)
				st, _ := strconv.Atoi(fieldValue(fields, ":status"))
				if st < 100 || st > 599 {
					a.err = fmt.Errorf("stream %d: response HEADERS with :status %q", id, fieldValue(fields, ":status"))
					return a
				}
				if st < 200 {
					a.interim = append(a.interim, st)
					continue
				}
				a.status = st
				for _, fld := range fields {
					if !strings.HasPrefix(fld.Name, ":") {
						a.headers = append(a.headers, parityHdr{fld.Name, fld.Value})
					}
				}
			default:
				a.wire = append(a.wire, h2FieldProblems(fields, false)...)
				if !f.StreamEnded() {
					a.wire = append(a.wire, "trailers without END_STREAM (RFC 9113 8.1)")
				}
				for _, fld := range fields {
					a.trailers = append(a.trailers, parityHdr{fld.Name, fld.Value})
				}
			}
			if f.StreamEnded() {
				a.framing = "none"
				if sawData {
					a.framing = "data"
				}
				h.checkLength(a, head)
				return a
			}
		case *http2.DataFrame:
			note("DATA on stream %d (%d bytes, end stream %v)", f.StreamID, len(f.Data()), f.StreamEnded())
			if f.StreamID != id {
				a.wire = append(a.wire, fmt.Sprintf("DATA on stream %d, not ours", f.StreamID))
				continue
			}
			if a.status == 0 || len(a.trailers) > 0 {
				a.wire = append(a.wire, "DATA outside the body (RFC 9113 8.1)")
			}
			a.body = append(a.body, f.Data()...)
			sawData = sawData || len(f.Data()) > 0
			if f.StreamEnded() {
				a.framing = "none"
				if sawData {
					a.framing = "data"
				}
				h.checkLength(a, head)
				return a
			}
		default:
			note("%v", f.Header())
		}
	}
}

// checkLength: a content-length must match the DATA (RFC 9113 8.1.1),
// but on an answer that has no content (HEAD, 204, 304).
func (h *parityH2) checkLength(a *parityAnswer, head bool) {
	cl, ok := a.one("content-length")
	if !ok || head || a.status == 204 || a.status == 304 {
		return
	}
	if cl != strconv.Itoa(len(a.body)) {
		a.wire = append(a.wire, fmt.Sprintf("content-length %s, but %d bytes of DATA (RFC 9113 8.1.1)", cl, len(a.body)))
	}
}

// afterAnswer waits d for more frames: an RST_STREAM NO_ERROR on the
// answered stream is HTTP/2's "stop sending" after a complete answer to a
// request frontdoor had not read to its end (RFC 9113 8.1) and expected; a
// GOAWAY or the connection's end is closed; any other frame is extra.
func (h *parityH2) afterAnswer(a *parityAnswer, d time.Duration) {
	if a.closed {
		return
	}
	_ = h.c.SetReadDeadline(time.Now().Add(d))
	for {
		f, fields, err := h.frame()
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			return
		case err != nil:
			a.closed = true
			return
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			a.closed = true
			a.extra = fmt.Appendf(a.extra, "GOAWAY %v %q;", f.ErrCode, f.DebugData())
			return
		case *http2.RSTStreamFrame:
			if f.StreamID == h.last && f.ErrCode == http2.ErrCodeNo {
				continue
			}
			a.extra = fmt.Appendf(a.extra, "RST_STREAM %v on stream %d;", f.ErrCode, f.StreamID)
		case *http2.HeadersFrame:
			a.extra = fmt.Appendf(a.extra, "HEADERS on stream %d %v;", f.StreamID, fields)
		default:
			a.extra = fmt.Appendf(a.extra, "%v;", f.Header())
		}
	}
}

// h2FieldProblems checks a response's header block against RFC 9113 8.2
// and 8.3.2: lower-case names, pseudo-fields first and only :status (in a
// head, never in trailers), no connection-specific field.
func h2FieldProblems(fields []hpack.HeaderField, head bool) []string {
	var bad []string
	regular := false
	for _, f := range fields {
		switch {
		case strings.HasPrefix(f.Name, ":"):
			if regular || !head || f.Name != ":status" {
				bad = append(bad, fmt.Sprintf("pseudo-field %s where it may not be (RFC 9113 8.3)", f.Name))
			}
			continue
		case f.Name != strings.ToLower(f.Name):
			bad = append(bad, fmt.Sprintf("field name %q is not lower-case (RFC 9113 8.2.1)", f.Name))
		case slices.Contains(h2Hop, f.Name), f.Name == "te":
			bad = append(bad, fmt.Sprintf("connection-specific field %s: %s (RFC 9113 8.2.2)", f.Name, f.Value))
		}
		regular = true
	}
	return bad
}

// h2Compared is an answer as the HTTP/2 run and the event loop's are
// compared: the status, the fields in order with lower-case names, the
// body and the trailers. What differs by protocol is left out: the reason
// phrase (HTTP/2 has only :status), connection-specific fields (h2Hop:
// HTTP/2 forbids them), Date's value (masked as in masked),
// Content-Length where it frames the body (HTTP/1.1 needs it, in HTTP/2
// the DATA frames end the body and the field is optional, RFC 9113 8.1.1;
// where the answer has no body, HEAD or 304, it describes the content and
// is compared), the body's framing, and whether the connection closed
// after the answer (an HTTP/1.1 engine closes it after a refusal whose
// body it did not read; an HTTP/2 engine ends the stream, RFC 9113 8.1,
// and each run's check holds it to that).
func (a *parityAnswer) h2Compared(id string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "status %d\n", a.status)
	if len(a.interim) > 0 {
		fmt.Fprintf(&b, "interim %v\n", a.interim)
	}
	var fields []parityHdr
	for _, h := range a.headers {
		name := strings.ToLower(h.name)
		switch {
		case slices.Contains(h2Hop, name):
			continue
		case name == "content-length" && a.framing != "none" && h.value == strconv.Itoa(len(a.body)):
			continue
		case name == "date":
			fields = append(fields, parityHdr{name, "<date>"})
			continue
		}
		fields = append(fields, parityHdr{name, h.value})
	}
	// Only the order of fields of the same name means something (RFC
	// 9110 5.3); fasthttp keeps Set-Cookie apart and the HTTP/1.1
	// serializer writes it last, the HTTP/2 engine where All yields it.
	slices.SortStableFunc(fields, func(x, y parityHdr) int { return strings.Compare(x.name, y.name) })
	for _, f := range fields {
		b.WriteString(f.name + ": " + f.value + "\n")
	}
	fmt.Fprintf(&b, "body %q\n", a.body)
	for _, h := range a.trailers {
		b.WriteString("trailer " + strings.ToLower(h.name) + ": " + h.value + "\n")
	}
	if a.err != nil {
		fmt.Fprintf(&b, "[read error: %v]\n", a.err)
	}
	return maskIDs(b.String(), id)
}

// h2Differences compares the HTTP/2 run h with the event loop's run l.
func h2Differences(l, h *parityRun) []string {
	var out []string
	diff := func(what, x, y string) {
		if x != y {
			x, y = excerpts(x, y)
			out = append(out, fmt.Sprintf("HTTP/2 differs from HTTP/1.1 in %s:\n  %s: %s\n  %s: %s", what, l.engine, x, h.engine, y))
		}
	}
	diff("the answer", l.answer.h2Compared(l.id), h.answer.h2Compared(h.id))
	recs := func(r *parityRun) string {
		var s []string
		for _, rec := range r.records {
			s = append(s, rec.compared(r.id, r.addrs))
		}
		return strings.Join(s, " | ")
	}
	diff("the access log", recs(l), recs(h))
	diff("the metrics", strings.Join(l.series, ", "), strings.Join(h.series, ", "))
	diff("what the backends received", fmt.Sprintf("%q", l.received), fmt.Sprintf("%q", h.received))
	diff("the heads the backends received", sortedHeads(l.heads), sortedHeads(h.heads))
	return out
}

// sortedHeads renders heads (parityRun.heads) with each head's field
// lines sorted: only the order of fields of the same name means something
// (RFC 9110 5.3), and the HTTP/2 engine builds the HTTP/1.1 request in
// fasthttp's order (Cookie last), where the event loop keeps the client's.
func sortedHeads(heads [][]string) string {
	var out [][]string
	for _, hs := range heads {
		var rendered []string
		for _, h := range hs {
			lines := strings.Split(strings.TrimSuffix(h, "\r\n\r\n"), "\r\n")
			slices.Sort(lines[1:])
			rendered = append(rendered, strings.Join(lines, "\r\n"))
		}
		out = append(out, rendered)
	}
	return fmt.Sprintf("%q", out)
}
