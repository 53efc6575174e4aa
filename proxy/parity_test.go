package proxy

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The parity suite (issue 16, STYLE.md 6): one table of cases
// (parity_cases_test.go), each a raw request and scripted backends, runs
// through a Proxy whose listener serves with the event loop and again
// through one that serves every connection with the goroutine engine
// (Options.goroutineOnly). Each run is reduced to what a user can observe:
// the answer's bytes (Date's value masked), the access log record, the
// deltas of requests_total, upstream_errors_total and retries_total, and
// what the backends received. A case passes when both runs meet its
// expectation and agree with each other.
//
// A divergence that is intended, or a defect not fixed yet, is listed in
// knownDivergences with its reason; the test logs it instead of failing.
// An entry whose case passes fails the test, so the list cannot rot.
//
// Every case whose request can be said in HTTP/2 runs a third time, as
// HTTP/2 through the HTTP/2 engine (parity_h2_test.go): notHTTP2 lists the
// others and why, h2Divergences the engine's defects the suite found.

// knownDivergences are the cases in which the engines may differ or miss
// the expectation, by name, with the reason: an intended difference, or a
// defect found and not fixed yet. The twelve defects the suite found when
// it was written (header order, Date, trailers, the retried answer,
// Connection: close on frontdoor's own answers, the time, ID and fields of
// error records, the h2c route) are fixed in the core, for both engines.
var knownDivergences = map[string]string{}

// parityEngines are the two ways a listener serves plain HTTP/1.1. "loop"
// is a listener with event loops, which hand what they do not serve (a
// head they cannot parse or that is too large, a body above 8 KiB, a
// route to h2c backends) to the goroutine engine, as in production.
var parityEngines = []struct {
	name          string
	goroutineOnly bool
}{
	{"loop", false},
	{"goroutine", true},
}

func TestParity(t *testing.T) {
	t.Parallel()
	cases := parityCases(t)
	names := map[string]bool{}
	for _, tc := range cases {
		if names[tc.name] {
			t.Fatalf("two cases are named %q", tc.name)
		}
		names[tc.name] = true
	}
	for list, m := range map[string][]string{
		"knownDivergences": slices.Collect(maps.Keys(knownDivergences)),
		"notHTTP2":         slices.Collect(maps.Keys(notHTTP2)),
		"h2Divergences":    slices.Collect(maps.Keys(h2Divergences)),
	} {
		for _, name := range m {
			if !names[name] {
				t.Errorf("%s names no case: %q", list, name)
			}
		}
	}
	for name, ds := range h2Divergences {
		if _, ok := notHTTP2[name]; ok {
			t.Errorf("%q is in notHTTP2 and in h2Divergences", name)
		}
		seen := map[*h2Defect]bool{}
		for _, d := range ds {
			if seen[d] {
				t.Errorf("h2Divergences[%q] lists a defect twice: %s", name, d.what)
			}
			seen[d] = true
		}
		if len(ds) == 0 {
			t.Errorf("h2Divergences[%q] lists no defect", name)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, skipH2 := notHTTP2[tc.name]
			if !skipH2 {
				if _, err := h2RequestOf(tc.req); err != nil {
					t.Fatalf("the request has no HTTP/2 form (%v): list the case in notHTTP2 with the reason", err)
				}
			}
			var runs []*parityRun
			for _, e := range parityEngines {
				runs = append(runs, startParityRun(t, tc, e.name, e.goroutineOnly))
			}
			var h2 *parityRun
			if !skipH2 {
				// HTTP/2 connections reach the HTTP/2 engine from the
				// event loop, as in production.
				h2 = startParityRun(t, tc, "h2", false)
			}
			// The slow parts (timeouts, the wait for a close, the drain)
			// of the runs overlap.
			var wg sync.WaitGroup
			for _, r := range runs {
				wg.Go(r.exchange)
			}
			if h2 != nil {
				wg.Go(h2.exchangeH2)
			}
			wg.Wait()
			var problems []string
			checked := map[string]bool{} // the event loop's problems
			for _, r := range runs {
				r.collect(t)
				for _, p := range tc.want.check(r) {
					problems = append(problems, r.engine+": "+p)
					checked[r.engine+": "+p] = true
				}
			}
			problems = append(problems, differences(runs[0], runs[1])...)
			reason, known := knownDivergences[tc.name]
			switch {
			case len(problems) > 0 && known:
				t.Logf("known divergence: %s\n%s", reason, strings.Join(problems, "\n"))
			case len(problems) > 0:
				t.Errorf("%s", strings.Join(problems, "\n"))
			case known:
				t.Errorf("stale entry in knownDivergences: both engines now meet the expectation and agree; delete it (%s)", reason)
			}
			if h2 == nil {
				return
			}
			h2.collect(t)
			for _, d := range h2Divergences[tc.name] {
				if d.undo(runs[0], h2) {
					t.Logf("known HTTP/2 divergence: %s", d.what)
				} else {
					t.Errorf("stale entry in h2Divergences: the HTTP/2 engine no longer shows this defect here; delete it from the case (%s)", d.what)
				}
			}
			problems = nil
			for _, p := range tc.want.check(h2) {
				if known && checked["loop: "+p] {
					continue // a known defect of the core shows in every engine: listed once
				}
				problems = append(problems, "h2: "+p)
			}
			problems = append(problems, h2Differences(runs[0], h2)...)
			if len(problems) > 0 {
				t.Errorf("%s\nh2 frames:\n%s", strings.Join(problems, "\n"), h2.answer.raw)
			}
		})
	}
}

