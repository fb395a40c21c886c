// Package contrib holds the Grafana dashboard and the Prometheus alert rules shipped with
// espgw; its tests check them with promtool and against docs/metrics.md. The live check
// (every metric the dashboard queries is in a real scrape) is test/interop's
// TestMetricsStrongSwan.
package contrib

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
)

// TestAlertRules: promtool accepts the rules, and its unit tests show each alert firing on
// the series it is meant for.
func TestAlertRules(t *testing.T) {
	promtool := testutil.RequireTool(t, "promtool", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "espgw-alerts.yml"},
		{"test", "rules", "espgw-alerts_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

var metricName = regexp.MustCompile(`\bespgw_[a-z0-9_]+\b`)

// dashboardQueries returns the PromQL of the dashboard's panels.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("grafana/espgw.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana/espgw.json: %v", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			exprs = append(exprs, q.Expr)
		}
	}
	return exprs
}

// TestDashboardQueriesParse: promtool accepts every panel query (with Grafana's variables
// replaced) as the expression of a recording rule.
func TestDashboardQueriesParse(t *testing.T) {
	promtool := testutil.RequireTool(t, "promtool", "prometheus")
	vars := strings.NewReplacer("$__rate_interval", "1m", "$connection", ".*", "$tunnel", ".*")
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, q := range dashboardQueries(t) {
		fmt.Fprintf(&rules, "      - record: dashboard:query_%d\n        expr: %q\n", i, vars.Replace(q))
	}
	file := filepath.Join(t.TempDir(), "dashboard.yml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules (the dashboard's queries): %v\n%s", err, out)
	}
}

// dashboardMetrics returns the espgw metrics the dashboard's queries and variables use.
func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("grafana/espgw.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Templating struct {
			List []struct{ Definition string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana/espgw.json: %v", err)
	}
	exprs := dashboardQueries(t)
	for _, v := range d.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	var names []string
	for _, e := range exprs {
		names = append(names, metricName.FindAllString(e, -1)...)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// TestDashboardAndRulesUseDocumentedMetrics: every metric the dashboard and the alert rules
// use is in docs/metrics.md (which metrics.TestReferenceMatchesRegistry ties to the code).
func TestDashboardAndRulesUseDocumentedMetrics(t *testing.T) {
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := regexp.MustCompile("(?m)^\\| `(espgw_[a-z0-9_]+)` \\|").FindAllStringSubmatch(string(doc), -1)
	known := make(map[string]bool)
	for _, m := range documented {
		known[m[1]] = true
	}
	rules, err := os.ReadFile("prometheus/espgw-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	used := dashboardMetrics(t)
	if len(used) < 10 {
		t.Errorf("the dashboard queries only %v", used)
	}
	for _, m := range append(used, metricName.FindAllString(string(rules), -1)...) {
		if !known[m] {
			t.Errorf("%s is used but not in docs/metrics.md", m)
		}
	}
}
