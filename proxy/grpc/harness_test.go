package grpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	grpclib "google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"frontdoor/balancer"
)

// rawCodec passes []byte messages through untouched, so the test service
// needs no generated code. Its content-subtype is "raw"
// (application/grpc+raw).
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case *[]byte:
		return *m, nil
	case []byte:
		return m, nil
	}
	return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	*m = append((*m)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "raw" }

// The codec registry is grpc-go's; registering once at init is its intended
// use and leaves nothing mutable behind.
func init() { encoding.RegisterCodec(rawCodec{}) }

const maxMsg = 64 << 20

// Test service methods.
const (
	methodUnary   = "/fd.test.Echo/Unary"
	methodServer  = "/fd.test.Echo/ServerStream"
	methodClient  = "/fd.test.Echo/ClientStream"
	methodBidi    = "/fd.test.Echo/Bidi"
	methodNoRoute = "/nowhere.Service/Method"
)

var (
	descServer = grpclib.StreamDesc{StreamName: "ServerStream", ServerStreams: true}
	descClient = grpclib.StreamDesc{StreamName: "ClientStream", ClientStreams: true}
	descBidi   = grpclib.StreamDesc{StreamName: "Bidi", ServerStreams: true, ClientStreams: true}
)

// testBackend is a real grpc-go server on 127.0.0.1 running the echo
// service and grpc.health.v1.
type testBackend struct {
	name    string
	addr    string
	srv     *grpclib.Server
	backend *balancer.Backend
	health  *health.Server

	calls     atomic.Int64
	started   chan string // method of a call that began (non-blocking send)
	cancelled chan error  // ctx.Err() a sleeping call saw
}

func startBackend(t testing.TB, name string) *testBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tb := &testBackend{
		name:      name,
		addr:      ln.Addr().String(),
		srv:       grpclib.NewServer(grpclib.MaxRecvMsgSize(maxMsg), grpclib.MaxSendMsgSize(maxMsg)),
		health:    health.NewServer(),
		started:   make(chan string, 64),
		cancelled: make(chan error, 64),
	}
	tb.backend = balancer.NewBackend(tb.addr)
	tb.backend.SetHealthy(true)
	tb.srv.RegisterService(&echoServiceDesc, tb)
	healthpb.RegisterHealthServer(tb.srv, tb.health)
	go func() { _ = tb.srv.Serve(ln) }()
	t.Cleanup(tb.srv.Stop)
	return tb
}

var echoServiceDesc = grpclib.ServiceDesc{
	ServiceName: "fd.test.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpclib.MethodDesc{{
		MethodName: "Unary",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpclib.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			return srv.(*testBackend).unary(ctx, in)
		},
	}},
	Streams: []grpclib.StreamDesc{
		{StreamName: "ServerStream", ServerStreams: true, Handler: func(srv any, ss grpclib.ServerStream) error {
			return srv.(*testBackend).serverStream(ss)
		}},
		{StreamName: "ClientStream", ClientStreams: true, Handler: func(srv any, ss grpclib.ServerStream) error {
			return srv.(*testBackend).clientStream(ss)
		}},
		{StreamName: "Bidi", ServerStreams: true, ClientStreams: true, Handler: func(srv any, ss grpclib.ServerStream) error {
			return srv.(*testBackend).bidi(ss)
		}},
	},
}

// begin records a call and returns the metadata to echo: every incoming
// key starting with "x-echo" goes back as a header, and as a trailer with
// "x-echo" replaced by "x-trailer". The header also names the backend.
func (tb *testBackend) begin(ctx context.Context, method string) (header, trailer metadata.MD, in metadata.MD) {
	tb.calls.Add(1)
	in, _ = metadata.FromIncomingContext(ctx)
	if len(in["x-sleep"]) > 0 {
		// Watch from the start: the call may be cancelled before its
		// handler gets to sleep.
		go func() {
			<-ctx.Done()
			tb.cancelled <- ctx.Err()
		}()
	}
	select {
	case tb.started <- method:
	default:
	}
	header = metadata.Pairs("x-backend", tb.name)
	trailer = metadata.MD{}
	for k, v := range in {
		if strings.HasPrefix(k, "x-echo") {
			header[k] = v
			trailer["x-trailer"+strings.TrimPrefix(k, "x-echo")] = v
		}
	}
	for _, k := range []string{"x-request-id", "x-user-id", "authorization"} {
		if v := in[k]; len(v) > 0 {
			header["seen-"+k] = v
		}
	}
	return header, trailer, in
}

// wantStatus returns the error asked for by x-status (code) and
// x-status-msg-bin (binary metadata, so any UTF-8 message fits).
func wantStatus(in metadata.MD) error {
	v := in["x-status"]
	if len(v) == 0 {
		return nil
	}
	c, _ := strconv.Atoi(v[0])
	msg := ""
	if m := in["x-status-msg-bin"]; len(m) > 0 {
		msg = m[0]
	}
	return status.Error(codes.Code(c), msg)
}

