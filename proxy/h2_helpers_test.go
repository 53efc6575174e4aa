package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The HTTP/2 contract of #19 (listener keys under [listener.http2]), the
// defaults the tests expect.
const (
	h2DefaultMaxStreams = 100             // max_concurrent_streams
	h2DefaultWindow     = 262144          // initial_window_size
	h2DefaultFrameSize  = 16384           // max_frame_size
	h2DefaultHeaderList = 16384           // the listener's max_header_bytes
	h2TableSize         = 4096            // the HPACK table size frontdoor decodes with
	h2ConnDeadline      = 8 * time.Second // every raw connection's lifetime
)

// emptyGRPCMessage is one length-prefixed gRPC message of zero bytes.
var emptyGRPCMessage = []byte{0, 0, 0, 0, 0}

// h2Frame is a frame read from frontdoor, copied out of the Framer's
// buffers so that it outlives the next read.
type h2Frame struct {
	typ      http2.FrameType
	stream   uint32
	flags    http2.Flags
	code     http2.ErrCode // RST_STREAM, GOAWAY
	last     uint32        // GOAWAY: last stream ID
	fields   []hpack.HeaderField
	data     []byte // DATA payload, GOAWAY debug data, PING payload
	incr     uint32 // WINDOW_UPDATE
	settings []http2.Setting
}

func (f *h2Frame) endStream() bool {
	return (f.typ == http2.FrameHeaders || f.typ == http2.FrameData) && f.flags.Has(http2.FlagDataEndStream)
}

func (f *h2Frame) header(name string) string {
	for _, hf := range f.fields {
		if hf.Name == name {
			return hf.Value
		}
	}
	return ""
}

func (f h2Frame) String() string {
	switch f.typ {
	case http2.FrameGoAway:
		return fmt.Sprintf("GOAWAY %v last stream %d %q", f.code, f.last, f.data)
	case http2.FrameRSTStream:
		return fmt.Sprintf("RST_STREAM %v on stream %d", f.code, f.stream)
	case http2.FrameHeaders:
		return fmt.Sprintf("HEADERS on stream %d (end stream %v) %v", f.stream, f.endStream(), f.fields)
	case http2.FrameData:
		return fmt.Sprintf("DATA on stream %d (%d bytes, end stream %v)", f.stream, len(f.data), f.endStream())
	}
	return fmt.Sprintf("%v on stream %d flags %v", f.typ, f.stream, f.flags)
}

func isGoAway(f *h2Frame) bool { return f.typ == http2.FrameGoAway }

// h2Client is a raw HTTP/2 client for tests that send what no well-behaved
// client would: every frame goes through x/net/http2's Framer and every
// header block through its HPACK encoder. Writes are made from the test's
// goroutine only; a reader goroutine copies frontdoor's frames into frames.
type h2Client struct {
	t        testing.TB
	conn     net.Conn
	bw       *bufio.Writer
	fr       *http2.Framer
	enc      *hpack.Encoder
	encBuf   bytes.Buffer
	host     string
	settings map[http2.SettingID]uint32 // frontdoor's first SETTINGS
	frames   chan h2Frame
	readErr  error     // set before frames is closed
	pending  []h2Frame // read, not yet matched
	nextID   uint32
}

type h2Opts struct {
	settings   []http2.Setting // the client's SETTINGS
	readBuffer int             // SO_RCVBUF, when > 0
	noReader   bool            // the test reads c.fr itself
}

