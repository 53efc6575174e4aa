package main

import (
	"math"
	"slices"
)

// spread is the median and range of a set of measurements.
type spread struct {
	Median, Min, Max float64
	N                int
}

// summarize returns the median (the mean of the two middle values for an
// even count), minimum and maximum of xs, ignoring NaNs. With no values it
// returns N=0 and NaN fields.
func summarize(xs []float64) spread {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return spread{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return spread{Median: m, Min: v[0], Max: v[len(v)-1], N: len(v)}
}

// ratio returns a/b, or NaN when either is NaN or b is 0.
func ratio(a, b float64) float64 {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return math.NaN()
	}
	return a / b
}
