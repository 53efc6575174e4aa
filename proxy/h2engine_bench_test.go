package proxy

import (
	"bufio"
	"bytes"
	"frontdoor/internal/loopback"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Raw HTTP/2 peers for the engine's benchmarks and allocation tests: a
// gRPC-like backend that answers every stream with a fixed unary answer,
// and a client that sends fixed unary calls. Both encode their header
// blocks once (the second encoding of the same fields is all indexed and
// leaves the HPACK table as it was, so it can be sent again and again) and
// decode none, so neither allocates per call: what a benchmark counts is
// frontdoor's.

// h2Blocks returns the header blocks of groups of fields (name, value,
// name, value...) as one encoder writes them the first time, in order, and
// every time after.
func h2Blocks(groups ...[]string) (first, again [][]byte) {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	encode := func(fields []string) []byte {
		buf.Reset()
		for i := 0; i < len(fields); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return bytes.Clone(buf.Bytes())
	}
	for _, g := range groups {
		first = append(first, encode(g))
	}
	for _, g := range groups {
		again = append(again, encode(g))
	}
	return first, again
}

// The raw backend's answer head and trailers.
var (
	rawHead     = []string{":status", "200", "content-type", "application/grpc"}
	rawTrailers = []string{"grpc-status", "0", "grpc-message", ""}
)

// grpcEmpty is an empty gRPC message: flag 0, length 0.
var grpcEmpty = []byte{0, 0, 0, 0, 0}

// startRawH2Backend serves gRPC-like calls on 127.0.0.1: a stream gets its
// response HEADERS as soon as its request's HEADERS arrive, every DATA frame
// echoed (a unary call's message comes back as its answer), and trailers
// with grpc-status 0 when its request ends; a request without a body gets
// an empty message.
func startRawH2Backend(t testing.TB) string {
	t.Helper()
	return loopback.Serve(t, serveRawH2)
}

func serveRawH2(c net.Conn) {
	br := bufio.NewReaderSize(c, 64<<10)
	bw := bufio.NewWriterSize(c, 64<<10)
	preface := make([]byte, len(h2Preface))
	if _, err := io.ReadFull(br, preface); err != nil {
		return
	}
	fr := http2.NewFramer(bw, nil)
	rd := newH2FrameReader(br, 1<<24-1) // reads HEADERS without allocating
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1000})
	_ = fr.WriteWindowUpdate(0, 1<<30)
	// A live encoder: blocks encoded ahead would be wrong once heads and
	// trailers of bidi streams interleave. Constant fields, once in its
	// table, encode without allocating.
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	encode := func(fields []string) []byte {
		hb.Reset()
		for i := 0; i < len(fields); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return hb.Bytes()
	}
	recv := 0
	for {
		if br.Buffered() == 0 {
			if bw.Flush() != nil {
				return
			}
		}
		f, err := rd.read()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = fr.WritePing(true, f.Data)
			}
		case *h2Headers:
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: encode(rawHead), EndHeaders: true})
			if f.StreamEnded() {
				_ = fr.WriteData(f.StreamID, false, grpcEmpty)
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: encode(rawTrailers), EndHeaders: true, EndStream: true})
			}
		case *http2.DataFrame:
			if d := f.Data(); len(d) > 0 {
				_ = fr.WriteData(f.StreamID, false, d)
				_ = fr.WriteWindowUpdate(f.StreamID, uint32(len(d)))
			}
			if recv += int(f.Length); recv > 1<<20 {
				_ = fr.WriteWindowUpdate(0, uint32(recv))
				recv = 0
			}
			if f.StreamEnded() {
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: encode(rawTrailers), EndHeaders: true, EndStream: true})
			}
		}
	}
}

// rawH2Client sends unary calls to one path over one connection.
type rawH2Client struct {
	c          net.Conn
	br         *bufio.Reader
	bw         *bufio.Writer
	fr         *http2.Framer
	rd         *h2FrameReader
	first      []byte
	again      []byte
	sent       bool
	next       uint32
	recvWindow int
}

func dialRawH2(t testing.TB, addr, path string) *rawH2Client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	cl := &rawH2Client{c: c, br: bufio.NewReaderSize(c, 64<<10), bw: bufio.NewWriterSize(c, 64<<10), next: 1}
	cl.fr = http2.NewFramer(cl.bw, nil)
	cl.rd = newH2FrameReader(cl.br, 1<<24-1)
	_, _ = cl.bw.Write(h2Preface)
	_ = cl.fr.WriteSettings()
	_ = cl.fr.WriteWindowUpdate(0, 1<<30)
	first, again := h2Blocks([]string{":method", "POST", ":scheme", "http", ":authority", addr, ":path", path,
		"content-type", "application/grpc", "te", "trailers"})
	cl.first, cl.again = first[0], again[0]
	return cl
}

