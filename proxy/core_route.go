package proxy

import (
	"bytes"
	"sort"
	"strings"
)

// routeTable matches a request's host and path to a route. It is compiled
// once per config: hosts are lower-cased, each host group's prefixes are
// sorted longest first, so matching is a short scan with no allocation.
type routeTable struct {
	exact    []hostGroup // host = "api.example.com"
	wildcard []hostGroup // host = "*.example.com": suffix ".example.com"
	any      *hostGroup  // routes without a host
}

type hostGroup struct {
	host   []byte // lower case; for wildcards the suffix including the dot
	routes []*route
}

func compileRoutes(routes []*route) routeTable {
	var t routeTable
	groups := map[string]*hostGroup{}
	var order []string
	for _, r := range routes {
		h := strings.ToLower(r.host)
		g := groups[h]
		if g == nil {
			g = &hostGroup{host: []byte(strings.TrimPrefix(h, "*"))}
			groups[h] = g
			order = append(order, h)
		}
		g.routes = append(g.routes, r)
	}
	for _, h := range order {
		g := groups[h]
		sort.SliceStable(g.routes, func(i, j int) bool {
			return len(g.routes[i].prefix) > len(g.routes[j].prefix)
		})
		switch {
		case h == "":
			t.any = g
		case strings.HasPrefix(h, "*."):
			t.wildcard = append(t.wildcard, *g)
		default:
			t.exact = append(t.exact, *g)
		}
	}
	// The longest wildcard suffix wins: "*.a.example.com" before "*.example.com".
	sort.SliceStable(t.wildcard, func(i, j int) bool { return len(t.wildcard[i].host) > len(t.wildcard[j].host) })
	return t
}

// match returns the route for host (as sent, maybe with a port) and path, or
// nil. An exact host beats a wildcard, which beats routes without a host;
// within the chosen group the longest path prefix wins. A host group with no
// matching prefix falls through to the next, less specific group.
func (t *routeTable) match(host, path []byte) *route {
	host = stripPort(host)
	for i := range t.exact {
		if bytes.EqualFold(host, t.exact[i].host) {
			if r := matchPrefix(t.exact[i].routes, path); r != nil {
				return r
			}
		}
	}
	for i := range t.wildcard {
		s := t.wildcard[i].host
		if len(host) > len(s) && bytes.EqualFold(host[len(host)-len(s):], s) {
			if r := matchPrefix(t.wildcard[i].routes, path); r != nil {
				return r
			}
		}
	}
	if t.any != nil {
		return matchPrefix(t.any.routes, path)
	}
	return nil
}

func matchPrefix(routes []*route, path []byte) *route {
	for _, r := range routes {
		if bytes.HasPrefix(path, r.prefix) {
			return r
		}
	}
	return nil
}

// stripPort removes a trailing ":port" from a Host header value, keeping
// IPv6 literals ("[::1]:80" → "[::1]").
func stripPort(host []byte) []byte {
	for i := len(host) - 1; i >= 0; i-- {
		switch host[i] {
		case ':':
			return host[:i]
		case ']':
			return host
		}
		if host[i] < '0' || host[i] > '9' {
			return host
		}
	}
	return host
}
