package transcode

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"
)

// google.rpc.Code values (the grpc-status numbers).
const (
	CodeOK                 = 0
	CodeCanceled           = 1
	CodeUnknown            = 2
	CodeInvalidArgument    = 3
	CodeDeadlineExceeded   = 4
	CodeNotFound           = 5
	CodeAlreadyExists      = 6
	CodePermissionDenied   = 7
	CodeResourceExhausted  = 8
	CodeFailedPrecondition = 9
	CodeAborted            = 10
	CodeOutOfRange         = 11
	CodeUnimplemented      = 12
	CodeInternal           = 13
	CodeUnavailable        = 14
	CodeDataLoss           = 15
	CodeUnauthenticated    = 16
)

// HTTPStatus maps a google.rpc.Code to the HTTP status google/rpc/code.proto
// names for it (grpc-gateway's and Envoy's mapping). An unknown code is 500.
func HTTPStatus(code int) int {
	switch code {
	case CodeOK:
		return 200
	case CodeCanceled:
		return 499
	case CodeInvalidArgument, CodeFailedPrecondition, CodeOutOfRange:
		return 400
	case CodeDeadlineExceeded:
		return 504
	case CodeNotFound:
		return 404
	case CodeAlreadyExists, CodeAborted:
		return 409
	case CodePermissionDenied:
		return 403
	case CodeUnauthenticated:
		return 401
	case CodeResourceExhausted:
		return 429
	case CodeUnimplemented:
		return 501
	case CodeUnavailable:
		return 503
	}
	return 500 // Unknown, Internal, DataLoss, anything else
}

// Status is how a gRPC call ended: its grpc-status, grpc-message and, when
// the backend sent grpc-status-details-bin, the google.rpc.Status it holds
// (marshalled, details included).
type Status struct {
	Code    int
	Message string
	Details []byte
}

// ParseStatus reads a call's end from the values of its grpc-status,
// grpc-message (percent-encoded) and grpc-status-details-bin (base64)
// trailers. ok is false when grpc-status is missing or not a number; a
// message or details that do not decode are used as they are, or dropped.
func ParseStatus(code, message, details string) (st Status, ok bool) {
	n, err := strconv.Atoi(code)
	if err != nil || n < 0 {
		return Status{Code: CodeUnknown, Message: "backend sent no valid grpc-status"}, false
	}
	st.Code = n
	st.Message = message
	if strings.IndexByte(message, '%') >= 0 {
		if m, err := unescape(message, true); err == nil {
			st.Message = m
		}
	}
	if details != "" {
		for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.StdEncoding} {
			if b, err := enc.DecodeString(details); err == nil {
				st.Details = b
				break
			}
		}
	}
	return st, true
}

// AppendError appends the JSON body of an error answer, {"code", "message",
// "details"}: google.rpc.Status in JSON, every one of the three present.
// Details come from st.Details when it holds a google.rpc.Status of the
// same code, each written as the descriptor set or frontdoor knows its
// type; a detail of a type neither knows is left out.
func (t *Transcoder) AppendError(dst []byte, st Status) []byte {
	dst = append(dst, `{"code":`...)
	dst = strconv.AppendInt(dst, int64(st.Code), 10)
	dst = append(dst, `,"message":`...)
	msg, _ := json.Marshal(st.Message) // a string always marshals
	dst = append(dst, msg...)
	dst = append(dst, `,"details":[`...)
	if len(st.Details) > 0 {
		var d spb.Status
		if proto.Unmarshal(st.Details, &d) == nil && int(d.GetCode()) == st.Code {
			n := 0
			for _, a := range d.GetDetails() {
				start := len(dst)
				if n > 0 {
					dst = append(dst, ',')
				}
				out, err := t.marshal.MarshalAppend(dst, a)
				if err != nil {
					dst = dst[:start]
					continue
				}
				dst = out
				n++
			}
		}
	}
	return append(dst, "]}"...)
}

// AppendErrorOf appends err's JSON error body: an *Error's code and
// message, else INTERNAL.
func (t *Transcoder) AppendErrorOf(dst []byte, err error) []byte {
	var e *Error
	if errors.As(err, &e) {
		return t.AppendError(dst, Status{Code: e.Code, Message: e.Message})
	}
	return t.AppendError(dst, Status{Code: CodeInternal, Message: "internal error"})
}

