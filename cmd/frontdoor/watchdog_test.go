package main

import (
	"net"
	"net/http"
	"testing"
	"time"
)

// TestSelfCheck: the watchdog's self-check passes only when the admin
// listener answers /healthz with 200 in time.
func TestSelfCheck(t *testing.T) {
	t.Parallel()
	serve := func(t *testing.T, h http.HandlerFunc) net.Addr {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Second}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		return ln.Addr()
	}
	closed := func(t *testing.T) net.Addr {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := ln.Addr()
		_ = ln.Close()
		return a
	}
	tests := []struct {
		name string
		addr func(t *testing.T) net.Addr
		ok   bool
	}{
		{"healthy", func(t *testing.T) net.Addr {
			return serve(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/healthz" {
					w.WriteHeader(http.StatusNotFound)
				}
			})
		}, true},
		{"unhealthy", func(t *testing.T) net.Addr {
			return serve(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
		}, false},
		{"too slow", func(t *testing.T) net.Addr {
			return serve(t, func(_ http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			})
		}, false},
		{"not listening", closed, false},
		{"unspecified address dials loopback", func(t *testing.T) net.Addr {
			a := serve(t, func(http.ResponseWriter, *http.Request) {}).(*net.TCPAddr)
			return &net.TCPAddr{IP: net.IPv4zero, Port: a.Port}
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := newSelfCheck(tc.addr(t), 400*time.Millisecond).run()
			if (err == nil) != tc.ok {
				t.Errorf("run() = %v, want ok %v", err, tc.ok)
			}
		})
	}
	var none *selfCheck
	if err := none.run(); err != nil {
		t.Errorf("a nil self-check (admin off) failed: %v", err)
	}
}
