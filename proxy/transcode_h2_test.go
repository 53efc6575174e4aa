package proxy

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"frontdoor/internal/transcodetest"
)

// TestTranscodeSharesH2Connections: transcoded calls ride the HTTP/2
// engine's backend connections, the ones gRPC passed through uses. With
// one connection allowed per backend, 16 transcoded calls and 16 gRPC
// calls at once all succeed: had either kind dialled its own, it would
// have found the budget spent (503).
func TestTranscodeSharesH2Connections(t *testing.T) {
	t.Parallel()
	pb := transcodetest.DescriptorSet(t)
	be := transcodetest.StartBackend(t, pb)
	p := startProxy(t, transcodeTOML(pb, "", "max_connections_per_backend = 1\n", be.Addr), nil)

	getShelf := getShelfClient(t, pb, p.Addr("web").String())

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 16 {
		wg.Go(func() {
			for i := range 10 {
				shelf := 1000 + w*100 + i // not 404, the backend's NOT_FOUND
				r := tcDo(t, p, "GET", fmt.Sprintf("/v1/shelves/%d", shelf), "")
				if want := fmt.Sprintf(`"name":"shelves/%d"`, shelf); r.status != 200 || !strings.Contains(r.body, want) {
					errs <- fmt.Errorf("transcoded shelf %d: %d %s", shelf, r.status, r.body)
					return
				}
			}
		})
		wg.Go(func() {
			for i := range 10 {
				shelf := 1000 + w*100 + i
				if got, err := getShelf(int64(shelf)); err != nil || got != fmt.Sprintf("shelves/%d", shelf) {
					errs <- fmt.Errorf("gRPC shelf %d: %v %q", shelf, err, got)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := metricValue(t, p.reg, "frontdoor_upstream_errors_total", map[string]string{"pool": "books", "backend": be.Addr, "reason": "limit"}); got != 0 {
		t.Errorf("upstream_errors_total limit = %v: a second connection was tried", got)
	}
}

// TestTranscodeStreamFlowControl: a server stream many times the HTTP/2
// windows frontdoor opens to a backend (256 KiB a stream, 1 MiB the
// connection) goes through whole, so the call credits the backend as the
// client takes the lines; a second one after it on the same connection
// proves the connection's window came back too.
func TestTranscodeStreamFlowControl(t *testing.T) {
	t.Parallel()
	pb := transcodetest.DescriptorSet(t)
	be := transcodetest.StartBackend(t, pb)
	p := startProxy(t, transcodeTOML(pb, "", "max_connections_per_backend = 1\n", be.Addr), nil)
	client := &http.Client{Timeout: 30 * time.Second}
	for round := range 2 {
		resp, err := client.Get(p.url(t, "web", "/v1/shelves/1/books:watch?count=8000"))
		if err != nil {
			t.Fatal(err)
		}
		n, bytes := 0, 0
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			n++
			bytes += len(sc.Bytes()) + 1
			if n%1000 == 0 {
				time.Sleep(20 * time.Millisecond) // a slow client: the backend waits
			}
		}
		resp.Body.Close()
		if n != 8000 || bytes < 5<<18 {
			t.Fatalf("round %d: read %d lines (%d bytes) of 8000", round, n, bytes)
		}
	}
}
