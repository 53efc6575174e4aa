package jwt

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	jwtlib "github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"

	"frontdoor/metrics"
)

func hmacPolicy(t testing.TB, name string, mod func(*Policy)) *Policy {
	t.Helper()
	k := keys(t)
	pc := basePolicy(name)
	pc.HMACSecretFile = writeFile(t, t.TempDir(), "secret", k.hmac)
	pc.Algorithms = []string{"HS256"}
	p := mustNew(t, pc, Options{})
	if mod != nil {
		mod(p)
	}
	return p
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	k := keys(t)
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, "test")
	pc := basePolicy("users")
	pc.HMACSecretFile = writeFile(t, t.TempDir(), "secret", k.hmac)
	pc.Algorithms = []string{"HS256"}
	p := mustNew(t, pc, Options{Metrics: m})
	good := sign(t, jwtlib.SigningMethodHS256, "", k.hmac, goodClaims("a"))
	expired := sign(t, jwtlib.SigningMethodHS256, "", k.hmac, with(goodClaims("a"), "exp", testNow.Add(-time.Hour).Unix()))
	for _, tok := range []string{good, good, expired} {
		applyBearer(p, tok, testNow)
	}
	var req http.Request
	req.Header = http.Header{}
	p.ApplyHTTP(&req, testNow)

	checks := []struct {
		c    prometheus.Counter
		want float64
	}{
		{m.JWTVerified.WithLabelValues("users"), 2},
		{m.JWTRejected.WithLabelValues("users", "expired"), 1},
		{m.JWTRejected.WithLabelValues("users", "missing"), 1},
		{m.JWTRejected.WithLabelValues("users", "bad_signature"), 0},
	}
	for _, c := range checks {
		var d dto.Metric
		if err := c.c.Write(&d); err != nil {
			t.Fatal(err)
		}
		if got := d.GetCounter().GetValue(); got != c.want {
			t.Errorf("counter = %v, want %v", got, c.want)
		}
	}
	// Every reason's child exists from the start (a bounded label set).
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := -1
	for _, f := range fams {
		if f.GetName() == "frontdoor_jwt_rejected_total" {
			n = len(f.GetMetric())
		}
	}
	if n != int(numReasons)-1 {
		t.Errorf("%d rejected children, want %d", n, numReasons-1)
	}
}

func TestCacheNeverExtendsValidity(t *testing.T) {
	t.Parallel()
	k := keys(t)
	p := hmacPolicy(t, "ttl", nil)
	exp := testNow.Add(10 * time.Second)
	tok := sign(t, jwtlib.SigningMethodHS256, "", k.hmac, with(goodClaims("a"), "exp", exp.Unix()))
	if got := applyBearer(p, tok, testNow); got != Valid {
		t.Fatalf("at issue: %v", got)
	}
	cases := []struct {
		at   time.Time
		want Reason
	}{
		{exp.Add(29 * time.Second), Valid},   // within leeway: same as uncached
		{exp.Add(31 * time.Second), Expired}, // past exp+leeway, though cached
	}
	for _, c := range cases {
		if got := applyBearer(p, tok, c.at); got != c.want {
			t.Errorf("at exp%+v: %v, want %v", c.at.Sub(exp), got, c.want)
		}
	}

	// cache_ttl bounds an entry of a long-lived token.
	long := sign(t, jwtlib.SigningMethodHS256, "", k.hmac, with(goodClaims("b"), "exp", testNow.Add(24*time.Hour).Unix()))
	if got := applyBearer(p, long, testNow); got != Valid {
		t.Fatalf("long token: %v", got)
	}
	fp := p.keys.Load().fp
	h := hashOf(long)
	if p.cache.get([]byte(long), h, fp, testNow.Add(p.ttl-time.Second).UnixNano()) == nil {
		t.Errorf("entry gone before cache_ttl")
	}
	if p.cache.get([]byte(long), h, fp, testNow.Add(p.ttl).UnixNano()) != nil {
		t.Errorf("entry alive at cache_ttl")
	}
	if p.cache.get([]byte(long), h, fp+1, testNow.UnixNano()) != nil {
		t.Errorf("entry hit under another key set")
	}
	// Same hash, other bytes: no hit.
	other := []byte(long)
	other[len(other)-1] ^= 1
	if p.cache.get(other, h, fp, testNow.UnixNano()) != nil {
		t.Errorf("entry hit by a different token with the same hash")
	}
}

