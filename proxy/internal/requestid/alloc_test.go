//go:build !race

package requestid

import "testing"

// Every function runs on the request path of every engine: none allocates.
func TestZeroAllocs(t *testing.T) {
	g := New()
	tp, xr := []byte(goodTP), []byte("req-1")
	tests := []struct {
		name string
		fn   func()
	}{
		{"Pick []byte", func() { _, _ = Pick(tp, xr) }},
		{"Pick string", func() { _, _ = Pick(goodTP, "req-1") }},
		{"Pick nothing", func() { _, _ = Pick([]byte(nil), []byte(nil)) }},
		{"Next", func() { var buf [Len]byte; _ = g.Next(&buf) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tc.fn); n != 0 {
				t.Errorf("%v allocs per run, want 0", n)
			}
		})
	}
}
