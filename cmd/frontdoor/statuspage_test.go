package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"frontdoor/internal/loopback"
	"frontdoor/proxy"
)

// chromiumFlags are the flags of every headless run: no network of its
// own, a fresh profile (added by the caller).
var chromiumFlags = []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
	"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"}

// cdp is a DevTools protocol session with one page of a headless Chromium.
type cdp struct {
	t    *testing.T
	conn *websocket.Conn
	id   int
}

// startChromium runs headless Chromium on url with a fresh profile and
// returns a DevTools session with its page. The browser's process group is
// killed when the test ends.
func startChromium(t *testing.T, url string) *cdp {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (make test-deps installs the chromium package)")
	}
	profile := t.TempDir()
	cmd := exec.Command(bin, append(append([]string{}, chromiumFlags...), "--user-data-dir="+profile, url)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logPath := filepath.Join(profile, "chromium.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(-pgid, syscall.SIGKILL) // the browser and the children it started
		_ = cmd.Wait()
		_ = logFile.Close()
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			t.Logf("chromium output:\n%s", data)
		}
	})
	// The browser writes its DevTools port to the profile once it listens.
	var port string
	waitFor(t, 30*time.Second, "chromium's DevToolsActivePort", func() bool {
		data, err := os.ReadFile(filepath.Join(profile, "DevToolsActivePort"))
		if err != nil {
			return false
		}
		port, _, _ = strings.Cut(string(data), "\n")
		return port != ""
	})
	var wsURL string
	waitFor(t, 30*time.Second, "the page target", func() bool {
		resp, err := http.Get("http://127.0.0.1:" + port + "/json/list")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var targets []struct{ Type, URL, WebSocketDebuggerURL string }
		if json.NewDecoder(resp.Body).Decode(&targets) != nil {
			return false
		}
		for _, tg := range targets {
			if tg.Type == "page" && strings.HasPrefix(tg.URL, url) {
				wsURL = tg.WebSocketDebuggerURL
				return true
			}
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadLimit(16 << 20)
	t.Cleanup(func() { _ = conn.CloseNow() })
	return &cdp{t: t, conn: conn}
}

// eval evaluates a JavaScript expression in the page (a promise is
// awaited) and decodes its JSON value into out. An evaluation cut short by
// the page's navigation (the browser opens about:blank first) is tried
// again.
func (c *cdp) eval(expr string, out any) {
	c.t.Helper()
	for try := 0; ; try++ {
		err := c.try(expr, out)
		if err == nil {
			return
		}
		if try == 20 {
			c.t.Fatalf("evaluate %s: %v", expr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *cdp) try(expr string, out any) error {
	c.id++
	msg, _ := json.Marshal(map[string]any{"id": c.id, "method": "Runtime.evaluate",
		"params": map[string]any{"expression": expr, "awaitPromise": true, "returnByValue": true}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, msg); err != nil {
		c.t.Fatal(err)
	}
	for {
		_, data, err := c.conn.Read(ctx)
		if err != nil {
			c.t.Fatal(err)
		}
		var r struct {
			ID     int `json:"id"`
			Result struct {
				Result struct {
					Value json.RawMessage `json:"value"`
				} `json:"result"`
				ExceptionDetails any `json:"exceptionDetails"`
			} `json:"result"`
			Error any `json:"error"`
		}
		if json.Unmarshal(data, &r) != nil || r.ID != c.id {
			continue // an event
		}
		if r.Error != nil || r.Result.ExceptionDetails != nil {
			return fmt.Errorf("%v %v", r.Error, r.Result.ExceptionDetails)
		}
		return json.Unmarshal(r.Result.Result.Value, out)
	}
}

// pageRow is what the status page shows of one backend.
type pageRow struct {
	Pool, Backend, State, Admin, Serving, Weight, InFlight, Requests, Mean, History, Tier string
}

// readPage waits until the page rendered at least updates events and
// returns its backend rows.
func (c *cdp) readPage(updates int) []pageRow {
	c.t.Helper()
	var rows []pageRow
	c.eval(`new Promise((resolve) => {
  const done = () => {
    if (!(Number(document.body.dataset.updates) >= `+strconv.Itoa(updates)+`)) { setTimeout(done, 20); return; }
    const f = (r, k) => { const e = r.querySelector('[data-field="' + k + '"]'); return e ? (k === "check_history" ? e.dataset.value : e.textContent) : null; };
    resolve([...document.querySelectorAll("tr[data-backend]")].map(r => ({
      Pool: r.dataset.pool, Backend: r.dataset.backend, State: f(r, "state"), Admin: f(r, "admin_state"),
      Serving: f(r, "serving"), Weight: f(r, "weight"), InFlight: f(r, "in_flight"), Requests: f(r, "requests"),
      Mean: f(r, "mean_latency"), History: f(r, "check_history"), Tier: f(r, "tier")})));
  };
  done();
})`, &rows)
	return rows
}

// TestStatusPageInChromium loads the admin listener's status page in
// headless Chromium and checks what it shows against /status: every
// backend with its health, admin state, weight, in-flight count, requests,
// mean latency and check history; and that it follows a change live
// (server-sent events) without a reload of the page.
func TestStatusPageInChromium(t *testing.T) {
	t.Parallel()
	live := startBackend(t, "live")
	_, dead := loopback.Bound(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tokenFile, []byte("status-page-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "frontdoor.toml")
	writeConfig(t, cfg, `[admin]
bind = "127.0.0.1:0"
token_file = "`+tokenFile+`"

[log]
access = "off"

[[listener]]
name = "web"
bind = "127.0.0.1:0"
  [[listener.route]]
  pool = "app"

[pool.app]
backends = [{ address = "`+live.addr+`" }, { address = "`+dead+`", weight = 3 }]
  [pool.app.health]
  check = "http"
  path = "/healthz"
  interval = "200ms"
  timeout = "100ms"
`)
	d := startDaemon(t, cfg)
	admin, addr := d.started("web")
	waitFor(t, 10*time.Second, "the live backend's first passing check", func() bool {
		for _, b := range status(t, admin).Pools[0].Backends {
			if b.Address == live.addr && b.Serving {
				return true
			}
		}
		return false
	})
	for range 7 {
		if code, _, err := get(addr, "/x"); err != nil || code != 200 {
			t.Fatalf("%d %v", code, err)
		}
	}
	waitFor(t, 10*time.Second, "a few health checks of each backend", func() bool {
		for _, b := range status(t, admin).Pools[0].Backends {
			if len(b.CheckHistory) < 3 {
				return false
			}
		}
		return true
	})
	page := startChromium(t, "http://"+admin+"/")
	rows := page.readPage(2)
	st := status(t, admin)
	check := func(rows []pageRow, st proxy.Status) {
		t.Helper()
		want := map[string]proxy.BackendStatus{}
		for _, p := range st.Pools {
			for _, b := range p.Backends {
				want[p.Name+"|"+b.Address] = b
			}
		}
		if len(rows) != len(want) {
			t.Fatalf("the page shows %d backends, /status %d: %+v", len(rows), len(want), rows)
		}
		for _, r := range rows {
			b, ok := want[r.Pool+"|"+r.Backend]
			if !ok {
				t.Errorf("the page shows %s %s, /status does not", r.Pool, r.Backend)
				continue
			}
			serving := map[bool]string{true: "yes", false: "no"}[b.Serving]
			mean := "—"
			if b.Requests > 0 {
				mean = strconv.FormatFloat(b.LatencySum/float64(b.Requests)*1000, 'f', 2, 64)
			}
			if r.State != b.State || r.Admin != b.AdminState || r.Serving != serving || r.Weight != strconv.Itoa(b.Weight) ||
				r.InFlight != strconv.FormatInt(b.InFlight, 10) || r.Requests != strconv.FormatUint(b.Requests, 10) ||
				r.Tier != strconv.Itoa(b.Tier) || r.Mean != mean {
				t.Errorf("page row %+v; /status %+v", r, b)
			}
			// Checks go on between the page's update and /status: the
			// dead backend's histories hold only failures, the live one's
			// passes (and, on a loaded machine, a check that timed out).
			if b.Address == dead && (r.History == "" || strings.Trim(r.History, "-") != "" || strings.Trim(b.CheckHistory, "-") != "") ||
				b.Address != dead && (!strings.Contains(r.History, "+") || strings.Trim(r.History, "+-") != "") {
				t.Errorf("%s: history %q on the page, %q in /status", b.Address, r.History, b.CheckHistory)
			}
		}
	}
	check(rows, st)
	if rows[0].Requests == "0" && rows[1].Requests == "0" {
		t.Error("the page shows no requests")
	}

	// Live: drain the live backend; the page shows it at its next
	// update, without a reload.
	req, _ := http.NewRequest("POST", "http://"+admin+"/backends/app/"+live.addr+"/state", strings.NewReader("drain"))
	req.Header.Set("Authorization", "Bearer status-page-token-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("drain: %v %v", resp, err)
	}
	_ = resp.Body.Close()
	var n int
	page.eval(`Number(document.body.dataset.updates) || 0`, &n)
	rows = page.readPage(n + 2)
	st = status(t, admin)
	check(rows, st)
	for _, r := range rows {
		if r.Backend == live.addr && r.Admin != "drain" {
			t.Errorf("after the drain the page shows admin state %q", r.Admin)
		}
	}
	var title string
	page.eval(`document.title`, &title)
	if title != "frontdoor status" {
		t.Errorf("title %q", title)
	}
}
