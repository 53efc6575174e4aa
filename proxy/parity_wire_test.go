package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// The wire side of the parity suite (parity_test.go): the raw client, the
// scripted backends, and what each engine's run is reduced to before it is
// compared.

// parityHdr is one header field as it came on the wire.
type parityHdr struct{ name, value string }

// parityAnswer is what the raw client read after its request.
type parityAnswer struct {
	raw      []byte // the answer's bytes as received
	status   int
	headers  []parityHdr
	body     []byte // decoded from its framing
	trailers []parityHdr
	framing  string // "length", "chunked", "close" or "none"
	closed   bool   // the proxy closed the connection after the answer
	extra    []byte // bytes that came after the answer
	err      error  // the answer could not be read whole

	// An HTTP/2 answer (parity_h2_test.go): raw is a transcript of its
	// frames, framing "data" or "none", extra the frames after the
	// stream's end; interim are the 1xx statuses before the answer, wire
	// what in its frames breaks RFC 9113.
	h2      bool
	interim []int
	wire    []string
}

// get returns the values of header name, in order.
func (a *parityAnswer) get(name string) []string {
	var vs []string
	for _, h := range a.headers {
		if strings.EqualFold(h.name, name) {
			vs = append(vs, h.value)
		}
	}
	return vs
}

// one returns the value of header name when it is there exactly once.
func (a *parityAnswer) one(name string) (string, bool) {
	vs := a.get(name)
	if len(vs) != 1 {
		return "", false
	}
	return vs[0], true
}

// readParityAnswer reads one answer from br as it comes (no 1xx expected),
// keeping its raw bytes. head: the answer to a HEAD request.
func readParityAnswer(br *bufio.Reader, head bool) *parityAnswer {
	a := &parityAnswer{}
	line := func() (string, error) {
		s, err := br.ReadString('\n')
		a.raw = append(a.raw, s...)
		if err != nil {
			return s, err
		}
		return strings.TrimRight(s, "\r\n"), nil
	}
	fields := func(dst *[]parityHdr) error {
		for {
			l, err := line()
			if err != nil {
				return err
			}
			if l == "" {
				return nil
			}
			name, value, ok := strings.Cut(l, ":")
			if !ok {
				return fmt.Errorf("header line without a colon: %q", l)
			}
			*dst = append(*dst, parityHdr{name, strings.TrimSpace(value)})
		}
	}
	status, err := line()
	if err != nil {
		a.err = fmt.Errorf("status line: %w", err)
		return a
	}
	if f := strings.SplitN(status, " ", 3); len(f) < 2 || f[0] != "HTTP/1.1" {
		a.err = fmt.Errorf("status line %q", status)
		return a
	} else if a.status, err = strconv.Atoi(f[1]); err != nil {
		a.err = fmt.Errorf("status line %q", status)
		return a
	}
	if err := fields(&a.headers); err != nil {
		a.err = fmt.Errorf("head: %w", err)
		return a
	}
	cl, hasCL := a.one("Content-Length")
	te := a.get("Transfer-Encoding")
	switch {
	case head || a.status < 200 || a.status == 204 || a.status == 304:
		a.framing = "none"
	case len(te) > 0:
		a.framing = "chunked"
		if len(te) != 1 || !strings.EqualFold(te[0], "chunked") {
			a.err = fmt.Errorf("Transfer-Encoding %q", te)
			return a
		}
		for {
			l, err := line()
			if err != nil {
				a.err = fmt.Errorf("chunk size: %w", err)
				return a
			}
			size, err := strconv.ParseInt(strings.TrimSpace(strings.SplitN(l, ";", 2)[0]), 16, 32)
			if err != nil || size < 0 {
				a.err = fmt.Errorf("chunk size line %q", l)
				return a
			}
			if size == 0 {
				break
			}
			chunk := make([]byte, size+2)
			n, err := io.ReadFull(br, chunk)
			a.raw = append(a.raw, chunk[:n]...)
			if err != nil || string(chunk[size:]) != "\r\n" {
				a.err = fmt.Errorf("chunk of %d bytes: %v", size, err)
				return a
			}
			a.body = append(a.body, chunk[:size]...)
		}
		if err := fields(&a.trailers); err != nil {
			a.err = fmt.Errorf("trailer: %w", err)
			return a
		}
	case hasCL:
		a.framing = "length"
		n, err := strconv.Atoi(cl)
		if err != nil || n < 0 {
			a.err = fmt.Errorf("Content-Length %q", cl)
			return a
		}
		a.body = make([]byte, n)
		m, err := io.ReadFull(br, a.body)
		a.raw = append(a.raw, a.body[:m]...)
		if err != nil {
			a.err = fmt.Errorf("body of %d bytes: %w", n, err)
			a.body = a.body[:m]
			return a
		}
	default:
		a.framing = "close"
		b, err := io.ReadAll(br)
		a.raw = append(a.raw, b...)
		a.body = b
		a.closed = true
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			a.err = fmt.Errorf("close-delimited body: %w", err)
		}
	}
	return a
}

