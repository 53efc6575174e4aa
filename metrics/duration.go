package metrics

import (
	"math"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Request durations: a histogram that is a Prometheus native histogram
// (schema 3: 8 buckets per power of two, about 9% wide) and a classic one
// (DurationBuckets) at once, with exemplars, and that allocates nothing
// when it observes, ever. client_golang's own native histograms allocate
// the first time a sparse bucket is hit, which under per-backend labels
// keeps happening long after start; here every bucket exists from the
// start, a fixed array of counters.
//
// Consistency follows client_golang's histogram: two halves of counters, a
// hot one that observations go to and a cold one; a scrape swaps them,
// waits until the observations that started before the swap have ended,
// reads the now cold half, and folds it into the hot one.

const (
	// nativeSchema 3: bucket k holds values in (2^((k-1)/8), 2^(k/8)].
	nativeSchema = 3
	// Values at most 2^-20 s (about 1 µs) count in the zero bucket;
	// values above 2^20 s (12 days) in the last bucket.
	nativeMinKey = -20<<nativeSchema + 1
	nativeMaxKey = 20 << nativeSchema
	nativeLen    = nativeMaxKey - nativeMinKey + 1
)

// nativeZeroThreshold is the upper bound of the zero bucket.
var nativeZeroThreshold = math.Ldexp(1, -20)

// nativeBounds are the fractions (of math.Frexp) at which the buckets of
// one power of two end.
var nativeBounds = func() [1 << nativeSchema]float64 {
	var b [1 << nativeSchema]float64
	for i := range b {
		b[i] = math.Exp2(float64(i)/(1<<nativeSchema)) / 2
	}
	return b
}()

// exemplarMaxID is the longest ID an exemplar takes: OpenMetrics bounds an
// exemplar's labels to 128 characters, names included.
const exemplarMaxID = 128 - len(ExemplarLabel)

// DurationVec is the family of request_duration_seconds. Create it with
// NewDurationVec and bind children with With when a runtime is built, never
// per request. Safe for concurrent use.
type DurationVec struct {
	desc     *prometheus.Desc
	mu       sync.Mutex
	children map[string]*Duration
	order    []*Duration
}

// NewDurationVec makes the family name with the given help and label
// names.
func NewDurationVec(name, help string, labels []string) *DurationVec {
	return &DurationVec{desc: prometheus.NewDesc(name, help, labels, nil), children: map[string]*Duration{}}
}

// With returns the child of the label values (in the order of the label
// names), creating it on first use. A child lives as long as the family:
// a reload that binds the same values gets the same child.
func (v *DurationVec) With(values ...string) *Duration {
	key := strings.Join(values, "\xff")
	v.mu.Lock()
	defer v.mu.Unlock()
	if d := v.children[key]; d != nil {
		return d
	}
	d := &Duration{desc: v.desc, labels: prometheus.MakeLabelPairs(v.desc, values), created: time.Now()}
	v.children[key] = d
	v.order = append(v.order, d)
	return d
}

// Describe implements prometheus.Collector.
func (v *DurationVec) Describe(ch chan<- *prometheus.Desc) { ch <- v.desc }

// Collect implements prometheus.Collector.
func (v *DurationVec) Collect(ch chan<- prometheus.Metric) {
	v.mu.Lock()
	ds := append([]*Duration(nil), v.order...)
	v.mu.Unlock()
	for _, d := range ds {
		ch <- d
	}
}

// Duration is one child of a DurationVec: a native and classic histogram
// of durations with exemplars. Observe is safe for concurrent use and
// allocates nothing.
type Duration struct {
	desc    *prometheus.Desc
	labels  []*dto.LabelPair
	created time.Time

	// hotAndCount: bit 63 selects the hot half of counts, the other bits
	// count the observations started.
	hotAndCount atomic.Uint64
	counts      [2]durationCounts
	writeMu     sync.Mutex

	exemplars [len(DurationBuckets) + 1]exemplarSlot
}

type durationCounts struct {
	done    atomic.Uint64 // observations ended in this half
	sum     atomic.Int64  // nanoseconds
	classic [len(DurationBuckets) + 1]atomic.Uint64
	zero    atomic.Uint64
	native  [nativeLen]atomic.Uint64
}

// exemplarSlot is the last exemplar of one classic bucket. Writers take it
// with a compare-and-swap and skip it when it is busy; next gates how
// often it changes.
type exemplarSlot struct {
	next  atomic.Int64 // Unix nanoseconds before which no new exemplar is taken
	busy  atomic.Bool
	set   bool
	value float64
	at    int64
	n     int
	id    [exemplarMaxID]byte
}

// ExemplarEvery is how often one classic bucket of a Duration takes a new
// exemplar. Prometheus keeps the last exemplar of each bucket per scrape,
// so one a second per bucket names a request of every latency band, the
// rare slow one too.
const ExemplarEvery = time.Second

// Observe counts a duration d that ended at now, with id (a request or
// trace ID; nil: none) as the bucket's exemplar when its turn came
// (ExemplarEvery). It allocates nothing; id is copied.
func (d *Duration) Observe(dur time.Duration, id []byte, now time.Time) {
	v := dur.Seconds()
	cb := sort.SearchFloat64s(DurationBuckets[:], v) // first bound >= v
	n := d.hotAndCount.Add(1)
	h := &d.counts[n>>63]
	h.classic[cb].Add(1)
	if v <= nativeZeroThreshold {
		h.zero.Add(1)
	} else {
		h.native[nativeKey(v)-nativeMinKey].Add(1)
	}
	h.sum.Add(int64(dur))
	h.done.Add(1)
	if len(id) > 0 && len(id) <= exemplarMaxID {
		d.exemplars[cb].offer(v, id, now.UnixNano())
	}
}

// nativeKey is the schema-3 bucket of v > 0, clamped to the buckets kept.
func nativeKey(v float64) int {
	frac, exp := math.Frexp(v)
	i := 0
	for i < len(nativeBounds) && nativeBounds[i] < frac {
		i++
	}
	k := i + (exp-1)<<nativeSchema
	return min(max(k, nativeMinKey), nativeMaxKey)
}

func (e *exemplarSlot) offer(v float64, id []byte, now int64) {
	next := e.next.Load()
	if now < next || !e.next.CompareAndSwap(next, now+int64(ExemplarEvery)) {
		return
	}
	if !e.busy.CompareAndSwap(false, true) {
		return
	}
	e.set, e.value, e.at = true, v, now
	e.n = copy(e.id[:], id)
	e.busy.Store(false)
}

// read returns the slot's exemplar, nil when it has none (or is busy).
func (e *exemplarSlot) read() *dto.Exemplar {
	for range 100 {
		if e.busy.CompareAndSwap(false, true) {
			defer e.busy.Store(false)
			if !e.set {
				return nil
			}
			return &dto.Exemplar{
				Label:     []*dto.LabelPair{{Name: stringPtr(ExemplarLabel), Value: stringPtr(string(e.id[:e.n]))}},
				Value:     &e.value,
				Timestamp: timestamppb.New(time.Unix(0, e.at)),
			}
		}
		runtime.Gosched()
	}
	return nil
}

func stringPtr(s string) *string { return &s }

// Desc implements prometheus.Metric.
func (d *Duration) Desc() *prometheus.Desc { return d.desc }

// Write implements prometheus.Metric: one consistent snapshot of both
// histograms.
func (d *Duration) Write(m *dto.Metric) error {
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	n := d.hotAndCount.Add(1 << 63)
	count := n &^ (1 << 63)
	hot, cold := &d.counts[n>>63], &d.counts[(^n)>>63]
	for cold.done.Load() != count {
		runtime.Gosched() // observations that started before the swap
	}
	h := &dto.Histogram{
		SampleCount:      &count,
		SampleSum:        float64Ptr(time.Duration(cold.sum.Load()).Seconds()),
		Schema:           int32Ptr(nativeSchema),
		ZeroThreshold:    &nativeZeroThreshold,
		CreatedTimestamp: timestamppb.New(d.created),
	}
	var cum uint64
	for i, le := range DurationBuckets {
		cum += cold.classic[i].Load()
		b := &dto.Bucket{CumulativeCount: uint64Ptr(cum), UpperBound: float64Ptr(le), Exemplar: d.exemplars[i].read()}
		h.Bucket = append(h.Bucket, b)
	}
	for i := range d.exemplars {
		if e := d.exemplars[i].read(); e != nil {
			h.Exemplars = append(h.Exemplars, e)
		}
	}
	zero := cold.zero.Load()
	h.ZeroCount = &zero
	// Spans of populated buckets, counts as deltas from the previous.
	var prev int64
	lastKey := math.MinInt
	for i := range cold.native {
		c := cold.native[i].Load()
		if c == 0 {
			continue
		}
		key := i + nativeMinKey
		if lastKey == math.MinInt || key-lastKey > 1 {
			off := int32(key)
			if lastKey != math.MinInt {
				off = int32(key - lastKey - 1)
			}
			h.PositiveSpan = append(h.PositiveSpan, &dto.BucketSpan{Offset: int32Ptr(off), Length: uint32Ptr(0)})
		}
		*h.PositiveSpan[len(h.PositiveSpan)-1].Length++
		h.PositiveDelta = append(h.PositiveDelta, int64(c)-prev)
		prev, lastKey = int64(c), key
	}
	if count == 0 && len(h.PositiveSpan) == 0 {
		// An empty native histogram needs one span to be told apart
		// from a classic one.
		h.PositiveSpan = []*dto.BucketSpan{{Offset: int32Ptr(0), Length: uint32Ptr(0)}}
	}
	// Fold the cold half into the hot one and empty it.
	hot.sum.Add(cold.sum.Swap(0))
	for i := range cold.classic {
		hot.classic[i].Add(cold.classic[i].Swap(0))
	}
	hot.zero.Add(cold.zero.Swap(0))
	for i := range cold.native {
		if c := cold.native[i].Swap(0); c != 0 {
			hot.native[i].Add(c)
		}
	}
	hot.done.Add(cold.done.Swap(0))
	m.Label = d.labels
	m.Histogram = h
	return nil
}

// CountSum returns how many durations were observed and their sum in
// seconds, from one consistent snapshot.
func (d *Duration) CountSum() (uint64, float64) {
	var m dto.Metric
	_ = d.Write(&m)
	return m.Histogram.GetSampleCount(), m.Histogram.GetSampleSum()
}

func float64Ptr(v float64) *float64 { return &v }
func uint64Ptr(v uint64) *uint64    { return &v }
func uint32Ptr(v uint32) *uint32    { return &v }
func int32Ptr(v int32) *int32       { return &v }
