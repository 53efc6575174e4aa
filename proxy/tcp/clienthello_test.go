package tcp

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"
)

// captureHello returns the bytes a crypto/tls client sends first with cfg.
func captureHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	client, server := net.Pipe()
	cfg.InsecureSkipVerify = true
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tls.Client(client, cfg).Handshake()
	}()
	var got []byte
	buf := make([]byte, 64<<10)
	_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, err := server.Read(buf)
		got = append(got, buf[:n]...)
		if _, perr := ParseClientHello(got); !errors.Is(perr, ErrHelloShort) || err != nil {
			break
		}
	}
	_ = server.Close()
	_ = client.Close()
	<-done
	return got
}

// refragment splits the handshake bytes of the records in hello into
// records of at most size bytes each.
func refragment(t testing.TB, hello []byte, size int) []byte {
	t.Helper()
	var hs []byte
	for b := hello; len(b) >= 5; {
		n := int(b[3])<<8 | int(b[4])
		hs = append(hs, b[5:5+n]...)
		b = b[5+n:]
	}
	var out []byte
	for len(hs) > 0 {
		n := min(size, len(hs))
		out = append(out, 22, 3, 1, byte(n>>8), byte(n))
		out = append(out, hs[:n]...)
		hs = hs[n:]
	}
	return out
}

func TestParseClientHello(t *testing.T) {
	t.Parallel()
	sni := captureHello(t, &tls.Config{ServerName: "API.example.com", NextProtos: []string{"h2", "http/1.1"}})
	noSNI := captureHello(t, &tls.Config{})
	tls12 := captureHello(t, &tls.Config{ServerName: "old.test", MaxVersion: tls.VersionTLS12})
	for _, tc := range []struct {
		name    string
		in      []byte
		sni     string
		h2      bool
		version uint16
	}{
		{"SNI and ALPN", sni, "API.example.com", true, tls.VersionTLS13},
		{"no SNI", noSNI, "", false, tls.VersionTLS13},
		{"TLS 1.2 only", tls12, "old.test", false, tls.VersionTLS12},
		{"split into 100-byte records", refragment(t, sni, 100), "API.example.com", true, tls.VersionTLS13},
		{"split into 3-byte records", refragment(t, sni, 3), "", false, 0},
		{"followed by more bytes", append(append([]byte(nil), sni...), 23, 3, 3, 0, 1, 0), "API.example.com", true, tls.VersionTLS13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseClientHello(tc.in)
			if tc.version == 0 {
				// A field split between records: refused, never read wrong.
				if !errors.Is(err, ErrBadHello) {
					t.Fatalf("got %+v, %v; want ErrBadHello", h, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(h.ServerName) != tc.sni || OffersALPN(h.ALPN, "h2") != tc.h2 || h.MaxVersion != tc.version {
				t.Errorf("got sni %q h2 %v version %x", h.ServerName, OffersALPN(h.ALPN, "h2"), h.MaxVersion)
			}
			if want := len(tc.in); tc.name == "followed by more bytes" {
				if h.Length != len(sni) {
					t.Errorf("length %d, want %d", h.Length, len(sni))
				}
			} else if h.Length != want {
				t.Errorf("length %d, want %d", h.Length, want)
			}
			// Every prefix is short, never an error.
			for i := range h.Length {
				if _, err := ParseClientHello(tc.in[:i]); !errors.Is(err, ErrHelloShort) {
					t.Fatalf("prefix of %d bytes: %v", i, err)
				}
			}
		})
	}
}

func TestParseClientHelloRefuses(t *testing.T) {
	t.Parallel()
	hello := captureHello(t, &tls.Config{ServerName: "a.test"})
	huge := []byte{22, 3, 1, 0x40, 0, 1, 0x01, 0, 0} // a 1 MiB hello announced
	raw := append([]byte{1, 0, 0x50, 0}, bytes.Repeat([]byte{0}, 0x5000)...)
	oversized := append([]byte{22, 3, 1, 0x40, 0}, raw[:0x4000]...)
	oversized = append(append(oversized, 22, 3, 1, 0x10, 4), raw[0x4000:]...)
	badType := append([]byte(nil), hello...)
	badType[5] = 2 // a ServerHello
	truncated := append([]byte(nil), hello...)
	truncated[3], truncated[4] = 0, 10 // the record ends inside the hello
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"plain HTTP", []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), ErrNotTLS},
		{"first byte", []byte("G"), ErrNotTLS},
		{"SSLv2 style", []byte{0x80, 0x2e, 0x01, 0x03, 0x01}, ErrNotTLS},
		{"alert record", []byte{21, 3, 1, 0, 2, 2, 40}, ErrNotTLS},
		{"not a hello", badType, ErrBadHello},
		{"announced 1 MiB", huge, ErrHelloTooLarge},
		{"20 KiB in two records", oversized, ErrHelloTooLarge},
		{"record ends in the hello", truncated, ErrBadHello},
		{"empty record", []byte{22, 3, 1, 0, 0}, ErrBadHello},
		{"record too long", []byte{22, 3, 1, 0x50, 0x01, 1}, ErrBadHello},
	} {
		if _, err := ParseClientHello(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestParseClientHelloAllocs(t *testing.T) {
	hello := captureHello(t, &tls.Config{ServerName: "a.test", NextProtos: []string{"h2"}})
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseClientHello(hello) }); n != 0 {
		t.Errorf("%v allocations per parse", n)
	}
}

// FuzzParseClientHello checks that the parser never panics, never claims
// more bytes than it got, and returns fields that lie inside them.
func FuzzParseClientHello(f *testing.F) {
	hello := captureHello(f, &tls.Config{ServerName: "a.example.com", NextProtos: []string{"h2", "http/1.1"}})
	f.Add(hello)
	f.Add(refragment(f, hello, 64))
	f.Add(captureHello(f, &tls.Config{MaxVersion: tls.VersionTLS12}))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{22, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseClientHello(b)
		if err != nil {
			return
		}
		if h.Length < 9 || h.Length > len(b) || h.Length > MaxClientHello {
			t.Fatalf("length %d of %d bytes", h.Length, len(b))
		}
		for _, f := range [][]byte{h.ServerName, h.ALPN} {
			if len(f) > 0 && !inside(f, b[:h.Length]) {
				t.Fatalf("field %q outside the hello", f)
			}
		}
		// The same bytes, re-cut into small records, say the same or
		// refuse a field split between records.
		h2, err := ParseClientHello(refragment(t, b[:h.Length], 512))
		if err == nil && (string(h2.ServerName) != string(h.ServerName) || h2.MaxVersion != h.MaxVersion) {
			t.Fatalf("re-cut: %+v, was %+v", h2, h)
		}
	})
}

// inside reports whether f is a sub-slice of b.
func inside(f, b []byte) bool {
	if len(b) == 0 {
		return false
	}
	start := &b[0]
	for i := range b {
		if &b[i] == &f[0] {
			return i+len(f) <= len(b) && &b[0] == start
		}
	}
	return false
}