// sleep blocks until the call's context ends when x-sleep is set (begin
// reports the context's error on tb.cancelled).
func (tb *testBackend) sleep(ctx context.Context, in metadata.MD) error {
	if len(in["x-sleep"]) == 0 {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

func (tb *testBackend) unary(ctx context.Context, req []byte) (any, error) {
	header, trailer, in := tb.begin(ctx, methodUnary)
	if err := grpclib.SetHeader(ctx, header); err != nil {
		return nil, err
	}
	if err := grpclib.SetTrailer(ctx, trailer); err != nil {
		return nil, err
	}
	if err := tb.sleep(ctx, in); err != nil {
		return nil, err
	}
	if err := wantStatus(in); err != nil {
		return nil, err
	}
	return &req, nil
}

// serverStream sends as many messages as the request's decimal number.
func (tb *testBackend) serverStream(ss grpclib.ServerStream) error {
	header, trailer, in := tb.begin(ss.Context(), methodServer)
	if err := ss.SendHeader(header); err != nil {
		return err
	}
	ss.SetTrailer(trailer)
	var req []byte
	if err := ss.RecvMsg(&req); err != nil {
		return err
	}
	n, _ := strconv.Atoi(string(req))
	for i := range n {
		msg := []byte("msg-" + strconv.Itoa(i))
		if err := ss.SendMsg(&msg); err != nil {
			return err
		}
	}
	if err := tb.sleep(ss.Context(), in); err != nil {
		return err
	}
	return wantStatus(in)
}

// clientStream answers with the number of messages and bytes received.
func (tb *testBackend) clientStream(ss grpclib.ServerStream) error {
	header, trailer, in := tb.begin(ss.Context(), methodClient)
	ss.SetTrailer(trailer)
	if err := ss.SendHeader(header); err != nil {
		return err
	}
	msgs, total := 0, 0
	for {
		var m []byte
		err := ss.RecvMsg(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		msgs++
		total += len(m)
	}
	if err := wantStatus(in); err != nil {
		return err
	}
	out := []byte(fmt.Sprintf("%d/%d", msgs, total))
	return ss.SendMsg(&out)
}

// bidi echoes every message as it arrives.
func (tb *testBackend) bidi(ss grpclib.ServerStream) error {
	header, trailer, _ := tb.begin(ss.Context(), methodBidi)
	if err := ss.SendHeader(header); err != nil {
		return err
	}
	ss.SetTrailer(trailer)
	for {
		var m []byte
		err := ss.RecvMsg(&m)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := ss.SendMsg(&m); err != nil {
			return err
		}
	}
}

// testRouter sends every call to one route, except methods under
// "/nowhere.", which have no route.
type testRouter struct{ route *Route }

func (r *testRouter) RouteGRPC(_, path string) (*Route, bool) {
	if strings.HasPrefix(path, "/nowhere.") {
		return nil, false
	}
	return r.route, true
}

// fixture is a frontdoor Server on a 127.0.0.1 listener in front of
// backends, with a grpc-go client connected to it.
type fixture struct {
	backends []*testBackend
	route    *Route
	srv      *Server
	addr     string
	cc       *grpclib.ClientConn
}

type fixtureOpts struct {
	backends int
	route    *Route // settings to copy; Pool is filled in from the backends unless set
	options  Options
}

func newFixture(t testing.TB, fo fixtureOpts) *fixture {
	t.Helper()
	f := &fixture{}
	members := make([]balancer.Member, 0, fo.backends)
	for i := range fo.backends {
		tb := startBackend(t, "b"+strconv.Itoa(i))
		f.backends = append(f.backends, tb)
		members = append(members, balancer.Member{Backend: tb.backend, Weight: 1})
	}
	if fo.route == nil {
		fo.route = &Route{}
	}
	f.route = &Route{
		Listener: "grpc", PoolName: "echo",
		HashOn: fo.route.HashOn, ConnectTimeout: fo.route.ConnectTimeout,
		ResponseTimeout: fo.route.ResponseTimeout, Retries: fo.route.Retries,
		Authorize: fo.route.Authorize, Observe: fo.route.Observe, Pool: fo.route.Pool,
		Passive: fo.route.Passive, InFlight: fo.route.InFlight,
		PassiveSkipsTimeouts: fo.route.PassiveSkipsTimeouts, FailureStatuses: fo.route.FailureStatuses,
		RetryAllowed: fo.route.RetryAllowed, Retrying: fo.route.Retrying,
		TakeConn: fo.route.TakeConn, GiveConn: fo.route.GiveConn,
	}
	if f.route.Pool == nil && len(members) > 0 {
		pool, err := balancer.NewPool(members, balancer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		f.route.Pool = pool
	}
	opts := fo.options
	if opts.Router == nil {
		opts.Router = &testRouter{route: f.route}
	}
	f.srv, f.addr = serveFrontdoor(t, opts)
	f.cc = dial(t, f.addr)
	return f
}

// serveFrontdoor runs a Server behind a 127.0.0.1 listener the way the
// proxy's http listener does: every accepted connection goes to ServeConn.
func serveFrontdoor(t testing.TB, opts Options) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(opts)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				srv.ServeConn(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		wg.Wait()
	})
	return srv, ln.Addr().String()
}

func dial(t testing.TB, addr string) *grpclib.ClientConn {
	t.Helper()
	cc, err := grpclib.NewClient(addr,
		grpclib.WithTransportCredentials(insecure.NewCredentials()),
		grpclib.WithDefaultCallOptions(grpclib.MaxCallRecvMsgSize(maxMsg), grpclib.MaxCallSendMsgSize(maxMsg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

var raw = grpclib.ForceCodec(rawCodec{})

func unary(ctx context.Context, cc *grpclib.ClientConn, method string, req []byte, opts ...grpclib.CallOption) ([]byte, error) {
	var resp []byte
	err := cc.Invoke(ctx, method, &req, &resp, append(opts, raw)...)
	return resp, err
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func codeOf(err error) codes.Code { return status.Code(err) }
