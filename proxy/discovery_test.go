package proxy

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/dns/dnsmessage"

	"frontdoor/config"
)

// testDNS is a DNS server on 127.0.0.1 (UDP) whose records a test changes
// while it runs. It answers SERVFAIL while failing is set.
type testDNS struct {
	addr string
	conn net.PacketConn

	mu      sync.Mutex
	a       map[string][]netip.Addr // name (absolute, lower case) -> A and AAAA
	srv     map[string][]dnsmessage.SRVResource
	ttl     uint32
	failing bool
	asked   int
}

func startDNS(t *testing.T) *testDNS {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &testDNS{addr: conn.LocalAddr().String(), conn: conn, a: map[string][]netip.Addr{}, srv: map[string][]dnsmessage.SRVResource{}}
	t.Cleanup(func() { _ = conn.Close() })
	go d.serve()
	return d
}

func (d *testDNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		var q dnsmessage.Message
		if q.Unpack(buf[:n]) != nil || len(q.Questions) != 1 {
			continue
		}
		if out, err := d.answer(&q).Pack(); err == nil {
			_, _ = d.conn.WriteTo(out, from)
		}
	}
}

func (d *testDNS) answer(q *dnsmessage.Message) *dnsmessage.Message {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.asked++
	qq := q.Questions[0]
	m := &dnsmessage.Message{Header: dnsmessage.Header{ID: q.ID, Response: true, Authoritative: true}, Questions: q.Questions}
	if d.failing {
		m.RCode = dnsmessage.RCodeServerFailure
		return m
	}
	name := strings.ToLower(qq.Name.String())
	hdr := dnsmessage.ResourceHeader{Name: qq.Name, Class: dnsmessage.ClassINET, TTL: d.ttl}
	switch qq.Type {
	case dnsmessage.TypeA, dnsmessage.TypeAAAA:
		for _, ip := range d.a[name] {
			switch {
			case qq.Type == dnsmessage.TypeA && ip.Is4():
				h := hdr
				h.Type = dnsmessage.TypeA
				m.Answers = append(m.Answers, dnsmessage.Resource{Header: h, Body: &dnsmessage.AResource{A: ip.As4()}})
			case qq.Type == dnsmessage.TypeAAAA && ip.Is6():
				h := hdr
				h.Type = dnsmessage.TypeAAAA
				m.Answers = append(m.Answers, dnsmessage.Resource{Header: h, Body: &dnsmessage.AAAAResource{AAAA: ip.As16()}})
			}
		}
	case dnsmessage.TypeSRV:
		for _, s := range d.srv[name] {
			h := hdr
			h.Type = dnsmessage.TypeSRV
			m.Answers = append(m.Answers, dnsmessage.Resource{Header: h, Body: &s})
		}
	}
	return m
}

// setSRV serves name's SRV records: one per "port/weight/priority" of a
// target 127.0.0.1.
func (d *testDNS) setSRV(name string, recs ...string) {
	var out []dnsmessage.SRVResource
	for _, r := range recs {
		f := strings.Split(r, "/")
		port, _ := strconv.Atoi(f[0])
		w, _ := strconv.Atoi(f[1])
		prio, _ := strconv.Atoi(f[2])
		out = append(out, dnsmessage.SRVResource{Priority: uint16(prio), Weight: uint16(w), Port: uint16(port),
			Target: dnsmessage.MustNewName("127.0.0.1.")})
	}
	d.mu.Lock()
	d.srv[name+"."] = out
	d.mu.Unlock()
}

