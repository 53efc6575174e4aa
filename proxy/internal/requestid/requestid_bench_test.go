package requestid

import "testing"

// BenchmarkNext measures generating a new request ID.
func BenchmarkNext(b *testing.B) {
	g := New()
	var buf [Len]byte
	b.ReportAllocs()
	for b.Loop() {
		g.Next(&buf)
	}
}

// BenchmarkPick measures the rule on a request with a traceparent, as
// fasthttp hands it over.
func BenchmarkPick(b *testing.B) {
	tp, xr := []byte(goodTP), []byte("req-1")
	b.ReportAllocs()
	for b.Loop() {
		_, _ = Pick(tp, xr)
	}
}
