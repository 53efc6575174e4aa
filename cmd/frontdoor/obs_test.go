package main

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// obsConfig is a daemon with an access log file, an admin token and one
// route to live.
func obsConfig(t *testing.T, live string) (cfg, accessLog, tokenFile string) {
	t.Helper()
	dir := t.TempDir()
	accessLog = filepath.Join(dir, "access.log")
	tokenFile = filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tokenFile, []byte("obs-test-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg = filepath.Join(dir, "frontdoor.toml")
	writeConfig(t, cfg, `[admin]
bind = "127.0.0.1:0"
token_file = "`+tokenFile+`"

[log]
access = "`+accessLog+`"

[[listener]]
name = "web"
bind = "127.0.0.1:0"
  [[listener.route]]
  path_prefix = "/"
  pool = "app"

[pool.app]
backends = [{ address = "`+live+`" }]
  [pool.app.health]
  check = "none"
`)
	return cfg, accessLog, tokenFile
}

// TestTailFollowsOneRequest: frontdoor tail -id X, started before the
// request, prints its line within 100 ms of the answer, and only its line;
// without the admin token it is refused.
func TestTailFollowsOneRequest(t *testing.T) {
	t.Parallel()
	live := startBackend(t, "live")
	cfg, accessLog, tokenFile := obsConfig(t, live.addr)
	d := startDaemon(t, cfg)
	admin, addr := d.started("web")

	denied := exec.Command(binPath, "tail", "-admin", admin, "-id", "x")
	if out, err := denied.CombinedOutput(); err == nil || !strings.Contains(string(out), "401") {
		t.Errorf("tail without the token: %v\n%s", err, out)
	}

	tail := exec.Command(binPath, "tail", "-admin", admin, "-token-file", tokenFile, "-id", "follow-me-7", "-color", "never")
	stdout, _ := tail.StdoutPipe()
	stderr, _ := tail.StderrPipe()
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tail.Process.Kill(); _ = tail.Wait() })
	if l, err := bufio.NewReader(stderr).ReadString('\n'); err != nil || !strings.Contains(l, "following") {
		t.Fatalf("tail did not start following: %q %v", l, err)
	}
	lines := make(chan string, 10)
	printed := make(chan time.Time, 10)
	go func() {
		r := bufio.NewReader(stdout)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				close(lines)
				return
			}
			printed <- time.Now()
			lines <- l
		}
	}()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	send := func(id string) time.Time {
		req, _ := http.NewRequest("GET", "http://"+addr+"/hello", nil)
		req.Header.Set("X-Request-ID", id)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		return time.Now()
	}
	send("someone-else")
	answered := send("follow-me-7")
	var at time.Time
	select {
	case at = <-printed:
	case <-time.After(5 * time.Second):
		t.Fatal("tail printed nothing within 5s")
	}
	line := <-lines
	if lag := at.Sub(answered); lag > 100*time.Millisecond {
		t.Errorf("tail printed the line %v after the answer, want within 100ms", lag)
	}
	for _, want := range []string{" 200 GET ", "/hello", "web / → app " + live.addr, "id follow-me-7"} {
		if !strings.Contains(line, want) {
			t.Errorf("tail line %q lacks %q", line, want)
		}
	}
	send("someone-else-again")
	select {
	case l := <-lines:
		t.Errorf("tail printed another request's line: %q", l)
	case <-time.After(200 * time.Millisecond):
	}
	// grep ID finds it in the access log file too.
	waitFor(t, 5*time.Second, "the line in the access log file", func() bool {
		data, _ := os.ReadFile(accessLog)
		return strings.Contains(string(data), `"request_id":"follow-me-7"`)
	})
}

// TestExemplarsAndNativeHistograms: request_duration_seconds is a native
// histogram (protobuf exposition) with classic buckets too, and its
// exemplars (OpenMetrics) name requests of the access log.
func TestExemplarsAndNativeHistograms(t *testing.T) {
	t.Parallel()
	live := startBackend(t, "live")
	cfg, accessLog, _ := obsConfig(t, live.addr)
	d := startDaemon(t, cfg)
	admin, addr := d.started("web")
	for range 20 {
		if _, _, err := get(addr, "/x"); err != nil {
			t.Fatal(err)
		}
	}
	fetch := func(accept string) *http.Response {
		req, _ := http.NewRequest("GET", "http://"+admin+"/metrics", nil)
		req.Header.Set("Accept", accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// OpenMetrics: exemplars on the classic buckets.
	resp := fetch("application/openmetrics-text; version=1.0.0; charset=utf-8")
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	re := regexp.MustCompile(`(?m)^frontdoor_request_duration_seconds_bucket\{backend="` + regexp.QuoteMeta(live.addr) + `",listener="web",pool="app",route="/",le="[^"]+"\} \d+ # \{trace_id="([0-9a-f]{32})"\} [0-9.e+-]+ [0-9.e+-]+$`)
	m := re.FindAllStringSubmatch(string(body), -1)
	if len(m) == 0 {
		t.Fatalf("no exemplar on request_duration_seconds in OpenMetrics:\n%s", grepLines(string(body), "request_duration"))
	}
	waitFor(t, 5*time.Second, "the exemplar's request in the access log", func() bool {
		data, _ := os.ReadFile(accessLog)
		return strings.Contains(string(data), `"request_id":"`+m[0][1]+`"`)
	})

	// Protobuf: the same family as a native histogram (schema 3) with
	// classic buckets.
	resp = fetch("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited")
	defer resp.Body.Close()
	dec := expfmt.NewDecoder(resp.Body, expfmt.NewFormat(expfmt.TypeProtoDelim))
	found := false
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err != nil {
			break
		}
		if mf.GetName() != "frontdoor_request_duration_seconds" {
			continue
		}
		for _, mt := range mf.Metric {
			h := mt.GetHistogram()
			if h.GetSampleCount() == 0 {
				continue
			}
			found = true
			var native uint64
			var c int64
			for _, dl := range h.PositiveDelta {
				c += dl
				native += uint64(c)
			}
			if h.GetSchema() != 3 || len(h.PositiveSpan) == 0 || native+h.GetZeroCount() != h.GetSampleCount() ||
				len(h.Bucket) != 15 || h.Bucket[14].GetCumulativeCount() > h.GetSampleCount() || len(h.Exemplars) == 0 {
				t.Errorf("histogram: schema %d, %d spans, native count %d + zero %d vs %d, %d classic buckets, %d exemplars",
					h.GetSchema(), len(h.PositiveSpan), native, h.GetZeroCount(), h.GetSampleCount(), len(h.Bucket), len(h.Exemplars))
			}
		}
	}
	if !found {
		t.Error("no request_duration_seconds series with samples in the protobuf exposition")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