func (d *testDNS) set(f func(d *testDNS)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

func (d *testDNS) queries() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.asked
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// srv is a SRV record spec for setSRV: the backend's port, weight 1,
// priority 0.
func srv(b *testBackend) string { return portOf(b.addr) + "/1/0" }

// discoveryTOML is a config whose route goes to pool "d", discovering with
// the given inline-table settings.
func discoveryTOML(dns *testDNS, disc, extra string) string {
	return listenerTOML + `
  [[listener.route]]
  pool = "d"
[pool.d]
discovery = { resolver = "` + dns.addr + `", ` + disc + ` }
` + extra + "\n"
}

// dnsBackends returns the pool's backends from /status as "address source"
// strings, sorted.
func dnsBackends(p *testProxy, pool string) []string {
	var out []string
	for _, ps := range p.Status(ConfigStatus{}).Pools {
		if ps.Name == pool {
			for _, b := range ps.Backends {
				out = append(out, b.Address+" "+b.Source)
			}
		}
	}
	slices.Sort(out)
	return out
}

// bodies sends n requests and counts the answers by body ("503" for a
// 503).
func bodies(t *testing.T, p *testProxy, n int) map[string]int {
	t.Helper()
	c := &fasthttp.Client{}
	seen := map[string]int{}
	for range n {
		resp, err := get(t, c, p.url(t, "web", "/"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode() != 200 {
			seen[strconv.Itoa(resp.StatusCode())]++
		} else {
			seen[string(resp.Body())]++
		}
		fasthttp.ReleaseResponse(resp)
	}
	return seen
}

// TestDiscoverySRVAddRemove: backends an SRV name adds and removes during a
// run join (after their health check passes) and leave within a TTL.
func TestDiscoverySRVAddRemove(t *testing.T) {
	t.Parallel()
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	dns := startDNS(t)
	dns.set(func(d *testDNS) { d.ttl = 1 })
	dns.setSRV("_http._tcp.api.test", srv(a), srv(b))
	p := startProxy(t, discoveryTOML(dns, `name = "_http._tcp.api.test", type = "srv", min_ttl = "100ms", max_ttl = "30s"`, `
[pool.d.health]
check = "tcp"
interval = "100ms"
timeout = "90ms"
rise = 1`), nil)
	waitFor(t, 5*time.Second, "a and b discovered and up", func() bool {
		seen := bodies(t, p, 6)
		return seen["a"] > 0 && seen["b"] > 0
	})
	if got, want := dnsBackends(p, "d"), sorted(a.addr+" dns", b.addr+" dns"); !slices.Equal(got, want) {
		t.Fatalf("backends %v, want %v", got, want)
	}
	changed := time.Now()
	dns.setSRV("_http._tcp.api.test", srv(b), srv(c))
	waitFor(t, 5*time.Second, "c in and a out", func() bool {
		return slices.Equal(dnsBackends(p, "d"), sorted(b.addr+" dns", c.addr+" dns"))
	})
	if d := time.Since(changed); d > 2500*time.Millisecond {
		t.Errorf("change took %v with a TTL of 1s", d)
	}
	waitFor(t, 5*time.Second, "traffic on b and c only", func() bool {
		seen := bodies(t, p, 6)
		return seen["b"] > 0 && seen["c"] > 0 && seen["a"] == 0
	})
	if v := metricValue(t, p.reg, "frontdoor_discovery_backends", map[string]string{"pool": "d"}); v != 2 {
		t.Errorf("discovery_backends = %v, want 2", v)
	}
	if v := metricValue(t, p.reg, "frontdoor_discovery_last_success_timestamp_seconds", map[string]string{"pool": "d"}); v < float64(changed.Unix()) {
		t.Errorf("last success %v before the change at %v", v, changed.Unix())
	}
}

// TestDiscoveryTTLBounds: a TTL of 0 re-resolves at min_ttl, and records
// of type "a" (A and AAAA) become backends at port, beside static ones.
func TestDiscoveryTTLBounds(t *testing.T) {
	t.Parallel()
	a, s := startBackend(t, "a"), startBackend(t, "static")
	dns := startDNS(t)
	dns.set(func(d *testDNS) {
		d.a["api.test."] = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}
	})
	p := startProxy(t, listenerTOML+`
  [[listener.route]]
  pool = "d"
[pool.d]
backends = [{ address = "`+s.addr+`" }]
discovery = { resolver = "`+dns.addr+`", name = "api.test", type = "a", port = `+portOf(a.addr)+`, min_ttl = "100ms", max_ttl = "30s" }
[pool.d.health]
check = "none"
`, nil)
	want := []string{"127.0.0.1:" + portOf(a.addr) + " dns", "[::1]:" + portOf(a.addr) + " dns", s.addr + " static"}
	slices.Sort(want)
	waitFor(t, 5*time.Second, "A and AAAA discovered", func() bool { return slices.Equal(dnsBackends(p, "d"), want) })
	n := dns.queries()
	time.Sleep(time.Second)
	// Two queries (A, AAAA) per resolution, one resolution per 100ms.
	if got := dns.queries() - n; got < 8 {
		t.Errorf("%d queries in 1s with TTL 0 and min_ttl 100ms, want about 20", got)
	}
}

// TestDiscoverySRVWeights: SRV weights set the round-robin share, and a
// higher priority is a backup that gets nothing while the lowest is up.
func TestDiscoverySRVWeights(t *testing.T) {
	t.Parallel()
	a, b, backup := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "backup")
	dns := startDNS(t)
	dns.setSRV("_http._tcp.w.test", portOf(a.addr)+"/10/1", portOf(b.addr)+"/30/1", portOf(backup.addr)+"/100/2")
	p := startProxy(t, discoveryTOML(dns, `name = "_http._tcp.w.test", type = "srv", min_ttl = "100ms"`, `
[pool.d.health]
check = "none"`), nil)
	waitFor(t, 5*time.Second, "a and b serving", func() bool {
		seen := bodies(t, p, 8)
		return seen["a"] > 0 && seen["b"] > 0
	})
	seen := bodies(t, p, 400)
	if seen["a"] != 100 || seen["b"] != 300 || seen["backup"] != 0 {
		t.Errorf("shares %v, want a 100, b 300 (weights 10:30), backup 0", seen)
	}
}

// TestDiscoverySRVBackupTier: an SRV priority above the lowest is a backup
// tier: it gets no traffic while a primary is up, all of it once the tcp
// check marks every primary down, and none again once a primary is back.
func TestDiscoverySRVBackupTier(t *testing.T) {
	t.Parallel()
	a, b, backup := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "backup")
	dns := startDNS(t)
	dns.setSRV("_http._tcp.bk.test", portOf(a.addr)+"/1/10", portOf(b.addr)+"/1/10", portOf(backup.addr)+"/1/20")
	p := startProxy(t, discoveryTOML(dns, `name = "_http._tcp.bk.test", type = "srv", min_ttl = "100ms"`, `
[pool.d.health]
check = "tcp"
interval = "100ms"
timeout = "90ms"
rise = 1
fall = 1`), nil)
	waitFor(t, 5*time.Second, "a and b serving", func() bool {
		seen := bodies(t, p, 8)
		return seen["a"] > 0 && seen["b"] > 0
	})
	if seen := bodies(t, p, 100); seen["a"]+seen["b"] != 100 {
		t.Errorf("primaries up: %v, want a and b only", seen)
	}
	tiers := map[string]int{}
	for _, ps := range p.Status(ConfigStatus{}).Pools {
		for _, bs := range ps.Backends {
			tiers[bs.Address] = bs.Tier
		}
	}
	if want := map[string]int{a.addr: 0, b.addr: 0, backup.addr: 1}; !maps.Equal(tiers, want) {
		t.Errorf("/status tiers %v, want %v", tiers, want)
	}

	a.stop()
	b.stop()
	waitFor(t, 5*time.Second, "primaries down, the backup serving", func() bool {
		return bodies(t, p, 10)["backup"] == 10
	})
	if seen := bodies(t, p, 50); seen["backup"] != 50 {
		t.Errorf("primaries down: %v, want the backup only", seen)
	}

	startBackendOn(t, "a", a.addr)
	waitFor(t, 5*time.Second, "a back, the backup idle", func() bool {
		return bodies(t, p, 10)["a"] == 10
	})
	if seen := bodies(t, p, 50); seen["a"] != 50 {
		t.Errorf("a back: %v, want a only", seen)
	}
}

