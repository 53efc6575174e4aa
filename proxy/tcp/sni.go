package tcp

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"frontdoor/metrics"
)

// SNI routing (TLS passthrough): a Server with SNIRoutes reads each
// connection's ClientHello without consuming it (recv with MSG_PEEK, as
// the PROXY protocol header is read), picks the upstream by the server
// name it carries, and splices the connection, ClientHello included, to a
// backend of that upstream. It never terminates TLS: the backend shakes
// hands with the client.

// DefaultHelloTimeout bounds reading the ClientHello when
// Options.HelloTimeout is zero.
const DefaultHelloTimeout = 10 * time.Second

// SNIRoute sends connections whose ClientHello names ServerName to
// Upstream. ServerName is an exact name or "*.suffix", which matches any
// name ending in ".suffix" (one label or more in front of it); names
// compare without case. An exact route wins over a wildcard, a longer
// wildcard over a shorter one.
type SNIRoute struct {
	ServerName string
	Upstream   *Upstream
}

// sniTable is the compiled SNIRoutes of a Server.
type sniTable struct {
	exact, wild map[string]*boundUpstream // wild: by ".suffix"
	timeout     time.Duration
	// TLS metric children: ClientHellos routed (ok) or refused (failed),
	// by the highest version offered, and refusals by reason.
	ok, failed [numVersions]prometheus.Counter
	reasons    [numHelloReasons]prometheus.Counter
}

const (
	v10 = iota
	v11
	v12
	v13
	vUnknown
	numVersions
)

var versionNames = [numVersions]string{"1.0", "1.1", "1.2", "1.3", "unknown"}

// Refusal reasons, the reason label of tls_handshake_errors_total (with
// the meaning the http listeners give them).
const (
	helloNotTLS = iota
	helloBad
	helloOversized
	helloTruncated
	helloTimeout
	helloUnknownSNI
	numHelloReasons
)

var helloReasonNames = [numHelloReasons]string{"not_tls", "bad_hello", "oversized", "truncated", "timeout", "unknown_sni"}

func newSNITable(opts *Options, m *metrics.Metrics) *sniTable {
	t := &sniTable{exact: map[string]*boundUpstream{}, wild: map[string]*boundUpstream{}, timeout: opts.HelloTimeout}
	if t.timeout <= 0 {
		t.timeout = DefaultHelloTimeout
	}
	for _, r := range opts.SNIRoutes {
		name := strings.ToLower(strings.TrimSuffix(r.ServerName, "."))
		m2, key := t.exact, name
		if s, ok := strings.CutPrefix(name, "*"); ok {
			m2, key = t.wild, s
		}
		if _, taken := m2[key]; !taken {
			m2[key] = r.Upstream.bind(m)
		}
	}
	for v, name := range versionNames {
		t.ok[v] = m.TLS.Handshakes.WithLabelValues(opts.Name, name, "ok")
		t.failed[v] = m.TLS.Handshakes.WithLabelValues(opts.Name, name, "error")
	}
	for r, name := range helloReasonNames {
		t.reasons[r] = m.TLS.HandshakeErrors.WithLabelValues(opts.Name, name)
	}
	return t
}

// route returns the upstream for a server name (as sent), or def.
func (t *sniTable) route(name []byte, def *boundUpstream) *boundUpstream {
	var buf [256]byte
	if len(name) == 0 || len(name) > len(buf) {
		return def
	}
	lower := buf[:len(name)]
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	if n := len(lower); lower[n-1] == '.' {
		lower = lower[:n-1]
	}
	if up := t.exact[string(lower)]; up != nil {
		return up
	}
	for i, c := range lower {
		if c == '.' && i > 0 {
			if up := t.wild[string(lower[i:])]; up != nil {
				return up
			}
		}
	}
	return def
}

func versionIndex(v uint16) int {
	switch v {
	case 0x0301:
		return v10
	case 0x0302:
		return v11
	case 0x0303:
		return v12
	case 0x0304:
		return v13
	}
	return vUnknown
}

