package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Limits on what a client may ask of /slow and /size.
const (
	maxSlow      = 60 * time.Second
	maxSizeBytes = 1 << 30
	chunkBytes   = 64 << 10
)

// filler is shared read-only by every response of /size.
var filler = []byte(strings.Repeat("x", chunkBytes))

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// backend names one listener of the program.
type backend struct {
	name string
	addr string
}

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "demobackend:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("demobackend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var listens, names listFlag
	fs.Var(&listens, "listen", "address to listen on (repeatable, 127.0.0.1 only)")
	fs.Var(&names, "name", "name of the backend on the matching -listen (repeatable)")
	n := fs.Int("n", 0, "run N backends on consecutive ports from -base-port")
	basePort := fs.Int("base-port", 9001, "first port for -n")
	if err := fs.Parse(args); err != nil {
		return err
	}
	backends, err := plan(listens, names, *n, *basePort)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	lns := make([]net.Listener, 0, len(backends))
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for _, b := range backends {
		ln, err := net.Listen("tcp4", b.addr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", b.addr, err)
		}
		lns = append(lns, ln)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	servers := make([]*fasthttp.Server, len(backends))
	errc := make(chan error, len(backends))
	for i, b := range backends {
		servers[i] = newServer(b.name)
		log.Info("backend listening", "name", b.name, "addr", lns[i].Addr().String())
		go func(s *fasthttp.Server, ln net.Listener) { errc <- s.Serve(ln) }(servers[i], lns[i])
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down", "backends", len(backends))
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		if err := s.ShutdownWithContext(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("shutdown: %w", err)
		}
	}
	return nil
}

// plan turns the flags into the list of backends to run.
func plan(listens, names []string, n, basePort int) ([]backend, error) {
	var out []backend
	switch {
	case len(listens) > 0 && n > 0:
		return nil, errors.New("use either -listen/-name or -n/-base-port, not both")
	case len(names) > len(listens) && len(listens) > 0:
		return nil, fmt.Errorf("%d -name flags for %d -listen flags", len(names), len(listens))
	case len(listens) > 0:
		for i, a := range listens {
			name := "backend-" + strconv.Itoa(i+1)
			if i < len(names) {
				name = names[i]
			}
			out = append(out, backend{name: name, addr: a})
		}
	default:
		if n == 0 {
			n = 3
		}
		if n < 0 || basePort <= 0 || basePort+n-1 > 65535 {
			return nil, fmt.Errorf("bad -n %d / -base-port %d", n, basePort)
		}
		for i := range n {
			out = append(out, backend{
				name: "backend-" + strconv.Itoa(i+1),
				addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(basePort+i)),
			})
		}
	}
	for _, b := range out {
		host, _, err := net.SplitHostPort(b.addr)
		if err != nil {
			return nil, fmt.Errorf("listen address %q: %w", b.addr, err)
		}
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() || ip.To4() == nil {
			return nil, fmt.Errorf("listen address %q: only IPv4 loopback (127.0.0.1) is allowed", b.addr)
		}
	}
	return out, nil
}

// newServer returns a fasthttp server answering as the backend called name.
func newServer(name string) *fasthttp.Server {
	nameB := []byte(name)
	return &fasthttp.Server{
		Name:                          "demobackend",
		Handler:                       handler(nameB),
		ReadTimeout:                   30 * time.Second,
		WriteTimeout:                  30 * time.Second,
		IdleTimeout:                   60 * time.Second,
		NoDefaultDate:                 true,
		DisableHeaderNamesNormalizing: false,
	}
}

// handler builds the request handler of one backend.
func handler(name []byte) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetBytesV("X-Backend", name)
		if id := ctx.Request.Header.Peek("X-Request-ID"); len(id) > 0 {
			ctx.Response.Header.SetBytesV("X-Request-ID", id)
		}
		ctx.SetContentType("text/plain; charset=utf-8")
		path := ctx.Path()
		switch string(path) {
		case "/healthz":
			ctx.SetBodyString("ok\n")
			return
		case "/size":
			n, err := ctx.QueryArgs().GetUint("bytes")
			if err != nil || n > maxSizeBytes {
				ctx.SetStatusCode(fasthttp.StatusBadRequest)
				ctx.SetBodyString("size: bytes must be an integer from 0 to 1073741824\n")
				return
			}
			if n <= chunkBytes {
				ctx.SetBody(filler[:n])
				return
			}
			ctx.SetBodyStream(&fillReader{left: n}, n)
			return
		case "/slow":
			ms, err := ctx.QueryArgs().GetUint("ms")
			if err != nil || time.Duration(ms)*time.Millisecond > maxSlow {
				ctx.SetStatusCode(fasthttp.StatusBadRequest)
				ctx.SetBodyString("slow: ms must be an integer from 0 to 60000\n")
				return
			}
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		body := ctx.Response.BodyWriter()
		_, _ = body.Write(name)
		_, _ = body.Write([]byte{' '})
		_, _ = body.Write(ctx.Method())
		_, _ = body.Write([]byte{' '})
		_, _ = body.Write(path)
		_, _ = body.Write([]byte{'\n'})
	}
}

// fillReader yields left bytes of 'x'.
type fillReader struct{ left int }

func (r *fillReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.left, len(filler))
	copy(p, filler[:n])
	r.left -= n
	return n, nil
}
