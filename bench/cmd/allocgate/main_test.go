package main

import (
	"slices"
	"strings"
	"testing"
)

const sample = `goos: linux
pkg: frontdoor/proxy
BenchmarkForward/backends=3-2         	    2000	      7639 ns/op	       0 B/op	       0 allocs/op
BenchmarkForward/backends=256-2       	    2000	     24721 ns/op	    4361 B/op	       2 allocs/op
BenchmarkForwardBodies/post_1MiB-2    	    2000	    977490 ns/op	      28 B/op	       1 allocs/op
BenchmarkForwardBodies/post_1KiB_streaming_listener-2 	2000	65017 ns/op	0 B/op	0 allocs/op
BenchmarkPick/round_robin/3-2   	     2000	       162.1 ns/op	       145.0 cpu-ns/op	       1 B/op	       0 allocs/op
BenchmarkForward
    forward_bench_test.go:9: a log line
PASS
ok  	frontdoor/proxy	2.239s
`

func TestParse(t *testing.T) {
	t.Parallel()
	got, failed, err := parse(strings.NewReader(sample), nil)
	if err != nil || failed {
		t.Fatalf("parse: %v, failed %v", err, failed)
	}
	want := []result{
		{"BenchmarkForward/backends=3", 0},
		{"BenchmarkForward/backends=256", 2},
		{"BenchmarkForwardBodies/post_1MiB", 1},
		{"BenchmarkForwardBodies/post_1KiB_streaming_listener", 0},
		{"BenchmarkPick/round_robin/3", 0},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("parse = %v\nwant %v", got, want)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	allowedOK := []result{
		{"BenchmarkForwardBodies/post_1MiB", 1},
		{"BenchmarkForwardBodies/post_1KiB_streaming_listener", 0},
	}
	for _, tc := range []struct {
		name    string
		results []result
		want    []string // substrings, one per problem, in order
	}{
		{"all zero", append([]result{{"BenchmarkForward/backends=3", 0}}, allowedOK...), nil},
		{"one allocation on a 0 promise", append([]result{{"BenchmarkForward/backends=256", 1}}, allowedOK...),
			[]string{"BenchmarkForward/backends=256: 1 allocs/op, at most 0"}},
		{"allow-listed over its bound", []result{{"BenchmarkForwardBodies/post_1MiB", 2}, allowedOK[1]},
			[]string{"post_1MiB: 2 allocs/op, at most 1 (fasthttp"}},
		{"no -benchmem", append([]result{{"BenchmarkPick/x", -1}}, allowedOK...), []string{"no allocs/op"}},
		{"allow-list entry unused", allowedOK[:1], []string{"post_1KiB_streaming_listener: allow-listed, but no such benchmark ran"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := check(tc.results)
			if len(got) != len(tc.want) {
				t.Fatalf("check = %q, want %d problems", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestParseSeesFailures(t *testing.T) {
	t.Parallel()
	for _, out := range []string{
		"--- FAIL: BenchmarkForward\nFAIL\tfrontdoor/proxy\t1.0s\n",
		"# frontdoor/proxy\n./x.go:1: undefined: y\nFAIL\tfrontdoor/proxy [build failed]\n",
		"panic: boom\n",
	} {
		if _, failed, _ := parse(strings.NewReader(out), nil); !failed {
			t.Errorf("parse(%q) saw no failure", out)
		}
	}
}

func TestTrimProcs(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"BenchmarkPick/least_conn/16-2":           "BenchmarkPick/least_conn/16",
		"BenchmarkForward/backends=3/accesslog-8": "BenchmarkForward/backends=3/accesslog",
		"BenchmarkX":        "BenchmarkX",
		"BenchmarkPick/a-b": "BenchmarkPick/a-b",
	} {
		if got := trimProcs(in); got != want {
			t.Errorf("trimProcs(%q) = %q, want %q", in, got, want)
		}
	}
}