// dialH2 connects to addr, exchanges prefaces and SETTINGS (acknowledging
// frontdoor's) and, unless opts.noReader, starts the reader. The connection
// is closed when the test ends and cannot outlive h2ConnDeadline.
func dialH2(t testing.TB, addr string, opts h2Opts) *h2Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(h2ConnDeadline))
	if opts.readBuffer > 0 {
		if err := conn.(*net.TCPConn).SetReadBuffer(opts.readBuffer); err != nil {
			t.Fatal(err)
		}
	}
	c := &h2Client{t: t, conn: conn, host: addr, nextID: 1}
	c.bw = bufio.NewWriterSize(conn, 64<<10)
	c.fr = http2.NewFramer(c.bw, conn)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.encBuf)
	if _, err := io.WriteString(c.bw, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(opts.settings...); err != nil {
		t.Fatal(err)
	}
	if err := c.flush(); err != nil {
		t.Fatalf("write preface: %v", err)
	}
	f, err := c.fr.ReadFrame()
	if err != nil {
		t.Fatalf("read frontdoor's SETTINGS: %v", err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		t.Fatalf("frontdoor's first frame is %v, want SETTINGS", f.Header())
	}
	c.settings = map[http2.SettingID]uint32{}
	_ = sf.ForeachSetting(func(s http2.Setting) error { c.settings[s.ID] = s.Val; return nil })
	if err := c.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	if err := c.flush(); err != nil {
		t.Fatalf("write SETTINGS ack: %v", err)
	}
	if !opts.noReader {
		c.frames = make(chan h2Frame, 1<<14)
		go c.readLoop()
	}
	return c
}

// setting returns frontdoor's value of id, or RFC 9113's initial value
// when it did not send one.
func (c *h2Client) setting(id http2.SettingID) uint32 {
	if v, ok := c.settings[id]; ok {
		return v
	}
	switch id {
	case http2.SettingHeaderTableSize:
		return 4096
	case http2.SettingEnablePush:
		return 1
	case http2.SettingMaxConcurrentStreams, http2.SettingMaxHeaderListSize:
		return 1<<32 - 1
	case http2.SettingInitialWindowSize:
		return 65535
	case http2.SettingMaxFrameSize:
		return 16384
	}
	return 0
}

func (c *h2Client) readLoop() {
	defer close(c.frames)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.readErr = err
			return
		}
		c.frames <- copyFrame(f)
	}
}

func copyFrame(f http2.Frame) h2Frame {
	h := f.Header()
	out := h2Frame{typ: h.Type, stream: h.StreamID, flags: h.Flags}
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		out.fields = append([]hpack.HeaderField(nil), f.Fields...)
	case *http2.DataFrame:
		out.data = bytes.Clone(f.Data())
	case *http2.RSTStreamFrame:
		out.code = f.ErrCode
	case *http2.GoAwayFrame:
		out.code, out.last, out.data = f.ErrCode, f.LastStreamID, bytes.Clone(f.DebugData())
	case *http2.WindowUpdateFrame:
		out.incr = f.Increment
	case *http2.SettingsFrame:
		_ = f.ForeachSetting(func(s http2.Setting) error { out.settings = append(out.settings, s); return nil })
	case *http2.PingFrame:
		out.data = bytes.Clone(f.Data[:])
	}
	return out
}

func (c *h2Client) flush() error { return c.bw.Flush() }

// newStream returns the next client stream ID.
func (c *h2Client) newStream() uint32 {
	id := c.nextID
	c.nextID += 2
	return id
}

// encode returns the header block of fields, encoded with the
// connection's HPACK state.
func (c *h2Client) encode(fields []hpack.HeaderField) []byte {
	c.encBuf.Reset()
	for _, f := range fields {
		if err := c.enc.WriteField(f); err != nil {
			c.t.Fatalf("hpack: %v", err)
		}
	}
	return bytes.Clone(c.encBuf.Bytes())
}

// writeHeaders sends fields on stream id as HEADERS (and CONTINUATION
// frames when the block exceeds frontdoor's frame size) and flushes.
func (c *h2Client) writeHeaders(id uint32, endStream bool, fields []hpack.HeaderField) error {
	block := c.encode(fields)
	max := int(c.setting(http2.SettingMaxFrameSize))
	first := block
	if len(first) > max {
		first = first[:max]
	}
	rest := block[len(first):]
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: endStream, EndHeaders: len(rest) == 0})
	for err == nil && len(rest) > 0 {
		frag := rest
		if len(frag) > max {
			frag = frag[:max]
		}
		rest = rest[len(frag):]
		err = c.fr.WriteContinuation(id, len(rest) == 0, frag)
	}
	if err != nil {
		return err
	}
	return c.flush()
}

