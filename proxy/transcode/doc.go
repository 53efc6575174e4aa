// Package transcode turns HTTP/JSON requests into gRPC calls and gRPC
// answers back into HTTP/JSON, driven by a protobuf descriptor set and the
// google.api.http options in it, with no code generated per service. It
// does no network I/O: the proxy's transcoding engine carries the bytes.
//
// A Transcoder is built once per descriptor set file and route (Load, New):
// it compiles every binding's path template into a matching tree per HTTP
// method and reports every problem at once (a listed service missing, a
// template that does not parse, a variable or body naming no field, two
// bindings that match the same requests). Per request, Match finds the
// binding, NewCall builds the request message (body, path variables, query
// parameters) with dynamicpb and protojson, and AppendFrame writes it as a
// gRPC length-prefixed message. The answer's messages become JSON with
// AppendResponse (or, for a server stream, AppendStreamMessage as NDJSON or
// server-sent events); a grpc-status other than OK becomes HTTPStatus's
// status and AppendError's {"code", "message", "details"} body.
//
// The rules follow google/api/http.proto and, where it is silent,
// grpc-gateway's runtime (query parameters, the update_mask of a PATCH,
// the status mapping); README.md lists where frontdoor differs.
package transcode