// afterAnswer finds out whether the proxy closes c after the answer within
// wait (EOF or a reset: closed; silence: open) and collects any bytes that
// come meanwhile.
func (a *parityAnswer) afterAnswer(c net.Conn, br *bufio.Reader, wait time.Duration) {
	if a.closed || a.err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 4096)
	for {
		n, err := br.Read(buf)
		a.extra = append(a.extra, buf[:n]...)
		var ne net.Error
		switch {
		case err == nil:
			continue
		case errors.As(err, &ne) && ne.Timeout():
		default: // io.EOF, ECONNRESET
			a.closed = true
		}
		return
	}
}

// parityIDs are request IDs as frontdoor makes them: 32 lower-case hex
// digits.
var parityIDs = regexp.MustCompile(`[0-9a-f]{32}`)

// masked returns the answer as the engines' answers are compared: Date's
// value masked, the answer's request ID written {id} and any other new ID
// {new-id}.
func (a *parityAnswer) masked(id string) string {
	head, body, _ := strings.Cut(string(a.raw), "\r\n\r\n")
	var b strings.Builder
	for l := range strings.SplitAfterSeq(head, "\n") {
		if name, _, ok := strings.Cut(l, ":"); ok && strings.EqualFold(name, "Date") {
			b.WriteString(name + ": <date>")
			if strings.HasSuffix(l, "\n") {
				b.WriteString("\r\n")
			}
			continue
		}
		b.WriteString(l)
	}
	if len(body) > 0 || strings.Contains(string(a.raw), "\r\n\r\n") {
		b.WriteString("\r\n\r\n" + body)
	}
	s := maskIDs(b.String(), id)
	if a.err != nil {
		s += fmt.Sprintf("\n[read error: %v]", a.err)
	}
	if len(a.extra) > 0 {
		s += fmt.Sprintf("\n[after the answer: %q]", a.extra)
	}
	return s + fmt.Sprintf("\n[connection closed: %v]", a.closed)
}

// maskIDs writes id as {id} and other frontdoor-made IDs as {new-id} in s,
// so runs that minted different IDs compare equal.
func maskIDs(s, id string) string {
	if id != "" {
		s = strings.ReplaceAll(s, id, "{id}")
	}
	return parityIDs.ReplaceAllString(s, "{new-id}")
}

// parityScript is what one backend does with each request it reads.
type parityScript struct {
	refuse bool   // not listening: connecting is refused
	answer string // written after reading a request
	then   string // after answering: "" reads the next request; "close", "reset" (RST), "hang" (until the proxy closes)
	// strict: the backend parses requests itself, strictly (strictBackend
	// in conformance_test.go), and answers each well-formed one with
	// answer; received lists strictRequest.line.
	strict bool
}

// parityBackend is a scripted backend of one run and what it received.
type parityBackend struct {
	addr   string
	mu     sync.Mutex
	seen   []*fasthttp.Request
	strict *strictBackend
}

func startParityBackend(t *testing.T, s parityScript) *parityBackend {
	t.Helper()
	b := &parityBackend{}
	if s.refuse {
		b.addr = refusingAddr(t)
		return b
	}
	if s.strict {
		b.strict = startStrictBackend(t, s.answer)
		b.addr = b.strict.addr
		return b
	}
	b.addr = startScripted(t, func(c net.Conn, _ int, req *fasthttp.Request) bool {
		cp := &fasthttp.Request{}
		req.CopyTo(cp)
		b.mu.Lock()
		b.seen = append(b.seen, cp)
		b.mu.Unlock()
		if s.answer != "" {
			if _, err := io.WriteString(c, s.answer); err != nil {
				return false
			}
		}
		switch s.then {
		case "close":
			return false
		case "reset":
			reset(c)
			return false
		case "hang":
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, _ = io.Copy(io.Discard, c)
			return false
		}
		return true
	}).addr
	return b
}