// AppendResponse appends the JSON of one response message (msg, the bytes
// of a gRPC message without its prefix): the whole message, or its
// response_body field.
func (c *Call) AppendResponse(dst, msg []byte) ([]byte, error) {
	b := c.Binding
	out := dynamicpb.NewMessage(b.out)
	if err := (proto.UnmarshalOptions{Resolver: c.t.resolver}).Unmarshal(msg, out); err != nil {
		return dst, fmt.Errorf("transcode: backend's %s does not decode: %w", b.out.FullName(), err)
	}
	if b.respField == nil {
		return c.t.marshal.MarshalAppend(dst, out)
	}
	fd := b.respField
	if fd.Message() != nil && !fd.IsList() && !fd.IsMap() {
		return c.t.marshal.MarshalAppend(dst, out.Get(fd).Message().Interface())
	}
	// A list, map or scalar: write the message with that field alone and
	// every field present, and take the field's value out of it.
	only := dynamicpb.NewMessage(b.out)
	if out.Has(fd) {
		only.Set(fd, out.Get(fd))
	}
	key := fd.JSONName()
	if c.t.opts.UseProtoNames {
		key = string(fd.Name())
	}
	opts := c.t.marshal
	if !fd.IsList() && !fd.IsMap() {
		opts.EmitUnpopulated = true // a scalar's default is written, not left out
	}
	whole, err := opts.Marshal(only)
	if err != nil {
		return dst, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(whole, &fields); err != nil {
		return dst, err
	}
	v, ok := fields[key]
	switch {
	case ok:
	case fd.IsList():
		v = []byte("[]")
	default:
		v = []byte("{}")
	}
	return append(dst, v...), nil
}

// Format is how a server stream's messages reach an HTTP client.
type Format uint8

const (
	// NDJSON writes one JSON object a line: {"result": MESSAGE}, and
	// {"error": STATUS} when the stream ends with an error (grpc-gateway's
	// stream shape).
	NDJSON Format = iota
	// SSE writes server-sent events: "data: MESSAGE", and "event: error"
	// with "data: STATUS" when the stream ends with an error.
	SSE
)

// FormatFor chooses a stream's format from the request's Accept header:
// SSE when it names text/event-stream, else NDJSON.
func FormatFor(accept string) Format {
	if strings.Contains(strings.ToLower(accept), "text/event-stream") {
		return SSE
	}
	return NDJSON
}

// ContentType is the stream's Content-Type.
func (f Format) ContentType() string {
	if f == SSE {
		return "text/event-stream"
	}
	return "application/x-ndjson"
}

// AppendStreamMessage appends one message of a server stream in format f.
func (c *Call) AppendStreamMessage(dst []byte, f Format, msg []byte) ([]byte, error) {
	start := len(dst)
	if f == SSE {
		dst = append(dst, "data: "...)
	} else {
		dst = append(dst, `{"result":`...)
	}
	dst, err := c.AppendResponse(dst, msg)
	if err != nil {
		return dst[:start], err
	}
	if f == SSE {
		return append(dst, "\n\n"...), nil
	}
	return append(dst, "}\n"...), nil
}

// AppendStreamError appends the end of a server stream that failed, in
// format f.
func (t *Transcoder) AppendStreamError(dst []byte, f Format, st Status) []byte {
	if f == SSE {
		dst = append(dst, "event: error\ndata: "...)
		dst = t.AppendError(dst, st)
		return append(dst, "\n\n"...)
	}
	dst = append(dst, `{"error":`...)
	dst = t.AppendError(dst, st)
	return append(dst, "}\n"...)
}

// Errors of ReadFrame.
var (
	ErrCompressed   = errors.New("transcode: compressed gRPC message (none was asked for)")
	ErrFrameTooLong = errors.New("transcode: gRPC message longer than the limit")
)

// ReadFrame reads one length-prefixed gRPC message from r into buf (grown
// when too small) and returns the message. A message longer than max is
// ErrFrameTooLong; a compressed one ErrCompressed. It returns io.EOF at a
// clean end between messages and io.ErrUnexpectedEOF within one.
func ReadFrame(r io.Reader, buf []byte, max int) ([]byte, error) {
	if cap(buf) < 5 {
		buf = make([]byte, 0, 512)
	}
	hdr := buf[:5]
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	if hdr[0] != 0 {
		return nil, ErrCompressed
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if int64(n) > int64(max) {
		return nil, ErrFrameTooLong
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	msg := buf[:n]
	if _, err := io.ReadFull(r, msg); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return msg, nil
}
