package proxy

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"frontdoor/config"
)

// dnsTimeout bounds one DNS exchange.
const dnsTimeout = 2 * time.Second

// errDNSServer is the error of an answer with an RCODE other than success
// or NXDOMAIN.
var errDNSServer = errors.New("proxy: dns server error")

// dnsClient asks one DNS server over UDP (TCP when the answer is
// truncated) and reads the records' TTLs, which Go's net.Resolver does not
// expose. With no server (no resolver set and none in /etc/resolv.conf) it
// uses Go's resolver and reports no TTL.
type dnsClient struct {
	server string // host:port, "" for Go's resolver
}

// newDNSClient returns a client of server, or of /etc/resolv.conf's first
// nameserver when server is "".
func newDNSClient(server string) *dnsClient {
	if server == "" {
		server = resolvConfServer("/etc/resolv.conf")
	}
	return &dnsClient{server: server}
}

// resolvConfServer returns the first nameserver of a resolv.conf file as
// host:53, or "" when there is none.
func resolvConfServer(file string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			host, _, _ := strings.Cut(fields[1], "%") // a zone does not reach the dialer
			if _, err := netip.ParseAddr(host); err == nil {
				return net.JoinHostPort(host, "53")
			}
		}
	}
	return ""
}

// resolve asks for d's name and returns the backends (sorted by address)
// and the smallest TTL among the records used (-1: unknown). An NXDOMAIN
// or NODATA answer is no backends and no error.
func (c *dnsClient) resolve(ctx context.Context, d *config.Discovery) ([]config.Backend, time.Duration, error) {
	if c.server == "" {
		return c.resolveSystem(ctx, d)
	}
	name := d.Name
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	qn, err := dnsmessage.NewName(name)
	if err != nil {
		return nil, 0, fmt.Errorf("dns name %q: %w", d.Name, err)
	}
	ttl := int64(-1)
	keep := func(t uint32) {
		if ttl < 0 || int64(t) < ttl {
			ttl = int64(t)
		}
	}
	if d.Type == config.DiscoverySRV {
		answers, err := c.exchange(ctx, qn, dnsmessage.TypeSRV)
		if err != nil {
			return nil, 0, err
		}
		var recs []srvRecord
		for _, a := range answers {
			if srv, ok := a.Body.(*dnsmessage.SRVResource); ok {
				recs = append(recs, srvRecord{priority: srv.Priority, weight: srv.Weight, port: srv.Port, target: srv.Target.String()})
				keep(a.Header.TTL)
			}
		}
		return srvBackends(recs), ttlDuration(ttl), nil
	}
	var out []config.Backend
	seen := map[netip.Addr]bool{}
	for _, qt := range []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA} {
		answers, err := c.exchange(ctx, qn, qt)
		if err != nil {
			return nil, 0, err
		}
		for _, a := range answers {
			var ip netip.Addr
			switch b := a.Body.(type) {
			case *dnsmessage.AResource:
				ip = netip.AddrFrom4(b.A)
			case *dnsmessage.AAAAResource:
				ip = netip.AddrFrom16(b.AAAA)
			default:
				continue
			}
			if !seen[ip] {
				seen[ip] = true
				out = append(out, config.Backend{Address: netip.AddrPortFrom(ip, uint16(d.Port)).String(), Weight: 1})
			}
			keep(a.Header.TTL)
		}
	}
	sortBackends(out)
	return out, ttlDuration(ttl), nil
}

// ttlDuration converts a TTL in seconds, -1 meaning unknown.
func ttlDuration(ttl int64) time.Duration {
	if ttl < 0 {
		return -1
	}
	return time.Duration(ttl) * time.Second
}

// resolveSystem resolves through Go's resolver (no TTL).
func (c *dnsClient) resolveSystem(ctx context.Context, d *config.Discovery) ([]config.Backend, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*dnsTimeout)
	defer cancel()
	var notFound *net.DNSError
	if d.Type == config.DiscoverySRV {
		_, srvs, err := net.DefaultResolver.LookupSRV(ctx, "", "", d.Name)
		if errors.As(err, &notFound) && notFound.IsNotFound {
			return nil, -1, nil
		}
		if err != nil {
			return nil, -1, fmt.Errorf("resolve %s: %w", d.Name, err)
		}
		recs := make([]srvRecord, len(srvs))
		for i, s := range srvs {
			recs[i] = srvRecord{priority: s.Priority, weight: s.Weight, port: s.Port, target: s.Target}
		}
		return srvBackends(recs), -1, nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", d.Name)
	if errors.As(err, &notFound) && notFound.IsNotFound {
		return nil, -1, nil
	}
	if err != nil {
		return nil, -1, fmt.Errorf("resolve %s: %w", d.Name, err)
	}
	var out []config.Backend
	for _, ip := range ips {
		out = append(out, config.Backend{Address: netip.AddrPortFrom(ip.Unmap(), uint16(d.Port)).String(), Weight: 1})
	}
	sortBackends(out)
	return out, -1, nil
}

// exchange asks the server one question and returns the answer section:
// empty for NXDOMAIN.
func (c *dnsClient) exchange(ctx context.Context, name dnsmessage.Name, qt dnsmessage.Type) ([]dnsmessage.Resource, error) {
	id := uint16(rand.Uint32())
	q := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: name, Type: qt, Class: dnsmessage.ClassINET}},
	}
	packed, err := q.Pack()
	if err != nil {
		return nil, fmt.Errorf("dns query %s %s: %w", name, qt, err)
	}
	ctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	defer cancel()
	m, err := c.roundTrip(ctx, "udp", packed, id)
	if err == nil && m.Truncated {
		m, err = c.roundTrip(ctx, "tcp", packed, id)
	}
	if err != nil {
		return nil, fmt.Errorf("dns query %s %s to %s: %w", name, qt, c.server, err)
	}
	switch m.RCode {
	case dnsmessage.RCodeSuccess:
		return m.Answers, nil
	case dnsmessage.RCodeNameError:
		return nil, nil
	}
	return nil, fmt.Errorf("dns query %s %s to %s: %s: %w", name, qt, c.server, m.RCode, errDNSServer)
}

// roundTrip sends a packed query over network ("udp" or "tcp") and reads
// the response with the query's id.
func (c *dnsClient) roundTrip(ctx context.Context, network string, packed []byte, id uint16) (*dnsmessage.Message, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, c.server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if network == "tcp" {
		msg := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(packed)), uint16(len(packed)))
		if _, err := conn.Write(append(msg, packed...)); err != nil {
			return nil, err
		}
		var n [2]byte
		if _, err := io.ReadFull(conn, n[:]); err != nil {
			return nil, err
		}
		buf := make([]byte, binary.BigEndian.Uint16(n[:]))
		if _, err := io.ReadFull(conn, buf); err != nil {
			return nil, err
		}
		return parseResponse(buf, id)
	}
	if _, err := conn.Write(packed); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return nil, err
		}
		// A stray or spoofed datagram with another id is skipped.
		if m, err := parseResponse(buf[:n], id); err == nil {
			return m, nil
		}
	}
}

// errDNSMismatch is a response that does not answer the query.
var errDNSMismatch = errors.New("proxy: dns response does not match the query")

func parseResponse(b []byte, id uint16) (*dnsmessage.Message, error) {
	var m dnsmessage.Message
	if err := m.Unpack(b); err != nil {
		return nil, err
	}
	if !m.Response || m.ID != id {
		return nil, errDNSMismatch
	}
	return &m, nil
}
