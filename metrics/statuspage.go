package metrics

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"time"
)

// statusPageHTML is the live status page served at / on the admin
// listener: plain HTML, CSS and a little JavaScript (no framework) that
// follows GET /status/events and renders each /status document.
//
//go:embed statuspage.html
var statusPageHTML []byte

// statusPage serves / and /status/events.
type statusPage struct {
	status func() any
	every  time.Duration
}

func (p *statusPage) page(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
	_, _ = w.Write(statusPageHTML)
}

// events streams /status as server-sent events: one "data:" event with the
// JSON document at once, then one every StatusEvery, until the client
// leaves.
func (p *statusPage) events(w http.ResponseWriter, r *http.Request) {
	every := p.every
	if every <= 0 {
		every = time.Second
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	rc := http.NewResponseController(w)
	t := time.NewTicker(every)
	defer t.Stop()
	// The page reconnects by itself after a restart: tell it how soon.
	out := []byte("retry: 1000\n\n")
	for {
		var v any = struct{}{}
		if p.status != nil {
			v = p.status()
		}
		js, err := json.Marshal(v)
		if err != nil {
			return
		}
		out = append(out, "data: "...)
		out = append(out, js...)
		out = append(out, "\n\n"...)
		_ = rc.SetWriteDeadline(time.Now().Add(logWriteTimeout))
		if _, err := w.Write(out); err != nil || rc.Flush() != nil {
			return
		}
		out = out[:0]
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
	}
}
