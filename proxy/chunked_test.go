package proxy

import (
	"strings"
	"testing"
)

func TestChunkScannerFindsTheEnd(t *testing.T) {
	body := "4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\n"
	for _, tc := range []struct {
		name, body string
	}{
		{"plain", body},
		{"no trailer", "3\r\nabc\r\n0\r\n\r\n"},
		{"bare LF", "3\nabc\n0\n\n"},
		{"upper hex", "A\r\n0123456789\r\n0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every split point: the scanner sees the body in two reads
			// followed by the next response's bytes.
			full := tc.body + "HTTP/1.1 200 OK\r\n"
			for cut := 0; cut <= len(tc.body); cut++ {
				var s chunkScanner
				n1, done, err := s.scan([]byte(full[:cut]))
				if err != nil || n1 != cut || (done && cut != len(tc.body)) {
					t.Fatalf("cut %d: first part: n=%d done=%v err=%v", cut, n1, done, err)
				}
				if done {
					continue
				}
				n2, done, err := s.scan([]byte(full[cut:]))
				if err != nil || !done || cut+n2 != len(tc.body) {
					t.Fatalf("cut %d: body of %d bytes ended at %d (done=%v err=%v)", cut, len(tc.body), cut+n2, done, err)
				}
			}
		})
	}
}

func TestChunkScannerRejectsGarbage(t *testing.T) {
	for _, bad := range []string{"zz\r\n", "\r\n", "3\r\nabcX", strings.Repeat("f", 16) + "\r\n"} {
		var s chunkScanner
		if _, _, err := s.scan([]byte(bad)); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
	var s chunkScanner
	if _, done, err := s.scan([]byte("5\r\nab")); err != nil || done {
		t.Fatalf("partial chunk: done=%v err=%v", done, err)
	}
}
