package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeController records the commands it gets; backend "10.0.0.1:80" of
// pool "api" exists, and weights above 1000 are refused.
type fakeController struct {
	mu   sync.Mutex
	cmds []string
}

func (f *fakeController) ControlBackend(pool, address string, c BackendCommand) (any, error) {
	if pool != "api" || address != "10.0.0.1:80" {
		return nil, fmt.Errorf("pool %s has no backend %s: %w", pool, address, ErrUnknownBackend)
	}
	if c.Op == OpWeight && c.Weight > 1000 {
		return nil, fmt.Errorf("weight %d is above 1000: %w", c.Weight, ErrBadCommand)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = append(f.cmds, fmt.Sprintf("%s %s %s %s %d", pool, address, c.Op, c.State, c.Weight))
	return map[string]string{"done": c.Op}, nil
}

func (f *fakeController) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cmds...)
}

func startControlAdmin(t *testing.T, ctl BackendController, token []byte) string {
	t.Helper()
	a, err := NewAdmin(AdminOptions{
		Bind: "127.0.0.1:0", Gatherer: prometheus.NewRegistry(), Control: ctl,
		Token: func() []byte { return token },
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = a.Shutdown(ctx)
	})
	return a.Addr().String()
}

func post(t *testing.T, addr, path, auth, body string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestAdminWrite drives the write endpoints over 127.0.0.1: every refusal
// (token, value, backend) changes nothing, and accepted commands reach the
// controller as parsed.
func TestAdminWrite(t *testing.T) {
	t.Parallel()
	const token = "0123456789abcdef-token"
	ctl := &fakeController{}
	addr := startControlAdmin(t, ctl, []byte(token))
	ok := "Bearer " + token
	tests := []struct {
		name, path, auth, body string
		code                   int
		msg                    string // a substring of the body
		call                   string // what the controller got; "" none
	}{
		{"no token", "/backends/api/10.0.0.1:80/state", "", "drain", 401, "missing or wrong bearer token", ""},
		{"wrong token", "/backends/api/10.0.0.1:80/state", "Bearer 0123456789abcdef-tokex", "drain", 401, "wrong bearer token", ""},
		{"token prefix", "/backends/api/10.0.0.1:80/state", "Bearer 0123456789abcdef", "drain", 401, "wrong bearer token", ""},
		{"basic auth", "/backends/api/10.0.0.1:80/state", "Basic " + token, "drain", 401, "wrong bearer token", ""},
		{"bad state", "/backends/api/10.0.0.1:80/state", ok, "up", 400, `state "up": want drain, maint or ready`, ""},
		{"bad weight", "/backends/api/10.0.0.1:80/weight", ok, "-1", 400, "want an integer of 0 or more", ""},
		{"weight not a number", "/backends/api/10.0.0.1:80/weight", ok, "two", 400, "want an integer", ""},
		{"weight too large", "/backends/api/10.0.0.1:80/weight", ok, "1001", 400, "above 1000", ""},
		{"body too long", "/backends/api/10.0.0.1:80/state", ok, strings.Repeat("x", 100), 400, "at most 64 bytes", ""},
		{"unknown pool", "/backends/web/10.0.0.1:80/state", ok, "drain", 404, "pool web has no backend 10.0.0.1:80", ""},
		{"unknown backend", "/backends/api/10.0.0.9:80/uneject", ok, "", 404, "no backend 10.0.0.9:80", ""},
		{"drain", "/backends/api/10.0.0.1:80/state", ok, "drain\n", 200, `"done": "state"`, "api 10.0.0.1:80 state drain 0"},
		{"weight", "/backends/api/10.0.0.1:80/weight", ok, " 7 ", 200, `"done": "weight"`, "api 10.0.0.1:80 weight  7"},
		{"escaped address", "/backends/api/10.0.0.1%3A80/uneject", ok, "", 200, `"done": "uneject"`, "api 10.0.0.1:80 uneject  0"},
	}
	// Not parallel: each case checks the controller's calls since the last.
	for _, tc := range tests {
		before := len(ctl.calls())
		code, body, hdr := post(t, addr, tc.path, tc.auth, tc.body)
		if code != tc.code || !strings.Contains(body, tc.msg) {
			t.Errorf("%s: %d %q, want %d with %q", tc.name, code, body, tc.code, tc.msg)
		}
		if code == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", tc.name, hdr.Get("WWW-Authenticate"))
		}
		calls := ctl.calls()[before:]
		switch {
		case tc.call == "" && len(calls) != 0:
			t.Errorf("%s: controller called: %q", tc.name, calls)
		case tc.call != "" && (len(calls) != 1 || calls[0] != tc.call):
			t.Errorf("%s: controller got %q, want %q", tc.name, calls, tc.call)
		}
	}
	// Reads stay open, without a token.
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz without a token: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestAdminWriteOff: without a token (or a controller) every write answers
// 403 saying how to turn the endpoints on.
func TestAdminWriteOff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		ctl   BackendController
		token []byte
	}{
		{"no token", &fakeController{}, nil},
		{"no controller", nil, []byte("0123456789abcdef-token")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := startControlAdmin(t, tc.ctl, tc.token)
			code, body, _ := post(t, addr, "/backends/api/10.0.0.1:80/state", "Bearer 0123456789abcdef-token", "drain")
			if code != 403 || !strings.Contains(body, "set [admin] token_file") {
				t.Errorf("%d %q, want 403 naming token_file", code, body)
			}
		})
	}
}

func TestReadTokenFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name, content, want, err string
	}{
		{"trailing newline", "0123456789abcdef\n", "0123456789abcdef", ""},
		{"one newline only", "0123456789abcdef\n\n", "0123456789abcdef\n", ""},
		{"no newline", "0123456789abcdefgh", "0123456789abcdefgh", ""},
		{"too short", "short\n", "", "shorter than 16 bytes"},
		{"missing", "", "", "read admin token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if tc.name != "missing" {
				if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ReadTokenFile(path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("ReadTokenFile = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func ExampleReadTokenFile() {
	dir, err := os.MkdirTemp("", "token")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(path, []byte("s3cret-0123456789\n"), 0o600); err != nil {
		panic(err)
	}
	tok, err := ReadTokenFile(path)
	fmt.Printf("%q %v\n", tok, err)
	// Output: "s3cret-0123456789" <nil>
}

// adminBackends is a BackendSource that also reports admin state.
type adminBackends struct{ staticBackends }

func (adminBackends) EachBackendAdmin(fn func(pool, backend, state string, weight int)) {
	fn("api", "10.0.0.1:80", "drain", 3)
	fn("api", "10.0.0.1:80", "ready", 9) // a duplicate: the first one counts
}

// TestBackendAdminMetrics: backend_admin_state and backend_weight come from
// a source that implements BackendAdminSource, and only then.
func TestBackendAdminMetrics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  BackendSource
		want []string
		not  []string
	}{
		{"admin source", adminBackends{}, []string{
			`frontdoor_backend_admin_state{backend="10.0.0.1:80",pool="api",state="drain"} 1`,
			`frontdoor_backend_admin_state{backend="10.0.0.1:80",pool="api",state="ready"} 0`,
			`frontdoor_backend_admin_state{backend="10.0.0.1:80",pool="api",state="maint"} 0`,
			`frontdoor_backend_weight{backend="10.0.0.1:80",pool="api"} 3`,
		}, nil},
		{"plain source", staticBackends{}, nil, []string{"frontdoor_backend_admin_state{", "frontdoor_backend_weight{"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			m := New(reg, "test")
			m.SetBackendSource(tc.src)
			a, err := NewAdmin(AdminOptions{Bind: "127.0.0.1:0", Gatherer: reg})
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = a.Serve() }()
			t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
			resp, err := http.Get("http://" + a.Addr().String() + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			body := string(b)
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("/metrics lacks %q", w)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(body, w) {
					t.Errorf("/metrics has %q", w)
				}
			}
		})
	}
}
