package tcp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"frontdoor/balancer"
	"frontdoor/config"
	"frontdoor/metrics"
)

// Reporter receives the outcome of each backend connect by member index
// (an index into Pool.Members()), for passive ejection. health.Ejector
// satisfies it. Both methods are called from session goroutines, so they
// must be safe for concurrent use, must not block, and must not allocate if
// the engine is to stay allocation-free.
type Reporter interface {
	Success(member int)
	Failure(member int)
}

// Upstream is where a listener forwards connections. Fill it in, hand it to
// NewServer, and do not change it afterwards: sessions read it without
// locks. The zero value is not usable: Pool is required.
type Upstream struct {
	// PoolName is the pool label of the metrics.
	PoolName string
	// Pool picks a member for each connection: round robin, least_conn
	// (the engine holds Backend.Acquire for the life of each session, so
	// in-flight counts are open connections) or consistent_hash, whose key
	// is SourceKey of the client address. Required.
	Pool *balancer.Pool
	// ConnectTimeout bounds one backend dial; default DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// Retries is how many more backends are tried after a failed connect,
	// each a member not tried yet when one is up, at most one per member.
	// Connect failures only: once connected, no byte of the client is ever
	// sent twice. Default 0.
	Retries int
	// SendProxy writes a PROXY protocol header to each backend before any
	// client byte: "" (none), ProxyV1 or ProxyV2. It carries the client
	// address (from the client's PROXY header with AcceptProxy) and the
	// address the client connected to.
	SendProxy string
	// Passive, if set, hears about every connect success and failure.
	Passive Reporter
}

// UpstreamFor returns the Upstream of a tcp listener lc forwarding to the
// pool built from pc.
func UpstreamFor(lc *config.Listener, pc *config.Pool, pool *balancer.Pool, passive Reporter) *Upstream {
	return &Upstream{
		PoolName:       pc.Name,
		Pool:           pool,
		ConnectTimeout: pc.ConnectTimeout.Duration,
		Retries:        pc.Retries,
		SendProxy:      lc.SendProxy,
		Passive:        passive,
	}
}

// Reasons of upstream_errors_total counted per backend by the engine, with
// the meaning the HTTP engines give them (README.md, Metrics): "connect" is
// a connect that failed (refused, timed out after connect_timeout,
// unreachable), "reset" a backend connection that broke once it was made
// (a reset of an open session, or the PROXY header write failing). The
// engine has no response timeout, so it never counts "timeout". Per pool
// (backend label ""), "no_backend" counts connections for which no member
// was up.
const (
	reasonConnect = iota
	reasonReset
	numReasons
)

var reasonNames = [numReasons]string{"connect", "reset"}

// boundUpstream is an Upstream with everything a session needs precomputed:
// parsed addresses and metric children.
type boundUpstream struct {
	up        *Upstream
	dialer    net.Dialer
	attempts  int
	sendProxy int // 0, 1 or 2
	members   []boundMember
	// literal: every member's address is an IP address and port, which
	// the event loops connect to without resolving (loop.go).
	literal   bool
	retries   prometheus.Counter
	noBackend prometheus.Counter
}

type boundMember struct {
	backend *balancer.Backend
	address string
	errs    [numReasons]prometheus.Counter
	// The address as a raw socket address, when it is an IP literal:
	// read-only, shared by the event loops (an x/sys Sockaddr is not: it
	// writes its raw form on every use).
	family int
	sa     unix.RawSockaddrInet6 // or a RawSockaddrInet4 in its first bytes
	saLen  uintptr
}

func (up *Upstream) bind(m *metrics.Metrics) *boundUpstream {
	if up == nil || up.Pool == nil {
		panic("tcp: Upstream without a Pool")
	}
	// More retries than members would only go round the pool again.
	b := &boundUpstream{up: up, attempts: 1 + min(max(up.Retries, 0), len(up.Pool.Members()))}
	b.dialer.Timeout = up.ConnectTimeout
	if b.dialer.Timeout <= 0 {
		b.dialer.Timeout = DefaultConnectTimeout
	}
	switch up.SendProxy {
	case "":
	case ProxyV1:
		b.sendProxy = 1
	case ProxyV2:
		b.sendProxy = 2
	default:
		panic(fmt.Sprintf("tcp: unknown send_proxy %q", up.SendProxy))
	}
	b.retries = m.RetriesTotal.WithLabelValues(up.PoolName)
	b.noBackend = m.UpstreamErrors.WithLabelValues(up.PoolName, "", "no_backend")
	b.literal = true
	for _, mem := range up.Pool.Members() {
		bm := boundMember{backend: mem.Backend, address: mem.Backend.Address()}
		if ap, err := netip.ParseAddrPort(bm.address); err == nil && ap.Addr().Zone() == "" {
			bm.setSockaddr(ap)
		} else {
			b.literal = false
		}
		for r := range numReasons {
			bm.errs[r] = m.UpstreamErrors.WithLabelValues(up.PoolName, bm.address, reasonNames[r])
		}
		b.members = append(b.members, bm)
	}
	return b
}

// dial connects to member i. It goes through DialContext with the address
// string even for an IP literal: Dialer.DialTCP turns a zero local
// netip.AddrPort into a bind to port 0 before connect (golang/go#81620), and
// bind-time port allocation cannot share a port with TIME_WAIT sockets the
// way connect(2)'s can, so under connection churn dials failed with
// "bind: address already in use" (most of them on a machine holding 56,000
// TIME_WAIT sockets).
func (b *boundUpstream) dial(ctx context.Context, i int) (*net.TCPConn, error) {
	m := &b.members[i]
	c, err := b.dialer.DialContext(ctx, "tcp", m.address)
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		_ = c.Close()
		return nil, fmt.Errorf("dial backend %s: not a tcp connection", m.address)
	}
	return tc, nil
}

// setSockaddr makes ap m's raw socket address.
func (m *boundMember) setSockaddr(ap netip.AddrPort) {
	port := ap.Port()>>8 | ap.Port()<<8 // network order
	if a := ap.Addr().Unmap(); a.Is4() {
		m.family, m.saLen = unix.AF_INET, unix.SizeofSockaddrInet4
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&m.sa))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: port, Addr: a.As4()}
		return
	}
	m.family, m.saLen = unix.AF_INET6, unix.SizeofSockaddrInet6
	m.sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: port, Addr: ap.Addr().As16()}
}
