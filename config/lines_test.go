package config

import (
	"strings"
	"testing"
)

func TestIndexLines(t *testing.T) {
	t.Parallel()
	src := strings.Join([]string{
		`# [not.a.table] in a comment`, // 1
		`title = "a # not a comment"`,  // 2
		`text = """`,                   // 3
		`[inside.a.string]`,            // 4
		`key = "no"`,                   // 5
		`"""  # end`,                   // 6
		`[[listener]]`,                 // 7
		`name = 'a'`,                   // 8
		`  [[listener.route]]`,         // 9
		`  pool = "x"`,                 // 10
		`  [[listener.route]]`,         // 11
		`  pool = "y"`,                 // 12
		`[[listener]]`,                 // 13
		`  [[listener.route]]`,         // 14
		`  "pool" = "z"`,               // 15
		`[ pool . "my.pool" ]`,         // 16
		`backends = [ # comment ]`,     // 17
		`  { address = "a:1" },`,       // 18
		``,                             // 19
		`  { address = "b:2", weight = 2 }, { address = "c:3" }`, // 20
		`]`,                      // 21
		`audiences = ["x", "y"]`, // 22
		`forward_claims = { sub = "X", "a.b" = "Y" }`, // 23
		`health.check = "tcp"`,                        // 24
		`lit = '''`,                                   // 25
		`multi`,                                       // 26
		`'''`,                                         // 27
		`esc = "a\"b"`,                                // 28
		`[pool."my.pool".passive]`,                    // 29
		`fall = 3`,                                    // 30
		`nested = [[1, 2], [`,                         // 31
		`  3]]`,                                       // 32
	}, "\n")
	x := indexLines(src)
	cases := []struct {
		path string
		line int
	}{
		{"title", 2},
		{"text", 3},
		{"inside", 0},
		{"listener[0]", 7},
		{"listener[0].name", 8},
		{"listener[0].route[0]", 9},
		{"listener[0].route[0].pool", 10},
		{"listener[0].route[1].pool", 12},
		{"listener[1]", 13},
		{"listener[1].route[0].pool", 15},
		{"listener[1].route[0].host", 14}, // not written: its table
		{"listener[1].bind", 13},
		{"pool", 16},
		{`pool."my.pool"`, 16},
		{`pool."my.pool".backends`, 17},
		{`pool."my.pool".backends[0]`, 18},
		{`pool."my.pool".backends[0].address`, 18},
		{`pool."my.pool".backends[1].weight`, 20},
		{`pool."my.pool".backends[2]`, 20},
		{`pool."my.pool".backends[2].weight`, 20},
		{`pool."my.pool".audiences[1]`, 22},
		{`pool."my.pool".forward_claims.sub`, 23},
		{`pool."my.pool".forward_claims."a.b"`, 23},
		{`pool."my.pool".health`, 24},
		{`pool."my.pool".health.check`, 24},
		{`pool."my.pool".lit`, 25},
		{`pool."my.pool".esc`, 28},
		{`pool."my.pool".passive.fall`, 30},
		{`pool."my.pool".passive.rise`, 29},
		{`pool."my.pool".passive.nested[1][0]`, 32},
		{`pool."my.pool".passive.nested[0]`, 31},
		{"jwt.users", 0},
	}
	for _, tc := range cases {
		if got := x.line(tc.path); got != tc.line {
			t.Errorf("line(%s) = %d, want %d", tc.path, got, tc.line)
		}
	}
}

func TestParentPath(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"listener[0].route[1].pool":  "listener[0].route[1]",
		"listener[0].route[1]":       "listener[0].route",
		"listener[0]":                "listener",
		"listener":                   "",
		`pool."a.b[1]".backends`:     `pool."a.b[1]"`,
		`pool."a.b[1]"`:              "pool",
		`pool."a\".b"`:               "pool",
		`jwt.x.forward_claims."a.b"`: "jwt.x.forward_claims",
	}
	for in, want := range cases {
		if got := parentPath(in); got != want {
			t.Errorf("parentPath(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestEditDistanceSuggestions(t *testing.T) {
	t.Parallel()
	strategies := []string{"round_robin", "least_conn", "consistent_hash"}
	cases := map[string]string{
		"round_robbin":   "round_robin",
		"roundrobin":     "round_robin",
		"least_con":      "least_conn",
		"leastconn":      "least_conn",
		"consistenthash": "consistent_hash",
		"Round_Robin":    "round_robin",
		"random":         "",
		"":               "",
	}
	for in, want := range cases {
		if got := nearest(in, strategies); got != want {
			t.Errorf("nearest(%q) = %q, want %q", in, got, want)
		}
	}
}
