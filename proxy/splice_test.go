package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"frontdoor/internal/loopback"
)

// splicedBackend answers every request with a head announcing length bytes,
// then sends send bytes of the pattern and, if hold is set, waits for it
// before closing the connection.
func splicedBackend(t *testing.T, length, send int64, hold <-chan struct{}) string {
	return loopback.Serve(t, func(c net.Conn) {
		var h fasthttp.RequestHeader
		if h.Read(bufio.NewReader(c)) != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", length)
		_, _ = io.Copy(c, &pattern{n: send})
		if hold != nil {
			<-hold
		}
	})
}

// TestSplicedBodyCutShort: a backend that closes in the middle of a spliced
// body makes the proxy close the client connection before the announced
// length (so the client cannot take it for whole), log the stream error, and
// free the member and the pipe.
func TestSplicedBodyCutShort(t *testing.T) {
	t.Parallel()
	const length, sent = 1 << 20, 300 << 10
	logPath := filepath.Join(t.TempDir(), "access.log")
	ctx, cancel := context.WithCancel(context.Background())
	access, err := NewAccessLog(ctx, logPath, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := streamProxy(t, "", "", access, splicedBackend(t, length, sent, nil))
	resp, err := http.Get(p.url(t, "web", "/cut"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || int64(len(got)) >= length {
		t.Fatalf("read %d bytes, err %v; want a cut-short body and an error", len(got), err)
	}
	if !matchesPattern(got) {
		t.Errorf("the %d bytes that arrived are not the backend's", len(got))
	}
	l := onlyListener(t, p)
	be := p.gen.Load().pools["s"].ups[0].be
	waitFor(t, 2*time.Second, "member and pipe freed", func() bool {
		return be.InFlight() == 0 && l.pipes.InUse() == 0
	})
	var line string
	waitFor(t, 2*time.Second, "access log line", func() bool {
		cancel()
		<-access.Done()
		data, _ := os.ReadFile(logPath)
		line = string(data)
		return line != ""
	})
	if !strings.Contains(line, `"reason":"upstream_stream_error"`) {
		t.Errorf("access log line lacks the stream error:\n%s", line)
	}
}

// TestSplicedBodyStall: a backend silent for idle_timeout in the middle of
// a spliced body ends the answer near that timeout, not at the client's.
func TestSplicedBodyStall(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	p := streamProxy(t, "idle_timeout = \"500ms\"\n", "", nil, splicedBackend(t, 1<<20, 200<<10, hold))
	start := time.Now()
	resp, err := http.Get(p.url(t, "web", "/stall"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if err == nil || len(got) >= 1<<20 {
		t.Fatalf("read %d bytes, err %v; want the answer cut", len(got), err)
	}
	if took < 400*time.Millisecond || took > 3*time.Second {
		t.Errorf("stalled answer ended after %v; want about idle_timeout (500ms)", took)
	}
	be := p.gen.Load().pools["s"].ups[0].be
	waitFor(t, 2*time.Second, "member freed", func() bool { return be.InFlight() == 0 })
}

// TestSplicedBodyClientGone: a client that leaves in the middle of a large
// spliced body frees the member, the backend connection and the pipe.
func TestSplicedBodyClientGone(t *testing.T) {
	t.Parallel()
	const size = 64 << 20 // more than the sockets and the pipe hold
	backend := startHandler(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyStream(&pattern{n: size}, size)
	})
	p := streamProxy(t, "", "", nil, backend)
	c, err := net.Dial("tcp", p.Addr("web").String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	buf := make([]byte, 256<<10)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	l := onlyListener(t, p)
	be := p.gen.Load().pools["s"].ups[0].be
	if be.InFlight() != 1 {
		t.Fatalf("in flight %d during the body, want 1", be.InFlight())
	}
	c.Close()
	waitFor(t, 5*time.Second, "member and pipe freed", func() bool {
		return be.InFlight() == 0 && l.pipes.InUse() == 0
	})
}

// matchesPattern reports whether b is the start of pattern's stream.
func matchesPattern(b []byte) bool {
	want := make([]byte, len(b))
	_, _ = io.ReadFull(&pattern{n: int64(len(b))}, want)
	return string(want) == string(b)
}

// onlyListener returns the proxy's one http listener.
func onlyListener(t *testing.T, p *testProxy) *httpListener {
	t.Helper()
	if len(p.http) != 1 {
		t.Fatalf("%d http listeners, want 1", len(p.http))
	}
	for _, l := range p.http {
		return l
	}
	return nil
}