// parityRun is one case through one engine.
type parityRun struct {
	engine   string
	tc       *parityCase
	p        *testProxy
	backends []*parityBackend
	addrs    []string // the backends' addresses, in pool order
	readLog  func() string

	sent, done time.Time // the request was written; the exchange ended
	warmup     *parityAnswer
	answer     *parityAnswer
	drainErr   error

	id       string // the answer's X-Request-ID
	records  []parityRecord
	logErr   error
	series   []string
	received [][]string // per backend: parityBackend.received
	heads    [][]string // per backend: parityBackend.heads
}

// startParityRun starts tc's backends and a proxy in front of them.
func startParityRun(t *testing.T, tc *parityCase, engine string, goroutineOnly bool) *parityRun {
	t.Helper()
	r := &parityRun{engine: engine, tc: tc}
	for _, s := range tc.backends {
		b := startParityBackend(t, s)
		r.backends = append(r.backends, b)
		r.addrs = append(r.addrs, b.addr)
	}
	access, read := testAccessLog(t)
	r.readLog = read
	r.p = upProxyWith(t, tc.toml(r.addrs), Options{AccessLog: access, goroutineOnly: goroutineOnly})
	if l := onlyListener(t, r.p); (len(l.ln.loops) == 0) != goroutineOnly {
		t.Fatalf("%s: the listener runs %d event loops", engine, len(l.ln.loops))
	}
	if tc.setup != nil {
		tc.setup(t, r)
	}
	return r
}

// exchange sends the case's request on a new connection, reads the answer,
// and drains the proxy, so that every record is written. It runs on a
// goroutine of its own and must not call t's methods.
func (r *parityRun) exchange() {
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
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	if w := r.tc.warmup; w != "" {
		if _, err := c.Write([]byte(w)); err != nil {
			r.warmup = &parityAnswer{err: err}
		} else {
			r.warmup = readParityAnswer(br, false)
		}
		// Far enough apart that a record stamped with the warm-up's
		// time shows.
		time.Sleep(300 * time.Millisecond)
	}
	r.sent = time.Now()
	if _, err := c.Write([]byte(r.tc.req)); err != nil {
		r.answer = &parityAnswer{err: err}
		return
	}
	r.answer = readParityAnswer(br, strings.HasPrefix(r.tc.req, "HEAD "))
	wait := 300 * time.Millisecond // the proxy closes at once, or not at all
	if r.tc.want.closed {
		wait = 3 * time.Second
	}
	r.answer.afterAnswer(c, br, wait)
	r.done = time.Now()
}

// collect reads the run's records, metrics and what its backends received.
func (r *parityRun) collect(t *testing.T) {
	t.Helper()
	r.id, _ = r.answer.one("X-Request-ID")
	r.records, r.logErr = parseRecords(r.readLog())
	r.series = paritySeries(t, r.p.reg, r.addrs)
	for _, b := range r.backends {
		r.received = append(r.received, b.received(r.id))
		r.heads = append(r.heads, b.heads(r.id))
	}
}

// record returns the record of the case's request (after the warm-up's),
// or nil with the problem.
func (r *parityRun) record() (*parityRecord, string) {
	want := 1
	if r.tc.warmup != "" {
		want = 2
	}
	switch {
	case r.logErr != nil:
		return nil, r.logErr.Error()
	case len(r.records) != want:
		var lines []string
		for _, rec := range r.records {
			lines = append(lines, rec.compared(r.id, r.addrs))
		}
		return nil, fmt.Sprintf("%d access log records, want %d: %q", len(r.records), want, lines)
	}
	return &r.records[want-1], ""
}

