package jwt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/textproto"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"frontdoor/config"
	"frontdoor/metrics"
)

// Defaults applied by New when the corresponding config value is zero. The
// config package applies the same defaults at load; these cover a policy
// built by hand.
const (
	DefaultMaxTokenBytes = 8192
	DefaultCacheSize     = 10000
	DefaultCacheTTL      = 5 * time.Minute
	DefaultJWKSRefresh   = 5 * time.Minute
)

const (
	// newFetchTimeout bounds the jwks_url fetch made inside New, so a reload
	// is never held up for long by an unreachable key server.
	newFetchTimeout = 5 * time.Second
	// clientTimeout bounds one fetch with the default client.
	clientTimeout = 10 * time.Second
	// maxJWKSBytes caps a fetched JWK Set.
	maxJWKSBytes = 1 << 20
	// defaultKidRefreshEvery rate-limits refreshes triggered by unknown kids.
	defaultKidRefreshEvery = 10 * time.Second
)

// Options are the dependencies of New. The zero value is usable: nothing is
// logged, nothing is counted, the default HTTP client is used, and nothing is
// carried over from an earlier policy.
type Options struct {
	// Logger receives key loading and refresh events (never per-request
	// events). nil discards them.
	Logger *slog.Logger
	// Metrics, when set, provides jwt_verified_total{policy} and
	// jwt_rejected_total{policy,reason}; New binds the children for this
	// policy's name once. nil counts nothing.
	Metrics *metrics.Metrics
	// HTTPClient fetches jwks_url. nil means a client with a 10s timeout
	// over http.DefaultTransport that follows at most 5 redirects, and only
	// to https or to plain http on a loopback address (never a downgrade
	// that would let the network inject keys). A client given here is used
	// as is: its redirects, proxies and TLS settings are the caller's
	// decision.
	HTTPClient *http.Client
	// Previous is the policy this one replaces on reload (same name), or
	// nil. New keeps its last good jwks_url key set when the fetch made in
	// New fails, and shares its verified-token cache when the two policies
	// are configured identically (entries made with other keys never hit).
	// Previous stays usable; the caller stops its Run as usual.
	Previous *Policy
	// Now is the clock for refresh scheduling; nil means time.Now.
	// Request-time checks use the now passed to ApplyFast and ApplyHTTP.
	Now func() time.Time
}

// Policy is one [jwt.NAME] policy, ready to verify requests. Create it with
// New; the zero value is not usable. All methods are safe for concurrent use;
// a Policy is never changed after New except for its jwks_url key set, which
// Run replaces atomically. The caller must not copy a Policy.
type Policy struct {
	name    string
	cfg     config.JWTPolicy // as given, for the reuse check in New
	log     *slog.Logger
	now     func() time.Time
	client  *http.Client
	algs    []string
	issuer  string
	auds    []string
	leeway  time.Duration
	require []string
	forward []forwardClaim
	src     tokenSource
	strip   bool
	maxTok  int
	ttl     time.Duration

	keys  atomic.Pointer[keySet]
	cache *cache // nil when cache_size is -1

	url             string
	refresh         time.Duration
	kidRefreshEvery time.Duration
	kick            chan struct{} // unknown kid seen; capacity 1
	lastFetch       time.Time     // written by New, then only by Run

	verified prometheus.Counter
	rejected [numReasons]prometheus.Counter
}

// forwardClaim is one forward_claims entry.
type forwardClaim struct {
	claim  string
	header []byte // as configured
	canon  string // textproto canonical form, for net/http
}

// tokenSource says where the token is read.
type tokenSource struct {
	cookie  bool
	name    []byte
	nameStr string
	canon   string // canonical header name (headers only)
	bearer  bool   // the Authorization header: "Bearer " is required
}

