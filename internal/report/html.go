package report

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/eventswarm/eventswarm/internal/busstats"
	"github.com/eventswarm/eventswarm/internal/stats"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// Page is one HTML report: probe's, swarm's or swarm merge's. Only Title and
// Result are required; every other part is shown when it is set.
type Page struct {
	Title string
	// Result is the run's verdict, gates, counts and latency (probe: its
	// windows too; swarm: both directions pooled).
	Result verify.Result
	// Setup is what was run, in the order shown: target, protocol, QoS,
	// rate, streams, subscribers or users and weights, duration, version,
	// run ID… (each command fills it from its flags).
	Setup []Setting
	// Start and End are when the run started and ended (zero: unknown).
	Start, End time.Time
	// Latency and LostAfter are the on-time and lost bounds, drawn on the
	// charts (0: not drawn). The on-time target and the lost and duplicate
	// limits come from Result's gates.
	Latency, LostAfter time.Duration
	// Directions are swarm's per-direction results (windows included), each
	// with its own charts.
	Directions []Direction
	// Operations is swarm's per-operation table.
	Operations *stats.Snapshot
	// Users are swarm's users (with the kinds' weights in Setup).
	Users *Users
	// Health is probe's own health (late sends, lag, GC, heap) as rows.
	Health []Setting
	// Errors are examples of the errors the run saw.
	Errors []string
	// Ticks are swarm's samples over the run (users, operations per second).
	Ticks []Tick
	// Bus is the bus's own health during the run (--bus-stats); nil: not sampled.
	Bus *busstats.Series
}

// Setting is one line of a report's "what was run" or health table.
type Setting struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Direction is one direction of a swarm run.
type Direction struct {
	Name   string
	Result verify.Result
}

// WriteHTML writes r as one self-contained HTML page (inline CSS and SVG, no
// JavaScript, no external assets) to path, atomically like WriteJSON ("-" is
// stdout). WritePage writes a fuller report.
func WriteHTML(path, title string, r verify.Result) error {
	return WritePage(path, Page{Title: title, Result: r})
}

// HTML writes the page WriteHTML writes.
func HTML(w io.Writer, title string, r verify.Result) error {
	return RenderPage(w, Page{Title: title, Result: r})
}

// WritePage writes p as one self-contained HTML page to path, atomically
// like WriteJSON ("-" is stdout).
func WritePage(path string, p Page) error {
	var buf bytes.Buffer
	if err := RenderPage(&buf, p); err != nil {
		return err
	}
	return writeFile(path, buf.Bytes())
}

// RenderPage writes p as HTML: the verdict with its reason and the key
// numbers first, then what was run, the gates, charts over time per window
// with the thresholds drawn (on-time %, latency p50/p95/p99, deliveries and
// publishes per second, lost and duplicates), the latency distribution,
// swarm's users, directions and operations, and the full tables. Every
// string is escaped by html/template: nothing from the bus is trusted.
func RenderPage(w io.Writer, p Page) error {
	if err := htmlTmpl.Execute(w, newHTMLPage(p)); err != nil {
		return fmt.Errorf("report: html: %w", err)
	}
	return nil
}

type htmlPage struct {
	Title        string
	Verdict      string // PASS, FAIL, INCONCLUSIVE
	VerdictClass string // pass, fail, inconclusive (fixed set, never from r)
	Reason       string
	Summary      string
	Tiles        []htmlTile
	Setup        [][]Setting // in two columns
	Gates        []htmlGate
	Counts       []htmlCount
	Latency      [][]string
	Sections     []htmlSection
	Users        [][]string
	UserCharts   []*chart
	Ops          [][]string
	Health       []Setting
	Bus          *htmlBus
	Errors       []string
	Footer       string
}

// htmlSection is the charts and windows of the run or of one direction.
type htmlSection struct {
	ID, Title, Verdict, VerdictClass, Reason string
	Tiles                                    []htmlTile
	Charts                                   []*chart
	Windows                                  []htmlWindow
	WindowsID                                string
	WindowsLine                              string
	// Note says why the charts over the windows are not drawn (one window).
	Note string
}

type htmlTile struct{ Label, Value, Class string }

type htmlGate struct {
	Name, Threshold, Observed, Result, Class, Checks string
}

