package grpc

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"frontdoor/balancer"
)

// childEnv makes the test binary run a bare frontdoor Server in front of the
// comma-separated backend addresses it holds (see runProxyChild), so that a
// benchmark can measure the proxy's own CPU time as a separate process.
const childEnv = "FRONTDOOR_GRPC_BENCH_BACKENDS"

func TestMain(m *testing.M) {
	if addrs := os.Getenv(childEnv); addrs != "" {
		os.Exit(runProxyChild(strings.Split(addrs, ",")))
	}
	os.Exit(m.Run())
}

// runProxyChild serves gRPC on 127.0.0.1 with round robin over addrs, prints
// its address on stdout and runs until stdin is closed. With
// FRONTDOOR_GRPC_BENCH_BACKENDS_CPUPROFILE=FILE it writes a CPU profile of
// itself there.
func runProxyChild(addrs []string) int {
	members := make([]balancer.Member, len(addrs))
	for i, a := range addrs {
		b := balancer.NewBackend(a)
		b.SetHealthy(true)
		members[i] = balancer.Member{Backend: b, Weight: 1}
	}
	pool, err := balancer.NewPool(members, balancer.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := NewServer(Options{Router: &testRouter{route: &Route{PoolName: "bench", Pool: pool}}})
	if path := os.Getenv(childEnv + "_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				defer pprof.StopCPUProfile()
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.ServeConn(c)
		}
	}()
	fmt.Println(ln.Addr().String())
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
	_ = ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	return 0
}

// procCPU reads a process's user+system CPU time from /proc.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of the whole line, in clock ticks (100 per second
	// on Linux).
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("short /proc stat: %q", s)
	}
	ut, err1 := strconv.ParseInt(fields[11], 10, 64)
	st, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad /proc stat: %q", s)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// BenchmarkProxyCPU runs frontdoor as its own process (GOMAXPROCS=1, in
// front of three in-process grpc-go backends) and loads it with small unary
// calls from one grpc-go client connection, 8 calls in flight. It reports
// the proxy process's CPU time per call, DESIGN.md's headline figure, read
// from /proc (10 ms ticks: use -benchtime=5s or more).
func BenchmarkProxyCPU(b *testing.B) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		b.Skip("needs /proc")
	}
	addrs := make([]string, 3)
	for i := range addrs {
		addrs[i] = startBackend(b, "b"+strconv.Itoa(i)).addr
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(addrs, ","), "GOMAXPROCS=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	}()
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	cc := dial(b, strings.TrimSpace(addr))
	payload := make([]byte, 64)
	ctx := context.Background()
	for range 100 { // warm up: connections, pools, caches
		if _, err := unary(ctx, cc, methodUnary, payload); err != nil {
			b.Fatal(err)
		}
	}
	before, err := procCPU(cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := unary(ctx, cc, methodUnary, payload); err != nil {
				b.Error(err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	after, err := procCPU(cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
	b.ReportMetric(float64((after-before).Microseconds())/float64(b.N), "proxy-cpu-µs/call")
}
