package tcp

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"time"
)

// SessionLogger receives one SessionRecord per client connection when it
// closes (Options.SessionLog). LogSession is called on the session's
// goroutine; it must not keep rec after it returns, must not block, and
// must not allocate if the engine is to stay allocation-free.
type SessionLogger interface {
	LogSession(rec *SessionRecord)
}

// MaxSessionAttempts bounds the connect attempts a SessionRecord lists.
const MaxSessionAttempts = 4

// SessionRecord describes one session at its end.
type SessionRecord struct {
	// Listener and Pool name where the session came and went.
	Listener, Pool string
	// Start is when the connection was accepted; Duration runs from then
	// to its close.
	Start    time.Time
	Duration time.Duration
	// Client is the client's address: the connection's other end, or the
	// source a PROXY protocol header named (AcceptProxy), in which case
	// Peer is the connection's other end (else Peer is invalid).
	Client, Peer netip.AddrPort
	// Backend is the address the session was connected to; "" when none
	// was.
	Backend string
	// Attempts lists the connects tried, in order (the first
	// MaxSessionAttempts of NAttempts).
	Attempts  [MaxSessionAttempts]SessionAttempt
	NAttempts int
	// BytesUp were carried from the client to the backend, BytesDown back.
	BytesUp, BytesDown int64
	// End says how the session ended: "client_closed" or
	// "backend_closed" (that side closed first, the normal ends),
	// "client_reset", "backend_reset", "idle_timeout", "shutdown" (closed
	// by a drain or Close), "error"; or, before any byte moved,
	// "no_backend", "connect" (every connect failed), "proxy_protocol" (no
	// valid PROXY header), "closed" (the server closed while it
	// connected).
	End string
}

// SessionAttempt is one connect of a session: to Backend, with Outcome
// "connected", "connect_error" or "connect_timeout".
type SessionAttempt struct {
	Backend, Outcome string
}

// attemptOutcome names the result of a dial.
func attemptOutcome(err error) string {
	switch {
	case err == nil:
		return "connected"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "connect_timeout"
	}
	return "connect_error"
}

// endName names how a session ended from its first direction to end.
func endName(code int, fromBackend bool) string {
	switch code {
	case endEOF:
		if fromBackend {
			return "backend_closed"
		}
		return "client_closed"
	case endReadReset:
		if fromBackend {
			return "backend_reset"
		}
		return "client_reset"
	case endWriteReset:
		if fromBackend {
			return "client_reset"
		}
		return "backend_reset"
	case endIdle:
		return "idle_timeout"
	case endClosed:
		return "shutdown"
	}
	return "error"
}

// noteEnd records how a direction ended; the first one names the session's
// end.
func (ss *session) noteEnd(code int, fromBackend bool) {
	v := int32(code + 1)
	if fromBackend {
		v |= 1 << 8
	}
	ss.firstEnd.CompareAndSwap(0, v)
}

// noteAttempt records a connect to address.
func (ss *session) noteAttempt(address string, err error) {
	if ss.rec.NAttempts < MaxSessionAttempts {
		ss.rec.Attempts[ss.rec.NAttempts] = SessionAttempt{Backend: address, Outcome: attemptOutcome(err)}
	}
	ss.rec.NAttempts++
}

// logEnd hands the session's record to the Server's SessionLog.
func (s *Server) logEnd(ss *session) {
	if s.opts.SessionLog == nil {
		return
	}
	rec := &ss.rec
	rec.Listener, rec.Start = s.opts.Name, ss.start
	switch {
	case ss.l.up != nil: // the upstream the session was routed to
		rec.Pool = ss.l.up.up.PoolName
	case s.upstream != nil:
		rec.Pool = s.upstream.up.PoolName
	}
	rec.Duration = time.Since(ss.start)
	if ss.member != nil {
		rec.Backend = ss.member.address
	}
	rec.BytesUp, rec.BytesDown = ss.up.moved, ss.down.moved
	if rec.End == "" {
		if v := ss.firstEnd.Load(); v != 0 {
			rec.End = endName(int(v&0xff)-1, v&(1<<8) != 0)
		} else {
			rec.End = "client_closed"
		}
	}
	s.opts.SessionLog.LogSession(rec)
}
