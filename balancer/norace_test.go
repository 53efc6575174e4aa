//go:build !race

package balancer

// qualityKeys is the number of random keys the quality tests map (see
// race_test.go).
const qualityKeys = 1_000_000
