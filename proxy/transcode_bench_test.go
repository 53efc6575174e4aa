package proxy

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"frontdoor/internal/transcodetest"
)

// transcodeChildEnv makes TestTranscodeBenchChild run a Proxy on the config
// file it names, in a process of its own, so that BenchmarkTranscodeCPU can
// read the proxy's CPU time apart from the client's and the backend's.
const transcodeChildEnv = "FRONTDOOR_TRANSCODE_BENCH_CONFIG"

// TestTranscodeBenchChild is BenchmarkTranscodeCPU's proxy process, not a
// test: it skips unless the benchmark started it. It prints the listener's
// address, then answers each line on stdin with its count of heap
// allocations so far, and ends when stdin closes. With
// FRONTDOOR_TRANSCODE_BENCH_CONFIG_CPUPROFILE set it writes a CPU profile of
// the proxy process there.
func TestTranscodeBenchChild(t *testing.T) {
	path := os.Getenv(transcodeChildEnv)
	if path == "" {
		t.Skip("the proxy process of BenchmarkTranscodeCPU")
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if prof := os.Getenv(transcodeChildEnv + "_CPUPROFILE"); prof != "" {
		f, err := os.Create(prof)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	p := startProxy(t, string(text), nil)
	fmt.Println(p.Addr("web").String())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Println(ms.Mallocs)
	}
}

// BenchmarkTranscodeCPU compares, in one run, the proxy's CPU time and heap
// allocations per call for the same small unary call (GetShelf, a 30-byte
// answer) made two ways through one frontdoor process (GOMAXPROCS=1) to
// one grpc-go backend: passed through as gRPC from a grpc-go client, and
// transcoded from HTTP/1.1 JSON (GET /v1/shelves/7, keep-alive). It
// reports both and their ratio (transcode/grpc, issue #21's budget is 2),
// and the read and write system calls per call (/proc/PID/io).
// Each kind makes b.N calls, 8 in flight, in ten alternating turns;
// /proc counts CPU in 10 ms ticks, so use -benchtime=5000x or more.
func BenchmarkTranscodeCPU(b *testing.B) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		b.Skip("needs /proc")
	}
	pb := transcodetest.DescriptorSet(b)
	be := transcodetest.StartBackend(b, pb)
	cfgPath := filepath.Join(b.TempDir(), "bench.toml")
	if err := os.WriteFile(cfgPath, []byte(transcodeTOML(pb, "", "", be.Addr)), 0o644); err != nil {
		b.Fatal(err)
	}
	pid, stdin, stdout := startChild(b, "TestTranscodeBenchChild", transcodeChildEnv+"="+cfgPath)
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	addr := strings.TrimSpace(line)
	mallocs := func() float64 {
		if _, err := fmt.Fprintln(stdin, "m"); err != nil {
			b.Fatal(err)
		}
		l, err := out.ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		n, _ := strconv.ParseFloat(strings.TrimSpace(l), 64)
		return n
	}

	// gRPC pass-through.
	getShelf := getShelfClient(b, pb, addr)
	grpcCall := func() error {
		_, err := getShelf(7)
		return err
	}
	// Transcoded.
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: 16}
	httpCall := func() error {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://" + addr + "/v1/shelves/7")
		if err := hc.DoTimeout(req, resp, 5*time.Second); err != nil {
			return err
		}
		if resp.StatusCode() != 200 {
			return fmt.Errorf("status %d: %s", resp.StatusCode(), resp.Body())
		}
		return nil
	}
	for range 200 { // warm up: connections, pools, caches
		if err := grpcCall(); err != nil {
			b.Fatal(err)
		}
		if err := httpCall(); err != nil {
			b.Fatal(err)
		}
	}
	var gSys, tSys float64
	run := func(n int, call func() error, sys *float64) (cpu, allocs float64, elapsed time.Duration) {
		s0 := procSyscalls(b, pid)
		defer func() { *sys += procSyscalls(b, pid) - s0 }()
		m0, c0, t0 := mallocs(), procCPUSeconds(b, pid), time.Now()
		var wg sync.WaitGroup
		var next sync.Mutex
		left := n
		for range 8 {
			wg.Go(func() {
				for {
					next.Lock()
					if left == 0 {
						next.Unlock()
						return
					}
					left--
					next.Unlock()
					if err := call(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return procCPUSeconds(b, pid) - c0, mallocs() - m0, time.Since(t0)
	}
	b.ResetTimer()
	// In turns of a tenth each, so that the machine's load, which moves,
	// weighs on both kinds alike.
	var gCPU, gAllocs, tCPU, tAllocs float64
	var gTime, tTime time.Duration
	for turn := range 10 {
		n := b.N/10 + b.N%10*(turn/9) // the last turn takes the rest
		c, a, d := run(n, grpcCall, &gSys)
		gCPU, gAllocs, gTime = gCPU+c, gAllocs+a, gTime+d
		c, a, d = run(n, httpCall, &tSys)
		tCPU, tAllocs, tTime = tCPU+c, tAllocs+a, tTime+d
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(gCPU/n*1e6, "grpc-cpu-µs/call")
	b.ReportMetric(tCPU/n*1e6, "transcode-cpu-µs/call")
	if gCPU > 0 {
		b.ReportMetric(tCPU/gCPU, "cpu-ratio")
	}
	b.ReportMetric(gSys/n, "grpc-syscalls/call")
	b.ReportMetric(tSys/n, "transcode-syscalls/call")
	b.ReportMetric(gAllocs/n, "grpc-allocs/call")
	b.ReportMetric(tAllocs/n, "transcode-allocs/call")
	b.ReportMetric(n/gTime.Seconds(), "grpc-calls/s")
	b.ReportMetric(n/tTime.Seconds(), "transcode-calls/s")
}