// refuse counts a connection whose ClientHello could not be routed.
func (t *sniTable) refuse(version, reason int) {
	t.failed[version].Inc()
	t.reasons[reason].Inc()
}

// helloReasonOf maps an error of reading a ClientHello to its reason.
func helloReasonOf(err error) int {
	var ne net.Error
	switch {
	case errors.Is(err, ErrNotTLS):
		return helloNotTLS
	case errors.Is(err, ErrHelloTooLarge):
		return helloOversized
	case errors.Is(err, ErrBadHello):
		return helloBad
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return helloTimeout
	}
	return helloTruncated
}

// routeHello reads the ClientHello of client without consuming it and
// returns the upstream it goes to, or nil when the connection is to be
// closed (counted).
func (ss *session) routeHello(client *net.TCPConn) *boundUpstream {
	s := ss.srv
	t := s.sni
	rc, err := client.SyscallConn()
	if err != nil {
		return nil
	}
	if ss.hello == nil {
		ss.hello = make([]byte, MaxClientHello)
	}
	_ = client.SetReadDeadline(time.Now().Add(t.timeout))
	if err := rc.Read(ss.helloFn); err == nil && ss.helloErr == nil {
		_ = client.SetReadDeadline(time.Time{})
		return ss.pick(t)
	} else if ss.helloErr == nil {
		ss.helloErr = err
	}
	t.refuse(vUnknown, helloReasonOf(ss.helloErr))
	return nil
}

// pick routes the parsed ClientHello in ss.helloMsg.
func (ss *session) pick(t *sniTable) *boundUpstream {
	v := versionIndex(ss.helloMsg.MaxVersion)
	up := t.route(ss.helloMsg.ServerName, ss.srv.upstream)
	if up == nil {
		t.refuse(v, helloUnknownSNI)
		return nil
	}
	t.ok[v].Inc()
	return up
}

// peekHello is the RawConn callback of routeHello: it peeks at what the
// socket holds and parses it, waiting for more while the hello is
// incomplete.
func (ss *session) peekHello(fd uintptr) bool {
	for {
		n, err := recvPeek(int(fd), ss.hello)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			ss.helloErr = err
			return true
		case n == 0:
			ss.helloErr = io.ErrUnexpectedEOF
			return true
		}
		ss.helloMsg, ss.helloErr = ParseClientHello(ss.hello[:n])
		if errors.Is(ss.helloErr, ErrHelloShort) {
			switch {
			case n == len(ss.hello):
				ss.helloErr = ErrHelloTooLarge
			case peerClosed(int(fd)):
				// A peek never sees the FIN behind unread bytes: ask.
				ss.helloErr = io.ErrUnexpectedEOF
			default:
				ss.helloErr = nil
				return false // wait for the rest
			}
		}
		return true
	}
}

// peerClosed reports whether the peer has shut its side down (POLLRDHUP).
func peerClosed(fd int) bool {
	fds := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
	n, err := unix.Poll(fds[:], 0)
	return err == nil && n == 1 && fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
}

// readHello reads the ClientHello of a client connection that is not a
// *net.TCPConn (no peeking): it returns the upstream and the bytes read,
// which the caller sends to the backend first.
func (ss *session) readHello(c net.Conn) (*boundUpstream, []byte) {
	t := ss.srv.sni
	if ss.hello == nil {
		ss.hello = make([]byte, MaxClientHello)
	}
	_ = c.SetReadDeadline(time.Now().Add(t.timeout))
	n := 0
	for {
		m, err := c.Read(ss.hello[n:])
		n += m
		ss.helloMsg, ss.helloErr = ParseClientHello(ss.hello[:n])
		if ss.helloErr == nil {
			_ = c.SetReadDeadline(time.Time{})
			return ss.pick(t), ss.hello[:n]
		}
		if !errors.Is(ss.helloErr, ErrHelloShort) {
			break
		}
		if err != nil {
			ss.helloErr = err
			break
		}
		if n == len(ss.hello) {
			ss.helloErr = ErrHelloTooLarge
			break
		}
	}
	t.refuse(vUnknown, helloReasonOf(ss.helloErr))
	return nil, nil
}
