package report

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/eventswarm/eventswarm/internal/busstats"
	"github.com/eventswarm/eventswarm/internal/stats"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// pageResult is a run with windows and full histograms: on time, slow and late.
func pageResult() verify.Result {
	r := sampleResult(failing)
	h, late := verify.NewHistogram(), verify.NewHistogram()
	for i := int64(0); i < 990; i++ {
		_ = h.RecordValue(800 + i*3) // 0.8–3.8 ms
	}
	for i := int64(0); i < 7; i++ {
		_ = h.RecordValue(2_500_000 + i*1000) // slow: 2.5 s
	}
	_ = late.RecordValue(16_000_000)
	r.LatencyHist, r.LateHist = h.Export(), late.Export()
	r.Windows[0].Counts = verify.Counts{Expected: 600, OnTime: 597, Slow: 3, PublishAttempted: 300}
	r.Windows[0].Latency = verify.Latency{Count: 600, P50: 1.5, P95: 3, P99: 15.2}
	r.Windows[1].Counts = verify.Counts{Expected: 400, OnTime: 393, Slow: 4, Lost: 3, Duplicates: 2, PublishAttempted: 200}
	r.Windows[1].Latency = verify.Latency{Count: 397, P50: 1.6, P95: 4, P99: 1500}
	return r
}

func samplePages() map[string]Page {
	r := pageResult()
	start := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	setup := []Setting{{"target", "mqtt://broker:1883"}, {"protocol", "mqtt"}, {"QoS", "1"}, {"rate", "10 msg/s per stream"},
		{"streams", "2"}, {"subscribers", "3"}, {"duration", "for 2m0s"}, {"version", "dev-abc"}, {"run ID", "0123"}}
	reached := 2.5
	ops := stats.Snapshot{Ops: []stats.OpStats{
		{Name: "connect", Count: 100, Rate: 1, LatencyMS: stats.Latency{Count: 100, P50: 0.1, P95: 0.2, P99: 0.3, Max: 1}},
		{Name: "publish", Count: 1000, Failures: 3, FailuresByClass: map[string]uint64{"timeout": 2, "5xx": 1}, Rate: 8.3},
	}}
	users := &Users{Target: 100, Peak: 100, Started: 100, ByKind: map[string]int{"learner": 95, "proctor": 5}, ReachedAfter: &reached}
	base := Page{Title: "eventswarm probe: mqtt://broker:1883", Result: r, Setup: setup, Start: start, End: start.Add(2 * time.Minute),
		Latency: 2 * time.Second, LostAfter: 15 * time.Second, Health: []Setting{{"late sends", "0"}}, Errors: []string{"publish: timeout"}}
	pass := base
	pass.Result = sampleResult(passing)
	pass.Result.Windows = pageResult().Windows
	pass.Result.Windows[1].Verdict, pass.Result.Windows[1].Reason = verify.Pass, ""
	pass.Result.Windows[1].Counts.Lost, pass.Result.Windows[1].Counts.Duplicates = 0, 0
	swarm := base
	swarm.Title = "eventswarm swarm: 100 users"
	swarm.Result.Windows = nil
	swarm.Directions = []Direction{{Name: "learner → proctor (events)", Result: r}, {Name: "proctor → learner (control)", Result: sampleResult(passing)}}
	swarm.Operations, swarm.Users = &ops, users
	swarm.Ticks = []Tick{{AtS: 5, Users: map[string]int{"learner": 40, "proctor": 2}, OperationsPerS: 30, PublishesPerS: 20},
		{AtS: 10, Users: map[string]int{"learner": 95, "proctor": 5}, OperationsPerS: 80, PublishesPerS: 50, FailuresPerS: 0.4}}
	dropped := 3.0
	swarm.Bus = &busstats.Series{Source: busstats.SourceMosquitto, Dropped: &dropped, Samples: []busstats.Sample{
		{AtMS: 0, Values: map[string]float64{"$SYS/broker/clients/connected": 3, busstats.DroppedKey: 0}},
		{AtMS: 5000, Values: map[string]float64{"$SYS/broker/clients/connected": 90, "$SYS/broker/load/messages/received/1min": 400, busstats.DroppedKey: 3}},
	}}
	merge := swarm
	merge.Bus = nil
	merge.Title = "eventswarm swarm merge: 3 shards"
	merge.Directions = []Direction{{Name: "learner → proctor (events)", Result: verify.Result{Counts: failing, Verdict: verify.Fail}}}
	return map[string]Page{"probe fail": base, "probe pass": pass, "swarm": swarm, "merge": merge}
}

