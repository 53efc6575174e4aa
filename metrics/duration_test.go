package metrics

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestDurationBuckets checks the native buckets against their definition
// (bucket k holds (2^((k-1)/8), 2^(k/8)]), the classic ones, the spans and
// deltas, and the exemplars.
func TestDurationBuckets(t *testing.T) {
	t.Parallel()
	for _, v := range []float64{0.000123, 0.001, 0.0015, 0.25, 1, 3, 1e-7, 1e9} {
		k := nativeKey(v)
		if v <= nativeZeroThreshold || k == nativeMaxKey {
			continue
		}
		lo, hi := math.Exp2(float64(k-1)/8), math.Exp2(float64(k)/8)
		if !(v > lo*(1-1e-12) && v <= hi*(1+1e-12)) {
			t.Errorf("%v in bucket %d = (%v, %v]", v, k, lo, hi)
		}
	}
	vec := NewDurationVec("test_seconds", "help", []string{"a"})
	d := vec.With("x")
	if vec.With("x") != d {
		t.Fatal("With made a second child for the same labels")
	}
	now := time.Now()
	obs := []time.Duration{100 * time.Microsecond, 110 * time.Microsecond, 2 * time.Millisecond, 2 * time.Millisecond, 40 * time.Second, 0}
	for i, o := range obs {
		d.Observe(o, []byte("id-"+string(rune('a'+i))), now)
	}
	n, sum := d.CountSum()
	if n != uint64(len(obs)) || math.Abs(sum-40.0042100) > 1e-9 {
		t.Errorf("count %d sum %v", n, sum)
	}
	// A second read sees the same: nothing is lost in the fold.
	reg := prometheus.NewRegistry()
	reg.MustRegister(vec)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	h := mfs[0].Metric[0].Histogram
	if h.GetSampleCount() != uint64(len(obs)) || h.GetZeroCount() != 1 || h.GetSchema() != 3 {
		t.Fatalf("histogram %v", h)
	}
	var total uint64
	var c int64
	key := 0
	for _, sp := range h.PositiveSpan {
		key += int(sp.GetOffset())
		for range sp.GetLength() {
			c += h.PositiveDelta[0]
			h.PositiveDelta = h.PositiveDelta[1:]
			if c <= 0 {
				t.Errorf("empty or negative bucket %d in the spans", key)
			}
			total += uint64(c)
			key++
		}
	}
	if total+h.GetZeroCount() != h.GetSampleCount() {
		t.Errorf("native buckets hold %d + zero %d of %d", total, h.GetZeroCount(), h.GetSampleCount())
	}
	if got := h.Bucket[0].GetCumulativeCount(); got != 3 { // 0, 100µs, 110µs <= 0.5ms
		t.Errorf("le=0.0005: %d", got)
	}
	if len(h.Exemplars) == 0 || h.Bucket[0].Exemplar == nil {
		t.Error("no exemplars")
	} else if v := h.Bucket[0].Exemplar.Label[0]; v.GetName() != ExemplarLabel || v.GetValue() != "id-a" {
		t.Errorf("exemplar %v, want the first of its bucket (one a second)", v)
	}
}

// TestDurationConcurrent: observations racing scrapes are never lost.
func TestDurationConcurrent(t *testing.T) {
	t.Parallel()
	d := NewDurationVec("c_seconds", "help", []string{"a"}).With("x")
	var wg sync.WaitGroup
	const per = 2000
	for range 4 {
		wg.Go(func() {
			for i := range per {
				d.Observe(time.Duration(i)*time.Microsecond, nil, time.Now())
			}
		})
	}
	for range 20 {
		_, _ = d.CountSum()
	}
	wg.Wait()
	if n, _ := d.CountSum(); n != 4*per {
		t.Fatalf("count %d, want %d", n, 4*per)
	}
}
