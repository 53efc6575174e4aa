package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"frontdoor/balancer"
	"frontdoor/config"
)

// memberOf returns the backend of pool s whose address is addr.
func memberOf(t testing.TB, p *testProxy, pool, addr string) *balancer.Backend {
	t.Helper()
	for _, u := range p.gen.Load().pools[pool].ups {
		if u.be.Address() == addr {
			return u.be
		}
	}
	t.Fatalf("no backend %s in pool %s", addr, pool)
	return nil
}

var tokenRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

// TestCookieAffinity: the first answer sets a cookie naming its backend by
// an opaque token; 100 requests carrying it stay on that backend; when the
// backend goes down they move to another one, which re-sets the cookie, and
// stay there.
func TestCookieAffinity(t *testing.T) {
	t.Parallel()
	bs := []*testBackend{startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")}
	names := map[string]*testBackend{}
	for _, b := range bs {
		names[b.name] = b
	}
	p := streamProxy(t, "", `affinity = "cookie:fd_backend"`, nil, bs[0].addr, bs[1].addr, bs[2].addr)
	c := &fasthttp.Client{}
	url := p.url(t, "web", "/")

	do := func(cookie string) (backend, setCookie string) {
		t.Helper()
		var hdr []string
		if cookie != "" {
			hdr = []string{"Cookie", "fd_backend=" + cookie}
		}
		resp, err := get(t, c, url, hdr...)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode() != 200 {
			t.Fatalf("status %d", resp.StatusCode())
		}
		ck := fasthttp.AcquireCookie()
		defer fasthttp.ReleaseCookie(ck)
		ck.SetKey("fd_backend")
		if resp.Header.Cookie(ck) {
			setCookie = string(ck.Value())
			if !ck.HTTPOnly() || string(ck.Path()) != "/" {
				t.Errorf("cookie attributes: %s", ck.String())
			}
		}
		return string(resp.Body()), setCookie
	}

	first, cookie := do("")
	if !tokenRE.MatchString(cookie) {
		t.Fatalf("cookie %q is not a 16-hex-digit token", cookie)
	}
	for _, b := range bs {
		if strings.Contains(cookie, b.addr) || strings.Contains(cookie, strings.Split(b.addr, ":")[1]) {
			t.Fatalf("cookie %q reveals backend address %s", cookie, b.addr)
		}
	}
	for i := range 100 {
		got, set := do(cookie)
		if got != first {
			t.Fatalf("request %d went to %s, want %s", i, got, first)
		}
		if set != "" {
			t.Fatalf("request %d re-set the cookie although it was valid", i)
		}
	}

	down := memberOf(t, p, "s", names[first].addr)
	down.SetHealthy(false)
	moved, newCookie := do(cookie)
	if moved == first {
		t.Fatalf("request still went to %s while it is down", first)
	}
	if newCookie == "" || newCookie == cookie {
		t.Fatalf("cookie not re-set after moving: %q", newCookie)
	}
	down.SetHealthy(true) // back up: sessions now on the new backend stay there
	for i := range 20 {
		if got, _ := do(newCookie); got != moved {
			t.Fatalf("request %d after the move went to %s, want %s", i, got, moved)
		}
	}
	if got, set := do("0123456789abcdef"); set == "" || got == "" {
		t.Errorf("a cookie naming no backend was not replaced (went to %s)", got)
	}
}

// mcpBackend imitates an MCP server (Streamable HTTP transport) that keeps
// its sessions in memory: initialize creates one and returns its ID in
// Mcp-Session-Id; later POSTs, the GET event stream and DELETE must carry
// it; an unknown ID gets 404. Its IDs contain dots, to check they survive
// wrapping.
type mcpBackend struct {
	name     string
	addr     string
	mu       sync.Mutex
	sessions map[string]bool
	seen     []string // session IDs of every request after initialize
	n        atomic.Int64
}

func startMCPBackend(t testing.TB, name string) *mcpBackend {
	b := &mcpBackend{name: name, sessions: map[string]bool{}}
	b.addr = startHandler(t, b.handle)
	return b
}

func (b *mcpBackend) handle(ctx *fasthttp.RequestCtx) {
	id := string(ctx.Request.Header.Peek("Mcp-Session-Id"))
	if id == "" {
		if !ctx.IsPost() || !strings.Contains(string(ctx.PostBody()), `"initialize"`) {
			ctx.SetStatusCode(fasthttp.StatusBadRequest)
			return
		}
		id = fmt.Sprintf("sess.%s.%d", b.name, b.n.Add(1))
		b.mu.Lock()
		b.sessions[id] = true
		b.mu.Unlock()
		ctx.Response.Header.Set("Mcp-Session-Id", id)
		ctx.SetContentType("application/json")
		fmt.Fprintf(ctx, `{"jsonrpc":"2.0","id":1,"result":{"serverInfo":{"name":%q}}}`, b.name)
		return
	}
	b.mu.Lock()
	ok := b.sessions[id]
	b.seen = append(b.seen, id)
	if ok && ctx.IsDelete() {
		delete(b.sessions, id)
	}
	b.mu.Unlock()
	switch {
	case !ok:
		ctx.SetStatusCode(fasthttp.StatusNotFound)
	case ctx.IsDelete():
		ctx.SetStatusCode(fasthttp.StatusNoContent)
	case ctx.IsGet():
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			for i := range 3 {
				fmt.Fprintf(w, "id: %d\ndata: %s %s\n\n", i, b.name, id)
				_ = w.Flush()
			}
		})
	default:
		ctx.SetContentType("application/json")
		fmt.Fprintf(ctx, `{"jsonrpc":"2.0","id":2,"result":{"backend":%q,"session":%q}}`, b.name, id)
	}
}