// gateChecks says in words what a gate measures (the gates table's last
// column); latency and lostAfter are the run's bounds (0: not known).
func gateChecks(name string, latency, lostAfter time.Duration) string {
	switch name {
	case "latency":
		if latency > 0 {
			return "share of expected deliveries that arrived within " + durLabel(latency)
		}
		return "share of expected deliveries that arrived on time"
	case "lost":
		if lostAfter > 0 {
			return "expected deliveries not arrived within " + durLabel(lostAfter)
		}
		return "expected deliveries that never arrived in time"
	case "duplicates":
		return "deliveries of a message a subscriber already had"
	case "publish_availability":
		return "share of publishes the bus acknowledged"
	case "hard_failures":
		return "corrupt and unexpected messages"
	case "coverage":
		return "share of published messages some subscriber was expected to receive"
	}
	return ""
}

type htmlCount struct{ Name, Count, Share string }

type htmlWindow struct {
	Index, Span, Expected, OnTime, Lost, Duplicates, P99, Verdict, Class, Reason string
}

// verdictClass maps a verdict to its CSS class; anything unknown (or empty)
// is inconclusive, as in VerdictLine.
func verdictClass(v verify.Verdict) string {
	switch v {
	case verify.Pass:
		return "pass"
	case verify.Fail:
		return "fail"
	}
	return "inconclusive"
}

// bounds are the thresholds of r's gates and p's bounds.
func (p Page) bounds(r verify.Result) chartBounds {
	b := chartBounds{Latency: p.Latency, LostAfter: p.LostAfter}
	for _, g := range r.Gates {
		switch g.Name {
		case "latency":
			b.Within = g.Threshold
		case "lost":
			b.MaxLost = g.Threshold
		case "duplicates":
			b.MaxDups = g.Threshold
		}
	}
	if b.Within == 0 {
		for _, g := range p.Result.Gates {
			if g.Name == "latency" {
				b.Within = g.Threshold
			}
		}
	}
	return b
}

func tiles(r verify.Result) []htmlTile {
	c := r.Counts
	cls := func(bad bool) string {
		if bad {
			return "fail"
		}
		return ""
	}
	p99 := "-"
	if r.LatencyMS.Count > 0 {
		p99 = fmtMS(r.LatencyMS.P99) + " ms"
		if r.LatencyMS.P99 >= 1000 {
			p99 = strconv.FormatFloat(r.LatencyMS.P99/1000, 'f', 2, 64) + " s"
		}
	}
	t := []htmlTile{
		{"expected deliveries", u(c.Expected), ""},
		{"on time", pct(c.OnTime, c.Expected), ""},
		{"lost", u(c.Lost), cls(c.Lost > 0)},
		{"duplicates", u(c.Duplicates), cls(c.Duplicates > 0)},
	}
	// A result with deliveries but no latency summary (a merged direction:
	// the shard files pool both directions' histograms) shows no p99 tile
	// rather than a "-" that reads as "nothing arrived".
	if r.LatencyMS.Count > 0 || c.OnTime+c.Slow == 0 {
		t = append(t, htmlTile{"p99 latency", p99, ""})
	}
	t = append(t, htmlTile{"publish ok", pct(c.PublishOK, c.PublishAttempted), cls(c.PublishOK < c.PublishAttempted)})
	if c.Corrupt+c.Unexpected > 0 {
		t = append(t, htmlTile{"corrupt + unexpected", u(c.Corrupt + c.Unexpected), "fail"})
	}
	for _, g := range r.Gates {
		if g.Name == "latency" && !g.Pass && c.Expected > 0 {
			t[1].Class = "fail"
		}
		if g.Name == "coverage" {
			t = append(t, htmlTile{"coverage", pct(c.Covered, c.PublishAttempted), cls(!g.Pass)})
		}
	}
	return t
}

