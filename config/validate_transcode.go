package config

import (
	"strings"
)

// transcode checks a route's transcode = { ... } table: the keys alone.
// Reading the descriptor set (its services, bindings and templates) is the
// proxy's, at start, on reload and for -check (proxy.Check).
func (v *validator) transcode(c *Config, rp string, r *Route) {
	tc := r.Transcode
	p := rp + ".transcode"
	if tc.DescriptorSet == "" {
		v.add(p, `transcode has no descriptor_set; add descriptor_set = "api.pb" (made by protoc --include_imports -o api.pb FILE.proto)`)
	} else if msg := checkReadable(tc.DescriptorSet); msg != "" {
		v.add(p+".descriptor_set", "%s", msg)
	}
	if len(tc.Services) == 0 {
		v.add(p, `transcode has no services; add services = ["package.Service"], the full names of the services to expose`)
	}
	seen := map[string]bool{}
	for i, s := range tc.Services {
		sp := indexKey(p+".services", i)
		switch {
		case !isFullName(s):
			v.add(sp, "%q is not a full service name such as \"users.v1.UserService\"", s)
		case seen[s]:
			v.add(sp, "service %q is listed twice; remove one", s)
		}
		seen[s] = true
	}
	if s := tc.StripPrefix; s != "" {
		switch {
		case !strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/"):
			v.add(p+".strip_prefix", "strip_prefix %q must start with \"/\" and not end with one, e.g. \"/api\"", s)
		case !strings.HasPrefix(r.PathPrefix, s):
			v.add(p+".strip_prefix", "strip_prefix %q must begin the route's path_prefix %q, or requests of the route may lack it", s, r.PathPrefix)
		}
	}
	for i, h := range tc.ForwardHeaders {
		if !isToken(h) {
			v.add(indexKey(p+".forward_headers", i), "%q is not a header name", h)
		}
	}
	if pl, ok := c.Pools[r.Pool]; ok && pl.Protocol != protocolH2C {
		v.add(p, "transcode calls gRPC backends: pool %q needs protocol = \"h2c\"", r.Pool)
	}
}

// isFullName reports whether s is a protobuf full name: dot-separated
// identifiers.
func isFullName(s string) bool {
	if s == "" || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") {
		return false
	}
	for part := range strings.SplitSeq(s, ".") {
		if part == "" || part[0] >= '0' && part[0] <= '9' {
			return false
		}
		for i := 0; i < len(part); i++ {
			c := part[i]
			if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				return false
			}
		}
	}
	return true
}
