package config

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestParseHashKey(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want HashKey
		err  string
	}{
		{"", HashKey{}, ""},
		{"source_ip", HashKey{Source: "source_ip"}, ""},
		{"path", HashKey{Source: "path"}, ""},
		{"header:X-User-ID", HashKey{"header", "X-User-ID"}, ""},
		{"cookie:fd_backend", HashKey{"cookie", "fd_backend"}, ""},
		{"query:user id", HashKey{"query", "user id"}, ""},
		{"header:", HashKey{}, "the header name after the colon is empty"},
		{"query:", HashKey{}, "query parameter name after the colon is empty"},
		{"header", HashKey{}, "header needs a name, as in header:NAME"},
		{"header:X User", HashKey{}, `"X User" is not a valid header name`},
		{"cookie:a;b", HashKey{}, "not a valid cookie name"},
		{"ip", HashKey{}, "use source_ip, path, header:NAME"},
		{"body:x", HashKey{}, `"body" is not a source`},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseHashKey(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseHashKey(%q) error = %v, want %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseHashKey(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			if got.String() != tc.in {
				t.Errorf("String() = %q, want %q", got.String(), tc.in)
			}
		})
	}
}

func TestStatusRange(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want StatusRange
		str  string
		err  bool
	}{
		{"200-399", StatusRange{200, 399}, "200-399", false},
		{"204", StatusRange{204, 204}, "204", false},
		{" 200 - 299 ", StatusRange{200, 299}, "200-299", false},
		{"", StatusRange{}, "", false},
		{"100-599", StatusRange{100, 599}, "100-599", false},
		{"99", StatusRange{}, "", true},
		{"200-600", StatusRange{}, "", true},
		{"300-200", StatusRange{}, "", true},
		{"2xx", StatusRange{}, "", true},
		{"200-", StatusRange{}, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			var r StatusRange
			err := r.UnmarshalText([]byte(tc.in))
			if (err != nil) != tc.err {
				t.Fatalf("UnmarshalText(%q) error = %v, want error %t", tc.in, err, tc.err)
			}
			if tc.err {
				return
			}
			if r != tc.want || r.String() != tc.str {
				t.Fatalf("UnmarshalText(%q) = %+v (%q), want %+v (%q)", tc.in, r, r.String(), tc.want, tc.str)
			}
		})
	}
}

func TestDuration(t *testing.T) {
	t.Parallel()
	var d Duration
	if err := d.UnmarshalText([]byte("1m30s")); err != nil || d.Duration != 90*time.Second {
		t.Fatalf("1m30s = %v, %v", d, err)
	}
	if b, _ := d.MarshalText(); string(b) != "1m30s" || d.String() != "1m30s" {
		t.Errorf("MarshalText = %q, String = %q", b, d.String())
	}
	err := d.UnmarshalText([]byte("3x"))
	if err == nil || err.Error() != `bad duration "3x": use a Go duration such as 2s or 1m30s` {
		t.Errorf("3x: %v", err)
	}
}

// TestEncodeRoundTrip encodes a loaded config with BurntSushi/toml (which
// uses the MarshalText methods) and loads the result: nothing may change.
func TestEncodeRoundTrip(t *testing.T) {
	t.Parallel()
	cfg, err := Load("testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(cfg); err != nil {
		t.Fatal(err)
	}
	// With path "" the key file name, already resolved by Load, stays as is.
	again, err := Parse(buf.Bytes(), "")
	if err != nil {
		t.Fatalf("reloading encoded config: %v\n%s", err, buf.String())
	}
	again.Path = cfg.Path
	if !reflect.DeepEqual(cfg, again) {
		t.Errorf("round trip changed the config:\n%s", buf.String())
	}
}

// TestBurntSushiDecode checks that the schema also decodes with a plain
// toml.Decode, as a tool outside Load might do.
func TestBurntSushiDecode(t *testing.T) {
	t.Parallel()
	var p Pool
	_, err := toml.Decode(`
strategy = "consistent_hash"
hash_on = "cookie:s"
connect_timeout = "250ms"
[health]
expect_status = "200-204"
`, &p)
	if err != nil {
		t.Fatal(err)
	}
	if p.HashOn != (HashKey{"cookie", "s"}) || p.ConnectTimeout.Duration != 250*time.Millisecond || p.Health.ExpectStatus != (StatusRange{200, 204}) {
		t.Errorf("decoded %+v", p)
	}
	if _, err := toml.Decode(`connect_timeout = "2 s"`, &p); err == nil || !strings.Contains(err.Error(), `bad duration "2 s"`) {
		t.Errorf("bad duration through toml.Decode: %v", err)
	}
}

func TestStatusSet(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
		has, hasNot    []int
	}{
		{name: "default", in: "500,502-504", want: "500,502-504", has: []int{500, 502, 503, 504}, hasNot: []int{501, 505, 599, 404, 200}},
		{name: "spaces and order", in: " 503 , 500-501,599", want: "500-501,503,599", has: []int{500, 501, 503, 599}, hasNot: []int{502, 600}},
		{name: "bare code", in: "502", want: "502", has: []int{502}, hasNot: []int{500}},
		{name: "empty", in: "", want: "", hasNot: []int{500, 503}},
		{name: "all", in: "500-599", want: "500-599", has: []int{500, 550, 599}, hasNot: []int{499, 600}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := ParseStatusSet(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
			for _, c := range tc.has {
				if !s.Has(c) {
					t.Errorf("Has(%d) = false", c)
				}
			}
			for _, c := range tc.hasNot {
				if s.Has(c) {
					t.Errorf("Has(%d) = true", c)
				}
			}
		})
	}
	for _, bad := range []string{"499", "600", "5xx", "503-500", "500,", "500-", "-503"} {
		if _, err := ParseStatusSet(bad); err == nil {
			t.Errorf("ParseStatusSet(%q) accepted", bad)
		}
	}
}

// TestPassiveDefaults checks the [pool.NAME.passive] defaults and that an
// explicit false or empty list is kept.
func TestPassiveDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte(minimal("", "", "", "")), "")
	if err != nil {
		t.Fatal(err)
	}
	ps := cfg.Pools["api"].Passive
	if !ps.UnejectOnActivePass || !ps.CountTimeouts || ps.FailureStatuses.String() != "500,502-504" || ps.MaxEjectionTime.Duration != 300*time.Second {
		t.Errorf("defaults: %+v", ps)
	}
	cfg, err = Parse([]byte(minimal("", "", "[pool.api.passive]\nuneject_on_active_pass = false\ncount_timeouts = false\nfailure_statuses = \"\"\n", "")), "")
	if err != nil {
		t.Fatal(err)
	}
	ps = cfg.Pools["api"].Passive
	if ps.UnejectOnActivePass || ps.CountTimeouts || ps.FailureStatuses.String() != "" {
		t.Errorf("explicit values lost: %+v", ps)
	}
}