// New builds a policy from a validated config.JWTPolicy and loads its keys:
// jwks_file, public_key_file and hmac_secret_file are read now (so every
// reload re-reads them) and any read or parse problem is an error. jwks_url
// is fetched once with a 5s timeout; when that fails New still succeeds,
// logs why, and uses the key set of opts.Previous if it had the same
// jwks_url, else no keys (every token is rejected with UnknownKey until Run
// fetches successfully).
//
// New also rejects what would be unsafe even if the config package let it
// through: unknown algorithms or "none", a key that no allowed algorithm can
// use, RSA keys under 2048 bits, HMAC secrets shorter than their algorithm's
// hash (32 bytes for HS256, 48 for HS384, 64 for HS512), private keys in
// public_key_file, and forward_claims headers that clash with the token's
// header or with framing headers (Host, Content-Length, ...).
//
// New starts no goroutine; call Run for jwks_url refreshes.
func New(pc *config.JWTPolicy, opts Options) (*Policy, error) {
	if pc == nil {
		return nil, errors.New("jwt: nil policy")
	}
	p := &Policy{
		name:            pc.Name,
		cfg:             *pc,
		log:             opts.Logger,
		now:             opts.Now,
		client:          opts.HTTPClient,
		issuer:          pc.Issuer,
		auds:            slices.Clone(pc.Audiences),
		leeway:          pc.Leeway.Duration,
		require:         slices.Clone(pc.RequiredClaims),
		strip:           pc.StripAuthorization,
		maxTok:          pc.MaxTokenBytes,
		ttl:             pc.CacheTTL.Duration,
		url:             pc.JWKSURL,
		refresh:         pc.JWKSRefresh.Duration,
		kidRefreshEvery: defaultKidRefreshEvery,
		kick:            make(chan struct{}, 1),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("policy", p.name)
	if p.now == nil {
		p.now = time.Now
	}
	if p.client == nil {
		p.client = &http.Client{Timeout: clientTimeout, CheckRedirect: checkRedirect}
	}
	if p.maxTok <= 0 {
		p.maxTok = DefaultMaxTokenBytes
	}
	if p.ttl <= 0 {
		p.ttl = DefaultCacheTTL
	}
	if p.refresh <= 0 {
		p.refresh = DefaultJWKSRefresh
	}
	if p.leeway < 0 {
		p.leeway = 0
	}

	var errs []error
	wrap := func(err error) error { return fmt.Errorf("jwt policy %q: %w", p.name, err) }
	algs, err := checkAlgorithms(pc.Algorithms)
	if err != nil {
		errs = append(errs, err)
	}
	p.algs = algs
	if err := p.setSource(pc.TokenFrom); err != nil {
		errs = append(errs, err)
	}
	if err := p.setForward(pc.ForwardClaims); err != nil {
		errs = append(errs, err)
	}
	sources := 0
	for _, s := range []string{pc.JWKSFile, pc.JWKSURL, pc.PublicKeyFile, pc.HMACSecretFile} {
		if s != "" {
			sources++
		}
	}
	if sources != 1 {
		errs = append(errs, fmt.Errorf("exactly one of jwks_file, jwks_url, public_key_file, hmac_secret_file must be set (have %d)", sources))
	}
	if len(errs) > 0 {
		return nil, wrap(errors.Join(errs...))
	}

	if err := p.loadKeys(pc, opts.Previous); err != nil {
		return nil, wrap(err)
	}

	switch {
	case pc.CacheSize < 0:
	case opts.Previous != nil && opts.Previous.cache != nil && reflect.DeepEqual(opts.Previous.cfg, p.cfg):
		p.cache = opts.Previous.cache
	default:
		n := pc.CacheSize
		if n == 0 {
			n = DefaultCacheSize
		}
		p.cache = newCache(n)
	}

	if m := opts.Metrics; m != nil {
		p.verified = m.JWTVerified.WithLabelValues(p.name)
		for r := Missing; r < numReasons; r++ {
			p.rejected[r] = m.JWTRejected.WithLabelValues(p.name, r.String())
		}
	} else {
		// Unregistered counters: the hot path never tests for nil.
		p.verified = prometheus.NewCounter(prometheus.CounterOpts{Name: "jwt_verified"})
		for r := Missing; r < numReasons; r++ {
			p.rejected[r] = prometheus.NewCounter(prometheus.CounterOpts{Name: "jwt_rejected"})
		}
	}
	return p, nil
}

func (p *Policy) loadKeys(pc *config.JWTPolicy, prev *Policy) error {
	var keys []verifyKey
	switch {
	case pc.JWKSFile != "":
		k, issues, err := loadJWKSFile(pc.JWKSFile, p.algs)
		if err != nil {
			return err
		}
		p.logIssues(issues)
		keys = k
	case pc.PublicKeyFile != "":
		k, err := loadPEMFile(pc.PublicKeyFile, p.algs)
		if err != nil {
			return err
		}
		keys = []verifyKey{k}
	case pc.HMACSecretFile != "":
		k, err := loadHMACFile(pc.HMACSecretFile, p.algs)
		if err != nil {
			return err
		}
		keys = []verifyKey{k}
	case pc.JWKSURL != "":
		p.keys.Store(&keySet{})
		ctx, cancel := context.WithTimeout(context.Background(), newFetchTimeout)
		defer cancel()
		err := p.fetch(ctx)
		if err == nil {
			return nil
		}
		if prev != nil && prev.url == p.url {
			if ks := prev.keys.Load(); len(ks.keys) > 0 {
				p.keys.Store(ks)
				p.log.Warn("jwt: jwks_url fetch failed; keeping the previous key set", "url", p.url, "keys", len(ks.keys), "err", err)
				return nil
			}
		}
		p.log.Error("jwt: jwks_url fetch failed; every token is rejected (unknown_key) until a fetch succeeds", "url", p.url, "err", err)
		return nil
	}
	ks, err := newKeySet(keys)
	if err != nil {
		return err
	}
	p.keys.Store(ks)
	return nil
}

func (p *Policy) logIssues(issues []keyIssue) {
	for _, is := range issues {
		p.log.Warn("jwt: key skipped", "kid", is.kid, "err", is.err)
	}
}

// checkRedirect is the default client's redirect policy for jwks_url.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("jwt: jwks_url: more than 5 redirects")
	}
	u := req.URL
	if u.Scheme == "https" {
		return nil
	}
	if u.Scheme == "http" {
		h := u.Hostname()
		if a, err := netip.ParseAddr(h); (err == nil && a.IsLoopback()) || h == "localhost" {
			return nil
		}
	}
	return fmt.Errorf("jwt: jwks_url: refusing redirect to %s (only https, or http to loopback)", u.Redacted())
}

