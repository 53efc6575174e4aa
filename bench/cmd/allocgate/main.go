package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// allowed lists the benchmarks that may allocate, with the most allocs/op
// each may report and why. Names are as printed by go test, without the
// -GOMAXPROCS suffix.
var allowed = []struct {
	name string
	max  int64
	why  string
}{
	// fasthttp's server allocates once (24 B: io.CopyN in
	// requestStream.discard) after every request whose body it streamed;
	// listeners with max_body_bytes of 1 MiB or less read bodies whole and
	// avoid it (README, Large bodies stream; proxy/stream_bench_test.go,
	// bodyCases). A 1 KiB body is streamed when it does not arrive with
	// the head.
	{"BenchmarkForwardBodies/post_1KiB_streaming_listener", 1, "fasthttp: streamed request body"},
	{"BenchmarkForwardBodies/post_1MiB", 1, "fasthttp: streamed request body"},
}

// result is one benchmark line: its name (without the -GOMAXPROCS
// suffix) and its allocs/op, -1 when the line has none (no -benchmem).
type result struct {
	name   string
	allocs int64
}

// parse reads go test output and returns its benchmark results and whether
// it reported a failure (a "FAIL" line, a panic, a build failure).
func parse(r io.Reader, echo io.Writer) (results []result, failed bool, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if echo != nil {
			fmt.Fprintln(echo, line)
		}
		if strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "--- FAIL") || strings.HasPrefix(line, "panic:") {
			failed = true
		}
		f := strings.Fields(line)
		// BenchmarkX-2   2000   7639 ns/op   0 B/op   0 allocs/op
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue // a benchmark's own log line
		}
		res := result{name: trimProcs(f[0]), allocs: -1}
		for i := 3; i < len(f); i++ {
			if f[i] == "allocs/op" {
				if res.allocs, err = strconv.ParseInt(f[i-1], 10, 64); err != nil {
					return nil, failed, fmt.Errorf("allocgate: %s: allocs/op %q: %w", res.name, f[i-1], err)
				}
			}
		}
		results = append(results, res)
	}
	return results, failed, sc.Err()
}

// trimProcs removes the -GOMAXPROCS suffix go test appends to a name.
func trimProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name
	}
	if _, err := strconv.Atoi(name[i+1:]); err != nil {
		return name
	}
	return name[:i]
}

// check returns one problem per benchmark over its bound, per result
// without allocs/op, and per allow-list entry that matched nothing.
func check(results []result) []string {
	var problems []string
	used := make([]bool, len(allowed))
	for _, r := range results {
		if r.allocs < 0 {
			problems = append(problems, fmt.Sprintf("%s: no allocs/op (run with -benchmem)", r.name))
			continue
		}
		bound, why := int64(0), "promises 0 allocs/op"
		for i, a := range allowed {
			if a.name == r.name {
				bound, why, used[i] = a.max, a.why, true
			}
		}
		if r.allocs > bound {
			problems = append(problems, fmt.Sprintf("%s: %d allocs/op, at most %d (%s)", r.name, r.allocs, bound, why))
		}
	}
	for i, a := range allowed {
		if !used[i] {
			problems = append(problems, fmt.Sprintf("%s: allow-listed, but no such benchmark ran", a.name))
		}
	}
	return problems
}

func main() {
	results, failed, err := parse(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	problems := check(results)
	if failed {
		problems = append(problems, "go test reported a failure")
	}
	if len(results) == 0 {
		problems = append(problems, "no benchmark results in the input")
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, "allocgate:", p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
	fmt.Printf("allocgate: %d benchmarks within their allocation bounds\n", len(results))
}