func newHTMLPage(p Page) htmlPage {
	r := p.Result
	hp := htmlPage{
		Title:        p.Title,
		VerdictClass: verdictClass(r.Verdict),
		Reason:       r.Reason,
		Tiles:        tiles(r),
		Setup:        splitSetup(p.Setup),
		Health:       p.Health,
		Errors:       p.Errors,
	}
	hp.Verdict = strings.ToUpper(hp.VerdictClass)
	if !p.Start.IsZero() {
		hp.Summary = p.Start.UTC().Format("2006-01-02 15:04:05 MST")
		if !p.End.IsZero() {
			hp.Summary += " → " + p.End.UTC().Format("15:04:05 MST") + " (" + p.End.Sub(p.Start).Round(time.Second).String() + ")"
		}
	}
	for _, s := range p.Setup {
		if s.Name == "version" {
			hp.Footer = "eventswarm " + s.Value
		}
	}

	for _, g := range r.Gates {
		th, obs := gateValues(g)
		cls := "fail"
		if g.Pass {
			cls = "pass"
		}
		hp.Gates = append(hp.Gates, htmlGate{Name: g.Name, Threshold: g.Comparison + " " + th,
			Observed: obs, Result: passFail(g.Pass), Class: cls, Checks: gateChecks(g.Name, p.Latency, p.LostAfter)})
	}
	if hp.Reason == "" && r.Verdict == verify.Pass && len(r.Gates) > 0 {
		hp.Reason = fmt.Sprintf("All %d gates passed.", len(r.Gates))
	}
	for _, row := range countRows(r.Counts) {
		hp.Counts = append(hp.Counts, htmlCount{Name: row[0], Count: row[1], Share: row[2]})
	}
	hp.Latency = latencyRows(r)

	if len(p.Directions) == 0 {
		hp.Sections = append(hp.Sections, newSection(p, "run", "", r, "windows", true))
	} else {
		for i, d := range p.Directions {
			id := "dir" + strconv.Itoa(i)
			hp.Sections = append(hp.Sections, newSection(p, id, d.Name, d.Result, id+"-windows", false))
		}
		if r.LatencyHist != nil {
			// The pooled distribution (swarm merge has no per-direction histograms).
			hp.Sections = append(hp.Sections, htmlSection{ID: "pooled", Title: "Both directions",
				Charts: []*chart{distributionChart("pooled-dist", r.LatencyHist, r.LateHist, p.bounds(r), r.Counts.Lost-r.Counts.Late)}})
		}
	}
	if p.Users != nil {
		us := p.Users
		reached := "never"
		if us.ReachedAfter != nil {
			reached = strconv.FormatFloat(*us.ReachedAfter, 'f', 1, 64) + " s"
		}
		hp.Users = [][]string{{"target", strconv.Itoa(us.Target)}, {"peak (most running at once)", strconv.Itoa(us.Peak)},
			{"started", strconv.Itoa(us.Started)}, {"target reached after", reached}}
		for _, k := range sortedKeys(us.ByKind) {
			hp.Users = append(hp.Users, []string{"started as " + k, strconv.Itoa(us.ByKind[k])})
		}
		if us.Sessions > 0 {
			hp.Users = append(hp.Users, []string{"sessions", strconv.FormatUint(us.Sessions, 10)},
				[]string{"connections (connects)", strconv.FormatUint(us.Connections, 10)})
		}
	}
	hp.Bus = newHTMLBus(p.Bus)
	if len(p.Ticks) > 1 {
		target := 0
		if p.Users != nil {
			target = p.Users.Target
		}
		hp.UserCharts = []*chart{usersChart("users-chart", p.Ticks, target), opsChart("ops-chart", p.Ticks)}
	}
	if p.Operations != nil {
		for _, o := range p.Operations.Ops {
			l := o.LatencyMS
			p50, p95, p99, mx := "-", "-", "-", "-"
			if l.Count > 0 {
				p50, p95, p99, mx = fmtMS(l.P50), fmtMS(l.P95), fmtMS(l.P99), fmtMS(l.Max)
			}
			hp.Ops = append(hp.Ops, []string{o.Name, u(o.Count), u(o.Failures), pct(o.Failures, o.Count),
				strconv.FormatFloat(o.Rate, 'f', 1, 64), p50, p95, p99, mx, topFailures(o.FailuresByClass, 3)})
		}
	}
	return hp
}