// reservedHeader reports headers that forward_claims must not set: framing,
// hop-by-hop and the ones fasthttp keeps outside its header list.
func reservedHeader(canon string) bool {
	switch canon {
	case "Host", "Content-Length", "Content-Type", "Transfer-Encoding", "Connection",
		"Keep-Alive", "Te", "Trailer", "Upgrade", "Cookie", "User-Agent",
		"Proxy-Authorization", "Proxy-Connection", "Authorization":
		return true
	}
	return false
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func (p *Policy) setSource(k config.HashKey) error {
	switch k.Source {
	case "", "header":
		name := k.Name
		if name == "" {
			name = "Authorization"
		}
		if !validHeaderName(name) {
			return fmt.Errorf("token_from: invalid header name %q", name)
		}
		canon := textproto.CanonicalMIMEHeaderKey(name)
		p.src = tokenSource{name: []byte(canon), nameStr: canon, canon: canon, bearer: canon == "Authorization"}
	case "cookie":
		if !validHeaderName(k.Name) {
			return fmt.Errorf("token_from: invalid cookie name %q", k.Name)
		}
		p.src = tokenSource{cookie: true, name: []byte(k.Name), nameStr: k.Name}
	default:
		return fmt.Errorf("token_from: source %q is not header or cookie", k.Source)
	}
	return nil
}

func (p *Policy) setForward(fc map[string]string) error {
	var errs []error
	claims := make([]string, 0, len(fc))
	for c := range fc {
		claims = append(claims, c)
	}
	slices.Sort(claims)
	for _, c := range claims {
		h := fc[c]
		if !validHeaderName(h) {
			errs = append(errs, fmt.Errorf("forward_claims.%s: invalid header name %q", c, h))
			continue
		}
		canon := textproto.CanonicalMIMEHeaderKey(h)
		if reservedHeader(canon) {
			errs = append(errs, fmt.Errorf("forward_claims.%s: header %q may not be set from a claim", c, h))
			continue
		}
		if !p.src.cookie && sameHeaderName(canon, p.src.canon) {
			errs = append(errs, fmt.Errorf("forward_claims.%s: header %q is where the token is read", c, h))
			continue
		}
		for _, f := range p.forward {
			if sameHeaderName(canon, f.canon) {
				errs = append(errs, fmt.Errorf("forward_claims.%s: header %q is already set from claim %q", c, h, f.claim))
			}
		}
		p.forward = append(p.forward, forwardClaim{claim: c, header: []byte(canon), canon: canon})
	}
	return errors.Join(errs...)
}

// sameHeaderName compares header names ignoring ASCII case and treating '-'
// and '_' as equal (many backends map both to the same CGI variable).
func sameHeaderName[T string | []byte](a T, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if x == '_' {
			x = '-'
		}
		if y == '_' {
			y = '-'
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