func TestCacheDisabledAndBounded(t *testing.T) {
	t.Parallel()
	k := keys(t)
	off := hmacPolicy(t, "off", func(p *Policy) { p.cache = nil })
	tok := sign(t, jwtlib.SigningMethodHS256, "", k.hmac, goodClaims("a"))
	for range 3 {
		if got := applyBearer(off, tok, testNow); got != Valid {
			t.Fatalf("no cache: %v", got)
		}
	}
	small := hmacPolicy(t, "small", func(p *Policy) { p.cache = newCache(4) })
	toks := make([]string, 50)
	for i := range toks {
		toks[i] = sign(t, jwtlib.SigningMethodHS256, "", k.hmac, goodClaims(fmt.Sprint("u", i)))
		if got := applyBearer(small, toks[i], testNow); got != Valid {
			t.Fatalf("token %d: %v", i, got)
		}
	}
	if n := len(small.cache.slots); n != 4 {
		t.Errorf("cache grew to %d slots", n)
	}
	for i, tok := range toks {
		if got := applyBearer(small, tok, testNow); got != Valid {
			t.Fatalf("token %d after eviction: %v", i, got)
		}
	}
}

func TestConcurrentApply(t *testing.T) {
	t.Parallel()
	k := keys(t)
	p := hmacPolicy(t, "conc", func(p *Policy) { p.cache = newCache(8) })
	type tc struct {
		tok  string
		sub  string
		want Reason
	}
	var cases []tc
	for i := range 16 {
		sub := fmt.Sprint("user-", i)
		cases = append(cases, tc{sign(t, jwtlib.SigningMethodHS256, "", k.hmac, goodClaims(sub)), sub, Valid})
	}
	cases = append(cases, tc{sign(t, jwtlib.SigningMethodHS256, "", []byte(strings.Repeat("x", 32)), goodClaims("evil")), "", BadSignature})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			var req fasthttp.Request
			for i := range 200 {
				c := cases[(i*7+g)%len(cases)]
				req.Reset()
				req.Header.Set("Authorization", "Bearer "+c.tok)
				req.Header.Set("X-User-ID", "forged")
				if got := p.ApplyFast(&req, testNow); got != c.want {
					t.Errorf("ApplyFast %s: %v, want %v", c.sub, got, c.want)
					return
				}
				if got := string(req.Header.Peek("X-User-ID")); got != c.sub {
					t.Errorf("X-User-ID %q, want %q", got, c.sub)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestClaimValue(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   string // claims JSON
		want string
		ok   bool
	}{
		{"string", `"alice"`, "alice", true},
		{"empty string", `""`, "", true},
		{"tab allowed", `"a\tb"`, "a\tb", true},
		{"big integer exact", `12345678901234567890`, "12345678901234567890", true},
		{"float as written", `1.50`, "1.50", true},
		{"bool", `false`, "false", true},
		{"array compact", `[ "a", 1, true ]`, `["a",1,true]`, true},
		{"object sorted compact no html escape", `{"b":"<x>","a":{"c":[]}}`, `{"a":{"c":[]},"b":"<x>"}`, true},
		{"newline rejected", `"a\nb"`, "", false},
		{"nul rejected", `"a\u0000b"`, "", false},
		{"del rejected", `"a\u007fb"`, "", false},
		{"escaped newline in array kept escaped", `["a\nb"]`, `["a\nb"]`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var claims jwtlib.MapClaims
			p := jwtlib.NewParser(jwtlib.WithJSONNumber())
			seg := b64(`{"v":` + tc.in + `}`)
			if _, _, err := p.ParseUnverified(b64(`{"alg":"HS256"}`)+"."+seg+".", &claims); err != nil {
				t.Fatal(err)
			}
			got, ok := claimValue(claims["v"])
			if ok != tc.ok || (ok && string(got) != tc.want) {
				t.Fatalf("claimValue = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestExtractAndCookies(t *testing.T) {
	t.Parallel()
	tok := []struct {
		in     string
		bearer bool
		want   string
	}{
		{"Bearer abc", true, "abc"},
		{"BEARER\tabc ", true, "abc"},
		{"Bearerabc", true, ""},
		{"Basic abc", true, ""},
		{"abc", true, ""},
		{"abc", false, "abc"},
		{" Bearer abc", false, "abc"},
		{"", false, ""},
	}
	for _, c := range tok {
		if got := extractToken(c.in, c.bearer); got != c.want {
			t.Errorf("extractToken(%q, %v) = %q, want %q", c.in, c.bearer, got, c.want)
		}
		if got := string(extractToken([]byte(c.in), c.bearer)); got != c.want {
			t.Errorf("extractToken([]byte %q, %v) = %q, want %q", c.in, c.bearer, got, c.want)
		}
	}
	lines := []string{"a=1; sess=\"x.y.z\"", "sessx=2;sess=late"}
	if got, n := cookieValue(lines, "sess"); got != "x.y.z" || n != 2 {
		t.Errorf("cookieValue = %q, %d", got, n)
	}
	if got, n := cookieValue(lines, "none"); got != "" || n != 0 {
		t.Errorf("cookieValue(none) = %q, %d", got, n)
	}
	h := http.Header{"Cookie": lines}
	removeCookie(h, "sess")
	if got := h["Cookie"]; len(got) != 1 || got[0] != "a=1; sessx=2" {
		t.Errorf("removeCookie left %q", got)
	}
	h = http.Header{"Cookie": {"sess=1"}}
	removeCookie(h, "sess")
	if _, ok := h["Cookie"]; ok {
		t.Errorf("empty Cookie header kept")
	}
}

func TestReasons(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for r := Reason(0); r < numReasons; r++ {
		l := r.String()
		if l == "" || seen[l] || strings.ToLower(l) != l {
			t.Errorf("reason %d label %q", r, l)
		}
		seen[l] = true
		if d := r.Description(); d == "" || strings.ContainsAny(d, "\"\\\r\n") {
			t.Errorf("reason %v description %q", r, d)
		}
	}
	if Reason(200).String() != "unknown" || Reason(200).WWWAuthenticate() == "" {
		t.Errorf("out-of-range reason")
	}
	if Valid.WWWAuthenticate() != "" || Missing.WWWAuthenticate() != "Bearer" {
		t.Errorf("Valid/Missing WWW-Authenticate: %q %q", Valid.WWWAuthenticate(), Missing.WWWAuthenticate())
	}
	if got := Expired.WWWAuthenticate(); got != `Bearer error="invalid_token", error_description="the token has expired"` {
		t.Errorf("Expired WWW-Authenticate %q", got)
	}
}

// TestApplySubject: the verified token's sub claim comes back for the
// access log, from the verification and from the cache; a rejected token
// gives none.
func TestApplySubject(t *testing.T) {
	t.Parallel()
	k := keys(t)
	p := hmacPolicy(t, "sub", nil)
	good := sign(t, jwtlib.SigningMethodHS256, "", k.hmac, goodClaims("alice"))
	bad := sign(t, jwtlib.SigningMethodHS256, "", []byte(strings.Repeat("x", 32)), goodClaims("mallory"))
	for range 2 { // verified, then cached
		var req fasthttp.Request
		req.Header.Set("Authorization", "Bearer "+good)
		if r, sub := p.ApplySubject(&req, testNow); r != Valid || string(sub) != "alice" {
			t.Fatalf("ApplySubject = %v, %q; want Valid, alice", r, sub)
		}
	}
	var req fasthttp.Request
	req.Header.Set("Authorization", "Bearer "+bad)
	if r, sub := p.ApplySubject(&req, testNow); r != BadSignature || sub != nil {
		t.Fatalf("ApplySubject = %v, %q; want BadSignature, nil", r, sub)
	}
}