// differences compares what two runs of a case observed.
func differences(a, b *parityRun) []string {
	var out []string
	diff := func(what, x, y string) {
		if x != y {
			x, y = excerpts(x, y)
			out = append(out, fmt.Sprintf("the engines differ in %s:\n  %s: %s\n  %s: %s", what, a.engine, x, b.engine, y))
		}
	}
	diff("the answer", fmt.Sprintf("%q", a.answer.masked(a.id)), fmt.Sprintf("%q", b.answer.masked(b.id)))
	recs := func(r *parityRun) string {
		var s []string
		for _, rec := range r.records {
			s = append(s, rec.compared(r.id, r.addrs))
		}
		return strings.Join(s, " | ")
	}
	diff("the access log", recs(a), recs(b))
	diff("the metrics", strings.Join(a.series, ", "), strings.Join(b.series, ", "))
	diff("what the backends received", fmt.Sprintf("%q", a.received), fmt.Sprintf("%q", b.received))
	diff("the heads the backends received", fmt.Sprintf("%q", a.heads), fmt.Sprintf("%q", b.heads))
	return out
}

// parityWant is what a case expects of each engine.
type parityWant struct {
	status int
	// fd is the message of an answer frontdoor makes itself (its body is
	// "frontdoor: <fd>[ in pool s] (request <id>)\n", text/plain); "" for
	// a backend's answer. fdPool: the message names pool s.
	fd     string
	fdPool bool
	// A backend's answer: its body, as decoded, and framing ("length",
	// "chunked", "none").
	body    string
	framing string
	// has: "Name: value", the header present once with that value. lacks:
	// header names that must be absent. trailers: "Name: value" of the
	// chunked body's trailer section, in order.
	has      []string
	lacks    []string
	trailers []string
	// closed: the proxy closes the connection after the answer, saying
	// so (Connection: close); else it keeps it open.
	closed bool
	// id is the request ID the answer, the record and the backend carry;
	// "" for one frontdoor makes (32 hex digits).
	id string
	// rec is the record of the request. Its status is the answer's; for
	// frontdoor's own answers bytes_out is the length of its body.
	rec parityRec
	// metrics are the non-zero series after the request (paritySeries).
	metrics []string
	// received is, per backend, what it received (parityBackend.received,
	// with {id} for the request ID).
	received [][]string
	// free: the answer's status, body and framing, the record's status,
	// reason and byte counts, and the metrics are left to more, which
	// returns what else is wrong.
	free bool
	more func(r *parityRun) []string
}

// parityRec is the expected part of a record.
type parityRec struct {
	reason, route, host, path, method, backend string
	bytesIn, bytesOut                          int
}

