package metrics_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/metrics"
)

// exported is every metric name the probe and swarm expose: their own
// families (a histogram's with _bucket, _sum and _count) and the Go and
// process collectors'.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	i := metrics.Info{RunID: "r", Latency: 2 * time.Second, LostAfter: 15 * time.Second}
	names := map[string]bool{}
	p, s := metrics.NewProbe(i), metrics.NewSwarm(i)
	for _, n := range append(p.Names(), s.Names()...) {
		names[n] = true
		if strings.HasSuffix(n, "_seconds") && strings.Contains(n, "latency") {
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				names[n+suf] = true
			}
		}
	}
	reg, err := metrics.Registry(p)
	if err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		names[f.GetName()] = true
		if f.GetType().String() == "HISTOGRAM" || f.GetType().String() == "SUMMARY" {
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				names[f.GetName()+suf] = true
			}
		}
	}
	return names
}

var metricName = regexp.MustCompile(`\b(?:eventswarm|go|process)_[a-zA-Z0-9_]+`)

// TestDashboardNamesOnlyExportedMetrics parses the Grafana dashboard and
// checks that every query names only metrics the project exposes, and that
// every panel queries at least one eventswarm metric.
func TestDashboardNamesOnlyExportedMetrics(t *testing.T) {
	b, err := os.ReadFile("../../deploy/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("deploy/grafana-dashboard.json is not valid JSON: %v", err)
	}
	if dash.Title == "" || len(dash.Panels) == 0 {
		t.Fatal("dashboard has no title or no panels")
	}
	names := exported(t)
	check := func(where, expr string) int {
		found := metricName.FindAllString(expr, -1)
		for _, n := range found {
			if !names[n] {
				t.Errorf("%s: query names %s, which the project does not export: %s", where, n, expr)
			}
		}
		return len(found)
	}
	for _, p := range dash.Panels {
		n := 0
		for _, tg := range p.Targets {
			n += check("panel "+p.Title, tg.Expr)
		}
		if n == 0 {
			t.Errorf("panel %q queries no eventswarm metric", p.Title)
		}
	}
	for _, v := range dash.Templating.List {
		check("variable", v.Definition)
	}
}

// TestAlertRulesNameOnlyExportedMetrics: the same for the alerting rules
// (promtool check rules checks their syntax in .ci/run).
func TestAlertRulesNameOnlyExportedMetrics(t *testing.T) {
	names := exported(t)
	for _, f := range []string{"../../deploy/probe-alerts.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, "expr:") && !strings.HasPrefix(strings.TrimSpace(line), "sum") &&
				!strings.HasPrefix(strings.TrimSpace(line), "max") && !strings.HasPrefix(strings.TrimSpace(line), "/") {
				continue
			}
			for _, n := range metricName.FindAllString(line, -1) {
				if !names[n] {
					t.Errorf("%s: %s is not a metric the project exports: %s", f, n, strings.TrimSpace(line))
				}
			}
		}
	}
}