// received lists what b received, one line a request: the request line,
// the X-Request-ID and traceparent it carried, and the body.
func (b *parityBackend) received(id string) []string {
	if b.strict != nil {
		return b.strict.lines(id)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, r := range b.seen {
		s := fmt.Sprintf("%s %s %s id=%s", r.Header.Method(), r.Header.RequestURI(), r.Header.Protocol(), r.Header.Peek("X-Request-ID"))
		if tp := r.Header.Peek("traceparent"); len(tp) > 0 {
			s += " tp=" + string(tp)
		}
		if body := r.Body(); len(body) > 0 {
			s += fmt.Sprintf(" body=%q", body)
		}
		out = append(out, maskIDs(s, id))
	}
	return out
}

// heads lists the request heads b received as fasthttp renders them
// (names in canonical case, its order), IDs masked as in received; a
// strict backend's are not kept.
func (b *parityBackend) heads(id string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, r := range b.seen {
		out = append(out, maskIDs(r.Header.String(), id))
	}
	return out
}

// parityRecord is an access log line, with the fields the suite compares.
type parityRecord struct {
	Time      string  `json:"time"`
	RequestID string  `json:"request_id"`
	Listener  string  `json:"listener"`
	Route     string  `json:"route"`
	Method    string  `json:"method"`
	Host      string  `json:"host"`
	Path      string  `json:"path"`
	Status    int     `json:"status"`
	Backend   string  `json:"backend"`
	BytesIn   int     `json:"bytes_in"`
	BytesOut  int     `json:"bytes_out"`
	Duration  float64 `json:"duration"`
	Reason    string  `json:"reason"`
	Client    string  `json:"client"`
	Peer      string  `json:"peer"`
}

// parseRecords parses the access log's lines.
func parseRecords(log string) ([]parityRecord, error) {
	var recs []parityRecord
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		if l == "" {
			continue
		}
		var r parityRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			return recs, fmt.Errorf("access log line %q: %w", l, err)
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// compared is r as the engines' records are compared: what the suite
// compares, backends named b0, b1 (by their place in the pool), IDs
// masked as in masked. Time and duration are checked, not compared.
func (r parityRecord) compared(id string, backends []string) string {
	return maskIDs(fmt.Sprintf("status=%d reason=%q route=%q host=%q path=%q method=%q request_id=%q backend=%s bytes_in=%d bytes_out=%d",
		r.Status, r.Reason, r.Route, r.Host, r.Path, r.Method, r.RequestID, backendName(r.Backend, backends), r.BytesIn, r.BytesOut), id)
}

// saneTime reports what is wrong with r's time and duration for a request
// sent at sent (zero: not checked) and answered by done.
func (r parityRecord) saneTime(sent, done time.Time) []string {
	var bad []string
	at, err := time.Parse("2006-01-02T15:04:05.000Z07:00", r.Time)
	switch {
	case err != nil:
		bad = append(bad, fmt.Sprintf("record time %q: %v", r.Time, err))
	case !sent.IsZero() && at.Before(sent.Add(-50*time.Millisecond).Truncate(time.Millisecond)):
		bad = append(bad, fmt.Sprintf("record time %s is before the request was sent (%s)", r.Time, sent.UTC().Format(time.RFC3339Nano)))
	case at.After(done.Add(time.Second)) || at.Before(done.Add(-10*time.Second)):
		bad = append(bad, fmt.Sprintf("record time %s is not within seconds of now (%s)", r.Time, done.UTC().Format(time.RFC3339Nano)))
	}
	if r.Duration < 0 || r.Duration > 10 {
		bad = append(bad, fmt.Sprintf("record duration %v s", r.Duration))
	}
	return bad
}

func backendName(addr string, backends []string) string {
	if addr == "" {
		return `""`
	}
	for i, b := range backends {
		if b == addr {
			return "b" + strconv.Itoa(i)
		}
	}
	return addr
}

// paritySeries returns the non-zero series of requests_total,
// upstream_errors_total and retries_total in reg, sorted, with backends
// named as in compared.
func paritySeries(t *testing.T, reg *prometheus.Registry, backends []string) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		name := strings.TrimPrefix(mf.GetName(), "frontdoor_")
		var keys []string
		switch name {
		case "requests_total":
			keys = []string{"pool", "backend", "code"}
		case "upstream_errors_total":
			keys = []string{"pool", "backend", "reason"}
		case "retries_total":
			keys = []string{"pool"}
		default:
			continue
		}
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue()
			if v == 0 {
				continue
			}
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			var b bytes.Buffer
			b.WriteString(name + "{")
			for i, k := range keys {
				if i > 0 {
					b.WriteString(",")
				}
				val := strconv.Quote(labels[k])
				if k == "backend" && labels[k] != "" {
					val = backendName(labels[k], backends)
				}
				b.WriteString(k + "=" + val)
			}
			fmt.Fprintf(&b, "} %v", v)
			out = append(out, b.String())
		}
	}
	sort.Strings(out)
	return out
}
