package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// serve starts, for the test, a stand-in for bench/grpcbackend on a fresh
// 127.0.0.1 port (no package may import another bench program): the same
// four methods with the same messages. shortBy makes Download send that
// many bytes fewer than asked.
func serve(t *testing.T, shortBy int) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, st grpc.ServerStream) error {
		m, _ := grpc.MethodFromServerStream(st)
		switch m {
		case methodEmpty:
			in := new(emptypb.Empty)
			if err := st.RecvMsg(in); err != nil {
				return err
			}
			return st.SendMsg(in)
		case methodEcho, methodChat:
			for {
				in := new(wrapperspb.BytesValue)
				if err := st.RecvMsg(in); err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
				if err := st.SendMsg(in); err != nil {
					return err
				}
			}
		case methodDownload:
			in := new(wrapperspb.UInt64Value)
			if err := st.RecvMsg(in); err != nil {
				return err
			}
			for n := int(in.GetValue()) - shortBy; n > 0; n -= 64 << 10 {
				if err := st.SendMsg(wrapperspb.Bytes(make([]byte, min(n, 64<<10)))); err != nil {
					return err
				}
			}
			return nil
		}
		return fmt.Errorf("no method %s", m)
	}))
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

func TestCheck(t *testing.T) {
	t.Parallel()
	addr := serve(t, 0)
	tests := []struct {
		name   string
		method string
		n      int
	}{
		{name: "empty", method: methodEmpty},
		{name: "echo 64 KiB", method: methodEcho, n: 64 << 10},
		{name: "download 1 MiB", method: methodDownload, n: 1 << 20},
		{name: "chat 1 KiB", method: methodChat, n: 1 << 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := check(ctx, addr, tc.method, tc.n); err != nil {
				t.Fatalf("check(%s, %d): %v", tc.method, tc.n, err)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := check(ctx, addr, "/frontdoor.bench.Bench/Nope", 0); err == nil {
		t.Fatal("check of an unknown method: want error")
	}
	if err := check(ctx, serve(t, 10), methodDownload, 100); err == nil {
		t.Fatal("check of a download 10 bytes short: want error")
	}
}

func TestBidi(t *testing.T) {
	t.Parallel()
	addr := serve(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	o := bidiOptions{Addr: addr, Conns: 2, Streams: 3, Size: 1 << 10, Duration: 5 * time.Second, MaxCalls: 500}
	r, err := bidi(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Calls != 500 || r.Errors != 0 || r.Timeouts != 0 {
		t.Fatalf("bidi = %+v, want 500 round trips (the -n bound) and no errors", r)
	}
	// A 1 KiB BytesValue: tag, 2-byte length, payload; plus the 5-byte prefix.
	if r.Bytes != 500*(5+1+2+1024) || r.P50US <= 0 || r.P99US < r.P50US {
		t.Fatalf("bidi = %+v: bytes or percentiles off", r)
	}
	if r.DurationUS >= o.Duration.Microseconds() {
		t.Fatalf("bidi took %d µs: the call bound did not end it", r.DurationUS)
	}
	if _, err := bidi(ctx, bidiOptions{Addr: addr}); err == nil {
		t.Fatal("bidi with zero options: want error")
	}
}

func TestBidiDuration(t *testing.T) {
	t.Parallel()
	addr := serve(t, 0)
	r, err := bidi(context.Background(), bidiOptions{Addr: addr, Conns: 1, Streams: 2, Size: 16,
		Duration: 500 * time.Millisecond, MaxCalls: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	if r.Calls == 0 || r.Errors != 0 || r.DurationUS > (5*time.Second).Microseconds() {
		t.Fatalf("bidi for 500 ms = %+v", r)
	}
}

func TestHistogram(t *testing.T) {
	t.Parallel()
	prev := -1
	for _, ns := range []uint64{0, 1, 63, 64, 66, 127, 128, 1000, 1 << 20, 1<<63 - 1, 1<<64 - 1} {
		i := bucketOf(ns)
		if i <= prev || i >= len(histogram{}.counts) {
			t.Fatalf("bucketOf(%d) = %d after %d", ns, i, prev)
		}
		if lb := lowerBound(i); lb > ns || (ns >= 64 && float64(ns-lb) > 0.032*float64(ns)) {
			t.Fatalf("lowerBound(bucketOf(%d)) = %d: not within 3.2%% below", ns, lb)
		}
		prev = i
	}
	var h histogram
	if h.quantile(0.5) != 0 {
		t.Fatal("quantile of an empty histogram: want 0")
	}
	for i := 1; i <= 100; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	var all histogram
	all.merge(&h)
	if p50, p99 := all.quantile(0.5), all.quantile(0.99); p50 < 48_000 || p50 > 50_000 || p99 < 96_000 || p99 > 99_000 {
		t.Fatalf("quantiles of 1..100 µs: p50 %d ns, p99 %d ns", p50, p99)
	}
}

func TestRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	for _, a := range []string{"10.0.0.1:8080", "0.0.0.0:8080", "localhost:8080", ""} {
		if err := run(context.Background(), []string{"-addr", a, "-d", "1s"}, io.Discard, io.Discard); err == nil {
			t.Errorf("-addr %q: want error", a)
		}
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	addr := serve(t, 0)
	var out bytes.Buffer
	err := run(context.Background(), []string{"-addr", addr, "-conns", "1", "-streams", "2", "-d", "5s", "-n", "100"}, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), `FDBENCH {"requests":100,`) || !strings.Contains(out.String(), `"status":0,"timeout":0`) {
		t.Fatalf("output %q", out.String())
	}
	if err := run(context.Background(), []string{"-addr", addr, "-check", methodDownload, "-size", "70000", "-d", "5s"}, io.Discard, io.Discard); err != nil {
		t.Fatalf("-check: %v", err)
	}
	if err := run(context.Background(), []string{"-addr", addr, "-check", "/x/Y", "-d", "5s"}, io.Discard, io.Discard); err == nil {
		t.Fatal("-check of an unknown method: want error")
	}
}
