package grpcbench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Full method names, as they appear in an HTTP/2 request's :path.
const (
	ServiceName    = "frontdoor.bench.Bench"
	MethodEmpty    = "/" + ServiceName + "/Empty"
	MethodEcho     = "/" + ServiceName + "/Echo"
	MethodDownload = "/" + ServiceName + "/Download"
	MethodChat     = "/" + ServiceName + "/Chat"
)

// ChunkBytes is the payload of one Download message.
const ChunkBytes = 64 << 10

// MaxDownloadBytes bounds what one Download call may ask for.
const MaxDownloadBytes = 1 << 30

// zeros is the payload of every full Download message; read-only.
var zeros = make([]byte, ChunkBytes)

// Register adds the Bench service to s.
func Register(s *grpc.Server) {
	s.RegisterService(&serviceDesc, nil)
}

// benchServer is the service's (empty) implementation type; grpc-go checks
// that the registered implementation satisfies HandlerType.
type benchServer interface{}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*benchServer)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Empty", Handler: emptyHandler},
		{MethodName: "Echo", Handler: echoHandler},
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "Download", Handler: download, ServerStreams: true},
		{StreamName: "Chat", Handler: chat, ServerStreams: true, ClientStreams: true},
	},
}

func emptyHandler(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	in := new(emptypb.Empty)
	if err := dec(in); err != nil {
		return nil, err
	}
	return in, nil
}

func echoHandler(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	in := new(wrapperspb.BytesValue)
	if err := dec(in); err != nil {
		return nil, err
	}
	return in, nil
}

// download sends the asked number of payload bytes. Full chunks go out as
// one message encoded once per call (grpc.PreparedMsg), so the backend
// spends little of the load CPU on them.
func download(_ any, s grpc.ServerStream) error {
	in := new(wrapperspb.UInt64Value)
	if err := s.RecvMsg(in); err != nil {
		return err
	}
	n := in.GetValue()
	if n > MaxDownloadBytes {
		return fmt.Errorf("grpcbench: download of %d bytes: more than %d", n, MaxDownloadBytes)
	}
	var full grpc.PreparedMsg
	if n >= ChunkBytes {
		if err := full.Encode(s, wrapperspb.Bytes(zeros)); err != nil {
			return err
		}
	}
	for ; n >= ChunkBytes; n -= ChunkBytes {
		if err := s.SendMsg(&full); err != nil {
			return err
		}
	}
	if n > 0 {
		return s.SendMsg(wrapperspb.Bytes(zeros[:n]))
	}
	return nil
}

// chat echoes every message until the client half-closes.
func chat(_ any, s grpc.ServerStream) error {
	in := new(wrapperspb.BytesValue)
	for {
		if err := s.RecvMsg(in); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := s.SendMsg(in); err != nil {
			return err
		}
	}
}

// Frame returns m as a gRPC length-prefixed message: a zero compression
// flag, the 4-byte big-endian length, then the protobuf encoding. A body of
// such frames is what h2load posts.
func Frame(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err) // well-known types always marshal
	}
	out := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(out[1:], uint32(len(b)))
	return append(out, b...)
}

// EmptyRequest is the body of one Empty call.
func EmptyRequest() []byte { return Frame(&emptypb.Empty{}) }

// EchoRequest is the body of one Echo call carrying n payload bytes; the
// answer is the same bytes.
func EchoRequest(n int) []byte { return Frame(wrapperspb.Bytes(make([]byte, n))) }

// DownloadRequest is the body of one Download call for n payload bytes.
func DownloadRequest(n uint64) []byte { return Frame(wrapperspb.UInt64(n)) }

// DownloadResponseBytes is the response body, gRPC framing included, of a
// Download call for n payload bytes.
func DownloadResponseBytes(n uint64) int64 {
	total := int64(n/ChunkBytes) * int64(len(Frame(wrapperspb.Bytes(zeros))))
	if rest := n % ChunkBytes; rest > 0 {
		total += int64(len(Frame(wrapperspb.Bytes(zeros[:rest]))))
	}
	return total
}
