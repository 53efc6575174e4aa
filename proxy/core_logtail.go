package proxy

import (
	"bytes"
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"frontdoor/metrics"
)

// Following the access log (GET /logs?follow=1 on the admin listener).
//
// The access log's writer goroutine hands every line it writes to the
// hub, which copies it into the buffer of each follower whose filter it
// matches; the follower's own goroutine (the admin request) takes the
// buffer and writes it to its client. The request path does nothing more
// than when nobody follows: filters run on the writer goroutine, over keys
// the formatter noted (lineKeys). A follower holds at most followerBuffer
// bytes; a line that does not fit is counted as lost, and the follower
// tells its client how many it lost. Neither a slow follower nor a stuck
// one ever holds up the writer, let alone a request.

// followerBuffer bounds the bytes waiting for one follower.
const followerBuffer = 256 << 10

// logHub is an access log's set of followers. The writer reads the set
// without a lock; adding and removing copy it.
type logHub struct {
	mu     sync.Mutex
	subs   atomic.Pointer[[]*follower]
	n      atomic.Int32
	closed bool
}

// Follow implements metrics.LogSource: it returns a stream of the lines
// that match f, from now on. Safe for concurrent use.
func (a *AccessLog) Follow(f metrics.LogFilter) metrics.LogStream {
	fl := &follower{filter: compileFilter(f), ready: make(chan struct{}, 1), hub: &a.hub}
	a.hub.add(fl)
	return fl
}

func (h *logHub) add(f *follower) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		f.closed = true
		return
	}
	var subs []*follower
	if p := h.subs.Load(); p != nil {
		subs = append(subs, *p...)
	}
	subs = append(subs, f)
	h.subs.Store(&subs)
	h.n.Store(int32(len(subs)))
}

func (h *logHub) remove(f *follower) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.subs.Load()
	if p == nil {
		return
	}
	subs := make([]*follower, 0, len(*p))
	for _, s := range *p {
		if s != f {
			subs = append(subs, s)
		}
	}
	h.subs.Store(&subs)
	h.n.Store(int32(len(subs)))
}

// publish hands ln to every follower it matches (the writer goroutine).
func (h *logHub) publish(ln *logLine) {
	p := h.subs.Load()
	if p == nil {
		return
	}
	for _, f := range *p {
		if f.filter.match(ln) {
			f.push(ln.b)
		}
	}
}

// wake tells the followers that got lines since the last wake.
func (h *logHub) wake() {
	p := h.subs.Load()
	if p == nil {
		return
	}
	for _, f := range *p {
		if f.pending.Swap(false) {
			select {
			case f.ready <- struct{}{}:
			default:
			}
		}
	}
}

// closeAll ends every follower (the log stopped).
func (h *logHub) closeAll() {
	h.mu.Lock()
	h.closed = true
	p := h.subs.Swap(nil)
	h.n.Store(0)
	h.mu.Unlock()
	if p == nil {
		return
	}
	for _, f := range *p {
		f.mu.Lock()
		f.closed = true
		f.mu.Unlock()
		select {
		case f.ready <- struct{}{}:
		default:
		}
	}
}

// follower is one reader of the access log: metrics.LogStream.
type follower struct {
	filter  lineFilter
	hub     *logHub
	ready   chan struct{}
	pending atomic.Bool

	mu     sync.Mutex
	buf    []byte // lines waiting for Next
	spare  []byte // the buffer Next returned last
	lost   int64
	closed bool
}

func (f *follower) push(line []byte) {
	f.mu.Lock()
	if len(f.buf)+len(line) > followerBuffer {
		f.lost++
	} else {
		f.buf = append(f.buf, line...)
	}
	f.mu.Unlock()
	f.pending.Store(true)
}

// Next implements metrics.LogStream.
func (f *follower) Next(ctx context.Context) ([]byte, int64, error) {
	for {
		f.mu.Lock()
		if len(f.buf) > 0 || f.lost > 0 {
			out, lost := f.buf, f.lost
			f.buf, f.spare, f.lost = f.spare[:0], out, 0
			f.mu.Unlock()
			return out, lost, nil
		}
		closed := f.closed
		f.mu.Unlock()
		if closed {
			return nil, 0, io.EOF
		}
		select {
		case <-f.ready:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}

// Close implements metrics.LogStream.
func (f *follower) Close() {
	f.hub.remove(f)
	f.mu.Lock()
	f.closed = true
	f.buf, f.spare = nil, nil
	f.mu.Unlock()
	select {
	case f.ready <- struct{}{}:
	default:
	}
}

// lineFilter is a metrics.LogFilter compiled against lineKeys: strings in
// the escaped form the line holds them in; nil matches anything.
type lineFilter struct {
	id, route, pool, backend []byte
	class, status            int
	min                      time.Duration
}

func compileFilter(f metrics.LogFilter) lineFilter {
	esc := func(s string) []byte {
		if s == "" {
			return nil
		}
		b := appendJSONStr(nil, s)
		return b[1 : len(b)-1]
	}
	return lineFilter{id: esc(f.RequestID), route: esc(f.Route), pool: esc(f.Pool), backend: esc(f.Backend),
		class: f.StatusClass, status: f.Status, min: f.MinDuration}
}

func (lf *lineFilter) match(ln *logLine) bool {
	k, b := &ln.keys, ln.b
	switch {
	case lf.id != nil && !bytes.Equal(k.id.of(b), lf.id),
		lf.route != nil && !bytes.Equal(k.route.of(b), lf.route),
		lf.pool != nil && !bytes.Equal(k.pool.of(b), lf.pool),
		lf.class != 0 && (k.status == 0 || k.status/100 != lf.class),
		lf.status != 0 && k.status != lf.status,
		k.duration < lf.min:
		return false
	}
	if lf.backend == nil || bytes.Equal(k.backend.of(b), lf.backend) {
		return true
	}
	for _, s := range k.tried[:k.nTried] {
		if bytes.Equal(s.of(b), lf.backend) {
			return true
		}
	}
	return false
}
