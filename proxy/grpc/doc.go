// Package grpc is frontdoor's gRPC passthrough: HTTP/2 cleartext (h2c, prior
// knowledge) from clients, balanced per call over pooled h2c connections to
// backends.
//
// The http listener in package proxy peeks at each new connection; when it
// starts with the HTTP/2 preface it hands the whole connection to
// Server.ServeConn. Every call (HTTP/2 stream) on that connection is then
// resolved through a Router to a Route, a backend is picked for that call
// alone from the Route's balancer.Pool, and the call is forwarded over one
// shared upstream transport that keeps HTTP/2 connections per backend
// address. One client connection therefore spreads its calls over all
// backends, which a plain TCP balancer cannot do for gRPC.
//
// Passthrough is faithful: request and response bodies stream both ways
// without being buffered whole, metadata (including -bin headers) and
// trailers reach the other side as sent, grpc-timeout is honoured and
// forwarded, and cancellation travels both ways (a client RST_STREAM resets
// the upstream stream; a backend failure ends the client's stream). gRPC
// messages are never decoded, so there is no message size limit of our own.
//
// When frontdoor itself fails a call it answers the way a gRPC server would:
// HTTP 200, content-type application/grpc and a trailers-only response whose
// grpc-status is UNIMPLEMENTED (no route), UNAUTHENTICATED (the Route's
// Authorize stage said no), UNAVAILABLE (no backend up, connect failed,
// backend at its connection limit, backend died) or DEADLINE_EXCEEDED
// (grpc-timeout or the Route's ResponseTimeout).
//
// The decisions that are the proxy core's and not this engine's (the
// request-ID rule, the pool's passive ejection, retry budget and
// per-backend connection budget) reach a call through the Route's hooks and
// package frontdoor/proxy/internal/requestid, so a gRPC call follows the
// same rules as an HTTP/1.1 request without this package importing proxy. HTTP/2 requests that are not gRPC get a plain-text 415
// (405 for methods other than POST), as the gRPC HTTP/2 spec asks.
//
// Both sides use net/http's HTTP/2 implementation with unencrypted HTTP/2
// enabled (http.Protocols.SetUnencryptedHTTP2). golang.org/x/net/http2's
// Server and Transport are deprecated in favour of exactly that, and from
// Go 1.27 on they are wrappers around it.
package grpc