// voidElements have no end tag in HTML.
var voidElements = map[string]bool{"meta": true, "br": true, "hr": true, "img": true, "input": true, "link": true, "col": true, "wbr": true}

// wellFormed tokenizes page with golang.org/x/net/html and checks that
// every element is closed in order (svg children too) and that nothing is
// loaded from elsewhere: no script, no src or href attribute, no url().
func wellFormed(t *testing.T, page []byte) {
	t.Helper()
	z := html.NewTokenizer(bytes.NewReader(page))
	var open []string
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			if !errors.Is(z.Err(), io.EOF) {
				t.Fatalf("tokenizer: %v", z.Err())
			}
			break
		}
		tok := z.Token()
		switch tt {
		case html.StartTagToken:
			if tok.Data == "script" || tok.Data == "iframe" || tok.Data == "object" {
				t.Errorf("page has <%s>", tok.Data)
			}
			for _, a := range tok.Attr {
				if a.Key == "src" || a.Key == "href" || strings.HasPrefix(a.Key, "on") {
					t.Errorf("<%s %s=%q>: the page must not load or run anything", tok.Data, a.Key, a.Val)
				}
			}
			if !voidElements[tok.Data] {
				open = append(open, tok.Data)
			}
		case html.EndTagToken:
			if len(open) == 0 || open[len(open)-1] != tok.Data {
				t.Fatalf("</%s> closes %v", tok.Data, open)
			}
			open = open[:len(open)-1]
		}
	}
	if len(open) != 0 {
		t.Fatalf("unclosed elements %v", open)
	}
	if bytes.Contains(page, []byte("url(")) || bytes.Contains(page, []byte("@import")) {
		t.Errorf("the style loads something")
	}
	for _, bad := range []string{"NaN", "Inf"} {
		if bytes.Contains(page, []byte(bad)) {
			t.Errorf("%s in the page", bad)
		}
	}
}

var svgRe = regexp.MustCompile(`(?s)<svg .*?</svg>`)

// strictSVG parses every <svg> of page as XML, strictly.
func strictSVG(t *testing.T, page []byte) int {
	t.Helper()
	svgs := svgRe.FindAll(page, -1)
	for _, s := range svgs {
		d := xml.NewDecoder(bytes.NewReader(s))
		d.Strict = true
		for {
			_, err := d.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("svg is not well-formed XML: %v\n%s", err, s)
			}
		}
	}
	return len(svgs)
}

func TestPagesWellFormed(t *testing.T) {
	for name, p := range samplePages() {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := RenderPage(&buf, p); err != nil {
				t.Fatal(err)
			}
			page := buf.Bytes()
			wellFormed(t, page)
			n := strictSVG(t, page)
			d := parseHTML(t, page)
			if !strings.Contains(d.byID["setup"], "mqtt://broker:1883") || !strings.Contains(d.byID["setup"], "dev-abc") {
				t.Errorf("setup does not say what was run: %q", d.byID["setup"])
			}
			if got := strings.TrimSpace(d.byID["when"]); !strings.HasPrefix(got, "2026-12-02 10:00:00 UTC → 10:02:00 UTC") {
				t.Errorf("when %q", got)
			}
			marks := strings.Count(string(page), `<line class="mark"`)
			switch name {
			case "probe fail", "probe pass":
				// 4 window charts + the distribution (pass: no histogram).
				want := 5
				if name == "probe pass" {
					want = 4
				}
				if n != want || d.byID["run-ontime"] == "" || d.byID["run-latency"] == "" || d.byID["run-rate"] == "" || d.byID["run-loss"] == "" {
					t.Errorf("%d charts (want %d) or a window chart missing", n, want)
				}
				// Thresholds: the on-time target, the on-time bound, and (fail)
				// the lost bound on the latency chart and both in the distribution.
				if marks < 2 {
					t.Errorf("%d threshold marks", marks)
				}
			case "swarm":
				if d.byID["dir0-ontime"] == "" || d.byID["dir1-ontime"] == "" || !d.hasRow("operations", "publish", "1000", "3", "0.30%") ||
					!d.hasRow("users", "started as proctor", "5") || d.byID["users-chart"] == "" || d.byID["ops-chart"] == "" ||
					!d.hasRow("bus", "$SYS/broker/clients/connected", "3", "3", "90", "90") || !strings.Contains(d.byID["bus-note"], "3 messages dropped") ||
					d.byID["bus-chart"] == "" {
					t.Errorf("swarm page: both directions, operations and users wanted")
				}
			case "merge":
				if !d.hasRow("operations", "connect", "100", "0") || !strings.Contains(d.byID["pooled"], "Latency distribution") {
					t.Errorf("merge page: operations and the pooled distribution wanted")
				}
			}
		})
	}
}