// TestDiscoveryOutageAndEmpty: a resolver that fails keeps the last set
// (counted as error); an empty answer keeps it with on_empty = "keep" and
// removes every discovered backend with "empty".
func TestDiscoveryOutageAndEmpty(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		onEmpty string
		after   []string // bodies after the empty answer
	}{
		{name: "keep", onEmpty: "keep", after: []string{"a", "b"}},
		{name: "empty", onEmpty: "empty", after: []string{"503"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, b := startBackend(t, "a"), startBackend(t, "b")
			dns := startDNS(t)
			dns.setSRV("_http._tcp.o.test", srv(a), srv(b))
			p := startProxy(t, discoveryTOML(dns, `name = "_http._tcp.o.test", type = "srv", min_ttl = "50ms", max_ttl = "100ms", on_empty = "`+tc.onEmpty+`"`, `
[pool.d.health]
check = "none"`), nil)
			waitFor(t, 5*time.Second, "a and b serving", func() bool {
				seen := bodies(t, p, 4)
				return seen["a"] > 0 && seen["b"] > 0
			})
			results := func(r string) float64 {
				return metricValue(t, p.reg, "frontdoor_discovery_resolutions_total", map[string]string{"pool": "d", "result": r})
			}

			dns.set(func(d *testDNS) { d.failing = true })
			waitFor(t, 5*time.Second, "failed resolutions", func() bool { return results("error") >= 3 })
			if got := keys(bodies(t, p, 10)); !slices.Equal(got, []string{"a", "b"}) {
				t.Errorf("during the outage: %v, want a and b", got)
			}

			dns.set(func(d *testDNS) { d.failing = false })
			dns.setSRV("_http._tcp.o.test")
			waitFor(t, 5*time.Second, "empty answers", func() bool { return results("empty") >= 3 })
			if got := keys(bodies(t, p, 10)); !slices.Equal(got, tc.after) {
				t.Errorf("after empty answers: %v, want %v", got, tc.after)
			}

			dns.setSRV("_http._tcp.o.test", srv(b))
			waitFor(t, 5*time.Second, "b back alone", func() bool {
				return slices.Equal(dnsBackends(p, "d"), []string{b.addr + " dns"})
			})
		})
	}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestDiscoveryMaglevStable: under consistent hashing, a backend that
