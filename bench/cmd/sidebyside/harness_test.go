package main

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		in       string
		want     procStat
		wantFail bool
	}{
		{
			name: "plain",
			in:   "1234 (haproxy) S 1 1234 1234 0 -1 4194560 1393 0 0 0 250 75 0 0 20 0 1 0 12345 12345678 2000 18446744073709551615\n",
			want: procStat{PPID: 1, UTime: 250, STime: 75},
		},
		{
			name: "comm with spaces and parens",
			in:   "77 (a (b) c) R 76 77 77 0 -1 0 0 0 0 0 9 8 0 0 20 0 1 0 1 1 1",
			want: procStat{PPID: 76, UTime: 9, STime: 8},
		},
		{name: "truncated", in: "77 (x) R 76 77 77", wantFail: true},
		{name: "no comm", in: "77 x R 76", wantFail: true},
		{name: "bad utime", in: "7 (x) R 6 0 0 0 0 0 0 0 0 0 zz 8 0 0", wantFail: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseStat([]byte(tc.in))
			if tc.wantFail {
				if err == nil {
					t.Fatalf("parseStat = %+v, want error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseStat = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParseVmHWM(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		in       string
		want     int64
		wantFail bool
	}{
		{name: "present", in: "Name:\tnginx\nVmPeak:\t  20000 kB\nVmHWM:\t    9876 kB\nVmRSS:\t 9000 kB\n", want: 9876},
		{name: "kernel thread", in: "Name:\tkthreadd\nState:\tS (sleeping)\n", wantFail: true},
		{name: "odd unit", in: "VmHWM:\t 12 MB\n", wantFail: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseVmHWM([]byte(tc.in))
			if tc.wantFail != (err != nil) || got != tc.want {
				t.Fatalf("parseVmHWM = %d, %v; want %d (fail %v)", got, err, tc.want, tc.wantFail)
			}
		})
	}
}

// TestReadTree builds a fake /proc with a master, two workers, a grandchild
// and an unrelated process, and checks that only the tree is summed.
func TestReadTree(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	procs := []struct {
		pid, ppid, ut, st int
		hwm               string
	}{
		{100, 1, 10, 5, "VmHWM:\t 1000 kB\n"},
		{101, 100, 200, 100, "VmHWM:\t 5000 kB\n"},
		{102, 100, 1, 1, "VmHWM:\t 10 kB\n"},
		{103, 101, 4, 0, "Name:\tno hwm\n"},
		{200, 1, 999, 999, "VmHWM:\t 99999 kB\n"},
	}
	for _, p := range procs {
		d := filepath.Join(root, itoa(p.pid))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := itoa(p.pid) + " (p) S " + itoa(p.ppid) + " 0 0 0 0 0 0 0 0 0 " + itoa(p.ut) + " " + itoa(p.st) + " 0 0 20 0 1"
		if err := os.WriteFile(filepath.Join(d, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "status"), []byte(p.hwm), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	u, err := readTree(root, 100, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	want := treeUsage{CPU: (10 + 5 + 200 + 100 + 1 + 1 + 4) * 10 * time.Millisecond, HWMKiB: 6010, Procs: 4}
	if u != want {
		t.Fatalf("readTree = %+v, want %+v", u, want)
	}
	pids, err := descendants(root, 100)
	if err != nil || len(pids) != 4 || pids[0] != 100 {
		t.Fatalf("descendants = %v, %v; want 100 and its 3 descendants", pids, err)
	}
	if _, err := readTree(root, 4242, time.Millisecond); err == nil {
		t.Fatal("readTree of a missing pid: want error")
	}
}

// TestReadTreeSelf reads the test process itself from the real /proc.
func TestReadTreeSelf(t *testing.T) {
	t.Parallel()
	u, err := readTree("/proc", os.Getpid(), clockTick())
	if err != nil {
		t.Fatal(err)
	}
	if u.HWMKiB <= 0 || u.Procs < 1 {
		t.Fatalf("readTree(self) = %+v, want a positive VmHWM", u)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestSummarize(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	tests := []struct {
		name string
		in   []float64
		want spread
	}{
		{name: "one", in: []float64{3}, want: spread{3, 3, 3, 1}},
		{name: "odd", in: []float64{5, 1, 3}, want: spread{3, 1, 5, 3}},
		{name: "even", in: []float64{4, 1, 2, 10}, want: spread{3, 1, 10, 4}},
		{name: "nan ignored", in: []float64{nan, 2, nan, 4}, want: spread{3, 2, 4, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := append([]float64(nil), tc.in...)
			if got := summarize(in); got != tc.want {
				t.Fatalf("summarize(%v) = %+v, want %+v", tc.in, got, tc.want)
			}
			for i := range in {
				if !(math.IsNaN(in[i]) && math.IsNaN(tc.in[i])) && in[i] != tc.in[i] {
					t.Fatalf("summarize changed its input: %v", in)
				}
			}
		})
	}
	if got := summarize(nil); got.N != 0 || !math.IsNaN(got.Median) {
		t.Fatalf("summarize(nil) = %+v, want N=0 and NaN", got)
	}
	if got := summarize([]float64{nan}); got.N != 0 {
		t.Fatalf("summarize(NaN) = %+v, want N=0", got)
	}
}

func TestRatio(t *testing.T) {
	t.Parallel()
	if r := ratio(3, 2); r != 1.5 {
		t.Fatalf("ratio(3,2) = %v", r)
	}
	for _, c := range [][2]float64{{1, 0}, {math.NaN(), 1}, {1, math.NaN()}} {
		if r := ratio(c[0], c[1]); !math.IsNaN(r) {
			t.Fatalf("ratio(%v,%v) = %v, want NaN", c[0], c[1], r)
		}
	}
}

func TestParseWrk(t *testing.T) {
	t.Parallel()
	out := "Running 3s test @ http://127.0.0.1:1/small\n  1 threads and 64 connections\n" +
		"  Latency Distribution\n     50%  1.00ms\n" +
		`FDBENCH {"requests":30000,"duration_us":3000000,"bytes":9000,"connect":1,"read":2,"write":0,"status":3,"timeout":4,"p50_us":1000,"p99_us":5500}` + "\n"
	r, err := parseFDBench([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 30000 || r.RPS() != 10000 || r.Errors() != 10 || r.P99US != 5500 {
		t.Fatalf("parseFDBench = %+v (rps %v, errors %d)", r, r.RPS(), r.Errors())
	}
	if _, err := parseFDBench([]byte("unable to connect to 127.0.0.1:1 Connection refused\n")); err == nil {
		t.Fatal("parseFDBench without summary: want error")
	}
}

func TestParseIperf(t *testing.T) {
	t.Parallel()
	good := `{"start":{},"end":{"sum_sent":{"bytes":2e9},"sum_received":{"bytes":1000000000,"bits_per_second":8e9}}}`
	r, err := parseIperf([]byte(good))
	if err != nil || r.End.SumReceived.Bytes != 1e9 || r.End.SumReceived.BitsPerSecond != 8e9 {
		t.Fatalf("parseIperf = %+v, %v", r, err)
	}
	for _, bad := range []string{`{"error":"unable to connect to server: Connection refused"}`, `{"end":{}}`, "garbage"} {
		if _, err := parseIperf([]byte(bad)); err == nil {
			t.Fatalf("parseIperf(%q): want error", bad)
		}
	}
}

func TestParseCPUStat(t *testing.T) {
	t.Parallel()
	stat := "cpu  100 2 30 4000 5 6 7 8 0 0\ncpu0 50 1 15 2000 2 3 3 4 0 0\ncpu1 50 1 15 2000 3 3 4 4 0 0\nintr 1 2\n"
	got, err := parseCPUStat([]byte(stat), "1")
	if err != nil || got != (cpuTimes{Busy: 66, Steal: 4}) {
		t.Fatalf("parseCPUStat = %+v, %v", got, err)
	}
	if _, err := parseCPUStat([]byte(stat), "2"); err == nil {
		t.Fatal("parseCPUStat of a missing CPU: want error")
	}
}

func TestPorts(t *testing.T) {
	t.Parallel()
	p, err := newPorts("40000\t60999\n", 7)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for range 5 {
		n, err := p.get()
		if err != nil {
			t.Fatal(err)
		}
		if n < 10000 || n >= 40000 || seen[n] {
			t.Fatalf("port %d: want a new port in [10000, 40000)", n)
		}
		seen[n] = true
	}
	if _, err := newPorts("10500 60999", 1); err == nil {
		t.Fatal("no room below the ephemeral range: want error")
	}
	if p, err := newPorts("", 0); err != nil || p.end != 32768 {
		t.Fatalf("default range: %+v, %v", p, err)
	}
}

func TestListening(t *testing.T) {
	t.Parallel()
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:2329 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
`
	for _, c := range []struct {
		port int
		want bool
	}{{8080, true}, {9001, false}, {22, true}, {80, false}} {
		if got := listening([]byte(table), c.port); got != c.want {
			t.Errorf("listening(%d) = %v, want %v", c.port, got, c.want)
		}
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	w := workload{Name: "small-64", Title: "Small GET"}
	mk := func(round int, target string, cpu time.Duration, reqs int64) sample {
		return sample{Round: round, Workload: w.Name, Target: target, CPU: cpu, HWMKiB: 2048,
			Load: loadResult{Requests: reqs, DurationUS: 1e6, P50US: 500, P99US: 2000}}
	}
	samples := []sample{
		mk(1, "haproxy", time.Second, 100000), mk(1, "frontdoor", 2*time.Second, 100000),
		mk(2, "haproxy", time.Second, 100000), mk(2, "frontdoor", 3*time.Second, 100000),
		mk(3, "haproxy", time.Second, 100000),
		{Round: 3, Workload: w.Name, Target: "frontdoor", Err: "frontdoor exited | boom"},
	}
	got := table(w, []target{{Name: "haproxy"}, {Name: "frontdoor"}, {Name: "nginx"}}, samples, httpMetrics)
	for _, want := range []string{
		"### Small GET",
		"| haproxy | 10.00 | 1.00 | 100000 | 1.00 |",
		"| frontdoor [2/3 runs] | 25.00 (20.00–30.00) | 2.50 (2.00–3.00) |",
		"| nginx | n/a |",
		"- n/a frontdoor: 1 of 3 runs failed: frontdoor exited / boom",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	full := render(meta{Command: "make bench", Rounds: 3, Machine: [][2]string{{"CPU model", "x"}}}, []workload{w}, targetSets{HTTP: httpTargets, L4: l4Targets, GRPC: grpcTargets}, samples)
	if !strings.Contains(full, "| CPU model | x |") || !strings.Contains(full, "Generated by `make bench`") {
		t.Errorf("render header:\n%s", full)
	}
}

func TestNoisy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		s    sample
		want bool
	}{
		{name: "quiet", s: sample{Other: 0.05}, want: false},
		{name: "noisy", s: sample{Other: 0.3}, want: true},
		{name: "unknown", s: sample{Other: math.NaN()}, want: false},
		{name: "failed", s: sample{Other: 0.9, Err: "x"}, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := noisy(tc.s, 10); got != tc.want {
				t.Fatalf("noisy(%+v) = %v, want %v", tc.s, got, tc.want)
			}
		})
	}
}

func TestNoiseFigures(t *testing.T) {
	t.Parallel()
	tick := 10 * time.Millisecond
	before := cpuTimes{Busy: 1000, Steal: 10}
	after := cpuTimes{Busy: 1080, Steal: 30} // 0.8 s busy + 0.2 s stolen
	if got := foreignShare(before, after, tick, 500*time.Millisecond, 2); math.Abs(got-0.25) > 1e-9 {
		t.Errorf("foreignShare = %v, want 0.25 ((1.0-0.5)/2)", got)
	}
	if got := foreignShare(before, after, tick, 3*time.Second, 2); got != 0 {
		t.Errorf("foreignShare with more own time than busy = %v, want 0", got)
	}
	nan := math.NaN()
	for _, c := range []struct {
		other, load, want float64
	}{{0.1, 0.3, 30}, {0.4, 0.2, 40}, {nan, 0.05, 5}, {0.07, nan, 7}} {
		if got := noisePct(sample{Other: c.other, OtherLoad: c.load}); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("noisePct(%v, %v) = %v, want %v", c.other, c.load, got, c.want)
		}
	}
	if got := noisePct(sample{Other: nan, OtherLoad: nan}); !math.IsNaN(got) {
		t.Errorf("noisePct(NaN, NaN) = %v, want NaN", got)
	}
}

func TestSelectWorkloads(t *testing.T) {
	t.Parallel()
	ws, err := selectWorkloads("l4-1, small-64")
	if err != nil || len(ws) != 2 || ws[0].Name != "small-64" || ws[1].Name != "l4-1" {
		t.Fatalf("selectWorkloads = %v, %v", ws, err)
	}
	if _, err := selectWorkloads("nope"); err == nil {
		t.Fatal("unknown workload: want error")
	}
	ts := selectTargets(httpTargets, "minproxy", false)
	if len(ts) != 2 || ts[0].Name != "haproxy" || ts[1].Name != "minproxy" {
		t.Fatalf("selectTargets = %v", ts)
	}
	// frontdoor2 runs only with its binary, and then with frontdoor.
	names := func(ts []target) string {
		var n []string
		for _, t := range ts {
			n = append(n, t.Name)
		}
		return strings.Join(n, ",")
	}
	for _, tc := range []struct {
		names  string
		second bool
		want   string
	}{
		{"", false, "haproxy,frontdoor,nginx,minproxy"},
		{"", true, "haproxy,frontdoor,frontdoor2,nginx,minproxy"},
		{"frontdoor", false, "haproxy,frontdoor"},
		{"frontdoor", true, "haproxy,frontdoor,frontdoor2"},
		{"minproxy", true, "haproxy,minproxy"},
	} {
		if got := names(selectTargets(httpTargets, tc.names, tc.second)); got != tc.want {
			t.Errorf("selectTargets(%q, %v) = %s, want %s", tc.names, tc.second, got, tc.want)
		}
	}
	if got := names(selectTargets(l4Targets, "frontdoor", true)); got != "haproxy,frontdoor,frontdoor2" {
		t.Errorf("L4 selectTargets = %s", got)
	}
}
