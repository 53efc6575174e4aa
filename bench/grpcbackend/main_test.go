package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	for _, a := range []string{"0.0.0.0:50051", "10.0.0.1:50051", "example.com:1", "127.0.0.1"} {
		if err := run(context.Background(), []string{"-listen", a}, io.Discard); err == nil {
			t.Errorf("-listen %s: want error", a)
		}
	}
}

// TestServes calls every method the way the harness's load does, then
// stops the backend through its context.
func TestServes(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-listen", addr}, io.Discard) }()

	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	for {
		err := cc.Invoke(cctx, "/frontdoor.bench.Bench/Empty", &emptypb.Empty{}, new(emptypb.Empty))
		if err == nil {
			break
		}
		if cctx.Err() != nil {
			t.Fatalf("backend never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	payload := bytes.Repeat([]byte{'e'}, 64<<10)
	out := new(wrapperspb.BytesValue)
	if err := cc.Invoke(cctx, "/frontdoor.bench.Bench/Echo", wrapperspb.Bytes(payload), out); err != nil || !bytes.Equal(out.GetValue(), payload) {
		t.Fatalf("Echo: %v, %d bytes back", err, len(out.GetValue()))
	}

	// Download: every message but the last is chunkBytes (the harness
	// computes the size of an answer from that).
	download := func(n uint64) ([]int, error) {
		s, err := cc.NewStream(cctx, &grpc.StreamDesc{ServerStreams: true}, "/frontdoor.bench.Bench/Download")
		if err != nil {
			return nil, err
		}
		if err := s.SendMsg(wrapperspb.UInt64(n)); err != nil {
			return nil, err
		}
		if err := s.CloseSend(); err != nil {
			return nil, err
		}
		var sizes []int
		for {
			m := new(wrapperspb.BytesValue)
			if err := s.RecvMsg(m); err != nil {
				if errors.Is(err, io.EOF) {
					return sizes, nil
				}
				return sizes, err
			}
			sizes = append(sizes, len(m.GetValue()))
		}
	}
	sizes, err := download(2*chunkBytes + 7)
	if err != nil || len(sizes) != 3 || sizes[0] != chunkBytes || sizes[1] != chunkBytes || sizes[2] != 7 {
		t.Fatalf("Download of 2 chunks + 7 bytes: %v, messages %v", err, sizes)
	}
	if _, err := download(maxDownloadBytes + 1); err == nil {
		t.Fatal("Download above the limit: want error")
	}

	s, err := cc.NewStream(cctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/frontdoor.bench.Bench/Chat")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		msg := bytes.Repeat([]byte{byte('a' + i)}, 1024)
		in := new(wrapperspb.BytesValue)
		if err := s.SendMsg(wrapperspb.Bytes(msg)); err != nil {
			t.Fatal(err)
		}
		if err := s.RecvMsg(in); err != nil || !bytes.Equal(in.GetValue(), msg) {
			t.Fatalf("Chat message %d: %v", i, err)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := s.RecvMsg(new(wrapperspb.BytesValue)); !errors.Is(err, io.EOF) {
		t.Fatalf("Chat after half-close: %v, want EOF", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}
