package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// sample is one run of one target on one workload in one round.
type sample struct {
	Round    int
	Workload string
	Target   string
	Err      string // non-empty: the run failed and counts as n/a
	CPU      time.Duration
	HWMKiB   int64
	Load     loadResult // wrk, h2load or grpcload
	Iperf    iperfResult
	// MiB is what the gRPC calls counted in Load moved through the proxy,
	// both directions, gRPC framing included (0 for other workloads).
	MiB float64
	// Other is the share (0..1) of the run's wall time that the proxy's CPU
	// spent running other processes or stolen by the hypervisor: noise.
	// NaN when unknown or when there is no proxy (direct).
	Other float64
	// OtherLoad is the same for the load CPU, beyond wrk or iperf3 and the
	// backends. NaN when unknown.
	OtherLoad float64
}

func (s sample) ok() bool { return s.Err == "" }

// metric extracts one figure from a sample; NaN when it does not apply.
type metric struct {
	Head  string
	Ratio bool // also show the ratio to the baseline
	Fmt   string
	Get   func(s sample) float64
}

func cpuPerReqUS(s sample) float64 {
	if s.Load.Requests == 0 {
		return math.NaN()
	}
	return float64(s.CPU.Microseconds()) / float64(s.Load.Requests)
}

func rssMiB(s sample) float64 {
	if s.HWMKiB == 0 {
		return math.NaN()
	}
	return float64(s.HWMKiB) / 1024
}

var httpMetrics = []metric{
	{Head: "CPU µs/req", Ratio: true, Fmt: "%.2f", Get: cpuPerReqUS},
	{Head: "req/s", Ratio: true, Fmt: "%.0f", Get: func(s sample) float64 { return s.Load.RPS() }},
	{Head: "p50 ms", Fmt: "%.2f", Get: func(s sample) float64 { return s.Load.P50US / 1000 }},
	{Head: "p99 ms", Ratio: true, Fmt: "%.2f", Get: func(s sample) float64 { return s.Load.P99US / 1000 }},
	{Head: "peak RSS MiB", Ratio: true, Fmt: "%.1f", Get: rssMiB},
	{Head: "errors", Fmt: "%.0f", Get: func(s sample) float64 { return float64(s.Load.Errors()) }},
	{Head: "noise %", Fmt: "%.0f", Get: noisePct},
}

// noisePct is the larger of the two CPUs' noise, in percent; NaN when
// neither is known.
func noisePct(s sample) float64 {
	switch {
	case math.IsNaN(s.Other):
		return 100 * s.OtherLoad
	case math.IsNaN(s.OtherLoad):
		return 100 * s.Other
	}
	return 100 * max(s.Other, s.OtherLoad)
}

// grpcMetrics are the columns of a gRPC table; perMiB adds CPU per MiB
// (workloads whose calls carry payload).
func grpcMetrics(perMiB bool) []metric {
	ms := []metric{{Head: "CPU µs/call", Ratio: true, Fmt: "%.2f", Get: cpuPerReqUS}}
	if perMiB {
		ms = append(ms, metric{Head: "CPU ms/MiB", Ratio: true, Fmt: "%.3f", Get: func(s sample) float64 {
			if s.MiB == 0 {
				return math.NaN()
			}
			return float64(s.CPU.Microseconds()) / 1e3 / s.MiB
		}})
	}
	return append(ms,
		metric{Head: "calls/s", Ratio: true, Fmt: "%.0f", Get: func(s sample) float64 { return s.Load.RPS() }},
		metric{Head: "p50 ms", Fmt: "%.2f", Get: func(s sample) float64 { return s.Load.P50US / 1000 }},
		metric{Head: "p99 ms", Ratio: true, Fmt: "%.2f", Get: func(s sample) float64 { return s.Load.P99US / 1000 }},
		metric{Head: "peak RSS MiB", Ratio: true, Fmt: "%.1f", Get: rssMiB},
		metric{Head: "errors", Fmt: "%.0f", Get: func(s sample) float64 { return float64(s.Load.Errors()) }},
		metric{Head: "noise %", Fmt: "%.0f", Get: noisePct},
	)
}