func (c *h2Client) writeData(id uint32, endStream bool, p []byte) error {
	if err := c.fr.WriteData(id, endStream, p); err != nil {
		return err
	}
	return c.flush()
}

func hf(kv ...string) []hpack.HeaderField {
	out := make([]hpack.HeaderField, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

// grpcFields are the request headers of a gRPC call to path.
func (c *h2Client) grpcFields(path string) []hpack.HeaderField {
	return hf(":method", "POST", ":scheme", "http", ":authority", c.host, ":path", path,
		"content-type", "application/grpc", "te", "trailers")
}

// getFields are the request headers of a plain GET of path.
func (c *h2Client) getFields(path string) []hpack.HeaderField {
	return hf(":method", "GET", ":scheme", "http", ":authority", c.host, ":path", path)
}

// grpcCall sends a complete unary gRPC call with an empty message to path
// on a new stream and returns the stream's ID.
func (c *h2Client) grpcCall(path string) uint32 {
	c.t.Helper()
	id := c.newStream()
	if err := c.writeHeaders(id, false, c.grpcFields(path)); err != nil {
		c.t.Fatalf("write HEADERS: %v", err)
	}
	if err := c.writeData(id, true, emptyGRPCMessage); err != nil {
		c.t.Fatalf("write DATA: %v", err)
	}
	return id
}

// take returns the first pending frame that match accepts.
func (c *h2Client) take(match func(*h2Frame) bool) (h2Frame, bool) {
	for i := range c.pending {
		if match(&c.pending[i]) {
			f := c.pending[i]
			c.pending = append(c.pending[:i], c.pending[i+1:]...)
			return f, true
		}
	}
	return h2Frame{}, false
}

// await returns the next frame that match accepts, keeping the others
// for later calls; false when the connection ended or d passed first.
func (c *h2Client) await(d time.Duration, match func(*h2Frame) bool) (h2Frame, bool) {
	if f, ok := c.take(match); ok {
		return f, true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				return h2Frame{}, false
			}
			if match(&f) {
				return f, true
			}
			c.pending = append(c.pending, f)
		case <-timer.C:
			return h2Frame{}, false
		}
	}
}

// poll is await without waiting: it looks only at frames already read.
func (c *h2Client) poll(match func(*h2Frame) bool) (h2Frame, bool) {
	if f, ok := c.take(match); ok {
		return f, true
	}
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				return h2Frame{}, false
			}
			if match(&f) {
				return f, true
			}
			c.pending = append(c.pending, f)
		default:
			return h2Frame{}, false
		}
	}
}

// expect is await that fails the test when no frame matched.
func (c *h2Client) expect(d time.Duration, what string, match func(*h2Frame) bool) h2Frame {
	c.t.Helper()
	f, ok := c.await(d, match)
	if !ok {
		c.t.Fatalf("no %s within %v (connection %s; %s)", what, d, c.ended(), c.seen())
	}
	return f
}

// seen summarises the pending frames for a failure message.
func (c *h2Client) seen() string {
	const show = 8
	if len(c.pending) <= show {
		return fmt.Sprintf("frames seen: %v", c.pending)
	}
	return fmt.Sprintf("%d frames seen, the last %d: %v", len(c.pending), show, c.pending[len(c.pending)-show:])
}

// ended describes why the reader stopped, or "open".
func (c *h2Client) ended() string {
	select {
	case f, ok := <-c.frames:
		if ok {
			c.pending = append(c.pending, f)
			return "open"
		}
		return fmt.Sprintf("ended: %v", c.readErr)
	default:
		return "open"
	}
}

// expectGoAway waits for a GOAWAY with code.
func (c *h2Client) expectGoAway(d time.Duration, code http2.ErrCode) h2Frame {
	c.t.Helper()
	f := c.expect(d, "GOAWAY "+code.String(), isGoAway)
	if f.code != code {
		c.t.Fatalf("got %v, want GOAWAY %v", &f, code)
	}
	return f
}

