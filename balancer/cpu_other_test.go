//go:build !linux

package balancer

// processCPU is not measured off Linux; benchmarks then skip cpu-ns/op.
func processCPU() int64 { return -1 }
