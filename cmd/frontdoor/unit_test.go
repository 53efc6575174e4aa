package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const unitPath = "../../deploy/frontdoor.service"

// TestUnitVerifies runs systemd-analyze verify on deploy/frontdoor.service,
// with the binary path rewritten to the binary under test (verify insists
// that ExecStart= names an executable file). Warnings count as failures:
// verify exits 0 on lines it ignores.
func TestUnitVerifies(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (make test-deps installs the systemd package)")
	}
	unit, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "frontdoor.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/local/bin/frontdoor"), []byte(binPath)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestUnitContract checks the settings the daemon relies on, and runs the
// unit's own -check command line against a good and a broken config.
func TestUnitContract(t *testing.T) {
	t.Parallel()
	unit, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string][]string{}
	for line := range strings.Lines(string(unit)) {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[k] = append(settings[k], v)
		}
	}
	const check = "/usr/local/bin/frontdoor -check -config /etc/frontdoor/frontdoor.toml"
	for key, want := range map[string][]string{
		"Type":                    {"notify"},
		"ExecStartPre":            {check},
		"ExecStart":               {"/usr/local/bin/frontdoor -config /etc/frontdoor/frontdoor.toml"},
		"ExecReload":              {check, "/bin/kill -HUP $MAINPID"}, // in this order
		"KillSignal":              {"SIGTERM"},
		"DynamicUser":             {"yes"},
		"AmbientCapabilities":     {"CAP_NET_BIND_SERVICE"},
		"CapabilityBoundingSet":   {"CAP_NET_BIND_SERVICE"},
		"NoNewPrivileges":         {"yes"},
		"ProtectSystem":           {"strict"},
		"ProtectHome":             {"yes"},
		"PrivateTmp":              {"yes"},
		"LimitNOFILE":             {"1048576"},
		"ConfigurationDirectory":  {"frontdoor"},
		"WatchdogSec":             {"30s"},
		"TimeoutStopSec":          {"45s"}, // above the default drain_timeout of 30s
		"RestrictAddressFamilies": {"AF_UNIX AF_INET AF_INET6"},
		"FileDescriptorStoreMax":  {"256"},  // listening sockets outlive the process
		"NotifyAccess":            {"main"}, // FDSTORE= and MAINPID= come from the main process
	} {
		if got := settings[key]; strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}

	dir := t.TempDir()
	for _, tc := range []struct {
		name, text string
		ok         bool
	}{{"good", goodConfig, true}, {"bad", badConfig, false}} {
		cfg := filepath.Join(dir, tc.name+".toml")
		if err := os.WriteFile(cfg, []byte(tc.text), 0o644); err != nil {
			t.Fatal(err)
		}
		args := strings.Fields(strings.NewReplacer("/usr/local/bin/frontdoor", binPath, "/etc/frontdoor/frontdoor.toml", cfg).Replace(check))
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if (err == nil) != tc.ok {
			t.Errorf("the unit's -check on the %s config: %v\n%s", tc.name, err, out)
		}
	}
}
