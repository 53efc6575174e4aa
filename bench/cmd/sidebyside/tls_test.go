package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestTLSLoad runs tlsload against a TLS server in this process: full
// handshakes never resume, -resume ones do after the first, and the
// FDBENCH line parses as wrk's.
func TestTLSLoad(t *testing.T) {
	dir := t.TempDir()
	cert, key, _, err := benchCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	var handshakes, resumed atomic.Int64
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, VerifyConnection: func(cs tls.ConnectionState) error {
		handshakes.Add(1)
		if cs.DidResume {
			resumed.Add(1)
		}
		return nil
	}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(smallBody))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	url := "https://" + ln.Addr().String() + "/small"

	for _, resume := range []bool{false, true} {
		handshakes.Store(0)
		resumed.Store(0)
		r, err := tlsLoad(context.Background(), url, 4, resume, 500*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		// Connects may fail now and then on a machine busy with other
		// tests (make test runs packages in parallel, under -race): the
		// tool counts them, which is what a run reports. Everything
		// else must be clean.
		if r.Requests < 8 || r.Read+r.Write+r.Status+r.Timeout != 0 || r.Connect > r.Requests/4 ||
			r.P99US <= 0 || r.Bytes < r.Requests*int64(len(smallBody)) {
			t.Errorf("resume=%v: %+v", resume, r)
		}
		h, res := handshakes.Load(), resumed.Load()
		switch {
		case !resume && res != 0:
			t.Errorf("full handshakes: %d of %d resumed", res, h)
		case resume && res < h-8: // the first of each connection slot is full (and a few at the end)
			t.Errorf("resumed handshakes: %d of %d", res, h)
		}
	}
	var out, errOut bytes.Buffer
	if code := tlsLoadMain([]string{"-c", "2", "-d", "200ms", url}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	r, err := parseFDBench(out.Bytes())
	if err != nil || r.Requests == 0 {
		t.Errorf("FDBENCH %q: %+v %v", out.String(), r, err)
	}
}

func TestTLSTargets(t *testing.T) {
	var names []string
	for _, tt := range tlsTargetsFor(httpTargets) {
		names = append(names, tt.Name)
		if tt.Setup == nil {
			t.Errorf("%s has no setup", tt.Name)
		}
	}
	if got := strings.Join(names, ","); got != "haproxy,frontdoor,frontdoor2,nginx" {
		t.Errorf("TLS targets %s", got)
	}
	// The configs carry TLS 1.3, X25519 and the bench certificate.
	e := &env{Dir: t.TempDir(), FrontdoorBin: "/bin/true", BackendPort: 9, Ports: &ports{next: 40000, end: 40100}}
	want := map[string][]string{
		"haproxy":   {"ssl crt ", "ssl-min-ver TLSv1.3 curves X25519"},
		"frontdoor": {"[listener.tls]", `min_version = "1.3"`, "tls-cert.pem"},
		"nginx":     {"listen 127.0.0.1:40200 ssl", "ssl_protocols TLSv1.3;", "ssl_ecdh_curve X25519;"},
	}
	for _, tt := range tlsTargetsFor(httpTargets) {
		if want[tt.Name] == nil {
			continue
		}
		l, err := tt.Setup(e, 40200)
		if err != nil {
			t.Fatalf("%s: %v", tt.Name, err)
		}
		conf := l.Argv[len(l.Argv)-1]
		for i, a := range l.Argv {
			if a == "-c" || a == "-f" || a == "-config" {
				conf = l.Argv[i+1]
			}
		}
		b, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want[tt.Name] {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s config lacks %q:\n%s", tt.Name, w, b)
			}
		}
	}
}
