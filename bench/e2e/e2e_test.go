package e2e

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// TestProxies checks that every proxy in the benchmark forwards both
// workloads intact, so the benchmark compares working proxies.
func TestProxies(t *testing.T) {
	t.Parallel()
	for _, px := range proxies {
		t.Run(px.name, func(t *testing.T) {
			t.Parallel()
			addr := px.start(t, startBackend(t))
			hc := &fasthttp.HostClient{Addr: addr}
			for _, w := range []struct {
				path string
				size int
			}{{"/small", len(smallBody)}, {"/big", bigBytes}, {"/small", len(smallBody)}} {
				c := newClient(hc, addr, w.path)
				if err := c.do(w.size); err != nil {
					t.Fatalf("GET %s: %v (status %d, %d bytes)", w.path, err, c.resp.StatusCode(), len(c.resp.Body()))
				}
				if w.path == "/small" && string(c.resp.Body()) != smallBody {
					t.Fatalf("GET /small body %q", c.resp.Body())
				}
				if px.name == "frontdoor" && len(c.resp.Header.Peek("X-Request-ID")) == 0 {
					t.Errorf("frontdoor answered without X-Request-ID")
				}
			}
		})
	}
}
