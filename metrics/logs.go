package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// LogFilter selects the access lines GET /logs streams. A zero field
// matches every line.
type LogFilter struct {
	// RequestID matches the line's request_id exactly.
	RequestID string
	// Route and Pool match the line's route and pool exactly.
	Route, Pool string
	// Backend matches the backend of the final attempt or of any attempt
	// in tried.
	Backend string
	// StatusClass (1 to 5) matches the status's class (5 = 5xx); Status
	// matches one status exactly. A tcp session line has no status and
	// never matches either.
	StatusClass, Status int
	// MinDuration matches lines whose duration is at least this long.
	MinDuration time.Duration
}

// ParseLogFilter reads a LogFilter from /logs query parameters:
// request_id, route, pool, backend, status ("5xx" or "503") and
// min_duration (a Go duration, "250ms"). It fails naming the first bad
// value.
func ParseLogFilter(q map[string][]string) (LogFilter, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	f := LogFilter{RequestID: get("request_id"), Route: get("route"), Pool: get("pool"), Backend: get("backend")}
	if s := get("status"); s != "" {
		switch {
		case len(s) == 3 && s[0] >= '1' && s[0] <= '5' && (s[1:] == "xx" || s[1:] == "XX"):
			f.StatusClass = int(s[0] - '0')
		default:
			n, err := strconv.Atoi(s)
			if err != nil || n < 100 || n > 599 {
				return f, fmt.Errorf("status %q: want a class such as 5xx or a status such as 503", s)
			}
			f.Status = n
		}
	}
	if s := get("min_duration"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return f, fmt.Errorf("min_duration %q: want a Go duration such as 250ms", s)
		}
		f.MinDuration = d
	}
	return f, nil
}

// Query is f as /logs query parameters (without follow=1).
func (f LogFilter) Query() string {
	var b strings.Builder
	add := func(k, v string) {
		if v == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(queryEscape(v))
	}
	add("request_id", f.RequestID)
	add("route", f.Route)
	add("pool", f.Pool)
	add("backend", f.Backend)
	switch {
	case f.Status != 0:
		add("status", strconv.Itoa(f.Status))
	case f.StatusClass != 0:
		add("status", strconv.Itoa(f.StatusClass)+"xx")
	}
	if f.MinDuration > 0 {
		add("min_duration", f.MinDuration.String())
	}
	return b.String()
}

func queryEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.~:/", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// LogSource serves GET /logs: proxy.AccessLog implements it. Follow starts
// following the lines that match f from now on; the caller must Close the
// stream. It must be safe for concurrent use.
type LogSource interface {
	Follow(f LogFilter) LogStream
}

// LogStream is one follower of the access log. A follower that reads too
// slowly loses lines (they are counted) instead of holding up the log.
type LogStream interface {
	// Next waits until matching lines were written, the log ended
	// (io.EOF) or ctx is done (ctx's error). It returns whole NDJSON
	// lines, valid until the next call, and how many matching lines were
	// lost since the previous call because the follower fell behind. Call
	// it from one goroutine at a time.
	Next(ctx context.Context) (lines []byte, lost int64, err error)
	// Close stops following; Next then returns io.EOF.
	Close()
}

// logHeartbeat is how often an idle SSE stream gets a comment line, which
// also finds a client that went away.
const logHeartbeat = 15 * time.Second

// logWriteTimeout bounds one write to a follower: a client that takes
// nothing for this long is cut off (it was losing lines meanwhile).
const logWriteTimeout = 30 * time.Second

// logs serves GET /logs?follow=1&filters (NDJSON, or SSE with Accept:
// text/event-stream).
type logs struct {
	src   LogSource
	token func() []byte
	log   *slog.Logger
}

func (h *logs) serve(w http.ResponseWriter, r *http.Request) {
	if h.token != nil {
		if tok := h.token(); len(tok) > 0 && !authorized(r, tok) {
			h.log.Warn("admin /logs refused: missing or wrong bearer token", "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="frontdoor admin"`)
			http.Error(w, "missing or wrong bearer token (Authorization: Bearer TOKEN, the content of admin.token_file)", http.StatusUnauthorized)
			return
		}
	}
	if h.src == nil {
		http.Error(w, "no access log to follow", http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	if q.Get("follow") != "1" {
		http.Error(w, "/logs streams access lines as they are written: add follow=1", http.StatusBadRequest)
		return
	}
	f, err := ParseLogFilter(q)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	st := h.src.Follow(f)
	defer st.Close()
	if sse {
		w.Header().Set("Content-Type", "text/event-stream")
	} else {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if sse {
		_, _ = io.WriteString(w, ": following\n\n")
	}
	if rc.Flush() != nil {
		return
	}
	var out []byte
	for {
		ctx, cancel := context.WithTimeout(r.Context(), logHeartbeat)
		lines, lost, err := st.Next(ctx)
		cancel()
		out = out[:0]
		switch {
		case err == nil:
		case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
			if !sse {
				continue
			}
			out = append(out, ":\n\n"...)
		default:
			return
		}
		if lost > 0 {
			if sse {
				out = append(out, "event: lost\ndata: "...)
			}
			out = append(out, `{"lost":`...)
			out = strconv.AppendInt(out, lost, 10)
			out = append(out, "}\n"...)
			if sse {
				out = append(out, '\n')
			}
		}
		if sse {
			for len(lines) > 0 {
				i := bytes.IndexByte(lines, '\n')
				if i < 0 {
					i = len(lines) - 1
				}
				out = append(out, "data: "...)
				out = append(out, lines[:i]...)
				out = append(out, "\n\n"...)
				lines = lines[i+1:]
			}
		} else {
			out = append(out, lines...)
		}
		_ = rc.SetWriteDeadline(time.Now().Add(logWriteTimeout))
		if _, err := w.Write(out); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
	}
}