// check returns what r's observations get wrong.
func (w *parityWant) check(r *parityRun) []string {
	var bad []string
	badf := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	a := r.answer
	if r.warmup != nil && (r.warmup.err != nil || r.warmup.status != 200) {
		badf("warm-up answer %d, %v", r.warmup.status, r.warmup.err)
	}
	if r.drainErr != nil {
		badf("drain after the exchange: %v", r.drainErr)
	}
	if a.err != nil {
		badf("answer: %v (read %q)", a.err, a.raw)
		return bad
	}

	// The answer.
	id := r.id
	switch {
	case w.id != "" && id != w.id:
		badf("X-Request-ID %q, want the client's %q", a.get("X-Request-ID"), w.id)
	case w.id == "" && !isNewID(id):
		badf("X-Request-ID %q, want one new ID", a.get("X-Request-ID"))
	}
	wantBody, framing := w.body, w.framing
	has := slices.Clone(w.has)
	lacks := append([]string{"Server"}, w.lacks...)
	if w.fd != "" {
		wantBody = "frontdoor: " + w.fd
		if w.fdPool {
			wantBody += " in pool s"
		}
		wantBody += " (request " + id + ")\n"
		framing = "length"
		has = append(has, "Content-Type: text/plain; charset=utf-8")
		if strings.HasPrefix(r.tc.req, "HEAD ") {
			// The answer to HEAD has the length of the GET's, and no
			// body (RFC 9110 9.3.2).
			has = append(has, "Content-Length: "+strconv.Itoa(len(wantBody)))
			wantBody, framing = "", "none"
		}
	}
	closed := w.closed
	switch {
	case a.h2:
		// An HTTP/2 answer ends its stream, never the connection (RFC
		// 9113 8.1); it has no Connection field (8.2.2) and its body no
		// framing of its own: DATA frames, or none.
		closed = false
		if framing != "none" {
			framing = "data"
		}
	case w.closed:
		has = append(has, "Connection: close")
	default:
		lacks = append(lacks, "Connection")
	}
	if !w.free {
		if a.status != w.status {
			badf("status %d, want %d", a.status, w.status)
		}
		if string(a.body) != wantBody {
			badf("body %q, want %q", a.body, wantBody)
		}
		if a.framing != framing {
			badf("body framing %s, want %s", a.framing, framing)
		}
	}
	for _, h := range has {
		name, value, _ := strings.Cut(h, ": ")
		if a.h2 && strings.EqualFold(name, "Content-Length") && a.framing == "data" && len(a.get(name)) == 0 {
			continue // optional in HTTP/2, where DATA frames end the body (RFC 9113 8.1.1)
		}
		if got, ok := a.one(name); !ok || got != value {
			badf("header %s: %q, want %q once", name, a.get(name), value)
		}
	}
	for _, name := range lacks {
		if vs := a.get(name); len(vs) > 0 {
			badf("header %s: %q, want none", name, vs)
		}
	}
	if d, ok := a.one("Date"); !ok {
		badf("Date %q, want one (RFC 9110 6.6.1)", a.get("Date"))
	} else if _, err := http.ParseTime(d); err != nil {
		badf("Date %q: %v", d, err)
	}
	var trailers []string
	for _, h := range a.trailers {
		trailers = append(trailers, h.name+": "+h.value)
	}
	wantTrailers := w.trailers
	if a.h2 {
		wantTrailers = nil
		for _, h := range w.trailers {
			name, value, _ := strings.Cut(h, ": ")
			wantTrailers = append(wantTrailers, strings.ToLower(name)+": "+value)
		}
	}
	if !slices.Equal(trailers, wantTrailers) {
		badf("trailers %q, want %q", trailers, wantTrailers)
	}
	if a.closed != closed {
		badf("connection closed after the answer: %v, want %v", a.closed, closed)
	}
	if len(a.extra) > 0 {
		badf("bytes after the answer: %q", a.extra)
	}
	for _, p := range a.wire {
		badf("HTTP/2 framing: %s", p)
	}
	if len(a.interim) > 0 {
		badf("interim answers %v relayed, want none (the HTTP/1.1 engines drop them)", a.interim)
	}

	// The record.
	if rec, why := r.record(); rec == nil {
		badf("%s", why)
	} else {
		bad = append(bad, rec.saneTime(r.sent, r.done)...)
		got := *rec
		want := parityRecord{Status: a.status, Reason: w.rec.reason, Route: w.rec.route, Host: w.rec.host, Path: w.rec.path,
			Method: w.rec.method, RequestID: id, Backend: w.rec.backend, BytesIn: w.rec.bytesIn, BytesOut: w.rec.bytesOut}
		if w.fd != "" {
			want.BytesOut = len(wantBody)
		}
		if w.free {
			want.Reason, want.BytesIn, want.BytesOut = got.Reason, got.BytesIn, got.BytesOut
		}
		if got.Backend != "" {
			got.Backend = backendName(got.Backend, r.addrs)
		}
		if g, e := got.compared(id, nil), want.compared(id, nil); g != e {
			badf("record\n    %s\n  want\n    %s", g, e)
		}
	}

	if !w.free && !slices.Equal(r.series, w.metrics) {
		badf("metrics %q, want %q", r.series, w.metrics)
	}
	for i := range r.backends {
		var want []string
		if i < len(w.received) {
			want = w.received[i]
		}
		if !slices.Equal(r.received[i], want) {
			badf("backend b%d received %q, want %q", i, r.received[i], want)
		}
	}
	if w.more != nil {
		bad = append(bad, w.more(r)...)
	}
	return bad
}

func isNewID(id string) bool { return len(id) == 32 && parityIDs.MatchString(id) }

// excerpts shortens two long strings that differ to where they begin to.
func excerpts(x, y string) (string, string) {
	const long, around = 1500, 300
	if len(x) <= long && len(y) <= long {
		return x, y
	}
	i := 0
	for i < len(x) && i < len(y) && x[i] == y[i] {
		i++
	}
	cut := func(s string) string {
		from, to := max(0, i-around), min(len(s), i+around)
		return fmt.Sprintf("…(%d bytes)…%s…(%d bytes)…", from, s[from:to], len(s)-to)
	}
	return cut(x), cut(y)
}
