package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Method paths of frontdoor.bench.Bench (bench/grpcbackend; nothing may
// import a bench package, so each program spells them).
const (
	methodEmpty    = "/frontdoor.bench.Bench/Empty"
	methodEcho     = "/frontdoor.bench.Bench/Echo"
	methodDownload = "/frontdoor.bench.Bench/Download"
	methodChat     = "/frontdoor.bench.Bench/Chat"
)

// dial returns a client of the h2c server at addr (host:port), over one
// HTTP/2 connection made on first use. The caller closes it.
func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// check makes one call of method through the server at addr and verifies
// the answer: status OK and every byte expected. n is the payload of Echo
// and Chat (Chat sends it three times) and the byte count of Download;
// Empty ignores it. It gives up when ctx ends.
func check(ctx context.Context, addr, method string, n int) error {
	cc, err := dial(addr)
	if err != nil {
		return err
	}
	defer cc.Close()
	var payload []byte
	if method == methodEcho || method == methodChat {
		payload = bytes.Repeat([]byte{'g'}, n)
	}
	switch method {
	case methodEmpty:
		return cc.Invoke(ctx, method, &emptypb.Empty{}, new(emptypb.Empty))
	case methodEcho:
		out := new(wrapperspb.BytesValue)
		if err := cc.Invoke(ctx, method, wrapperspb.Bytes(payload), out); err != nil {
			return err
		}
		if !bytes.Equal(out.GetValue(), payload) {
			return fmt.Errorf("echo of %d bytes came back as %d different bytes", n, len(out.GetValue()))
		}
		return nil
	case methodDownload:
		s, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, method)
		if err != nil {
			return err
		}
		if err := s.SendMsg(wrapperspb.UInt64(uint64(n))); err != nil {
			return err
		}
		if err := s.CloseSend(); err != nil {
			return err
		}
		got := 0
		for {
			m := new(wrapperspb.BytesValue)
			if err := s.RecvMsg(m); err != nil {
				if !errors.Is(err, io.EOF) {
					return err
				}
				break
			}
			got += len(m.GetValue())
		}
		if got != n {
			return fmt.Errorf("download of %d bytes got %d", n, got)
		}
		return nil
	case methodChat:
		s, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
		if err != nil {
			return err
		}
		for range 3 {
			if err := s.SendMsg(wrapperspb.Bytes(payload)); err != nil {
				return err
			}
			m := new(wrapperspb.BytesValue)
			if err := s.RecvMsg(m); err != nil {
				return err
			}
			if !bytes.Equal(m.GetValue(), payload) {
				return fmt.Errorf("chat message of %d bytes came back as %d different bytes", n, len(m.GetValue()))
			}
		}
		if err := s.CloseSend(); err != nil {
			return err
		}
		if err := s.RecvMsg(new(wrapperspb.BytesValue)); !errors.Is(err, io.EOF) {
			return fmt.Errorf("chat after the client's half-close: %v, want the end of the stream", err)
		}
		return nil
	}
	return fmt.Errorf("unknown method %q", method)
}
