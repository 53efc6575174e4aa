package proxy

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// proxyV2 builds a PROXY protocol v2 header for a TCP over IPv4 connection
// from src to dst.
func proxyV2(src, dst netip.AddrPort) []byte {
	b := []byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0, 12}
	s, d := src.Addr().As4(), dst.Addr().As4()
	b = append(b, s[:]...)
	b = append(b, d[:]...)
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// TestAcceptProxyOnHTTPListeners: with accept_proxy, an http listener reads
// a PROXY protocol v1 or v2 header before the first request, in both
// engines: its source is the client (X-Forwarded-For, the access record's
// client), the balancer that sent it is the record's peer; a connection
// without a valid header is closed, counted, and reaches no backend.
func TestAcceptProxyOnHTTPListeners(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		header []byte
		client string
	}{
		{"v1", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 5555 80\r\n"), "203.0.113.7"},
		{"v2", proxyV2(netip.MustParseAddrPort("198.51.100.9:4444"), netip.MustParseAddrPort("192.0.2.1:80")), "198.51.100.9"},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), "127.0.0.1"},
	}
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var seen []string
			s := startScripted(t, func(c net.Conn, i int, req *fasthttp.Request) bool {
				mu.Lock()
				seen = append(seen, string(req.Header.Peek("X-Forwarded-For")))
				mu.Unlock()
				_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				return err == nil
			})
			r := startCoreRig(t, e, listenerTOML+`accept_proxy = true
  [[listener.route]]
  pool = "s"
`+poolTOML("s", `health = { check = "none" }`, s.addr))
			for _, tc := range cases {
				c, br := dialLoop(t, r.testProxy, 0)
				// The header in two pieces: the proxy waits for the rest.
				_, _ = c.Write(tc.header[:5])
				time.Sleep(20 * time.Millisecond)
				_, _ = c.Write(append(tc.header[5:], "GET /"+e.name+"/"+strings.ReplaceAll(tc.name, " ", "-")+" HTTP/1.1\r\nHost: a\r\n\r\n"...))
				if resp := readAnswer(t, br, false); resp.StatusCode() != 200 {
					t.Fatalf("%s: %d", tc.name, resp.StatusCode())
				}
				rec := r.record(t, "path", "/"+e.name+"/"+strings.ReplaceAll(tc.name, " ", "-"))
				if rec["client"] != tc.client {
					t.Errorf("%s: record client %v, want %s", tc.name, rec["client"], tc.client)
				}
				if peer, _ := rec["peer"].(string); !strings.HasPrefix(peer, "127.0.0.1:") {
					t.Errorf("%s: record peer %v, want the balancer's 127.0.0.1 address", tc.name, rec["peer"])
				}
				mu.Lock()
				last := seen[len(seen)-1]
				mu.Unlock()
				if last != tc.client {
					t.Errorf("%s: the backend saw X-Forwarded-For %q, want %s", tc.name, last, tc.client)
				}
			}

			// No header: closed, counted, nothing forwarded.
			mu.Lock()
			before := len(seen)
			mu.Unlock()
			c, br := dialLoop(t, r.testProxy, 0)
			_, _ = io.WriteString(c, "GET /no-header HTTP/1.1\r\nHost: a\r\n\r\n")
			expectEOF(t, c, br, 5*time.Second)
			waitFor(t, 5*time.Second, "the rejection counted", func() bool {
				return metricValue(t, r.reg, "frontdoor_connections_rejected_total", map[string]string{"reason": "proxy_protocol"}) == 1
			})
			mu.Lock()
			after := len(seen)
			mu.Unlock()
			if after != before {
				t.Errorf("a connection without a PROXY header reached the backend")
			}
		})
	}
}
