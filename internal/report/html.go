package report

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/eventswarm/eventswarm/internal/verify"
)

// WriteHTML writes r as one self-contained HTML page (inline CSS and SVG, no
// JavaScript, no external assets) to path, atomically like WriteJSON ("-" is
// stdout).
func WriteHTML(path, title string, r verify.Result) error {
	var buf bytes.Buffer
	if err := HTML(&buf, title, r); err != nil {
		return err
	}
	return writeFile(path, buf.Bytes())
}

// HTML writes the page WriteHTML writes: the title and verdict badge (with
// its reason), the gates, the counts (the rows of the console Table), the
// latency percentiles and, when r has windows, a windows table and a chart
// of per-window on-time % and p99. Every string from r is escaped by
// html/template: nothing from the bus is trusted.
func HTML(w io.Writer, title string, r verify.Result) error {
	if err := htmlTmpl.Execute(w, newHTMLPage(title, r)); err != nil {
		return fmt.Errorf("report: html: %w", err)
	}
	return nil
}

type htmlPage struct {
	Title        string
	Verdict      string // PASS, FAIL, INCONCLUSIVE
	VerdictClass string // pass, fail, inconclusive (fixed set, never from r)
	Reason       string
	Gates        []htmlGate
	Counts       []htmlCount
	Latency      [][]string
	Windows      []htmlWindow
	WindowsLine  string
	Chart        *htmlChart
}

type htmlGate struct {
	Name, Threshold, Observed, Result, Class string
}

type htmlCount struct{ Name, Count, Share string }

type htmlWindow struct {
	Index, Span, Expected, OnTime, Lost, Duplicates, P99, Verdict, Class, Reason string
}

type htmlChart struct {
	Width, Height int
	Left, Top     int
	PlotW, PlotH  int
	Bars          []htmlBar
	Points        string // p99 polyline, "x,y x,y ..."
	Dots          []htmlDot
	MaxP99        string
	LabelFirst    string
	LabelLast     string
	Right         int
	Bottom        int
}

type htmlBar struct {
	X, Y, W, H string
	Class      string
	Tip        string
}

type htmlDot struct{ X, Y, Tip string }

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

