package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "grpcload:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("grpcload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o bidiOptions
	fs.StringVar(&o.Addr, "addr", "", "host:port of the proxy or backend (h2c, loopback only)")
	fs.IntVar(&o.Conns, "conns", 4, "client connections")
	fs.IntVar(&o.Streams, "streams", 16, "Chat streams per connection")
	fs.IntVar(&o.Size, "size", 1024, "payload bytes of one message (-check: of Echo and Chat; the byte count of Download)")
	fs.DurationVar(&o.Duration, "d", 10*time.Second, "length of the run (-check: its timeout)")
	fs.Int64Var(&o.MaxCalls, "n", 100_000_000, "at most this many round trips over all streams")
	method := fs.String("check", "", "instead of a load, make one call of this `method` (a full path such as "+
		methodEmpty+") and verify the answer: exit 0 when its status is OK and its bytes are all there")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ap, err := netip.ParseAddrPort(o.Addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", o.Addr, err)
	}
	if !ap.Addr().IsLoopback() {
		return fmt.Errorf("-addr %s: not a loopback address", o.Addr)
	}
	if *method != "" {
		ctx, cancel := context.WithTimeout(ctx, o.Duration)
		defer cancel()
		return check(ctx, o.Addr, *method, o.Size)
	}
	r, err := bidi(ctx, o)
	if err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "FDBENCH %s\n", b)
	return nil
}
