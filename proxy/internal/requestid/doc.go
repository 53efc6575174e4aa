// Package requestid is the one rule every engine of frontdoor uses to give a
// request its ID, and the generator of new IDs.
//
// A request's ID is the trace-id of an incoming W3C traceparent, else an
// incoming X-Request-ID that is safe to pass on and log (Valid), else a new
// one from a Generator (Pick says which). Every engine calls the same
// functions through the core, so the engines cannot drift apart.
//
// Nothing here allocates, and the package holds no mutable state: each
// frontdoor process makes one Generator and hands it to every engine.
package requestid
