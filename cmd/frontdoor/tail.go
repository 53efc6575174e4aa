package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"frontdoor/metrics"
)

const tailUsage = `usage: frontdoor tail [-admin ADDR] [-token-file FILE] [filters]

Follows the access log of a running frontdoor (GET /logs?follow=1 on the
admin listener) and prints each line readably, in colour on a terminal.
Filters are applied by the server: only matching lines cross the wire.

filters:
  -id ID             one request (its X-Request-ID or traceparent trace-id)
  -route ROUTE       a route as the access line names it (host + path_prefix)
  -pool POOL         a pool
  -backend ADDR      a backend, as the final attempt or any one tried
  -status S          a status class (5xx) or one status (503)
  -min-duration D    requests that took at least D (250ms)

-json prints the lines as they come (NDJSON). Exit status 0 on Ctrl-C,
1 when the admin listener cannot be reached or goes away.
`

// runTail is "frontdoor tail".
func runTail(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("frontdoor tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, tailUsage, "\nflags:\n"); fs.PrintDefaults() }
	admin := fs.String("admin", "127.0.0.1:9901", "admin listener address (admin.bind)")
	tokenFile := fs.String("token-file", "", "file holding the admin bearer token (admin.token_file), when the daemon has one")
	var f metrics.LogFilter
	fs.StringVar(&f.RequestID, "id", "", "request ID")
	fs.StringVar(&f.Route, "route", "", "route (host + path_prefix)")
	fs.StringVar(&f.Pool, "pool", "", "pool")
	fs.StringVar(&f.Backend, "backend", "", "backend address")
	status := fs.String("status", "", "status class (5xx) or status (503)")
	fs.DurationVar(&f.MinDuration, "min-duration", 0, "minimum duration (250ms)")
	raw := fs.Bool("json", false, "print the NDJSON lines as they come")
	color := fs.String("color", "auto", "colours: auto (on a terminal), always, never")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "frontdoor tail: unexpected argument %q\n", fs.Arg(0))
		return 1
	}
	if *status != "" {
		sf, err := metrics.ParseLogFilter(map[string][]string{"status": {*status}})
		if err != nil {
			fmt.Fprintln(stderr, "frontdoor tail:", err)
			return 1
		}
		f.StatusClass, f.Status = sf.StatusClass, sf.Status
	}
	var tok string
	if *tokenFile != "" {
		t, err := metrics.ReadTokenFile(*tokenFile)
		if err != nil {
			fmt.Fprintln(stderr, "frontdoor tail:", err)
			return 1
		}
		tok = string(t)
	}
	p := &tailPrinter{out: stdout, raw: *raw}
	switch *color {
	case "always":
		p.color = true
	case "auto":
		p.color = isTerminal(stdout)
	case "never":
	default:
		fmt.Fprintf(stderr, "frontdoor tail: -color %q: want auto, always or never\n", *color)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := followLogs(ctx, "http://"+*admin, tok, f, p.print, func(u string) {
		fmt.Fprintln(stderr, "frontdoor tail: following", u)
	})
	if ctx.Err() != nil {
		return 0
	}
	fmt.Fprintln(stderr, "frontdoor tail:", err)
	return 1
}

// followLogs reads GET /logs?follow=1 with filter f and calls line for
// each NDJSON line until ctx ends or the stream does.
// started, when not nil, is called once the stream is open.
func followLogs(ctx context.Context, base, token string, f metrics.LogFilter, line func([]byte), started func(url string)) error {
	u := base + "/logs?follow=1"
	if q := f.Query(); q != "" {
		u += "&" + q
	}
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return fmt.Errorf("follow %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("follow %s: %s: %s", u, resp.Status, strings.TrimSpace(string(msg)))
	}
	if started != nil {
		started(u)
	}
	r := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		b, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: gather it.
			full := append([]byte(nil), b...)
			for errors.Is(err, bufio.ErrBufferFull) {
				b, err = r.ReadSlice('\n')
				full = append(full, b...)
			}
			b = full
		}
		if len(b) > 0 && err == nil {
			line(b)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("the admin listener ended the stream (frontdoor stopped?)")
			}
			return err
		}
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// tailPrinter prints access lines for a person.
type tailPrinter struct {
	out   io.Writer
	raw   bool
	color bool
}

// tailLine is what tail shows of an access line.
type tailLine struct {
	Time       string  `json:"time"`
	Mode       string  `json:"mode"`
	RequestID  string  `json:"request_id"`
	Listener   string  `json:"listener"`
	Route      string  `json:"route"`
	Pool       string  `json:"pool"`
	Method     string  `json:"method"`
	Host       string  `json:"host"`
	Path       string  `json:"path"`
	Status     int     `json:"status"`
	GRPCMethod string  `json:"grpc_method"`
	GRPCStatus *int    `json:"grpc_status"`
	Backend    string  `json:"backend"`
	Retries    int     `json:"retries"`
	Client     string  `json:"client"`
	BytesIn    int64   `json:"bytes_in"`
	BytesOut   int64   `json:"bytes_out"`
	Connect    float64 `json:"connect"`
	TTFB       float64 `json:"ttfb"`
	Duration   float64 `json:"duration"`
	Reason     string  `json:"reason"`
	JWTSub     string  `json:"jwt_sub"`
	Tried      []struct {
		Backend string  `json:"backend"`
		Outcome string  `json:"outcome"`
		Status  int     `json:"status"`
		Time    float64 `json:"time"`
	} `json:"tried"`
	Lost *int64 `json:"lost"`
}