// A run that fits in one window gets no charts over the windows (one bar,
// one dot each) but a note saying why, and its window in the table; a
// passing run says that every gate passed.
func TestPageOneWindow(t *testing.T) {
	r := sampleResult(passing)
	r.Windows = r.Windows[:1]
	var buf bytes.Buffer
	if err := RenderPage(&buf, Page{Title: "one window", Result: r}); err != nil {
		t.Fatal(err)
	}
	d := parseHTML(t, buf.Bytes())
	if d.byID["run-ontime"] != "" || d.byID["run-latency"] != "" || d.byID["run-rate"] != "" || d.byID["run-loss"] != "" {
		t.Errorf("charts over one window drawn")
	}
	if !strings.Contains(d.text, "The run fits in one window (0s – 1m)") || !strings.Contains(d.text, "1 window (1 pass, 0 fail, 0 inconclusive)") {
		t.Errorf("no one-window note or window line")
	}
	if !d.hasRow("windows", "0", "0s – 1m", "0", "-") {
		t.Errorf("window row missing: %q", d.rows["windows"])
	}
	if got := strings.TrimSpace(d.byID["reason"]); got != "All 6 gates passed." {
		t.Errorf("reason %q", got)
	}
	if !d.hasRow("gates", "lost", "<= 0", "0", "PASS", "expected deliveries that never arrived in time") {
		t.Errorf("gate row with what it checks missing: %q", d.rows["gates"])
	}
}

// The bus chart draws only values that moved: an HTTP run's MQTT clients
// (0 throughout) are in the table, not on the chart.
func TestBusChartSkipsZeros(t *testing.T) {
	s := &busstats.Series{Source: busstats.SourceEmbedded, Samples: []busstats.Sample{
		{AtMS: 0, Values: map[string]float64{"clients_connected": 0, "inflight": 0, "http_publishes": 0, "http_polls": 1}},
		{AtMS: 5000, Values: map[string]float64{"clients_connected": 0, "inflight": 0, "http_publishes": 50, "http_polls": 103}},
	}}
	c := busChart("bus", s)
	if c == nil || len(c.Lines) != 2 || !strings.HasPrefix(c.Legend[0].Label, "http_publishes") || !strings.HasPrefix(c.Legend[1].Label, "http_polls") {
		t.Fatalf("bus chart %+v", c)
	}
	s.Samples[1].Values["http_publishes"], s.Samples[1].Values["http_polls"], s.Samples[0].Values["http_polls"] = 0, 0, 0
	if c := busChart("bus", s); c != nil {
		t.Errorf("a chart of zeros: %+v", c.Legend)
	}
}

// Axis and table durations drop zero tails; the log axis reads 100s, not 1.67min.
func TestDurationLabels(t *testing.T) {
	for d, want := range map[time.Duration]string{time.Minute: "1m", 90 * time.Second: "1m30s", time.Hour: "1h",
		90 * time.Minute: "1h30m", 1500 * time.Millisecond: "1.5s", 0: "0s"} {
		if got := durLabel(d); got != want {
			t.Errorf("durLabel(%v) = %q, want %q", d, got, want)
		}
	}
	for ms, want := range map[float64]string{100_000: "100s", 15_000: "15s", 2_000_000: "33.3min", 0.1: "100µs"} {
		if got := msLabel(ms); got != want {
			t.Errorf("msLabel(%v) = %q, want %q", ms, got, want)
		}
	}
}

func TestTimeStep(t *testing.T) {
	for s, want := range map[float64]float64{0.3: 1, 3: 5, 21.7: 30, 50: 60, 130: 300, 1.5e6: 1.5e6} {
		if got := timeStep(s); got != want {
			t.Errorf("timeStep(%v) = %v, want %v", s, got, want)
		}
	}
}
