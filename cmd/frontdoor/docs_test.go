package main

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"frontdoor/metrics"
)

// recorder is a prometheus.Registerer that only remembers what it got.
type recorder struct{ cs []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error   { r.cs = append(r.cs, c); return nil }
func (r *recorder) MustRegister(cs ...prometheus.Collector) { r.cs = append(r.cs, cs...) }
func (r *recorder) Unregister(prometheus.Collector) bool    { return false }

// families returns the name of every frontdoor_ metric family metrics.New
// defines.
func families(t *testing.T) []string {
	t.Helper()
	var r recorder
	metrics.New(&r, "test")
	fq := regexp.MustCompile(`fqName: "(frontdoor_[a-z_]+)"`)
	var names []string
	for _, c := range r.cs {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if m := fq.FindStringSubmatch(d.String()); m != nil {
				names = append(names, m[1])
			}
		}
	}
	slices.Sort(names)
	if len(names) < 15 {
		t.Fatalf("found only %d families: %v", len(names), names)
	}
	return names
}

// TestReadmeListsEveryMetric keeps the metric table of README.md and
// the families of package metrics in step, both ways.
func TestReadmeListsEveryMetric(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| (counter|gauge|histogram) \\|").FindAllStringSubmatch(string(readme), -1) {
		documented["frontdoor_"+m[1]] = true
	}
	for _, name := range families(t) {
		if !documented[name] {
			t.Errorf("README.md does not list %s", name)
		}
		delete(documented, name)
	}
	for name := range documented {
		t.Errorf("README.md lists %s, which package metrics does not define", name)
	}
}

// TestAlertRules runs promtool on deploy/frontdoor.rules.yml (syntax and
// its unit tests) and checks that it names only metrics frontdoor has.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	rules, err := os.ReadFile("../../deploy/frontdoor.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	known := families(t)
	for _, name := range regexp.MustCompile(`frontdoor_[a-z_]+`).FindAllString(string(rules), -1) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
		if !slices.Contains(known, base) {
			t.Errorf("the rules use %s, which frontdoor does not export", name)
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (make test-deps installs the prometheus package)")
	}
	for _, args := range [][]string{
		{"check", "rules", "frontdoor.rules.yml"},
		{"test", "rules", "frontdoor.rules.test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "../../deploy"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
