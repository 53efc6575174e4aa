package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const goodConfig = `[admin]
bind = "127.0.0.1:9901"

[[listener]]
name = "web"
bind = "127.0.0.1:8080"
  [[listener.route]]
  pool = "app"

[pool.app]
backends = [{ address = "127.0.0.1:9001" }]
`

// badConfig has three mistakes, on the lines the comments name.
const badConfig = `[global]
drain_timeout = "30 seconds"     # line 2: not a Go duration

[[listener]]
name = "web"
bind = "127.0.0.1:8080"
max_conections = 100             # line 7: unknown key (typo)
  [[listener.route]]
  pool = "api"                   # line 9: no such pool

[pool.app]
backends = [{ address = "127.0.0.1:9001" }]
`

// TestCheckFlag runs frontdoor -check: every error printed with its file and
// line, exit 1; a good file prints "config OK", exit 0.
func TestCheckFlag(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, bad := write("good.toml", goodConfig), write("bad.toml", badConfig)
	broken := write("broken.toml", "[global]\ndrain_timeout = = \"1s\"\n")
	tests := []struct {
		name   string
		file   string
		code   int
		stdout string
		stderr []string // regexps, one per line, in order
	}{
		{"good", good, 0, "config OK\n", nil},
		{"three errors", bad, 1, "", []string{
			`^` + regexp.QuoteMeta(bad) + `:2: global\.drain_timeout: .*30 seconds`,
			`^` + regexp.QuoteMeta(bad) + `:7: listener\[0\]\.max_conections: .*unknown`,
			`^` + regexp.QuoteMeta(bad) + `:9: listener\[0\]\.route\[0\]\.pool: .*"api"`,
		}},
		{"syntax error", broken, 1, "", []string{`^` + regexp.QuoteMeta(broken) + `:2: TOML syntax`}},
		{"missing file", filepath.Join(dir, "nope.toml"), 1, "", []string{`nope\.toml: cannot read config`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(binPath, "-check", "-config", tc.file)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || stdout.String() != tc.stdout {
				t.Errorf("exit %d, stdout %q; want %d, %q\nstderr:\n%s", code, stdout.String(), tc.code, tc.stdout, stderr.String())
			}
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			if len(tc.stderr) == 0 {
				if stderr.Len() > 0 {
					t.Errorf("stderr: %q, want nothing", stderr.String())
				}
				return
			}
			if len(lines) != len(tc.stderr) {
				t.Fatalf("%d lines on stderr, want %d:\n%s", len(lines), len(tc.stderr), stderr.String())
			}
			for i, re := range tc.stderr {
				if !regexp.MustCompile(re).MatchString(lines[i]) {
					t.Errorf("stderr line %d = %q, want it to match %s", i+1, lines[i], re)
				}
			}
		})
	}
}

func TestVersionFlag(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(binPath, "-version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "frontdoor test go1.") {
		t.Errorf("-version printed %q", out)
	}
}