// newSection lays out the charts of r (the run, or one direction): the
// charts over its windows and its latency distribution, and its windows.
func newSection(p Page, id, title string, r verify.Result, windowsID string, top bool) htmlSection {
	s := htmlSection{ID: id, Title: title, WindowsID: windowsID}
	if !top {
		s.VerdictClass = verdictClass(r.Verdict)
		s.Verdict = strings.ToUpper(s.VerdictClass)
		s.Reason = r.Reason
		s.Tiles = tiles(r)
	}
	b := p.bounds(r)
	if len(r.Windows) == 1 {
		// One bar and one dot a chart tell nothing the tiles do not.
		w := r.Windows[0]
		s.Note = "The run fits in one window (" + msDur(w.StartMS) + " – " + msDur(w.EndMS) +
			"): the charts over time need two windows or more, so a longer run draws them (or a shorter --window). The window is in the table below."
	}
	if len(r.Windows) > 1 {
		s.Charts = append(s.Charts, onTimeChart(id+"-ontime", r.Windows, b), latencyChart(id+"-latency", r.Windows, b),
			rateChart(id+"-rate", r.Windows), lossChart(id+"-loss", r.Windows, b))
	}
	if len(r.Windows) > 0 {
		for _, win := range r.Windows {
			cls := verdictClass(win.Verdict)
			p99 := "-"
			if win.Latency.Count > 0 {
				p99 = fmtMS(win.Latency.P99)
			}
			s.Windows = append(s.Windows, htmlWindow{
				Index:      strconv.Itoa(win.Index),
				Span:       msDur(win.StartMS) + " – " + msDur(win.EndMS),
				Expected:   u(win.Counts.Expected),
				OnTime:     pct(win.Counts.OnTime, win.Counts.Expected),
				Lost:       u(win.Counts.Lost),
				Duplicates: u(win.Counts.Duplicates),
				P99:        p99,
				Verdict:    strings.ToUpper(cls),
				Class:      cls,
				Reason:     win.Reason,
			})
		}
		pass, fail, inc := WindowTally(r.Windows)
		s.WindowsLine = fmt.Sprintf("%d %s (%d pass, %d fail, %d inconclusive)", len(r.Windows), plural(len(r.Windows), "window", "windows"), pass, fail, inc)
	}
	if r.LatencyHist != nil || r.LateHist != nil {
		s.Charts = append(s.Charts, distributionChart(id+"-dist", r.LatencyHist, r.LateHist, b, r.Counts.Lost-r.Counts.Late))
	}
	return s
}

