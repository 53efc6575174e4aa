package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// procStat is what the harness reads from one /proc/PID/stat.
type procStat struct {
	PPID         int
	UTime, STime uint64 // clock ticks
}

// parseStat parses the contents of /proc/PID/stat. The command name (field
// 2) may hold spaces and parentheses, so fields are counted after the last
// ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("stat: no ')' after the command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field N is f[N-3].
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("stat: %d fields after the command name, want at least 13", len(f))
	}
	ppid, err := strconv.Atoi(f[4-3])
	if err != nil {
		return procStat{}, fmt.Errorf("stat: ppid: %w", err)
	}
	ut, err := strconv.ParseUint(f[14-3], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("stat: utime: %w", err)
	}
	st, err := strconv.ParseUint(f[15-3], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("stat: stime: %w", err)
	}
	return procStat{PPID: ppid, UTime: ut, STime: st}, nil
}

// parseVmHWM returns the VmHWM (peak resident set) of /proc/PID/status in
// KiB.
func parseVmHWM(b []byte) (int64, error) {
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte("VmHWM:"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("status: VmHWM line %q", bytes.TrimSpace(line))
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, errors.New("status: no VmHWM line (kernel thread or exited process)")
}

// treeUsage is the summed usage of a process and its descendants.
type treeUsage struct {
	CPU    time.Duration // utime+stime
	HWMKiB int64         // sum of VmHWM
	Procs  int
}

// readTree sums CPU time and VmHWM over pid and every live descendant, found
// by scanning the ppid field of every /proc/N/stat under root (normally
// "/proc"). tick is the length of one clock tick (1/CLK_TCK). Processes that
// vanish during the scan are skipped.
func readTree(root string, pid int, tick time.Duration) (treeUsage, error) {
	stats := map[int]procStat{}
	children := map[int][]int{}
	dirs, err := os.ReadDir(root)
	if err != nil {
		return treeUsage{}, err
	}
	for _, d := range dirs {
		n, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, d.Name(), "stat"))
		if err != nil {
			continue
		}
		s, err := parseStat(b)
		if err != nil {
			continue
		}
		stats[n] = s
		children[s.PPID] = append(children[s.PPID], n)
	}
	if _, ok := stats[pid]; !ok {
		return treeUsage{}, fmt.Errorf("process %d: not found under %s", pid, root)
	}
	var u treeUsage
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		s := stats[p]
		u.CPU += time.Duration(s.UTime+s.STime) * tick
		u.Procs++
		if b, err := os.ReadFile(filepath.Join(root, strconv.Itoa(p), "status")); err == nil {
			if kib, err := parseVmHWM(b); err == nil {
				u.HWMKiB += kib
			}
		}
		queue = append(queue, children[p]...)
	}
	return u, nil
}

// clockTick returns 1/CLK_TCK as reported by getconf, or 10ms (CLK_TCK=100,
// the value on every mainstream Linux build) when getconf is unavailable.
func clockTick() time.Duration {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if hz, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && hz > 0 {
			return time.Second / time.Duration(hz)
		}
	}
	return 10 * time.Millisecond
}

// cpuTimes is one "cpuN" line of /proc/stat, in clock ticks.
type cpuTimes struct {
	Busy  uint64 // user + nice + system (time spent running tasks)
	Steal uint64 // time the hypervisor ran something else
}

// parseCPUStat returns the times of CPU cpu (e.g. "1") from /proc/stat.
func parseCPUStat(b []byte, cpu string) (cpuTimes, error) {
	want := "cpu" + cpu
	for line := range bytes.Lines(b) {
		f := strings.Fields(string(line))
		if len(f) < 9 || f[0] != want {
			continue
		}
		var v [8]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return cpuTimes{}, fmt.Errorf("stat: %s field %d: %w", want, i+1, err)
			}
			v[i] = n
		}
		return cpuTimes{Busy: v[0] + v[1] + v[2], Steal: v[7]}, nil
	}
	return cpuTimes{}, fmt.Errorf("stat: no %s line", want)
}