// expectClosed reads until frontdoor closes the connection and returns the
// frames it sent meanwhile (pending ones included).
func (c *h2Client) expectClosed(d time.Duration) []h2Frame {
	c.t.Helper()
	out := c.pending
	c.pending = nil
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				if isTimeout(c.readErr) {
					c.t.Fatalf("frontdoor kept the connection open until its deadline")
				}
				return out
			}
			out = append(out, f)
		case <-timer.C:
			c.t.Fatalf("frontdoor did not close the connection within %v", d)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// h2Response is what came back on one stream.
type h2Response struct {
	status   int
	headers  []hpack.HeaderField
	body     []byte
	trailers []hpack.HeaderField
	reset    *http2.ErrCode // RST_STREAM code, when the stream was reset
	ended    bool           // END_STREAM seen
	headerES bool           // END_STREAM was on the response HEADERS
}

// response collects stream id's answer until END_STREAM or RST_STREAM.
func (c *h2Client) response(d time.Duration, id uint32) h2Response {
	c.t.Helper()
	var r h2Response
	deadline := time.Now().Add(d)
	for !r.ended && r.reset == nil {
		f := c.expect(time.Until(deadline), fmt.Sprintf("the end of stream %d (so far %+v)", id, r), func(f *h2Frame) bool {
			return f.stream == id && (f.typ == http2.FrameHeaders || f.typ == http2.FrameData || f.typ == http2.FrameRSTStream) || isGoAway(f) && f.code != http2.ErrCodeNo
		})
		switch f.typ {
		case http2.FrameGoAway:
			c.t.Fatalf("stream %d: %v", id, &f)
		case http2.FrameRSTStream:
			code := f.code
			r.reset = &code
		case http2.FrameData:
			r.body = append(r.body, f.data...)
		case http2.FrameHeaders:
			if r.status == 0 {
				st, err := strconv.Atoi(f.header(":status"))
				if err != nil {
					c.t.Fatalf("stream %d: response HEADERS without a :status: %v", id, f.fields)
				}
				if st >= 100 && st < 200 {
					continue
				}
				r.status, r.headers, r.headerES = st, f.fields, f.endStream()
			} else {
				r.trailers = f.fields
			}
		}
		r.ended = f.endStream()
	}
	return r
}

func fieldValue(fields []hpack.HeaderField, name string) string {
	for _, f := range fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// expectGRPCOK waits for stream id to end with status 200 and grpc-status 0.
func (c *h2Client) expectGRPCOK(id uint32) {
	c.t.Helper()
	r := c.response(5*time.Second, id)
	if r.reset != nil || r.status != 200 || fieldValue(r.trailers, "grpc-status") != "0" {
		c.t.Fatalf("gRPC call on stream %d: status %d, reset %v, headers %v, trailers %v; want 200 and grpc-status 0",
			id, r.status, r.reset, r.headers, r.trailers)
	}
}

// httpBackend is a net/http server on 127.0.0.1, speaking HTTP/1.1 or h2c
// only, with a handler per kind of request:
//   - gRPC (content-type application/grpc): reads the request body, answers
//     one empty message and grpc-status 0; a path ending in /Hold first
//     waits for release, one ending in /Stall sends headers and then neither
//     reads nor answers until the request ends.
//   - /big paths: an 8 MiB body, counting the bytes written in written.
//   - anything else: "METHOD URI BODY" with X-Backend, X-Proto (the
//     request's protocol) and X-Seen-Request-Id headers.
type httpBackend struct {
	name     string
	addr     string
	srv      *http.Server
	requests atomic.Int64 // requests whose headers arrived
	held     atomic.Int64 // requests waiting in /Hold or /Stall
	written  atomic.Int64 // body bytes /big wrote
	bigEnded atomic.Int64 // /big handlers returned
	release  chan struct{}
	quit     chan struct{}
}

const bigBody = 8 << 20

// startHTTPBackend starts an httpBackend. Its accepted connections have a
// 64 KiB send buffer, and as h2c it advertises 64 KiB stream windows, so a
// reader that stops stalls its writes early.
func startHTTPBackend(t *testing.T, name string, h2c bool) *httpBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &httpBackend{name: name, addr: ln.Addr().String(), release: make(chan struct{}), quit: make(chan struct{})}
	var protocols http.Protocols
	if h2c {
		protocols.SetUnencryptedHTTP2(true)
	} else {
		protocols.SetHTTP1(true)
	}
	b.srv = &http.Server{
		Handler:           b,
		Protocols:         &protocols,
		ReadHeaderTimeout: 5 * time.Second,
		HTTP2: &http.HTTP2Config{
			MaxReceiveBufferPerConnection: 64 << 10,
			MaxReceiveBufferPerStream:     64 << 10,
		},
	}
	go func() { _ = b.srv.Serve(sndbufListener{ln}) }()
	t.Cleanup(func() { _ = b.srv.Close() })
	return b
}