var l4Metrics = []metric{
	{Head: "CPU s/GB", Ratio: true, Fmt: "%.3f", Get: func(s sample) float64 {
		if s.Target == "direct" || s.Iperf.End.SumReceived.Bytes == 0 {
			return math.NaN()
		}
		return s.CPU.Seconds() / (s.Iperf.End.SumReceived.Bytes / 1e9)
	}},
	{Head: "Gbit/s", Ratio: true, Fmt: "%.2f", Get: func(s sample) float64 { return s.Iperf.End.SumReceived.BitsPerSecond / 1e9 }},
	{Head: "peak RSS MiB", Ratio: true, Fmt: "%.1f", Get: rssMiB},
	{Head: "noise %", Fmt: "%.0f", Get: noisePct},
}

// meta is the header of the report.
type meta struct {
	Command  string
	Started  time.Time
	Elapsed  time.Duration
	Rounds   int
	Duration time.Duration
	Warmup   time.Duration
	CPUProxy string
	CPULoad  string
	Machine  [][2]string // label, value
	Reruns   int         // noisy runs repeated
	MaxNoise float64     // noise % above which a run was repeated
	Retries  int         // at most this many repeats per run
}

// fmtSpread formats a median with its range when there is more than one
// value.
func fmtSpread(f string, sp spread) string {
	if sp.N == 0 {
		return "n/a"
	}
	if sp.N == 1 || sp.Min == sp.Max {
		return fmt.Sprintf(f, sp.Median)
	}
	return fmt.Sprintf(f+" ("+f+"–"+f+")", sp.Median, sp.Min, sp.Max)
}

// table renders one workload's results. samples are that workload's runs;
// targets gives the row order, the first being the baseline the ratios are
// taken against, round by round.
func table(w workload, targets []target, samples []sample, metrics []metric) string {
	var b strings.Builder
	base := targets[0].Name
	byKey := map[string]map[int]sample{}
	rounds := map[int]bool{}
	for _, s := range samples {
		if byKey[s.Target] == nil {
			byKey[s.Target] = map[int]sample{}
		}
		byKey[s.Target][s.Round] = s
		rounds[s.Round] = true
	}
	baseName := displayName(base)
	fmt.Fprintf(&b, "### %s\n\n| %s |", w.Title, map[bool]string{true: "path", false: "proxy"}[w.L4])
	sep := "|---|"
	for _, m := range metrics {
		fmt.Fprintf(&b, " %s |", m.Head)
		sep += "---:|"
		if m.Ratio {
			fmt.Fprintf(&b, " ×%s |", baseName)
			sep += "---:|"
		}
	}
	b.WriteString("\n" + sep + "\n")
	var notes []string
	for _, t := range targets {
		runs := byKey[t.Name]
		okRuns, firstErr := 0, ""
		for _, s := range runs {
			if s.ok() {
				okRuns++
			} else if firstErr == "" {
				firstErr = s.Err
			}
		}
		name := t.Name
		if okRuns < len(runs) {
			notes = append(notes, fmt.Sprintf("%s: %d of %d runs failed: %s", t.Name, len(runs)-okRuns, len(runs), firstErr))
			name += fmt.Sprintf(" [%d/%d runs]", okRuns, len(runs))
		}
		fmt.Fprintf(&b, "| %s |", name)
		for _, m := range metrics {
			var vals, ratios []float64
			for r := range rounds {
				s, ok := runs[r]
				if !ok || !s.ok() {
					continue
				}
				v := m.Get(s)
				vals = append(vals, v)
				if bs, ok := byKey[base][r]; ok && bs.ok() {
					ratios = append(ratios, ratio(v, m.Get(bs)))
				}
			}
			fmt.Fprintf(&b, " %s |", fmtSpread(m.Fmt, summarize(vals)))
			if m.Ratio {
				fmt.Fprintf(&b, " %s |", fmtSpread("%.2f", summarize(ratios)))
			}
		}
		b.WriteString("\n")
	}
	if len(notes) > 0 {
		b.WriteString("\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- n/a %s\n", oneLine(n))
		}
	}
	b.WriteString("\n")
	return b.String()
}