func newHTMLPage(title string, r verify.Result) htmlPage {
	p := htmlPage{
		Title:        title,
		VerdictClass: verdictClass(r.Verdict),
		Reason:       r.Reason,
	}
	p.Verdict = strings.ToUpper(p.VerdictClass)

	for _, g := range r.Gates {
		th, obs := gateValues(g)
		cls := "fail"
		if g.Pass {
			cls = "pass"
		}
		p.Gates = append(p.Gates, htmlGate{Name: g.Name, Threshold: g.Comparison + " " + th,
			Observed: obs, Result: passFail(g.Pass), Class: cls})
	}

	for _, row := range countRows(r.Counts) {
		p.Counts = append(p.Counts, htmlCount{Name: row[0], Count: row[1], Share: row[2]})
	}
	p.Latency = latencyRows(r)

	if len(r.Windows) > 0 {
		var pass, fail, inc int
		for _, win := range r.Windows {
			cls := verdictClass(win.Verdict)
			switch cls {
			case "pass":
				pass++
			case "fail":
				fail++
			default:
				inc++
			}
			p99 := "-"
			if win.Latency.Count > 0 {
				p99 = fmtMS(win.Latency.P99)
			}
			p.Windows = append(p.Windows, htmlWindow{
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
		p.WindowsLine = fmt.Sprintf("%d windows (%d pass, %d fail, %d inconclusive)", len(r.Windows), pass, fail, inc)
		p.Chart = newHTMLChart(r.Windows)
	}
	return p
}

func msDur(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() }

// f1 formats an SVG coordinate.
func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// newHTMLChart lays out one bar per window (height: on-time %, 0 when the
// window expected nothing) and a polyline of p99 scaled to the largest p99
// (points only for windows with latency samples).
func newHTMLChart(ws []verify.Window) *htmlChart {
	ch := &htmlChart{Width: 860, Height: 260, Left: 50, Top: 20, PlotW: 760, PlotH: 200}
	ch.Right = ch.Left + ch.PlotW
	ch.Bottom = ch.Top + ch.PlotH
	n := len(ws)
	slot := float64(ch.PlotW) / float64(n)
	gap := slot * 0.15
	var maxP99 float64
	for _, w := range ws {
		if w.Latency.Count > 0 && w.Latency.P99 > maxP99 {
			maxP99 = w.Latency.P99
		}
	}
	var pts []string
	for i, w := range ws {
		ratio := 0.0
		if w.Counts.Expected > 0 {
			ratio = float64(w.Counts.OnTime) / float64(w.Counts.Expected)
			if ratio > 1 {
				ratio = 1
			}
		}
		h := ratio * float64(ch.PlotH)
		x := float64(ch.Left) + float64(i)*slot
		ch.Bars = append(ch.Bars, htmlBar{
			X: f1(x + gap/2), Y: f1(float64(ch.Bottom) - h), W: f1(slot - gap), H: f1(h),
			Class: verdictClass(w.Verdict),
			Tip:   "window " + strconv.Itoa(w.Index) + ": on time " + pct(w.Counts.OnTime, w.Counts.Expected),
		})
		if w.Latency.Count > 0 && maxP99 > 0 {
			cx := f1(x + slot/2)
			cy := f1(float64(ch.Bottom) - w.Latency.P99/maxP99*float64(ch.PlotH))
			pts = append(pts, cx+","+cy)
			ch.Dots = append(ch.Dots, htmlDot{X: cx, Y: cy,
				Tip: "window " + strconv.Itoa(w.Index) + ": p99 " + fmtMS(w.Latency.P99) + " ms"})
		}
	}
	ch.Points = strings.Join(pts, " ")
	if maxP99 > 0 {
		ch.MaxP99 = fmtMS(maxP99) + " ms"
	}
	ch.LabelFirst = msDur(ws[0].StartMS)
	ch.LabelLast = msDur(ws[n-1].EndMS)
	return ch
}

var htmlTmpl = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:960px;padding:0 1rem;color:#1f2328;background:#fff}
h1{font-size:1.6rem;margin:0 0 1rem}
h2{font-size:1.15rem;margin:2rem 0 .5rem;border-bottom:1px solid #d0d7de;padding-bottom:.25rem}
.badge{display:inline-block;font-size:2rem;font-weight:700;letter-spacing:.05em;padding:.4rem 1.2rem;border-radius:.5rem;color:#fff}
.badge.pass{background:#1a7f37}.badge.fail{background:#cf222e}.badge.inconclusive{background:#9a6700}
.reason{margin:.5rem 0 0;font-size:1.05rem;white-space:pre-wrap;word-break:break-word}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.3rem .7rem;text-align:right}
th{background:#f6f8fa}
td:first-child,th:first-child{text-align:left}
td.pass{color:#1a7f37;font-weight:700}td.fail{color:#cf222e;font-weight:700}td.inconclusive{color:#9a6700;font-weight:700}
td.note{text-align:left;color:#57606a;word-break:break-word}
svg{max-width:100%;height:auto;font-size:12px}
svg .axis{stroke:#57606a;stroke-width:1}
svg rect.pass{fill:#8cd9a0}svg rect.fail{fill:#f5a3a8}svg rect.inconclusive{fill:#f2d28a}
svg .p99{fill:none;stroke:#0969da;stroke-width:2}
svg circle{fill:#0969da}
.legend{color:#57606a;font-size:.9rem}
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<div class="badge {{.VerdictClass}}" id="verdict">{{.Verdict}}</div>
{{if .Reason}}<p class="reason" id="reason">{{.Reason}}</p>{{end}}

{{if .Gates}}<h2>Gates</h2>
<table id="gates">
<thead><tr><th>gate</th><th>threshold</th><th>observed</th><th>result</th></tr></thead>
<tbody>
{{range .Gates}}<tr><td>{{.Name}}</td><td>{{.Threshold}}</td><td>{{.Observed}}</td><td class="{{.Class}}">{{.Result}}</td></tr>
{{end}}</tbody>
</table>
{{end}}
<h2>Counts</h2>
<table id="counts">
<thead><tr><th>outcome</th><th>count</th><th>share</th></tr></thead>
<tbody>
{{range .Counts}}<tr><td>{{.Name}}</td><td>{{.Count}}</td><td>{{.Share}}</td></tr>
{{end}}</tbody>
</table>

<h2>Latency</h2>
<table id="latency">
<thead><tr><th>latency</th><th>count</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>max ms</th></tr></thead>
<tbody>
{{range .Latency}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</tbody>
</table>
{{if .Windows}}
<h2>Windows</h2>
<p class="legend">{{.WindowsLine}}</p>
{{with .Chart}}<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {{.Width}} {{.Height}}" width="{{.Width}}" height="{{.Height}}" role="img" aria-label="per-window on-time percentage and p99 latency">
<line class="axis" x1="{{.Left}}" y1="{{.Top}}" x2="{{.Left}}" y2="{{.Bottom}}"/>
<line class="axis" x1="{{.Left}}" y1="{{.Bottom}}" x2="{{.Right}}" y2="{{.Bottom}}"/>
<text x="{{.Left}}" y="{{.Top}}" dx="-4" dy="4" text-anchor="end">100%</text>
<text x="{{.Left}}" y="{{.Bottom}}" dx="-4" dy="4" text-anchor="end">0%</text>
{{range .Bars}}<rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Tip}}</title></rect>
{{end}}{{if .Points}}<polyline class="p99" points="{{.Points}}"/>
{{range .Dots}}<circle cx="{{.X}}" cy="{{.Y}}" r="3"><title>{{.Tip}}</title></circle>
{{end}}<text x="{{.Right}}" y="{{.Top}}" dx="4" dy="4" text-anchor="start">{{.MaxP99}}</text>
{{end}}<text x="{{.Left}}" y="{{.Bottom}}" dy="16" text-anchor="start">{{.LabelFirst}}</text>
<text x="{{.Right}}" y="{{.Bottom}}" dy="16" text-anchor="end">{{.LabelLast}}</text>
</svg>
<p class="legend">Bars: on-time % per window (colour: window verdict). Line: p99 latency, scaled to the largest window p99{{if .MaxP99}} ({{.MaxP99}}){{end}}.</p>
{{end}}
<table id="windows">
<thead><tr><th>window</th><th>start – end</th><th>expected</th><th>on time</th><th>lost</th><th>duplicates</th><th>p99 ms</th><th>verdict</th><th>reason</th></tr></thead>
<tbody>
{{range .Windows}}<tr><td>{{.Index}}</td><td>{{.Span}}</td><td>{{.Expected}}</td><td>{{.OnTime}}</td><td>{{.Lost}}</td><td>{{.Duplicates}}</td><td>{{.P99}}</td><td class="{{.Class}}">{{.Verdict}}</td><td class="note">{{.Reason}}</td></tr>
{{end}}</tbody>
</table>
{{end}}
</body>
</html>
`))