// unblock ends the waits of /Hold and /Stall handlers. Call it (deferred)
// before the proxy drains, so that the drain does not wait for them.
func (b *httpBackend) unblock() {
	select {
	case <-b.quit:
	default:
		close(b.quit)
	}
}

func (b *httpBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	h := w.Header()
	h.Set("X-Backend", b.name)
	h.Set("X-Proto", r.Proto)
	h.Set("X-Seen-Request-Id", r.Header.Get("X-Request-Id"))
	switch {
	case strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc"):
		b.grpc(w, r)
	case strings.HasSuffix(r.URL.Path, "/big"):
		b.big(w, r)
	default:
		body, _ := io.ReadAll(r.Body)
		h.Set("Content-Type", "text/plain")
		_, _ = fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), body)
	}
}

func (b *httpBackend) grpc(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/grpc")
	switch {
	case strings.HasSuffix(r.URL.Path, "/Hold"):
		b.held.Add(1)
		select {
		case <-b.release:
		case <-b.quit:
		case <-r.Context().Done():
			return
		}
	case strings.HasSuffix(r.URL.Path, "/Stall"):
		b.held.Add(1)
		w.WriteHeader(200)
		http.NewResponseController(w).Flush()
		select {
		case <-b.quit:
		case <-r.Context().Done():
		}
		return
	}
	_, _ = io.Copy(io.Discard, r.Body)
	w.WriteHeader(200)
	_, _ = w.Write(emptyGRPCMessage)
	w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
}

func (b *httpBackend) big(w http.ResponseWriter, _ *http.Request) {
	defer b.bigEnded.Add(1)
	w.Header().Set("Content-Length", strconv.Itoa(bigBody))
	chunk := make([]byte, 32<<10)
	for sent := 0; sent < bigBody; sent += len(chunk) {
		n, err := w.Write(chunk)
		b.written.Add(int64(n))
		if err != nil {
			return
		}
	}
}

// sndbufListener gives accepted connections a fixed 64 KiB send buffer
// (no autotuning), so that what a backend wrote and what its peer read stay
// close.
type sndbufListener struct{ net.Listener }

func (l sndbufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(64 << 10)
	}
	return c, err
}

// h2TOML is a proxy config whose listener "web" (with listenerExtra keys)
// routes /h1/ to the pool h1 (HTTP/1.1, when h1 is set) and everything
// else to the pool h2 (h2c).
func h2TOML(listenerExtra string, h1, h2 *httpBackend) string {
	s := listenerTOML + listenerExtra + "\n"
	if h1 != nil {
		s += `  [[listener.route]]
  path_prefix = "/h1/"
  pool = "h1"
`
	}
	s += `  [[listener.route]]
  pool = "h2"
` + poolTOML("h2", "protocol = \"h2c\"\nhealth = { check = \"none\" }", h2.addr)
	if h1 != nil {
		s += poolTOML("h1", `health = { check = "none" }`, h1.addr)
	}
	return s
}
