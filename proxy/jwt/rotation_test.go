package jwt

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jwtlib "github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"
)

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func applyBearer(p *Policy, tok string, now time.Time) Reason {
	var req fasthttp.Request
	req.Header.Set("Authorization", "Bearer "+tok)
	return p.ApplyFast(&req, now)
}

// jwksServer serves a JWK Set on 127.0.0.1 that the test can change or make
// fail.
type jwksServer struct {
	*httptest.Server
	body  atomic.Pointer[[]byte]
	fail  atomic.Bool
	hits  atomic.Int64
	delay atomic.Int64 // nanoseconds to stall before answering
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	s := &jwksServer{}
	s.body.Store(&body)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if d := time.Duration(s.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		if s.fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*s.body.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(b []byte) { s.body.Store(&b) }

func TestRotationJWKSFileOnReload(t *testing.T) {
	t.Parallel()
	k := keys(t)
	dir := t.TempDir()
	path := writeFile(t, dir, "jwks.json", jwksJSON(t, jwk{kid: "a", key: &k.rsa.PublicKey}))
	pc := basePolicy("file")
	pc.JWKSFile = path
	p1 := mustNew(t, pc, Options{})

	tokA := sign(t, jwtlib.SigningMethodRS256, "a", k.rsa, goodClaims("a"))
	tokB := sign(t, jwtlib.SigningMethodES256, "b", k.ec, goodClaims("b"))
	if got := applyBearer(p1, tokA, testNow); got != Valid {
		t.Fatalf("key a before rotation: %v", got)
	}
	if got := applyBearer(p1, tokB, testNow); got != UnknownKey {
		t.Fatalf("key b before rotation: %v, want unknown_key", got)
	}

	// Rotate: b added, a kept. The reload builds a new policy from the same
	// config; it shares the cache and tokA keeps hitting it.
	writeFile(t, dir, "jwks.json", jwksJSON(t, jwk{kid: "a", key: &k.rsa.PublicKey}, jwk{kid: "b", key: &k.ec.PublicKey}))
	p2 := mustNew(t, pc, Options{Previous: p1})
	if p2.cache != p1.cache {
		t.Errorf("identical config: cache not carried over")
	}
	for _, tc := range []struct {
		tok  string
		want Reason
	}{{tokA, Valid}, {tokB, Valid}} {
		if got := applyBearer(p2, tc.tok, testNow); got != tc.want {
			t.Errorf("after reload: %v, want %v", got, tc.want)
		}
	}
	// The old policy still serves in-flight requests with its old keys.
	if got := applyBearer(p1, tokB, testNow); got != UnknownKey {
		t.Errorf("old policy after reload: %v, want unknown_key", got)
	}

	// Revoke a: a token verified (and cached) under the old set must not pass.
	writeFile(t, dir, "jwks.json", jwksJSON(t, jwk{kid: "b", key: &k.ec.PublicKey}))
	p3 := mustNew(t, pc, Options{Previous: p2})
	if got := applyBearer(p3, tokA, testNow); got != UnknownKey {
		t.Errorf("revoked key a still accepted: %v", got)
	}
	if got := applyBearer(p3, tokB, testNow); got != Valid {
		t.Errorf("key b after revoking a: %v", got)
	}

	// A broken file fails the reload clearly.
	writeFile(t, dir, "jwks.json", []byte(`{"keys": [{"kty": "RSA", "kid": "x", "n": "AQAB"}]}`))
	if _, err := New(&pc, Options{Previous: p3}); err == nil {
		t.Errorf("New with a broken jwks_file succeeded")
	}
}

func TestRotationJWKSURL(t *testing.T) {
	t.Parallel()
	k := keys(t)
	srv := newJWKSServer(t, jwksJSON(t, jwk{kid: "a", key: &k.rsa.PublicKey}))
	pc := basePolicy("url")
	pc.JWKSURL = srv.URL + "/jwks.json"
	pc.JWKSRefresh.Duration = 20 * time.Millisecond
	p := mustNew(t, pc, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { p.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	tokA := sign(t, jwtlib.SigningMethodRS256, "a", k.rsa, goodClaims("a"))
	tokB := sign(t, jwtlib.SigningMethodEdDSA, "b", k.ed, goodClaims("b"))
	if got := applyBearer(p, tokA, testNow); got != Valid {
		t.Fatalf("key a: %v", got)
	}
	if got := applyBearer(p, tokB, testNow); got != UnknownKey {
		t.Fatalf("key b before rotation: %v", got)
	}

	// The server rotates to b only: refresh picks it up without New, and
	// a's token (cached) stops passing.
	srv.set(jwksJSON(t, jwk{kid: "b", key: k.ed.Public()}))
	eventually(t, 5*time.Second, "key b after refresh", func() bool { return applyBearer(p, tokB, testNow) == Valid })
	if got := applyBearer(p, tokA, testNow); got != UnknownKey {
		t.Errorf("removed key a still accepted: %v", got)
	}

	// The server fails: the last good set is kept through many failed fetches.
	srv.fail.Store(true)
	h := srv.hits.Load()
	eventually(t, 10*time.Second, "three failed fetches", func() bool { return srv.hits.Load() >= h+3 })
	if got := applyBearer(p, tokB, testNow); got != Valid {
		t.Errorf("key b while the server fails: %v", got)
	}
	// A document without usable keys is a failure too.
	srv.fail.Store(false)
	srv.set([]byte(`{"keys": []}`))
	h = srv.hits.Load()
	eventually(t, 10*time.Second, "two fetches of an empty set", func() bool { return srv.hits.Load() >= h+2 })
	if got := applyBearer(p, tokB, testNow); got != Valid {
		t.Errorf("key b after an empty set was served: %v", got)
	}
}

func TestJWKSURLUnknownKidTriggersRefresh(t *testing.T) {
	t.Parallel()
	k := keys(t)
	srv := newJWKSServer(t, jwksJSON(t, jwk{kid: "a", key: &k.rsa.PublicKey}))
	pc := basePolicy("kick")
	pc.JWKSURL = srv.URL
	pc.JWKSRefresh.Duration = time.Hour // never by timer in this test
	p := mustNew(t, pc, Options{})
	p.kidRefreshEvery = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { p.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	srv.set(jwksJSON(t, jwk{kid: "a", key: &k.rsa.PublicKey}, jwk{kid: "c", key: &k.ec.PublicKey}))
	tokC := sign(t, jwtlib.SigningMethodES256, "c", k.ec, goodClaims("c"))
	eventually(t, 5*time.Second, "unknown kid to trigger a refresh", func() bool { return applyBearer(p, tokC, testNow) == Valid })

	// Rate limit: a storm of unknown kids makes few fetches.
	h := srv.hits.Load()
	tokX := sign(t, jwtlib.SigningMethodES256, "x", k.ec, goodClaims("x"))
	start := time.Now()
	for range 300 {
		if got := applyBearer(p, tokX, testNow); got != UnknownKey {
			t.Fatalf("kid x: %v", got)
		}
	}
	elapsed := time.Since(start)
	maxFetches := int64(elapsed/p.kidRefreshEvery) + 2
	if n := srv.hits.Load() - h; n > maxFetches {
		t.Errorf("%d fetches in %v for 300 unknown-kid tokens; rate limit allows %d", n, elapsed, maxFetches)
	}
}

func TestJWKSURLStartup(t *testing.T) {
	t.Parallel()
	k := keys(t)
	tok := sign(t, jwtlib.SigningMethodRS256, "a", k.rsa, goodClaims("a"))

	t.Run("down at start without previous", func(t *testing.T) {
		t.Parallel()
		srv := newJWKSServer(t, jwksJSON(t, jwk{kid: "a", key: &k.rsa.PublicKey}))
		srv.fail.Store(true)
		pc := basePolicy("down")
		pc.JWKSURL = srv.URL
		p := mustNew(t, pc, Options{})
		if got := applyBearer(p, tok, testNow); got != UnknownKey {
			t.Fatalf("no keys yet: %v, want unknown_key", got)
		}
		// Run retries with backoff (first retry after 1s) and recovers.
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { p.Run(ctx) })
		defer func() { cancel(); wg.Wait() }()
		srv.fail.Store(false)
		eventually(t, 10*time.Second, "recovery", func() bool { return applyBearer(p, tok, testNow) == Valid })
	})

	t.Run("down on reload keeps previous keys", func(t *testing.T) {
		t.Parallel()
		srv := newJWKSServer(t, jwksJSON(t, jwk{kid: "a", key: &k.rsa.PublicKey}))
		pc := basePolicy("reload")
		pc.JWKSURL = srv.URL
		p1 := mustNew(t, pc, Options{})
		srv.fail.Store(true)
		p2 := mustNew(t, pc, Options{Previous: p1})
		if got := applyBearer(p2, tok, testNow); got != Valid {
			t.Fatalf("after a failed fetch on reload: %v, want valid", got)
		}
		// A different URL does not inherit keys.
		pc3 := pc
		pc3.JWKSURL = srv.URL + "/other"
		p3 := mustNew(t, pc3, Options{Previous: p1})
		if got := applyBearer(p3, tok, testNow); got != UnknownKey {
			t.Fatalf("other URL inherited keys: %v", got)
		}
	})

	t.Run("slow server bounded by timeout", func(t *testing.T) {
		t.Parallel()
		srv := newJWKSServer(t, jwksJSON(t, jwk{kid: "a", key: &k.rsa.PublicKey}))
		srv.delay.Store(int64(time.Minute))
		pc := basePolicy("slow")
		pc.JWKSURL = srv.URL
		start := time.Now()
		p := mustNew(t, pc, Options{HTTPClient: &http.Client{Timeout: 200 * time.Millisecond}})
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("New took %v", d)
		}
		if keyCount(p) != 0 {
			t.Errorf("keys from a server that never answered")
		}
	})
}

func TestRunWithoutURLReturns(t *testing.T) {
	t.Parallel()
	k := keys(t)
	dir := t.TempDir()
	pc := basePolicy("file")
	pc.JWKSFile = writeFile(t, dir, "jwks.json", jwksJSON(t, jwk{kid: "a", key: &k.rsa.PublicKey}))
	p := mustNew(t, pc, Options{})
	done := make(chan struct{})
	go func() { p.Run(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run without jwks_url did not return")
	}
}

func TestJWKSRedirectPolicy(t *testing.T) {
	t.Parallel()
	k := keys(t)
	srv := newJWKSServer(t, jwksJSON(t, jwk{kid: "a", key: &k.rsa.PublicKey}))
	redir := func(to string) *httptest.Server {
		s := httptest.NewServer(http.RedirectHandler(to, http.StatusFound))
		t.Cleanup(s.Close)
		return s
	}
	cases := []struct {
		name string
		url  string
		keys int
	}{
		{"to loopback http", redir(srv.URL).URL, 1},
		{"to non-loopback http", redir("http://192.0.2.1:1/jwks").URL, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pc := basePolicy("redir")
			pc.JWKSURL = tc.url
			p := mustNew(t, pc, Options{})
			if got := keyCount(p); got != tc.keys {
				t.Fatalf("%d keys, want %d", got, tc.keys)
			}
		})
	}
}