// splitSetup splits s into two columns (the first the longer); none when empty.
func splitSetup(s []Setting) [][]Setting {
	if len(s) == 0 {
		return nil
	}
	h := (len(s) + 1) / 2
	return [][]Setting{s[:h], s[h:]}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

func msDur(ms int64) string { return durLabel(time.Duration(ms) * time.Millisecond) }

// durLabel is d as time.Duration prints it without the zero tails: 1m, not
// 1m0s; 1h, not 1h0m0s; 1m30s stays.
func durLabel(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// f1 formats an SVG coordinate.
func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

var htmlTmpl = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1000px;padding:0 1rem;color:#1f2328;background:#fff;line-height:1.4}
h1{font-size:1.5rem;margin:0 0 .25rem}
h2{font-size:1.15rem;margin:2rem 0 .5rem;border-bottom:1px solid #d0d7de;padding-bottom:.25rem}
h3{font-size:1rem;margin:1.2rem 0 .2rem}
.when{color:#57606a;margin:0 0 1rem}
.head{display:flex;gap:1.2rem;align-items:center;flex-wrap:wrap}
.badge{display:inline-block;font-size:2rem;font-weight:700;letter-spacing:.05em;padding:.4rem 1.2rem;border-radius:.5rem;color:#fff}
.badge.small{font-size:1rem;padding:.15rem .6rem;vertical-align:middle}
.badge.pass{background:#1a7f37}.badge.fail{background:#cf222e}.badge.inconclusive{background:#9a6700}
.reason{margin:.5rem 0 0;font-size:1.05rem;white-space:pre-wrap;word-break:break-word}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(7.6rem,1fr));gap:.6rem;margin:1rem 0}
.tile{border:1px solid #d0d7de;border-radius:.4rem;padding:.4rem .7rem}
.tile .v{font-size:1.3rem;font-weight:600;font-variant-numeric:tabular-nums;white-space:nowrap}
.tile .l{color:#57606a;font-size:.85rem}
.tile.fail{border-color:#cf222e}.tile.fail .v{color:#cf222e}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:right}
th{background:#f6f8fa}
td:first-child,th:first-child{text-align:left}
table.kv td{text-align:left}table.kv td:first-child{color:#57606a}
td.pass{color:#1a7f37;font-weight:700}td.fail{color:#cf222e;font-weight:700}td.inconclusive{color:#9a6700;font-weight:700}
td.note{text-align:left;color:#57606a;word-break:break-word}th.note{text-align:left}
#gates td:not(.note){white-space:nowrap}
.cols{display:flex;gap:1.5rem;flex-wrap:wrap;align-items:flex-start}
table.setup{flex:1 1 22rem;margin:0}table.setup td:last-child{word-break:break-word}
figure{margin:1rem 0}
figcaption{color:#57606a;font-size:.85rem}
p.note{color:#57606a;margin:.5rem 0}
svg{max-width:100%;height:auto;font-size:11px;font-family:inherit}
svg .axis{stroke:#57606a;stroke-width:1}
svg .grid{stroke:#eaeef2;stroke-width:1}
svg text{fill:#424a53}
svg rect.pass{fill:#8cd9a0}svg rect.fail{fill:#f5a3a8}svg rect.inconclusive{fill:#f2d28a}
svg rect.partial{fill-opacity:.4}
svg rect.lost{fill:#cf222e}svg rect.dup{fill:#fb8f44}svg rect.s1{fill:#54aeff}
svg polyline{fill:none;stroke-width:2}
svg .s1{stroke:#0969da}svg circle.s1{fill:#0969da}
svg .s2{stroke:#8250df}svg circle.s2{fill:#8250df}
svg .s3{stroke:#1b7c83}svg circle.s3{fill:#1b7c83}
svg .s4{stroke:#bf3989;stroke-dasharray:7 3}svg circle.s4{fill:#bf3989}
svg .mark{stroke:#cf222e;stroke-width:1.5;stroke-dasharray:6 4}
svg text.mark{fill:#cf222e;stroke:none}
svg text.empty{fill:#57606a;font-size:14px}
.legend{color:#57606a;font-size:.85rem;display:flex;gap:1rem;flex-wrap:wrap}
.sw{display:inline-block;width:.9rem;height:.6rem;margin-right:.3rem;vertical-align:middle}
.sw.pass{background:#8cd9a0}.sw.fail{background:#f5a3a8}.sw.inconclusive{background:#f2d28a}.sw.lost{background:#cf222e}.sw.dup{background:#fb8f44}
.sw.bar.partial{background:#d0d7de}
.sw.s1{background:#0969da}.sw.bar.s1{background:#54aeff}.sw.s2{background:#8250df}.sw.s3{background:#1b7c83}.sw.s4{background:#bf3989}
.sw.mark{height:0;border-top:2px dashed #cf222e}
details summary{cursor:pointer;color:#0969da}
footer{margin:3rem 0 1rem;color:#57606a;font-size:.8rem}
</style>
</head>
<body>
<h1>{{.Title}}</h1>
{{if .Summary}}<p class="when" id="when">{{.Summary}}</p>{{end}}
<div class="head"><div class="badge {{.VerdictClass}}" id="verdict">{{.Verdict}}</div></div>
{{if .Reason}}<p class="reason" id="reason">{{.Reason}}</p>{{end}}
<div class="tiles" id="tiles">{{range .Tiles}}<div class="tile {{.Class}}"><div class="v">{{.Value}}</div><div class="l">{{.Label}}</div></div>{{end}}</div>

{{if .Setup}}<h2>What was run</h2>
<div class="cols" id="setup">{{range .Setup}}<table class="kv setup"><tbody>
{{range .}}<tr><td>{{.Name}}</td><td>{{.Value}}</td></tr>
{{end}}</tbody></table>{{end}}</div>
{{end}}
{{if .Gates}}<h2>Gates</h2>
<table id="gates">
<thead><tr><th>gate</th><th>threshold</th><th>observed</th><th>result</th><th class="note">checks</th></tr></thead>
<tbody>
{{range .Gates}}<tr><td>{{.Name}}</td><td>{{.Threshold}}</td><td>{{.Observed}}</td><td class="{{.Class}}">{{.Result}}</td><td class="note">{{.Checks}}</td></tr>
{{end}}</tbody>
</table>
{{end}}
{{range .Sections}}{{if or .Charts .Title .Windows}}<section id="{{.ID}}">
{{if .Title}}<h2>{{.Title}}{{if .Verdict}} <span class="badge small {{.VerdictClass}}">{{.Verdict}}</span>{{end}}</h2>
{{if .Reason}}<p class="reason">{{.Reason}}</p>{{end}}
{{if .Tiles}}<div class="tiles">{{range .Tiles}}<div class="tile {{.Class}}"><div class="v">{{.Value}}</div><div class="l">{{.Label}}</div></div>{{end}}</div>{{end}}
{{else}}<h2>Over time</h2>{{end}}
{{if .Note}}<p class="note">{{.Note}}</p>{{end}}
{{range .Charts}}{{template "chart" .}}{{end}}
{{if .Windows}}<details{{if le (len .Windows) 20}} open{{end}}><summary>{{.WindowsLine}}</summary>
<table id="{{.WindowsID}}">
<thead><tr><th>window</th><th>start – end</th><th>expected</th><th>on time</th><th>lost</th><th>duplicates</th><th>p99 ms</th><th>verdict</th><th class="note">reason</th></tr></thead>
<tbody>
{{range .Windows}}<tr><td>{{.Index}}</td><td>{{.Span}}</td><td>{{.Expected}}</td><td>{{.OnTime}}</td><td>{{.Lost}}</td><td>{{.Duplicates}}</td><td>{{.P99}}</td><td class="{{.Class}}">{{.Verdict}}</td><td class="note">{{.Reason}}</td></tr>
{{end}}</tbody>
</table></details>
{{end}}</section>
{{end}}{{end}}
{{if or .Users .Ops}}<h2>Users and operations</h2>
{{range .UserCharts}}{{template "chart" .}}{{end}}
{{if .Users}}<table class="kv" id="users"><tbody>
{{range .Users}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</tbody></table>{{end}}
{{if .Ops}}<table id="operations">
<thead><tr><th>operation</th><th>count</th><th>failures</th><th>fail %</th><th>rate/s</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>max ms</th><th>top failures</th></tr></thead>
<tbody>
{{range .Ops}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</tbody></table>
<p class="legend">Latency of successful operations; poll.200 is how long a long-poll was held until a message came, not a delivery latency.</p>{{end}}
{{end}}
<h2>Counts</h2>
<div class="cols">
<table id="counts">
<thead><tr><th>outcome</th><th>count</th><th>share</th></tr></thead>
<tbody>
{{range .Counts}}<tr><td>{{.Name}}</td><td>{{.Count}}</td><td>{{.Share}}</td></tr>
{{end}}</tbody>
</table>
<div>
<table id="latency">
<thead><tr><th>latency</th><th>count</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>max ms</th></tr></thead>
<tbody>
{{range .Latency}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</tbody>
</table>
{{if .Health}}<h3>Generator health</h3>
<table class="kv" id="health"><tbody>
{{range .Health}}<tr><td>{{.Name}}</td><td>{{.Value}}</td></tr>
{{end}}</tbody></table>{{end}}
</div>
</div>
{{with .Bus}}<h2>Bus health ({{.Source}})</h2>
{{if .Note}}<p class="reason" id="bus-note">{{.Note}}</p>{{end}}
{{if .Rows}}{{with .Chart}}{{template "chart" .}}{{end}}<details><summary>{{len .Rows}} values sampled {{.Samples}} times</summary>
<table id="bus"><thead><tr><th>value</th><th>first</th><th>min</th><th>max</th><th>last</th></tr></thead><tbody>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</tbody></table></details>{{end}}
{{end}}
{{if .Errors}}<h2>Errors seen</h2>
<ul id="errors">{{range .Errors}}<li>{{.}}</li>{{end}}</ul>{{end}}
<footer>{{if .Footer}}{{.Footer}} · {{end}}self-contained report: no scripts, no external resources.</footer>
</body>
</html>
{{define "chart"}}<figure id="{{.ID}}">
<h3>{{.Title}}</h3>
<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {{.W}} {{.H}}" width="{{.W}}" height="{{.H}}" role="img" aria-label="{{.Title}}">
{{range .YTicks}}<line class="grid" x1="{{$.L}}" y1="{{.Y}}" x2="{{$.R}}" y2="{{.Y}}"/><text x="{{.X}}" y="{{.Y}}" dx="-5" dy="4" text-anchor="end">{{.Label}}</text>
{{end}}{{range .Y2Ticks}}<text x="{{.X}}" y="{{.Y}}" dx="5" dy="4" text-anchor="start">{{.Label}}</text>
{{end}}{{if .Y2Ticks}}<line class="axis" x1="{{.R}}" y1="{{.T}}" x2="{{.R}}" y2="{{.B}}"/>
{{end}}{{range .XTicks}}<line class="axis" x1="{{.X}}" y1="{{.Y}}" x2="{{.X}}" y2="{{$.B}}" transform="translate(0,4)"/><text x="{{.X}}" y="{{.Y}}" dy="18" text-anchor="middle">{{.Label}}</text>
{{end}}<line class="axis" x1="{{.L}}" y1="{{.T}}" x2="{{.L}}" y2="{{.B}}"/>
<line class="axis" x1="{{.L}}" y1="{{.B}}" x2="{{.R}}" y2="{{.B}}"/>
{{if .Empty}}<text class="empty" x="{{.L}}" y="{{.EmptyY}}" dx="20">{{.Empty}}</text>
{{end}}{{range .Rects}}<rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Tip}}</title></rect>
{{end}}{{range .Lines}}{{if .Points}}<polyline class="{{.Class}}" points="{{.Points}}"/>
{{end}}{{end}}{{range .Dots}}<circle class="{{.Class}}" cx="{{.X}}" cy="{{.Y}}" r="3"><title>{{.Tip}}</title></circle>
{{end}}{{range .Marks}}<line class="mark" x1="{{.X1}}" y1="{{.Y1}}" x2="{{.X2}}" y2="{{.Y2}}"/><text class="mark" x="{{.LX}}" y="{{.LY}}" text-anchor="{{.Anchor}}">{{.Label}}</text>
{{end}}</svg>
{{if .Legend}}<div class="legend">{{range .Legend}}<span><span class="sw {{.Class}}"></span>{{.Label}}</span>{{end}}</div>{{end}}
{{if .Caption}}<figcaption>{{.Caption}}</figcaption>{{end}}
</figure>
{{end}}`))

// Tick is one sample of a swarm run's progress, taken every live interval:
// the users running and the operations per second since the last sample.
type Tick struct {
	AtS            float64        `json:"at_s"` // seconds since the run began
	Users          map[string]int `json:"users"`
	PublishesPerS  float64        `json:"publishes_per_s"`
	OperationsPerS float64        `json:"operations_per_s"`
	FailuresPerS   float64        `json:"failures_per_s"`
}

// htmlBus is the bus-health part of a page.
type htmlBus struct {
	Source, Note string
	Samples      int
	Rows         [][]string
	Chart        *chart
}

func newHTMLBus(s *busstats.Series) *htmlBus {
	if s == nil {
		return nil
	}
	b := &htmlBus{Source: s.Source, Samples: len(s.Samples)}
	if b.Source == "" {
		b.Source = "not offered"
	}
	switch {
	case s.Error != "" && len(s.Samples) == 0:
		b.Note = s.Error
	case s.DroppedCount() > 0:
		b.Note = "The broker reports " + strconv.FormatUint(s.DroppedCount(), 10) + " messages dropped during the run (" + busstats.DroppedKey + ")."
	case s.Error != "":
		b.Note = s.Error
	}
	if len(s.Samples) == 0 {
		return b
	}
	keys := map[string]bool{}
	for _, smp := range s.Samples {
		for k := range smp.Values {
			keys[k] = true
		}
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	num := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	for _, k := range names {
		first, lo, hi, last, seen := 0.0, math.Inf(1), math.Inf(-1), 0.0, false
		for _, smp := range s.Samples {
			v, ok := smp.Values[k]
			if !ok {
				continue
			}
			if !seen {
				first, seen = v, true
			}
			lo, hi, last = math.Min(lo, v), math.Max(hi, v), v
		}
		b.Rows = append(b.Rows, []string{k, num(first), num(lo), num(hi), num(last)})
	}
	b.Chart = busChart("bus-chart", s)
	return b
}
