package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/valyala/fasthttp"
)

// How an attempt's failure becomes what the client gets and what is
// counted: the errors engines report, their classification into a status,
// an upstream_errors_total reason and retryability (the one place that
// decides it, STYLE.md 4), and the names the access log gives them.

// upstreamMessage is the one-line message of frontdoor's answer with status
// after a failed attempt.
func upstreamMessage(status int) string {
	switch status {
	case fasthttp.StatusRequestEntityTooLarge:
		return "request body too large"
	case statusClientClosed:
		return "client closed the request"
	case fasthttp.StatusBadRequest:
		return "malformed request"
	case fasthttp.StatusGatewayTimeout:
		return "backend timed out"
	case fasthttp.StatusServiceUnavailable:
		return "every backend is at its connection limit"
	}
	return "backend failed"
}

// classifyUpstreamError maps a forwarding error to the client status, the
// upstream_errors_total reason, and whether the request may be tried on
// another backend. This is the one place that decides it (STYLE.md 4).
//
// Retryable: the connection was never made (any method: no byte of the
// request reached a backend), the backend is at its connection limit, or an
// idempotent request's connection broke before any response byte.
func classifyUpstreamError(err error, req *fasthttp.Request) (status, reason int, retryable bool) {
	switch {
	case errors.Is(err, errBackendTLS):
		// Part of connecting (tls_backend.go), whatever ended it.
		return fasthttp.StatusBadGateway, reasonConnect, true
	case errors.Is(err, errBodyTooLarge):
		return fasthttp.StatusRequestEntityTooLarge, reasonOther, false
	case errors.Is(err, errClientRead):
		return statusClientClosed, reasonOther, false
	case errors.Is(err, errBadBody):
		return fasthttp.StatusBadRequest, reasonOther, false
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return fasthttp.StatusServiceUnavailable, reasonLimit, true
	case errors.Is(err, fasthttp.ErrDialTimeout):
		return fasthttp.StatusBadGateway, reasonConnect, true
	case errors.Is(err, errRefusedStream):
		return fasthttp.StatusBadGateway, reasonReset, true
	case errors.Is(err, errBackendProtocol):
		return fasthttp.StatusBadGateway, reasonOther, false
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, os.ErrDeadlineExceeded):
		return fasthttp.StatusGatewayTimeout, reasonTimeout, false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return fasthttp.StatusBadGateway, reasonConnect, true
	}
	if errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, errConnReset) || errors.Is(err, errBrokenPipe) {
		return fasthttp.StatusBadGateway, reasonReset, isIdempotent(req.Header.Method())
	}
	return fasthttp.StatusBadGateway, reasonOther, false
}

// clientGone reports whether err, from reading a request body, means the
// client went away or stalled, rather than sent a malformed body.
func clientGone(err error) bool {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, errConnReset) || errors.Is(err, errBrokenPipe) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// Boxed once, so that classifying an error does not allocate.
var (
	errConnReset  error = syscall.ECONNRESET
	errBrokenPipe error = syscall.EPIPE
)

func isIdempotent(method []byte) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE":
		return true
	}
	return false
}

// Errors engines report to attempted. They are values, so returning one
// does not allocate; classifyUpstreamError maps them to statuses.
var (
	errBodyTooLarge      = errors.New("proxy: request body above max_body_bytes")
	errClientRead        = errors.New("proxy: client stopped sending the request body")
	errBadBody           = errors.New("proxy: malformed request body framing")
	errTooManyInterim    = errors.New("proxy: backend sent too many 1xx answers")
	errUnexpectedUpgrade = errors.New("proxy: backend switched protocols without an upgrade request")
	// errRefusedStream: an HTTP/2 backend refused the stream before
	// processing it (REFUSED_STREAM, or a GOAWAY below its ID), so it may
	// go to another backend whatever its method.
	errRefusedStream = errors.New("proxy: backend refused the stream unprocessed")
	// errBackendProtocol: the backend's answer broke the protocol.
	errBackendProtocol = errors.New("proxy: backend answer broke the protocol")
)

// clientFaultReason is the access log reason of a request that failed on the
// client's side while it was being forwarded.
func clientFaultReason(status int) string {
	switch status {
	case fasthttp.StatusRequestEntityTooLarge:
		return "body_too_large"
	case fasthttp.StatusBadRequest:
		return "bad_request"
	}
	return "client_gone"
}

// attemptOutcome names how a failed attempt ended, for its entry in the
// access line's tried: finer than the reason of upstream_errors_total (a
// connect that timed out, not just "connect").
func attemptOutcome(err error, status, why int) uint8 {
	switch {
	case status == statusClientClosed:
		return outcomeClientGone
	case why == reasonConnect && errors.Is(err, fasthttp.ErrDialTimeout):
		return outcomeConnectTimeout
	case why == reasonConnect:
		return outcomeConnectError
	case why == reasonTimeout:
		return outcomeResponseTimeout
	case why == reasonReset:
		return outcomeReset
	case why == reasonLimit:
		return outcomeLimit
	}
	return outcomeOther
}
