package transcodetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Service is the test service's full name.
const Service = "bookstore.v1.Bookstore"

// Dir returns the directory of the test protos (testdata of this package).
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata")
}

// Protoc compiles the .proto files named (relative to Dir) into a
// descriptor set in a temporary directory of t, as the README tells
// operators to (--include_imports --include_source_info), and returns its
// path. It fails the test when protoc is missing: make test installs it
// (Debian package protobuf-compiler).
func Protoc(t testing.TB, protos ...string) string {
	t.Helper()
	bin, err := exec.LookPath("protoc")
	if err != nil {
		t.Fatal("protoc not found: install the Debian package protobuf-compiler (make test-deps does)")
	}
	out := filepath.Join(t.TempDir(), "api.pb")
	args := []string{"-I", Dir(), "--include_imports", "--include_source_info", "-o", out}
	cmd := exec.Command(bin, append(args, protos...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc %v: %v\n%s", protos, err, b)
	}
	return out
}

// DescriptorSet compiles bookstore.proto and returns the descriptor set's
// path.
func DescriptorSet(t testing.TB) string {
	t.Helper()
	return Protoc(t, "bookstore.proto")
}

// Files reads a descriptor set file into linked descriptors.
func Files(t testing.TB, path string) *protoregistry.Files {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(data, &set); err != nil {
		t.Fatal(err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// Backend is a grpc-go server of the Bookstore service on 127.0.0.1. What
// each method answers is in handle and stream below.
type Backend struct {
	Addr string
	// Calls counts the calls it received.
	Calls atomic.Int64

	srv   *grpc.Server
	files *protoregistry.Files
	mu    sync.Mutex
	last  metadata.MD
}

// LastMetadata returns the request metadata of the last call.
func (b *Backend) LastMetadata() metadata.MD {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last.Copy()
}

// Stop stops the server at once.
func (b *Backend) Stop() { b.srv.Stop() }

// StartBackend starts a Backend serving the descriptors of the set at
// path; t's cleanup stops it.
func StartBackend(t testing.TB, path string) *Backend {
	t.Helper()
	return StartBackendOn(t, path, "127.0.0.1:0")
}

// StartBackendOn is StartBackend on a given address, with grpc-go server
// options (TLS credentials, say).
func StartBackendOn(t testing.TB, path, addr string, opts ...grpc.ServerOption) *Backend {
	t.Helper()
	files := Files(t, path)
	d, err := files.FindDescriptorByName(Service)
	if err != nil {
		t.Fatal(err)
	}
	sd := d.(protoreflect.ServiceDescriptor)
	b := &Backend{files: files, srv: grpc.NewServer(opts...)}
	desc := grpc.ServiceDesc{ServiceName: Service, HandlerType: (*any)(nil), Metadata: "bookstore.proto"}
	for i := range sd.Methods().Len() {
		md := sd.Methods().Get(i)
		switch {
		case md.IsStreamingClient() || md.IsStreamingServer():
			desc.Streams = append(desc.Streams, grpc.StreamDesc{
				StreamName:    string(md.Name()),
				ServerStreams: md.IsStreamingServer(),
				ClientStreams: md.IsStreamingClient(),
				Handler: func(_ any, ss grpc.ServerStream) error {
					b.record(ss.Context())
					return b.stream(md, ss)
				},
			})
		default:
			desc.Methods = append(desc.Methods, grpc.MethodDesc{
				MethodName: string(md.Name()),
				Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
					b.record(ctx)
					req := dynamicpb.NewMessage(md.Input())
					if err := dec(req); err != nil {
						return nil, err
					}
					return b.handle(ctx, md, req)
				},
			})
		}
	}
	b.srv.RegisterService(&desc, struct{}{})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b.Addr = ln.Addr().String()
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(b.srv.Stop)
	return b
}

func (b *Backend) record(ctx context.Context) {
	b.Calls.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	b.mu.Lock()
	b.last = md
	b.mu.Unlock()
}

// M is a dynamic message with setters by field name, for building answers.
type M struct{ *dynamicpb.Message }

// New returns an empty message of the type named.
func (b *Backend) New(name string) M {
	d, err := b.files.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		panic(err)
	}
	return M{dynamicpb.NewMessage(d.(protoreflect.MessageDescriptor))}
}

// Set sets field name to v (a Go value protoreflect.ValueOf takes, an M,
// or a []string for a repeated string field) and returns m.
func (m M) Set(name string, v any) M {
	fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil {
		panic("no field " + name)
	}
	switch x := v.(type) {
	case M:
		m.Message.Set(fd, protoreflect.ValueOfMessage(x.Message))
	case []string:
		l := m.Mutable(fd).List()
		for _, s := range x {
			l.Append(protoreflect.ValueOfString(s))
		}
	case protoreflect.EnumNumber:
		m.Message.Set(fd, protoreflect.ValueOfEnum(x))
	default:
		m.Message.Set(fd, protoreflect.ValueOf(v))
	}
	return m
}

// Get returns field name.
func (m M) Get(name string) protoreflect.Value {
	return m.Message.Get(m.Descriptor().Fields().ByName(protoreflect.Name(name)))
}

func (b *Backend) book(name string) M {
	ts := b.New("google.protobuf.Timestamp").Set("seconds", int64(1700000000)).Set("nanos", int32(500000000))
	return b.New("bookstore.v1.Book").Set("name", name).Set("title", "Title of "+name).Set("author", "Ann Author").
		Set("create_time", ts).Set("genre", protoreflect.EnumNumber(1)).Set("tags", []string{"a", "b"}).Set("pages", int64(1)<<40)
}

// handle answers a unary call:
//
//	GetShelf     shelf 404 is NOT_FOUND; else Shelf{name: "shelves/N", theme, book_count: 10N},
//	             with header metadata x-shelf and trailer x-trailer
//	CreateShelf  the shelf, named "shelves/new" when it has no name
//	GetBook      a Book named as asked
//	CreateBook   the book, named PARENT/books/1
//	UpdateBook   the request itself (book and update_mask)
//	DeleteBook   Empty
//	ListBooks    page_size (default 2) books and a next_page_token
//	Echo         the request itself, after sleeping its delay
//	Fail         the status code and message asked for; INVALID_ARGUMENT
//	             carries an ErrorInfo detail
//	Internal     Empty
func (b *Backend) handle(ctx context.Context, md protoreflect.MethodDescriptor, req *dynamicpb.Message) (proto.Message, error) {
	in := M{req}
	switch md.Name() {
	case "GetShelf":
		n := in.Get("shelf").Int()
		if n == 404 {
			return nil, status.Errorf(codes.NotFound, "shelf %d not found", n)
		}
		_ = grpc.SetHeader(ctx, metadata.Pairs("x-shelf", fmt.Sprint(n)))
		_ = grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "done"))
		return b.New("bookstore.v1.Shelf").Set("name", fmt.Sprintf("shelves/%d", n)).Set("theme", "theme").Set("book_count", n*10).Message, nil
	case "CreateShelf":
		shelf := M{in.Get("shelf").Message().Interface().(*dynamicpb.Message)}
		if shelf.Get("name").String() == "" {
			shelf = b.New("bookstore.v1.Shelf").Set("name", "shelves/new").Set("theme", shelf.Get("theme").String()).Set("book_count", shelf.Get("book_count").Int())
		}
		return shelf.Message, nil
	case "GetBook":
		return b.book(in.Get("name").String()).Message, nil
	case "CreateBook":
		book := b.New("bookstore.v1.Book")
		if in.Has(in.Descriptor().Fields().ByName("book")) {
			book = M{in.Get("book").Message().Interface().(*dynamicpb.Message)}
		}
		return book.Set("name", in.Get("parent").String()+"/books/1").Message, nil
	case "UpdateBook", "Echo":
		if d := in.Descriptor().Fields().ByName("delay"); d != nil && in.Has(d) {
			dm := in.Get("delay").Message()
			dd := time.Duration(dm.Get(dm.Descriptor().Fields().ByName("seconds")).Int())*time.Second +
				time.Duration(dm.Get(dm.Descriptor().Fields().ByName("nanos")).Int())
			select {
			case <-time.After(dd):
			case <-ctx.Done():
				return nil, status.FromContextError(ctx.Err()).Err()
			}
		}
		return req, nil
	case "DeleteBook", "Internal":
		return b.New("google.protobuf.Empty").Message, nil
	case "ListBooks":
		n := int(in.Get("page_size").Int())
		if n == 0 {
			n = 2
		}
		resp := b.New("bookstore.v1.ListBooksResponse").Set("next_page_token", "next")
		l := resp.Mutable(resp.Descriptor().Fields().ByName("books")).List()
		for i := range n {
			l.Append(protoreflect.ValueOfMessage(b.book(fmt.Sprintf("%s/books/%d", in.Get("parent").String(), i+1)).Message))
		}
		return resp.Message, nil
	case "Fail":
		code := codes.Code(in.Get("code").Int())
		st := status.New(code, in.Get("message").String())
		if code == codes.InvalidArgument {
			if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: "TEST_REASON", Domain: "frontdoor.test", Metadata: map[string]string{"k": "v"}}); err == nil {
				st = d
			}
		}
		return nil, st.Err()
	}
	return nil, status.Errorf(codes.Unimplemented, "no %s", md.Name())
}

// stream serves the streaming methods: WatchBooks sends count books, then
// ends with fail_code (and message "watch failed") when it is not 0;
// UploadBooks answers the last book it received.
func (b *Backend) stream(md protoreflect.MethodDescriptor, ss grpc.ServerStream) error {
	switch md.Name() {
	case "WatchBooks":
		req := M{dynamicpb.NewMessage(md.Input())}
		if err := ss.RecvMsg(req.Message); err != nil {
			return err
		}
		_ = ss.SetHeader(metadata.Pairs("x-watch", "1"))
		for i := range int(req.Get("count").Int()) {
			if err := ss.SendMsg(b.book(fmt.Sprintf("%s/books/%d", req.Get("parent").String(), i+1)).Message); err != nil {
				return err
			}
		}
		if c := codes.Code(req.Get("fail_code").Int()); c != codes.OK {
			return status.Error(c, "watch failed")
		}
		return nil
	case "UploadBooks":
		last := dynamicpb.NewMessage(md.Output())
		for {
			m := dynamicpb.NewMessage(md.Input())
			if err := ss.RecvMsg(m); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return err
			}
			last = m
		}
		return ss.SendMsg(last)
	}
	return status.Errorf(codes.Unimplemented, "no %s", md.Name())
}
