package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// bidiOptions shape a ping-pong load on Chat streams. Every field must be
// positive.
type bidiOptions struct {
	Addr     string        // host:port of the server or proxy (h2c)
	Conns    int           // client connections (one grpc.ClientConn each)
	Streams  int           // long-lived Chat streams per connection
	Size     int           // payload bytes of one message
	Duration time.Duration // length of the run
	MaxCalls int64         // bound on round trips over all streams
}

// bidiResult is what a ping-pong load measured. A call is one round trip: a
// message sent and its echo received. The JSON names are those of the
// harness's FDBENCH line.
type bidiResult struct {
	Calls      int64   `json:"requests"`
	DurationUS int64   `json:"duration_us"`
	Bytes      int64   `json:"bytes"`   // response bytes received, gRPC framing included
	Errors     int64   `json:"status"`  // streams that failed (each is reopened)
	Timeouts   int64   `json:"timeout"` // streams still stuck at the hard deadline
	P50US      float64 `json:"p50_us"`
	P99US      float64 `json:"p99_us"`
}

// bidi runs Conns x Streams goroutines, each sending a Size-byte message on
// its Chat stream and waiting for the echo before sending the next, until
// Duration has passed or MaxCalls round trips are done, then half-closes
// every stream and waits for its end. A stream that fails is counted and
// reopened after 10 ms. Nothing runs past Duration plus 10 s.
func bidi(ctx context.Context, o bidiOptions) (bidiResult, error) {
	if o.Conns <= 0 || o.Streams <= 0 || o.Size <= 0 || o.Duration <= 0 || o.MaxCalls <= 0 {
		return bidiResult{}, fmt.Errorf("bidi options %+v: every field must be positive", o)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Duration+10*time.Second)
	defer cancel()
	conns := make([]*grpc.ClientConn, o.Conns)
	for i := range conns {
		cc, err := dial(o.Addr)
		if err != nil {
			return bidiResult{}, err
		}
		defer cc.Close()
		conns[i] = cc
	}
	frame := 5 + proto.Size(wrapperspb.Bytes(make([]byte, o.Size))) // with the gRPC message prefix
	var (
		calls    atomic.Int64
		mu       sync.Mutex
		res      bidiResult
		total    histogram
		wg       sync.WaitGroup
		payload  = make([]byte, o.Size)
		start    = time.Now()
		deadline = start.Add(o.Duration)
	)
	for _, cc := range conns {
		for range o.Streams {
			wg.Go(func() {
				var h histogram
				errs, timeouts := pingPong(ctx, cc, payload, deadline, o.MaxCalls, &calls, &h)
				mu.Lock()
				defer mu.Unlock()
				total.merge(&h)
				res.Errors += errs
				res.Timeouts += timeouts
			})
		}
	}
	wg.Wait()
	res.DurationUS = time.Since(start).Microseconds()
	res.Calls = total.n
	res.Bytes = total.n * int64(frame)
	res.P50US = float64(total.quantile(0.50)) / 1e3
	res.P99US = float64(total.quantile(0.99)) / 1e3
	return res, nil
}

// pingPong runs one goroutine's streams until deadline or until calls
// reaches maxCalls, recording each round trip in h. It returns the streams
// that failed and those cut by ctx.
func pingPong(ctx context.Context, cc *grpc.ClientConn, payload []byte, deadline time.Time,
	maxCalls int64, calls *atomic.Int64, h *histogram) (errs, timeouts int64) {
	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	done := func() bool { return time.Now().After(deadline) || calls.Load() >= maxCalls }
	for !done() {
		err := func() error {
			s, err := cc.NewStream(ctx, desc, methodChat)
			if err != nil {
				return err
			}
			var msg grpc.PreparedMsg
			if err := msg.Encode(s, wrapperspb.Bytes(payload)); err != nil {
				return err
			}
			in := new(wrapperspb.BytesValue)
			for !done() {
				t0 := time.Now()
				if err := s.SendMsg(&msg); err != nil {
					return err
				}
				if err := s.RecvMsg(in); err != nil {
					return err
				}
				if len(in.GetValue()) != len(payload) {
					return fmt.Errorf("echo of %d bytes came back as %d", len(payload), len(in.GetValue()))
				}
				if time.Now().After(deadline) {
					break // finished after the end: not counted
				}
				if calls.Add(1) > maxCalls {
					break
				}
				h.add(time.Since(t0))
			}
			if err := s.CloseSend(); err != nil {
				return err
			}
			if err := s.RecvMsg(in); err == nil {
				return errors.New("chat sent a message after the client's half-close")
			} else if !errors.Is(err, io.EOF) {
				return err
			}
			return nil
		}()
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return errs, timeouts + 1
		}
		errs++
		select {
		case <-ctx.Done():
			return errs, timeouts
		case <-time.After(10 * time.Millisecond):
		}
	}
	return errs, timeouts
}

// histogram counts durations in buckets about 3% wide: exact below 64 ns,
// then 32 buckets per power of two. The zero value is empty.
type histogram struct {
	n      int64
	counts [64 + 58*32]int64
}

func bucketOf(ns uint64) int {
	if ns < 64 {
		return int(ns)
	}
	e := bits.Len64(ns) - 6 // keep the top 6 bits: ns>>e is in [32, 63]
	return 64 + (e-1)*32 + int(ns>>e) - 32
}

// lowerBound is the smallest duration in bucket i, in nanoseconds.
func lowerBound(i int) uint64 {
	if i < 64 {
		return uint64(i)
	}
	e := (i-64)/32 + 1
	return uint64((i-64)%32+32) << e
}

func (h *histogram) add(d time.Duration) {
	h.counts[bucketOf(uint64(max(d, 0)))]++
	h.n++
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile returns the lower bound, in nanoseconds, of the bucket holding
// the q-th quantile; 0 when empty.
func (h *histogram) quantile(q float64) uint64 {
	if h.n == 0 {
		return 0
	}
	rank := int64(q*float64(h.n-1)) + 1
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return lowerBound(i)
		}
	}
	return lowerBound(len(h.counts) - 1)
}
