package tcp

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestIperf measures throughput with iperf3 on 127.0.0.1: directly, through
// the io.Copy baseline and through the engine, with 1 and 8 streams, and
// the CPU time this process (which runs only the proxies; iperf3 runs in
// child processes) spends per GB carried. It needs FRONTDOOR_IPERF=1 and
// iperf3; FRONTDOOR_IPERF_SECONDS sets -t (default 5). Pin the proxy and
// iperf3 to different cores for stable figures:
//
//	go test -c -o /tmp/tcp.test ./proxy/tcp
//	FRONTDOOR_IPERF=1 FRONTDOOR_IPERF_CPU=1 taskset -c 0 /tmp/tcp.test -test.run TestIperf -test.v
//
// (FRONTDOOR_IPERF_CPU=N runs iperf3 under taskset -c N;
// FRONTDOOR_IPERF_ONLY=direct|iocopy|engine measures that one only.)
func TestIperf(t *testing.T) {
	if os.Getenv("FRONTDOOR_IPERF") != "1" {
		t.Skip("set FRONTDOOR_IPERF=1 to measure throughput with iperf3")
	}
	bin, err := exec.LookPath("iperf3")
	if err != nil {
		t.Skip("iperf3 is not installed")
	}
	secs := 5
	if v, err := strconv.Atoi(os.Getenv("FRONTDOOR_IPERF_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	pin := func(args ...string) *exec.Cmd {
		if cpu := os.Getenv("FRONTDOOR_IPERF_CPU"); cpu != "" {
			return exec.Command("taskset", append([]string{"-c", cpu, bin}, args...)...)
		}
		return exec.Command(bin, args...)
	}
	serverAddr := closedAddr(t)
	_, port, _ := net.SplitHostPort(serverAddr)
	srv := pin("-s", "-B", "127.0.0.1", "-p", port)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
	})
	eventually(t, "iperf3 -s to listen", func() bool {
		c, err := net.Dial("tcp", serverAddr)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})

	engine := startProxy(t, Options{IdleTimeout: time.Minute}, &Upstream{Pool: newPool(t, serverAddr)})
	baseline := ioCopyProxyT(t, serverAddr)
	for _, streams := range []int{1, 8} {
		for _, tg := range []struct{ name, addr string }{
			{"direct", serverAddr}, {"iocopy", baseline}, {"engine", engine.addr},
		} {
			if only := os.Getenv("FRONTDOOR_IPERF_ONLY"); only != "" && only != tg.name {
				continue
			}
			host, port, _ := net.SplitHostPort(tg.addr)
			cpu0 := cpuTime()
			out, err := pin("-c", host, "-p", port, "-t", strconv.Itoa(secs), "-P", strconv.Itoa(streams), "-J").Output()
			cpu := cpuTime() - cpu0
			if err != nil {
				t.Fatalf("iperf3 %s: %v\n%s", tg.name, err, out)
			}
			var res struct {
				End struct {
					SumReceived struct {
						Bytes         float64 `json:"bytes"`
						BitsPerSecond float64 `json:"bits_per_second"`
					} `json:"sum_received"`
				} `json:"end"`
			}
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatal(err)
			}
			gb := res.End.SumReceived.Bytes / 1e9
			perGB := "-"
			if tg.name != "direct" {
				perGB = strconv.FormatFloat(cpu.Seconds()/gb, 'f', 3, 64) + " s/GB"
			}
			t.Logf("%-6s streams=%d  %6.2f Gbit/s  %6.2f GB  proxy CPU %v  %s",
				tg.name, streams, res.End.SumReceived.BitsPerSecond/1e9, gb, cpu.Round(time.Millisecond), perGB)
		}
	}
}

// cpuTime is this process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ioCopyProxyT is ioCopyProxy for tests.
func ioCopyProxyT(t *testing.T, backend string) string {
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go serveIOCopy(ctx, ln, backend)
	return ln.Addr().String()
}