// calls makes n unary calls at once and waits for their ends; it fails
// on anything but grpc-status 0 answers (it checks the trailers' arrival,
// not their content: decoding would allocate).
func (cl *rawH2Client) calls(t testing.TB, n int) {
	for range n {
		block := cl.again
		if !cl.sent {
			block, cl.sent = cl.first, true
		}
		id := cl.next
		cl.next += 2
		_ = cl.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true})
		_ = cl.fr.WriteData(id, true, grpcEmpty)
	}
	if err := cl.bw.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = cl.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for done := 0; done < n; {
		f, err := cl.rd.read()
		if err != nil {
			t.Fatalf("after %d of %d calls: %v", done, n, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = cl.fr.WriteSettingsAck()
				_ = cl.bw.Flush()
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("stream %d reset: %v", f.StreamID, f.ErrCode)
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v", f.ErrCode)
		case *http2.DataFrame:
			if cl.recvWindow += int(f.Length); cl.recvWindow > 1<<20 {
				_ = cl.fr.WriteWindowUpdate(0, uint32(cl.recvWindow))
				cl.recvWindow = 0
			}
			if f.StreamEnded() {
				t.Fatalf("stream %d ended without trailers", f.StreamID)
			}
		case *h2Headers:
			if f.StreamEnded() {
				done++
			}
		}
	}
}

// startH2Rig starts a proxy with one h2c pool of n raw backends.
func startH2Rig(t testing.TB, backends int, accessLog *AccessLog) *testProxy {
	t.Helper()
	addrs := make([]string, backends)
	for i := range addrs {
		addrs[i] = startRawH2Backend(t)
	}
	cfg := `
[[listener]]
name = "web"
bind = "127.0.0.1:0"
mode = "http"
  [[listener.route]]
  pool = "grpc"
` + poolTOML("grpc", `protocol = "h2c"`, addrs...)
	return startProxy(t, cfg, accessLog)
}

// BenchmarkForwardH2Unary relays empty unary gRPC calls, 64 at a time on one
// client connection, through the HTTP/2 engine to raw h2c backends over
// real sockets. It allocates nothing per call in steady state
// (TestH2UnaryAllocs).
func BenchmarkForwardH2Unary(b *testing.B) {
	for _, n := range []int{3, 16} {
		b.Run(strconv.Itoa(n)+"_backends", func(b *testing.B) {
			p := startH2Rig(b, n, nil)
			cl := dialRawH2(b, p.Addr("web").String(), "/bench.Service/Call")
			for range 8 { // warm up: connections, pools, tables
				cl.calls(b, 64)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += 64 {
				cl.calls(b, min(64, b.N-done))
			}
		})
	}
}

// BenchmarkForwardH2Bidi relays 1 KiB messages echoed on 16 long-lived
// streams of one client connection: per op, one message each way.
func BenchmarkForwardH2Bidi(b *testing.B) {
	p := startH2Rig(b, 3, nil)
	cl := dialRawH2(b, p.Addr("web").String(), "/bench.Service/Bidi")
	const streams = 16
	ids := make([]uint32, streams)
	for i := range ids {
		block := cl.again
		if !cl.sent {
			block, cl.sent = cl.first, true
		}
		ids[i] = cl.next
		cl.next += 2
		_ = cl.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: ids[i], BlockFragment: block, EndHeaders: true})
	}
	msg := make([]byte, 1024)

	round := func() {
		for _, id := range ids {
			_ = cl.fr.WriteData(id, false, msg)
		}
		if err := cl.bw.Flush(); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < streams*len(msg); {
			f, err := cl.rd.read()
			if err != nil {
				b.Fatal(err)
			}
			switch f := f.(type) {
			case *http2.DataFrame:
				got += len(f.Data())
				_ = cl.fr.WriteWindowUpdate(f.StreamID, uint32(len(f.Data())))
				_ = cl.fr.WriteWindowUpdate(0, uint32(len(f.Data())))
			case *http2.SettingsFrame:
				if !f.IsAck() {
					_ = cl.fr.WriteSettingsAck()
				}
			case *http2.RSTStreamFrame:
				b.Fatalf("stream %d reset: %v", f.StreamID, f.ErrCode)
			case *http2.GoAwayFrame:
				b.Fatalf("GOAWAY %v", f.ErrCode)
			}
		}
	}
	for range 50 {
		round()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += streams {
		round()
	}
}