// discovery adds takes keys only for itself: every key that moves, moves
// to it (Maglev may move up to 1% between the others, as on reload).
func TestDiscoveryMaglevStable(t *testing.T) {
	t.Parallel()
	var recs []string
	var bs []*testBackend
	for i := range 5 {
		bs = append(bs, startBackend(t, fmt.Sprint("b", i)))
		if i < 4 {
			recs = append(recs, srv(bs[i]))
		}
	}
	dns := startDNS(t)
	dns.setSRV("_http._tcp.h.test", recs...)
	p := startProxy(t, discoveryTOML(dns, `name = "_http._tcp.h.test", type = "srv", min_ttl = "50ms"`, `
strategy = "consistent_hash"
[pool.d.health]
check = "none"`), nil)
	mapping := func() []string {
		pr := p.gen.Load().pools["d"]
		out := make([]string, 5000)
		for k := range out {
			if i := pr.pool.Pick(uint64(k)*0x9e3779b97f4a7c15, 0); i >= 0 {
				out[k] = pr.pool.Members()[i].Backend.Address()
			}
		}
		return out
	}
	// Backends come up one by one and the table follows each: wait for
	// all four in it.
	waitFor(t, 5*time.Second, "4 backends in the table", func() bool {
		m := mapping()
		return !slices.ContainsFunc(bs[:4], func(b *testBackend) bool { return !slices.Contains(m, b.addr) })
	})
	// A table rebuild may still be on its way under load: take a mapping
	// that holds still for 100ms.
	stable := func() []string {
		var m []string
		waitFor(t, 5*time.Second, "a stable table", func() bool {
			m = mapping()
			time.Sleep(100 * time.Millisecond)
			return slices.Equal(m, mapping())
		})
		return m
	}
	before := stable()
	dns.setSRV("_http._tcp.h.test", append(recs, srv(bs[4]))...)
	waitFor(t, 5*time.Second, "the new backend in the table", func() bool { return slices.Contains(mapping(), bs[4].addr) })
	after := stable()
	moved, extra := 0, 0
	for k := range before {
		if before[k] != after[k] {
			moved++
			if after[k] != bs[4].addr {
				extra++
			}
		}
	}
	t.Logf("%d of %d keys moved, %d of them not to the new backend", moved, len(before), extra)
	if moved == 0 || float64(extra) > 0.01*float64(len(before)) {
		t.Errorf("%d keys moved, %d between old backends; want some, all to the new one (<= 1%% elsewhere)", moved, extra)
	}
}