const (
	ansiReset  = "\x1b[0m"
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
	ansiBold   = "\x1b[1m"
)

func (p *tailPrinter) paint(code, s string) string {
	if !p.color || s == "" {
		return s
	}
	return code + s + ansiReset
}

func (p *tailPrinter) print(b []byte) {
	if p.raw {
		_, _ = p.out.Write(b)
		return
	}
	var l tailLine
	if err := json.Unmarshal(b, &l); err != nil {
		_, _ = p.out.Write(b)
		return
	}
	_, _ = io.WriteString(p.out, p.format(&l)+"\n")
}

// format renders one line, e.g.
//
//	10:38:45.168 504 GET api.test/v1/users 150.3ms web /v1/ → api 10.0.0.2:80  retry 1: 10.0.0.1:80 connect_error 0.2ms, 10.0.0.2:80 response_timeout 150.1ms  timeout  id 4bf9…
func (p *tailPrinter) format(l *tailLine) string {
	if l.Lost != nil {
		return p.paint(ansiYellow, fmt.Sprintf("-- %d lines lost: this tail read too slowly --", *l.Lost))
	}
	var b strings.Builder
	ts := l.Time
	if t, err := time.Parse(time.RFC3339Nano, l.Time); err == nil {
		ts = t.Local().Format("15:04:05.000")
	}
	b.WriteString(p.paint(ansiDim, ts))
	b.WriteByte(' ')
	if l.Mode == "tcp" {
		b.WriteString(p.paint(ansiCyan, "tcp"))
		fmt.Fprintf(&b, " %s → %s %s  %s in, %s out  %s  %s  client %s",
			l.Listener, l.Pool, orDash(l.Backend), bytesText(l.BytesIn), bytesText(l.BytesOut),
			durText(l.Duration), p.reason(l.Reason, l.Reason != "client_closed" && l.Reason != "backend_closed"), l.Client)
		p.tried(&b, l)
		return b.String()
	}
	st := strconv.Itoa(l.Status)
	switch {
	case l.Status >= 500:
		st = p.paint(ansiRed+ansiBold, st)
	case l.Status >= 400:
		st = p.paint(ansiYellow, st)
	case l.Status >= 300:
		st = p.paint(ansiCyan, st)
	default:
		st = p.paint(ansiGreen, st)
	}
	b.WriteString(st)
	if l.GRPCStatus != nil {
		fmt.Fprintf(&b, " grpc-status %d", *l.GRPCStatus)
	}
	fmt.Fprintf(&b, " %s %s%s %s", l.Method, l.Host, l.Path, durText(l.Duration))
	if l.TTFB > 0 {
		fmt.Fprintf(&b, " (ttfb %s)", durText(l.TTFB))
	}
	fmt.Fprintf(&b, "  %s %s → %s %s", l.Listener, orDash(l.Route), orDash(l.Pool), orDash(l.Backend))
	p.tried(&b, l)
	if l.Reason != "" {
		b.WriteString("  " + p.reason(l.Reason, true))
	}
	if l.JWTSub != "" {
		b.WriteString("  sub " + l.JWTSub)
	}
	b.WriteString("  " + p.paint(ansiDim, "id "+l.RequestID))
	return b.String()
}

func (p *tailPrinter) reason(r string, bad bool) string {
	if bad {
		return p.paint(ansiRed, r)
	}
	return r
}

// tried lists the attempts when there was more than one.
func (p *tailPrinter) tried(b *strings.Builder, l *tailLine) {
	if len(l.Tried) < 2 {
		return
	}
	fmt.Fprintf(b, "  tried %d:", len(l.Tried))
	for i, a := range l.Tried {
		if i > 0 {
			b.WriteByte(',')
		}
		out := a.Outcome
		if a.Status > 0 {
			out += " " + strconv.Itoa(a.Status)
		}
		fmt.Fprintf(b, " %s %s", a.Backend, p.reason(out, a.Outcome != "answered" && a.Outcome != "connected"))
		if a.Time > 0 {
			b.WriteString(" " + durText(a.Time))
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func durText(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 0, 64) + "µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(sec, 'f', 2, 64) + "s"
}

func bytesText(n int64) string {
	switch {
	case n < 1<<10:
		return strconv.FormatInt(n, 10) + " B"
	case n < 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	}
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}
