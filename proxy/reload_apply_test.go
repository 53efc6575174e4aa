package proxy

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"frontdoor/config"
)

// Reload semantics of Proxy.Apply, in process. The daemon-level proof under
// load is cmd/frontdoor's TestHitlessReloadUnderLoad.

func reloadApply(t *testing.T, p *testProxy, toml string) error {
	t.Helper()
	cfg, err := config.Parse([]byte(toml), "test.toml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return p.Apply(cfg)
}

// reloadFreeAddr returns a 127.0.0.1 address that was free a moment ago,
// for a second listener (two binds of port 0 would be the same bind string).
func reloadFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func reloadRefused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		_ = c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

func reloadPool(addrs ...string) string {
	return poolTOML("demo", "retries = 0\n[pool.demo.health]\ncheck = \"none\"", addrs...)
}

const reloadRoute = `
  [[listener.route]]
  pool = "demo"
`

// reloadInFlight sends GET url in the background and reports status and body.
func reloadInFlight(url string) <-chan string {
	out := make(chan string, 1)
	go func() {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(url)
		if err := (&fasthttp.Client{}).DoTimeout(req, resp, 10*time.Second); err != nil {
			out <- err.Error()
			return
		}
		out <- string(rune('0'+resp.StatusCode()/100)) + "xx " + string(resp.Body())
	}()
	return out
}

// TestReloadInFlightRequestFinishes: a request in flight to a backend that
// a reload removes finishes on the old runtime; the next one uses the new.
func TestReloadInFlightRequestFinishes(t *testing.T) {
	t.Parallel()
	a, b := startBackend(t, "a"), startBackend(t, "b")
	p := startProxy(t, listenerTOML+reloadRoute+reloadPool(a.addr), nil)
	slow := reloadInFlight(p.url(t, "web", "/slow"))
	waitFor(t, 5*time.Second, "the slow request to reach a", func() bool { return a.hits.Load() == 1 })
	if err := reloadApply(t, p, listenerTOML+reloadRoute+reloadPool(b.addr)); err != nil {
		t.Fatal(err)
	}
	if got := <-slow; got != "2xx a" {
		t.Errorf("request in flight across the reload: %q, want 2xx from a", got)
	}
	resp, err := get(t, &fasthttp.Client{}, p.url(t, "web", "/"))
	if err != nil || string(resp.Body()) != "b" {
		t.Errorf("after the reload: %v %q, want b", err, resp.Body())
	}
}

// TestReloadRemovedListenerDrains: a listener a reload removes stops
// accepting, finishes the request in flight, then its port is closed; the
// listener that stays keeps serving.
func TestReloadRemovedListenerDrains(t *testing.T) {
	t.Parallel()
	a := startBackend(t, "a")
	old := reloadFreeAddr(t)
	two := listenerTOML + reloadRoute + `
[[listener]]
name = "old"
bind = "` + old + `"
` + reloadRoute + reloadPool(a.addr)
	p := startProxy(t, two, nil)
	slow := reloadInFlight("http://" + old + "/slow")
	waitFor(t, 5*time.Second, "the slow request to reach a", func() bool { return a.hits.Load() == 1 })
	if err := reloadApply(t, p, listenerTOML+reloadRoute+reloadPool(a.addr)); err != nil {
		t.Fatal(err)
	}
	if got := <-slow; got != "2xx a" {
		t.Errorf("request in flight on the removed listener: %q, want 2xx from a", got)
	}
	waitFor(t, 5*time.Second, "the removed listener's port to close", func() bool { return reloadRefused(old) })
	resp, err := get(t, &fasthttp.Client{}, p.url(t, "web", "/"))
	if err != nil || resp.StatusCode() != 200 {
		t.Errorf("listener web after the reload: %v %d", err, resp.StatusCode())
	}
}

// TestReloadFailedApplyChangesNothing: a config whose second new listener
// cannot bind changes nothing, and releases the socket it had already bound
// for the first.
func TestReloadFailedApplyChangesNothing(t *testing.T) {
	t.Parallel()
	a, b := startBackend(t, "a"), startBackend(t, "b")
	p := startProxy(t, listenerTOML+reloadRoute+reloadPool(a.addr), nil)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free := reloadFreeAddr(t)
	bad := listenerTOML + reloadRoute + `
[[listener]]
name = "first"
bind = "` + free + `"
` + reloadRoute + `
[[listener]]
name = "second"
bind = "` + taken.Addr().String() + `"
` + reloadRoute + reloadPool(b.addr)
	err = reloadApply(t, p, bad)
	if err == nil || !strings.Contains(err.Error(), "second") {
		t.Fatalf("Apply = %v, want the bind error of listener second", err)
	}
	resp, gerr := get(t, &fasthttp.Client{}, p.url(t, "web", "/"))
	if gerr != nil || string(resp.Body()) != "a" {
		t.Errorf("after the failed apply: %v %q, want the old pool (a)", gerr, resp.Body())
	}
	if st := p.Status(ConfigStatus{}); len(st.Listeners) != 1 || st.Pools[0].Backends[0].Address != a.addr {
		t.Errorf("the failed apply changed the runtime: %+v %+v", st.Listeners, st.Pools)
	}
	ln, lerr := net.Listen("tcp", free)
	if lerr != nil {
		t.Fatalf("the failed apply kept the socket it bound for listener first: %v", lerr)
	}
	_ = ln.Close()
}

// TestReloadAppliesListenerSettings: a reload that keeps a listener's bind
// but changes its limits must apply the new limits to new requests.
func TestReloadAppliesListenerSettings(t *testing.T) {
	t.Parallel()
	a := startBackend(t, "a")
	with := func(limit string) string {
		return listenerTOML + "max_body_bytes = " + limit + "\n" + reloadRoute + reloadPool(a.addr)
	}
	p := startProxy(t, with("1000000"), nil)
	post := func() int {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(p.url(t, "web", "/"))
		req.Header.SetMethod("POST")
		req.SetBody(make([]byte, 100))
		if err := (&fasthttp.Client{}).DoTimeout(req, resp, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode()
	}
	if got := post(); got != 200 {
		t.Fatalf("100-byte body under max_body_bytes = 1000000: %d", got)
	}
	if err := reloadApply(t, p, with("10")); err != nil {
		t.Fatal(err)
	}
	if got := post(); got != 413 {
		t.Errorf("100-byte body after a reload to max_body_bytes = 10: %d, want 413", got)
	}
}

// TestReadyAcrossReload: Ready stays true across a reload that keeps every
// backend: their health results are carried over.
func TestReadyAcrossReload(t *testing.T) {
	t.Parallel()
	a := startBackend(t, "a")
	toml := listenerTOML + reloadRoute + poolTOML("demo", "[pool.demo.health]\ncheck = \"tcp\"\ninterval = \"1h\"\ntimeout = \"1s\"", a.addr)
	p := startProxy(t, toml, nil)
	if err := reloadApply(t, p, toml); err != nil {
		t.Fatal(err)
	}
	if !p.Ready() {
		t.Error("Ready() false right after a reload that kept every backend")
	}
	// The first probe after Run starts is immediate; by the time it is
	// done the checker must count its round as finished.
	waitFor(t, 5*time.Second, "Ready after the reload's first round", p.Ready)
}

// TestShutdownWaitsForRemovedListener: a SIGTERM (Shutdown) soon after a
// reload that removed a listener lets that listener's request in flight
// finish too; Shutdown returned at once and the process exited under it.
func TestShutdownWaitsForRemovedListener(t *testing.T) {
	t.Parallel()
	b, arrived, release := startHolding(t)
	old := reloadFreeAddr(t)
	p := startProxy(t, listenerTOML+reloadRoute+`
[[listener]]
name = "old"
bind = "`+old+`"
`+reloadRoute+reloadPool(b.addr), nil)
	held := reloadInFlight("http://" + old + "/held")
	<-arrived
	if err := reloadApply(t, p, listenerTOML+reloadRoute+reloadPool(b.addr)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- p.Shutdown(ctx) }()
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned (%v) with the removed listener's request in flight", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if got := <-held; got != "2xx done" {
		t.Errorf("request in flight on the removed listener: %q, want 2xx done", got)
	}
}
