package main

import (
	"flag"
	"log"
	"net"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on (IPv4 loopback only)")
	backend := flag.String("backend", "127.0.0.1:9001", "backend host:port (IPv4)")
	flag.Parse()
	if host, _, err := net.SplitHostPort(*listen); err != nil || !net.ParseIP(host).IsLoopback() || net.ParseIP(host).To4() == nil {
		log.Fatalf("evproxy: -listen %q: want 127.0.0.1:PORT", *listen)
	}
	p, err := newProxy(*listen, *backend)
	if err != nil {
		log.Fatalf("evproxy: %v", err)
	}
	if err := p.serve(); err != nil {
		log.Fatalf("evproxy: %v", err)
	}
}
