package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// serviceName is the service's full name; its methods' paths are
// /frontdoor.bench.Bench/NAME. bench/grpcload and bench/cmd/sidebyside
// spell them too (nothing may import a bench package).
const serviceName = "frontdoor.bench.Bench"

// chunkBytes is the payload of one full Download message; the harness
// computes a Download answer's size from it.
const chunkBytes = 64 << 10

// maxDownloadBytes bounds what one Download call may ask for.
const maxDownloadBytes = 1 << 30

// zeros is the payload of every full Download message; read-only.
var zeros = make([]byte, chunkBytes)

// benchServer is the service's (empty) implementation type; grpc-go checks
// that the registered implementation satisfies HandlerType.
type benchServer interface{}

// serviceDesc is frontdoor.bench.Bench on protobuf's well-known types, so
// no generated code is needed.
var serviceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
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

// register adds the service to s.
func register(s *grpc.Server) { s.RegisterService(&serviceDesc, nil) }

// emptyHandler is Empty: google.protobuf.Empty in, the same out.
func emptyHandler(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	in := new(emptypb.Empty)
	if err := dec(in); err != nil {
		return nil, err
	}
	return in, nil
}

// echoHandler is Echo: a BytesValue in, the same out.
func echoHandler(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	in := new(wrapperspb.BytesValue)
	if err := dec(in); err != nil {
		return nil, err
	}
	return in, nil
}

// download is Download: a UInt64Value n in, n zero bytes out as BytesValue
// messages of chunkBytes, the last one shorter. Full chunks go out as one
// message encoded once per call (grpc.PreparedMsg), so the backend spends
// little of the load CPU on them.
func download(_ any, s grpc.ServerStream) error {
	in := new(wrapperspb.UInt64Value)
	if err := s.RecvMsg(in); err != nil {
		return err
	}
	n := in.GetValue()
	if n > maxDownloadBytes {
		return fmt.Errorf("download of %d bytes: more than %d", n, maxDownloadBytes)
	}
	var full grpc.PreparedMsg
	if n >= chunkBytes {
		if err := full.Encode(s, wrapperspb.Bytes(zeros)); err != nil {
			return err
		}
	}
	for ; n >= chunkBytes; n -= chunkBytes {
		if err := s.SendMsg(&full); err != nil {
			return err
		}
	}
	if n > 0 {
		return s.SendMsg(wrapperspb.Bytes(zeros[:n]))
	}
	return nil
}

// chat is Chat: every BytesValue received is sent back, until the client
// half-closes.
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
