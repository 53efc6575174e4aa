//go:build linux

package balancer

import "syscall"

// processCPU is the CPU time (user + system) the test process has used, in
// nanoseconds. Benchmarks report it per op beside wall time: on a shared,
// loaded machine wall time per op mostly measures the neighbours.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