func (b *mcpBackend) sawOnly(t testing.TB, ids map[string]bool) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, id := range b.seen {
		if !ids[id] {
			t.Errorf("backend %s saw session %q, which it did not issue", b.name, id)
		}
	}
}

const mcpPool = `strategy = "round_robin"
affinity = "header:Mcp-Session-Id"
`

// mcpCall sends one MCP request: method POST (with a JSON-RPC body), GET or
// DELETE, with session unless it is "".
func mcpCall(t testing.TB, url, method, session, rpc string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if rpc != "" {
		body = strings.NewReader(fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":%q}`, rpc))
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(data)
}

// TestMCPSessionsAcrossTwoProxies runs an MCP-style exchange against three
// backends that each issue their own session IDs, through two frontdoor
// instances with the same config used alternately: initialize returns a
// wrapped ID; every later POST, the GET event stream and the DELETE reach
// the issuing backend, which sees its own ID unchanged.
func TestMCPSessionsAcrossTwoProxies(t *testing.T) {
	t.Parallel()
	bs := []*mcpBackend{startMCPBackend(t, "m1"), startMCPBackend(t, "m2"), startMCPBackend(t, "m3")}
	toml := listenerTOML + `
  [[listener.route]]
  path_prefix = "/mcp"
  pool = "mcp"
` + poolTOML("mcp", "health = { check = \"none\" }\n"+mcpPool, bs[0].addr, bs[1].addr, bs[2].addr)
	proxies := []*testProxy{upProxy(t, toml, nil), upProxy(t, toml, nil)}
	url := func(i int) string { return proxies[i%2].url(t, "web", "/mcp") }

	issued := map[string]map[string]bool{} // backend → original IDs
	owners := map[string]bool{}
	for s := range 6 {
		resp, body := mcpCall(t, url(s), "POST", "", "initialize")
		wrapped := resp.Header.Get("Mcp-Session-Id")
		if resp.StatusCode != 200 || wrapped == "" {
			t.Fatalf("initialize: %d %q %s", resp.StatusCode, wrapped, body)
		}
		parts := strings.SplitN(wrapped, ".", 4)
		if len(parts) != 4 || parts[0] != "1" || !tokenRE.MatchString(parts[1]) || !strings.HasPrefix(parts[3], "sess.") {
			t.Fatalf("wrapped session ID %q, want 1.<token>.<mac>.<original>", wrapped)
		}
		orig := parts[3]
		owner := strings.Split(orig, ".")[1]
		owners[owner] = true
		if issued[owner] == nil {
			issued[owner] = map[string]bool{}
		}
		issued[owner][orig] = true

		for i := range 10 {
			resp, body := mcpCall(t, url(s+i), "POST", wrapped, "tools/list")
			want := fmt.Sprintf(`"backend":%q,"session":%q`, owner, orig)
			if resp.StatusCode != 200 || !strings.Contains(body, want) {
				t.Fatalf("session %s request %d via proxy %d: %d %s; want %s", orig, i, (s+i)%2, resp.StatusCode, body, want)
			}
			if got := resp.Header.Get("Mcp-Session-Id"); got != "" && got != wrapped {
				t.Errorf("answer re-wrapped the session as %q, want %q", got, wrapped)
			}
		}
		resp, body = mcpCall(t, url(s+1), "GET", wrapped, "")
		if resp.StatusCode != 200 || strings.Count(body, "data: "+owner+" "+orig) != 3 {
			t.Fatalf("event stream: %d %q", resp.StatusCode, body)
		}
		resp, _ = mcpCall(t, url(s), "DELETE", wrapped, "")
		if resp.StatusCode != 204 {
			t.Fatalf("DELETE: %d, want 204 from the backend", resp.StatusCode)
		}
		resp, _ = mcpCall(t, url(s+1), "POST", wrapped, "tools/list")
		if resp.StatusCode != 404 {
			t.Fatalf("after DELETE: %d, want the backend's 404", resp.StatusCode)
		}
	}
	if len(owners) != 3 {
		t.Errorf("sessions went to %d backends, want all 3 (round robin)", len(owners))
	}
	for _, b := range bs {
		b.sawOnly(t, issued[b.name])
	}
}

// TestMCPSessionRefused: a session value that is not wrapped, was tampered
// with, names a backend that is down, or one that left the pool gets 404
// from frontdoor itself, so the client starts a new session.
func TestMCPSessionRefused(t *testing.T) {
	t.Parallel()
	a, b := startMCPBackend(t, "r1"), startMCPBackend(t, "r2")
	toml := func(addrs ...string) string {
		return listenerTOML + `
  [[listener.route]]
  pool = "mcp"
` + poolTOML("mcp", "health = { check = \"none\" }\n"+mcpPool, addrs...)
	}
	p := upProxy(t, toml(a.addr, b.addr), nil)
	url := p.url(t, "web", "/")
	session := func() (wrapped, owner string) {
		resp, _ := mcpCall(t, url, "POST", "", "initialize")
		wrapped = resp.Header.Get("Mcp-Session-Id")
		return wrapped, strings.Split(strings.SplitN(wrapped, ".", 4)[3], ".")[1]
	}
	w, _ := session()
	flip := func(s string, i int) string {
		c := byte('0')
		if s[i] == '0' {
			c = '1'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	for _, tc := range []struct{ name, value string }{
		{"not wrapped", "sess.r1.1"},
		{"bad version", "2" + w[1:]},
		{"tampered token", flip(w, 2)},
		{"tampered mac", flip(w, 19)},
		{"tampered id", w + "x"},
		{"truncated", w[:30]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := mcpCall(t, url, "POST", tc.value, "tools/list")
			if resp.StatusCode != 404 || !strings.Contains(body, "frontdoor: unknown or expired session") {
				t.Fatalf("%d %q, want frontdoor's 404", resp.StatusCode, body)
			}
		})
	}
	if resp, body := mcpCall(t, url, "POST", w, "tools/list"); resp.StatusCode != 200 {
		t.Fatalf("untampered value: %d %s", resp.StatusCode, body)
	}

	// Down: 404; up again: the session works again (the backend kept it).
	w, owner := session()
	ownerAddr := map[string]string{"r1": a.addr, "r2": b.addr}[owner]
	be := memberOf(t, p, "mcp", ownerAddr)
	be.SetHealthy(false)
	if resp, _ := mcpCall(t, url, "POST", w, "tools/list"); resp.StatusCode != 404 {
		t.Fatalf("session on a down backend: %d, want 404", resp.StatusCode)
	}
	be.SetHealthy(true)
	if resp, _ := mcpCall(t, url, "POST", w, "tools/list"); resp.StatusCode != 200 {
		t.Fatalf("session after its backend came back: %d, want 200", resp.StatusCode)
	}

	// Removed from the pool by a reload: 404.
	other := map[string]string{"r1": b.addr, "r2": a.addr}[owner]
	cfg, err := config.Parse([]byte(toml(other)), "reload.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "reload ready", p.Ready)
	if resp, _ := mcpCall(t, url, "POST", w, "tools/list"); resp.StatusCode != 404 {
		t.Fatalf("session on a removed backend: %d, want 404", resp.StatusCode)
	}
}

// TestAffinityTokensAgree: two independently built affinities for the same
// pool name and setting agree on every token and session value, and a
// different pool name does not.
func TestAffinityTokensAgree(t *testing.T) {
	t.Parallel()
	members := func(addrs ...string) []balancer.Member {
		var m []balancer.Member
		for _, a := range addrs {
			m = append(m, balancer.Member{Backend: balancer.NewBackend(a), Weight: 1})
		}
		return m
	}
	spec := config.HashKey{Source: "header", Name: "Mcp-Session-Id"}
	x := newAffinity("mcp", spec, nil, members("10.0.0.1:80", "10.0.0.2:80"))
	// Another instance whose pool lists the backends in another order and
	// has one more.
	y := newAffinity("mcp", spec, nil, members("10.0.0.3:80", "10.0.0.2:80", "10.0.0.1:80"))
	z := newAffinity("other", spec, nil, members("10.0.0.1:80"))
	if string(x.tokens[0]) != string(y.tokens[2]) || string(x.tokens[1]) != string(y.tokens[1]) {
		t.Errorf("tokens differ between instances: %s %s vs %s %s", x.tokens[0], x.tokens[1], y.tokens[2], y.tokens[1])
	}
	if string(x.tokens[0]) == string(z.tokens[0]) {
		t.Errorf("pools %q and %q share a token", "mcp", "other")
	}
	// A secret changes every token: without it a client cannot compute one.
	s1 := newAffinity("mcp", spec, []byte("0123456789abcdef-one"), members("10.0.0.1:80"))
	s2 := newAffinity("mcp", spec, []byte("0123456789abcdef-two"), members("10.0.0.1:80"))
	if string(s1.tokens[0]) == string(x.tokens[0]) || string(s1.tokens[0]) == string(s2.tokens[0]) {
		t.Errorf("affinity_secret_file does not key the tokens: %s %s %s", x.tokens[0], s1.tokens[0], s2.tokens[0])
	}
	if newAffinity("mcp", config.HashKey{}, nil, nil) != nil {
		t.Errorf("affinity without a setting")
	}
	for _, id := range []string{"abc", "sess.with.dots", strings.Repeat("x", 300)} {
		resp := &fasthttp.Response{}
		resp.Header.Set("Mcp-Session-Id", id)
		x.respond(resp, 0, &affinityState{pin: -1})
		wrapped := string(resp.Header.Peek("Mcp-Session-Id"))
		req := &fasthttp.Request{}
		req.Header.Set("Mcp-Session-Id", wrapped)
		st := affinityState{pin: -1}
		x.members[0].Backend.SetHealthy(true)
		y.members[2].Backend.SetHealthy(true)
		if why := y.route(req, &st); why != "" || st.pin != 2 || !st.strict {
			t.Fatalf("%q: instance y routes %q to %d (%q), want member 2", id, wrapped, st.pin, why)
		}
		if got := string(req.Header.Peek("Mcp-Session-Id")); got != id {
			t.Fatalf("backend would see %q, want %q", got, id)
		}
	}
}