func TestSRVBackends(t *testing.T) {
	t.Parallel()
	got := srvBackends([]srvRecord{
		{priority: 5, weight: 0, port: 80, target: "b.test."},
		{priority: 5, weight: 2000, port: 81, target: "a.test."},
		{priority: 5, weight: 3, port: 80, target: "b.test."},
		{priority: 9, weight: 3, port: 80, target: "backup.test."},
		{priority: 5, weight: 1, port: 80, target: "."},
		{priority: 7, weight: 1, port: 0, target: "noport.test."},   // no backend: no tier
		{priority: 8, weight: 5, port: 80, target: "b.test."},       // kept in priority 5
		{priority: 30, weight: 2, port: 80, target: "last.test."},   // tier 2
		{priority: 20, weight: 1, port: 80, target: "."},            // no backend: no tier
		{priority: 9, weight: 1, port: 81, target: "backup2.test."}, // tier 1
	})
	want := "[{a.test:81 1000 0} {b.test:80 1 0} {backup.test:80 3 1} {backup2.test:81 1 1} {last.test:80 2 2}]"
	if s := fmt.Sprint(got); s != want {
		t.Errorf("srvBackends = %s, want %s", s, want)
	}
}

func TestDNSClientErrors(t *testing.T) {
	t.Parallel()
	dns := startDNS(t)
	dns.set(func(d *testDNS) { d.failing = true })
	c := newDNSClient(dns.addr)
	_, _, err := c.resolve(t.Context(), &discoveryCfgA)
	if !errors.Is(err, errDNSServer) {
		t.Errorf("SERVFAIL: err = %v, want errDNSServer", err)
	}
	dns.set(func(d *testDNS) { d.failing = false })
	got, ttl, err := c.resolve(t.Context(), &discoveryCfgA)
	if err != nil || len(got) != 0 || ttl != -1 {
		t.Errorf("no records: %v, ttl %v, err %v; want none, unknown TTL, no error", got, ttl, err)
	}
}

var discoveryCfgA = config.Discovery{Name: "none.test", Type: config.DiscoveryA, Port: 80}

// TestDiscoveryReload: a reload that keeps a pool's discovery keeps its
// discovered backends (no gap until the next answer); one that changes the
// name drops them for the new name's.
func TestDiscoveryReload(t *testing.T) {
	t.Parallel()
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	dns := startDNS(t)
	dns.setSRV("_http._tcp.one.test", srv(a), srv(b))
	dns.setSRV("_http._tcp.two.test", srv(c))
	text := func(name string) string {
		return discoveryTOML(dns, `name = "`+name+`", type = "srv", min_ttl = "50ms"`, "[pool.d.health]\ncheck = \"none\"")
	}
	p := startProxy(t, text("_http._tcp.one.test"), nil)
	want := sorted(a.addr+" dns", b.addr+" dns")
	waitFor(t, 5*time.Second, "a and b discovered", func() bool { return slices.Equal(dnsBackends(p, "d"), want) })
	apply := func(name string) {
		cfg, err := config.Parse([]byte(text(name)), "test.toml")
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Apply(cfg); err != nil {
			t.Fatal(err)
		}
	}
	apply("_http._tcp.one.test")
	if got := dnsBackends(p, "d"); !slices.Equal(got, want) {
		t.Errorf("right after a reload keeping discovery: %v, want %v", got, want)
	}
	apply("_http._tcp.two.test")
	if got := dnsBackends(p, "d"); len(got) != 0 {
		t.Errorf("right after a reload changing the name: %v, want none yet", got)
	}
	waitFor(t, 5*time.Second, "c discovered", func() bool { return slices.Equal(dnsBackends(p, "d"), []string{c.addr + " dns"}) })
}
