package main

import (
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on (IPv4 loopback only)")
	backend := flag.String("backend", "127.0.0.1:9001", "backend host:port")
	flag.Parse()
	if host, _, err := net.SplitHostPort(*listen); err != nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("minproxy: -listen %q: want 127.0.0.1:PORT", *listen)
	}
	hc := &fasthttp.HostClient{Addr: *backend, MaxConns: 4096, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		closeConn := ctx.Request.Header.ConnectionClose()
		ctx.Request.Header.ResetConnectionClose()
		if err := hc.Do(&ctx.Request, &ctx.Response); err != nil {
			ctx.ResetBody()
			ctx.SetStatusCode(fasthttp.StatusBadGateway)
		}
		if closeConn {
			ctx.SetConnectionClose()
		}
	}, NoDefaultServerHeader: true, NoDefaultDate: true, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	ln, err := net.Listen("tcp4", *listen)
	if err != nil {
		log.Fatalf("minproxy: %v", err)
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		_ = srv.Shutdown()
	}()
	if err := srv.Serve(ln); err != nil {
		log.Fatalf("minproxy: %v", err)
	}
}