func displayName(t string) string {
	if t == "haproxy" {
		return "HAProxy"
	}
	return t
}

// oneLine keeps an error message table- and list-safe.
func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// targetSets are the row orders (baseline first) of the tables of each
// kind of workload.
type targetSets struct {
	HTTP, L4, GRPC []target
}

// render returns the whole markdown report.
func render(m meta, workloads []workload, ts targetSets, samples []sample) string {
	var b strings.Builder
	b.WriteString("# frontdoor side-by-side benchmark\n\n")
	fmt.Fprintf(&b, "Generated by `%s` (bench/cmd/sidebyside) on %s, in %s. ", m.Command,
		m.Started.UTC().Format("2006-01-02 15:04 MST"), m.Elapsed.Round(time.Second))
	fmt.Fprintf(&b, "%d round(s), %s per run after a %s warm-up; targets interleaved round by round. ",
		m.Rounds, m.Duration, m.Warmup)
	fmt.Fprintf(&b, "Proxy under test alone on CPU %s (GOMAXPROCS=1, `nbthread 1`, one nginx worker); "+
		"wrk/iperf3/h2load and the backend on CPU %s. See bench/README.md for what each figure means.\n\n", m.CPUProxy, m.CPULoad)
	if m.Retries > 0 {
		fmt.Fprintf(&b, "Runs with more than %.0f%% noise were repeated up to %d times, keeping the least noisy (%d re-runs).\n\n",
			m.MaxNoise, m.Retries, m.Reruns)
	}
	b.WriteString("| machine | |\n|---|---|\n")
	for _, kv := range m.Machine {
		fmt.Fprintf(&b, "| %s | %s |\n", kv[0], oneLine(kv[1]))
	}
	b.WriteString("\nCells are the median over rounds with (min–max); ratios are taken against HAProxy in the same round, " +
		"then summarised the same way. Lower is better for CPU, latency and RSS; higher for req/s and Gbit/s. " +
		"noise % is the largest share of the run that either CPU spent on processes other than the proxy, " +
		"the load generator and the backend (or that the hypervisor stole); above a few percent, distrust that row.\n\n")
	var http, l4, grpc, tlsW []workload
	for _, w := range workloads {
		switch {
		case w.L4:
			l4 = append(l4, w)
		case w.GRPC != nil:
			grpc = append(grpc, w)
		case w.TLS:
			tlsW = append(tlsW, w)
		default:
			http = append(http, w)
		}
	}
	pick := func(name string) []sample {
		var out []sample
		for _, s := range samples {
			if s.Workload == name {
				out = append(out, s)
			}
		}
		return out
	}
	if len(http) > 0 {
		b.WriteString("## HTTP/1.1 (wrk, 1 thread)\n\n")
		for _, w := range http {
			b.WriteString(table(w, ts.HTTP, pick(w.Name), httpMetrics))
		}
	}
	if len(tlsW) > 0 {
		b.WriteString("## TLS 1.3 (ECDSA P-256, X25519; wrk, or tlsload for a connection per request)\n\n")
		for _, w := range tlsW {
			b.WriteString(table(w, tlsTargetsFor(ts.HTTP), pick(w.Name), httpMetrics))
		}
	}
	if len(l4) > 0 {
		b.WriteString("## L4 TCP (iperf3 -Z, client to server through the proxy)\n\n")
		for _, w := range l4 {
			b.WriteString(table(w, ts.L4, pick(w.Name), l4Metrics))
		}
	}
	if len(grpc) > 0 {
		b.WriteString("## gRPC over HTTP/2 with prior knowledge (h2load, 1 thread; bidi: bench/grpcload)\n\n" +
			"A grpc-go backend (bench/grpcbackend) on the load CPU; HAProxy with `proto h2` on both sides, frontdoor's http " +
			"listener with an `h2c` pool. A call counts only when its whole answer came back (h2load counts any 200). " +
			"MiB: request and response bodies (gRPC framing included) of the counted calls, both directions.\n\n")
		for _, w := range grpc {
			b.WriteString(table(w, ts.GRPC, pick(w.Name), grpcMetrics(w.GRPC.PerMiB)))
		}
	}
	return b.String()
}
