package report

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/eventswarm/eventswarm/internal/busstats"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// The report's charts are hand-written SVG: a chart is laid out here in
// pixels and drawn by the page template (which escapes every string). CSS
// classes, not inline colours, say what a mark is (the page's <style>).

type chart struct {
	ID, Title, Caption string
	W, H               int
	L, T, R, B         int // plot area edges
	YTicks             []tick
	Y2Ticks            []tick // a right-hand axis (the distribution's cumulative share)
	XTicks             []tick
	Rects              []rect
	Lines              []line
	Dots               []dot
	Marks              []mark
	Legend             []legend
	YLabel             string
	Empty              string // shown instead of data when there is none
}

type tick struct{ X, Y, Label string }
type rect struct{ X, Y, W, H, Class, Tip string }
type line struct{ Points, Class string }
type dot struct{ X, Y, Class, Tip string }

// mark is a threshold: a dashed line with its label.
type mark struct{ X1, Y1, X2, Y2, LX, LY, Label, Anchor string }

type legend struct{ Class, Label string }

func newChart(id, title string) *chart {
	c := &chart{ID: id, Title: title, W: 900, H: 250, L: 70, T: 16, R: 900 - 110, B: 250 - 34}
	return c
}

// EmptyY is the baseline of the Empty sentence: 40 px into the plot, or
// its middle when the plot is a short strip.
func (c *chart) EmptyY() int { return c.T + min(40, (c.B-c.T)/2+5) }

func (c *chart) plotW() float64 { return float64(c.R - c.L) }
func (c *chart) plotH() float64 { return float64(c.B - c.T) }

// linear maps [lo, hi] to the plot's height (bottom to top).
func (c *chart) linY(v, lo, hi float64) float64 {
	if hi <= lo {
		return float64(c.B)
	}
	v = math.Max(lo, math.Min(hi, v))
	return float64(c.B) - (v-lo)/(hi-lo)*c.plotH()
}

// logY maps [lo, hi] (both > 0) logarithmically to the plot's height.
func (c *chart) logY(v, lo, hi float64) float64 {
	v = math.Max(lo, math.Min(hi, v))
	return float64(c.B) - (math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*c.plotH()
}

// hmark is a horizontal threshold at pixel y with a label at the right.
func (c *chart) hmark(y float64, label string) {
	c.Marks = append(c.Marks, mark{X1: strconv.Itoa(c.L), Y1: f1(y), X2: strconv.Itoa(c.R), Y2: f1(y),
		LX: strconv.Itoa(c.R + 4), LY: f1(y + 4), Label: label, Anchor: "start"})
}

// vmark is a vertical threshold at pixel x with its label above the plot
// (each further one a line higher, so labels of close marks do not overlap
// each other, and none overlaps the data). The chart's top margin must hold
// them: 14 px a mark.
func (c *chart) vmark(x float64, label string) {
	c.Marks = append(c.Marks, mark{X1: f1(x), Y1: strconv.Itoa(c.T - 4 - 14*len(c.Marks)), X2: f1(x), Y2: strconv.Itoa(c.B),
		LX: f1(x + 3), LY: strconv.Itoa(c.T - 6 - 14*len(c.Marks)), Label: label, Anchor: "start"})
}

// niceMax rounds v up to 1, 2 or 5 × a power of ten (at least 1).
func niceMax(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// linTicks labels 5 evenly spaced values of [lo, hi].
func (c *chart) linTicks(lo, hi float64, format func(float64) string) {
	for i := 0; i <= 4; i++ {
		v := lo + (hi-lo)*float64(i)/4
		c.YTicks = append(c.YTicks, tick{X: strconv.Itoa(c.L), Y: f1(c.linY(v, lo, hi)), Label: format(v)})
	}
}

// msLabel formats milliseconds for an axis: 0.1ms, 25ms, 2s, 1.5min.
func msLabel(ms float64) string {
	d := time.Duration(ms * float64(time.Millisecond))
	switch {
	case ms == 0:
		return "0"
	case ms < 1:
		return strconv.FormatFloat(ms*1000, 'g', 3, 64) + "µs"
	case ms < 1000:
		return strconv.FormatFloat(ms, 'g', 3, 64) + "ms"
	case ms < 1000*1000:
		return strconv.FormatFloat(ms/1000, 'g', 3, 64) + "s"
	}
	return strconv.FormatFloat(d.Minutes(), 'g', 3, 64) + "min"
}

func countLabel(v float64) string {
	if v >= 10000 {
		return strconv.FormatFloat(v/1000, 'g', 3, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// windowAxis places windows in equal slots and labels up to 8 of their start
// times (offsets from the run's timeline zero).
type windowAxis struct {
	c    *chart
	ws   []verify.Window
	slot float64
}

func newWindowAxis(c *chart, ws []verify.Window) windowAxis {
	a := windowAxis{c: c, ws: ws, slot: c.plotW() / float64(max(len(ws), 1))}
	step := max(1, (len(ws)+7)/8)
	for i := 0; i < len(ws); i += step {
		c.XTicks = append(c.XTicks, tick{X: f1(a.left(i)), Y: strconv.Itoa(c.B), Label: msDur(ws[i].StartMS)})
	}
	if n := len(ws); n > 0 {
		c.XTicks = append(c.XTicks, tick{X: strconv.Itoa(c.R), Y: strconv.Itoa(c.B), Label: msDur(ws[n-1].EndMS)})
	}
	return a
}

func (a windowAxis) left(i int) float64   { return float64(a.c.L) + float64(i)*a.slot }
func (a windowAxis) center(i int) float64 { return a.left(i) + a.slot/2 }

func windowTip(w verify.Window) string {
	return "window " + strconv.Itoa(w.Index) + " (" + msDur(w.StartMS) + " – " + msDur(w.EndMS) + ")"
}

// minBarH is the least height of a bar with a non-zero count, so a bin or
// window of a few among thousands (the tail a review is looking for) still
// shows.
const minBarH = 2.0

// barTop is the top of a bar from base up to y, at least minBarH tall.
func barTop(y, base float64) float64 { return math.Min(y, base-minBarH) }

// partialBelow is the expected count under which a window is drawn as
// partial: a quarter of the median over windows that expected anything (0,
// none partial, with fewer than 3 such windows: no median to speak of).
func partialBelow(ws []verify.Window) uint64 {
	var ns []uint64
	for _, w := range ws {
		if w.Counts.Expected > 0 {
			ns = append(ns, w.Counts.Expected)
		}
	}
	if len(ns) < 3 {
		return 0
	}
	slices.Sort(ns)
	return ns[len(ns)/2] / 4
}

func ratio(num, den uint64) float64 {
	if den == 0 {
		return 0
	}
	return math.Min(1, float64(num)/float64(den))
}

// Bounds are the thresholds drawn on the charts.
type chartBounds struct {
	Within             float64 // on-time target (0: not drawn)
	Latency, LostAfter time.Duration
	MaxLost, MaxDups   float64
}

// onTimeChart: one bar per window, its on-time share, coloured by the
// window's verdict, with the on-time target drawn. The axis starts below
// both the target and the lowest window, so small differences show.
func onTimeChart(id string, ws []verify.Window, b chartBounds) *chart {
	c := newChart(id, "On time per window")
	lo := 1.0
	for _, w := range ws {
		if w.Counts.Expected > 0 {
			lo = math.Min(lo, ratio(w.Counts.OnTime, w.Counts.Expected))
		}
	}
	if b.Within > 0 {
		lo = math.Min(lo, b.Within)
	}
	// Four equal steps of a round size down from 100%, reaching below lo.
	need := math.Max(0, lo-0.02)
	step := 0.25
	for _, s := range []float64{0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25} {
		if 1-4*s <= need {
			step = s
			break
		}
	}
	lo = math.Max(0, 1-4*step)
	hi := 1.0
	c.linTicks(lo, hi, func(v float64) string { return strconv.FormatFloat(v*100, 'f', -1, 64) + "%" })
	a := newWindowAxis(c, ws)
	gap := a.slot * 0.15
	small := partialBelow(ws)
	anyPartial := false
	for i, w := range ws {
		if w.Counts.Expected == 0 {
			continue
		}
		r := ratio(w.Counts.OnTime, w.Counts.Expected)
		y := c.linY(r, lo, hi)
		class, note := "bar "+verdictClass(w.Verdict), ""
		if w.Counts.Expected < small {
			// A window that warm-up or the end of publishing cut short holds
			// a few messages: one slow one is a tall drop. Drawn faint, and
			// said so, so that it does not read as the run's worst moment.
			class += " partial"
			note = " (a partial window: fewer than a quarter of the median window's expected)"
			anyPartial = true
		}
		c.Rects = append(c.Rects, rect{X: f1(a.left(i) + gap/2), Y: f1(y), W: f1(a.slot - gap), H: f1(float64(c.B) - y),
			Class: class, Tip: windowTip(w) + ": " + pct(w.Counts.OnTime, w.Counts.Expected) + " on time, " + strconv.FormatUint(w.Counts.Expected, 10) + " expected, " + string(w.Verdict) + reasonTip(w.Reason) + note})
	}
	if b.Within > 0 {
		c.hmark(c.linY(b.Within, lo, hi), "target "+fmtPct(b.Within))
	}
	c.Legend = []legend{{"bar pass", "window passed"}, {"bar fail", "failed"}, {"bar inconclusive", "inconclusive"}, {"mark", "on-time target (--within)"}}
	if anyPartial {
		c.Legend = append(c.Legend, legend{"bar partial", "partial window (few expected)"})
	}
	c.Caption = "Share of each window's expected deliveries that arrived within the on-time bound (windows by intended send time). The axis starts at " + fmtPct(lo) + "."
	return c
}

func reasonTip(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}

// latencyChart: p50, p95 and p99 per window on a log axis, with the on-time
// (and, when reached, the lost) bound drawn.
func latencyChart(id string, ws []verify.Window, b chartBounds) *chart {
	c := newChart(id, "Delivery latency per window")
	latMS, lostMS := float64(b.Latency)/1e6, float64(b.LostAfter)/1e6
	lo, hi := math.Inf(1), 0.0
	for _, w := range ws {
		if w.Latency.Count == 0 {
			continue
		}
		lo = math.Min(lo, w.Latency.P50)
		hi = math.Max(hi, w.Latency.P99)
	}
	if hi == 0 {
		c.Empty = "no deliveries in any window"
		return c
	}
	top := math.Max(hi, latMS)
	if hi > latMS && lostMS > 0 {
		top = math.Max(top, lostMS)
	}
	lo = math.Pow(10, math.Floor(math.Log10(math.Max(lo/2, 0.001))))
	top = math.Pow(10, math.Ceil(math.Log10(top*1.05)))
	for v := lo; v <= top*1.0001; v *= 10 {
		c.YTicks = append(c.YTicks, tick{X: strconv.Itoa(c.L), Y: f1(c.logY(v, lo, top)), Label: msLabel(v)})
	}
	a := newWindowAxis(c, ws)
	series := []struct {
		class string
		get   func(verify.Latency) float64
		name  string
	}{{"s1", func(l verify.Latency) float64 { return l.P50 }, "p50"}, {"s2", func(l verify.Latency) float64 { return l.P95 }, "p95"}, {"s3", func(l verify.Latency) float64 { return l.P99 }, "p99"}}
	for _, s := range series {
		var pts []string
		for i, w := range ws {
			if w.Latency.Count == 0 {
				continue
			}
			x, y := f1(a.center(i)), f1(c.logY(math.Max(s.get(w.Latency), lo), lo, top))
			pts = append(pts, x+","+y)
			c.Dots = append(c.Dots, dot{X: x, Y: y, Class: s.class, Tip: windowTip(w) + ": " + s.name + " " + fmtMS(s.get(w.Latency)) + " ms"})
		}
		c.Lines = append(c.Lines, line{Points: joinPts(pts), Class: s.class})
		c.Legend = append(c.Legend, legend{"line " + s.class, s.name})
	}
	if latMS > 0 && latMS <= top {
		c.hmark(c.logY(latMS, lo, top), "on time ≤ "+msLabel(latMS))
	}
	if lostMS > 0 && lostMS <= top && hi > latMS {
		c.hmark(c.logY(lostMS, lo, top), "lost > "+msLabel(lostMS))
	}
	c.Legend = append(c.Legend, legend{"mark", "bounds (--latency, --lost-after)"})
	c.Caption = "Latency of each window's delivered messages (first arrival − intended send time), logarithmic axis."
	return c
}

// rateChart: final expected deliveries and publishes per second per window.
func rateChart(id string, ws []verify.Window) *chart {
	c := newChart(id, "Deliveries and publishes per second")
	var hi float64
	rates := make([][2]float64, len(ws))
	for i, w := range ws {
		secs := float64(w.EndMS-w.StartMS) / 1000
		if secs <= 0 {
			continue
		}
		rates[i] = [2]float64{float64(w.Counts.Expected) / secs, float64(w.Counts.PublishAttempted) / secs}
		hi = math.Max(hi, math.Max(rates[i][0], rates[i][1]))
	}
	hi = 4 * niceMax(hi*1.05/4)
	c.linTicks(0, hi, countLabel)
	a := newWindowAxis(c, ws)
	for k, s := range []struct{ class, name string }{{"s1", "expected deliveries/s"}, {"s4", "publishes/s"}} {
		var pts []string
		for i, w := range ws {
			x, y := f1(a.center(i)), f1(c.linY(rates[i][k], 0, hi))
			pts = append(pts, x+","+y)
			c.Dots = append(c.Dots, dot{X: x, Y: y, Class: s.class, Tip: windowTip(w) + ": " + strconv.FormatFloat(rates[i][k], 'f', 1, 64) + " " + s.name})
		}
		c.Lines = append(c.Lines, line{Points: joinPts(pts), Class: s.class})
		c.Legend = append(c.Legend, legend{"line " + s.class, s.name})
	}
	c.Caption = "Per window: final expected deliveries (subscriber × message) and measured publishes, per second of the window. The first and last windows are partial when warm-up or the end of publishing falls inside them."
	return c
}

// lossChart: lost and duplicate deliveries per window, side by side.
func lossChart(id string, ws []verify.Window, b chartBounds) *chart {
	c := newChart(id, "Lost and duplicate deliveries per window")
	var hi float64
	for _, w := range ws {
		hi = math.Max(hi, math.Max(float64(w.Counts.Lost), float64(w.Counts.Duplicates)))
	}
	if hi == 0 {
		// Nothing to draw: a strip with the time axis and the sentence.
		c.H, c.B = 90, 90-34
		newWindowAxis(c, ws)
		c.Empty = "no lost and no duplicate deliveries in any window"
		c.Caption = "Gates: at most " + countLabel(b.MaxLost) + " lost and " + countLabel(b.MaxDups) + " duplicates in the run; a window with more fails."
		return c
	}
	hi = 4 * niceMax(math.Max(hi, math.Max(b.MaxLost, b.MaxDups))*1.05/4)
	c.linTicks(0, hi, countLabel)
	a := newWindowAxis(c, ws)
	bw := a.slot * 0.35
	for i, w := range ws {
		for k, v := range []struct {
			n     uint64
			class string
			name  string
		}{{w.Counts.Lost, "bar lost", "lost"}, {w.Counts.Duplicates, "bar dup", "duplicates"}} {
			if v.n == 0 {
				continue
			}
			y := barTop(c.linY(float64(v.n), 0, hi), float64(c.B))
			c.Rects = append(c.Rects, rect{X: f1(a.left(i) + a.slot*0.15 + float64(k)*bw), Y: f1(y), W: f1(bw), H: f1(float64(c.B) - y),
				Class: v.class, Tip: windowTip(w) + ": " + strconv.FormatUint(v.n, 10) + " " + v.name})
		}
	}
	if b.MaxLost > 0 {
		c.hmark(c.linY(b.MaxLost, 0, hi), "max lost "+countLabel(b.MaxLost))
	}
	if b.MaxDups > 0 && b.MaxDups != b.MaxLost {
		c.hmark(c.linY(b.MaxDups, 0, hi), "max dups "+countLabel(b.MaxDups))
	}
	c.Legend = []legend{{"bar lost", "lost"}, {"bar dup", "duplicates"}}
	c.Caption = "Gates: at most " + countLabel(b.MaxLost) + " lost and " + countLabel(b.MaxDups) + " duplicates in the run; a window with more fails."
	return c
}

// distributionChart: the delivery-latency histogram (and the late one) in
// logarithmic bins, 10 a decade, with the cumulative share as a line and the
// on-time and lost bounds drawn.
func distributionChart(id string, lat, late *hdrhistogram.Snapshot, b chartBounds, lost uint64) *chart {
	c := newChart(id, "Latency distribution")
	c.H, c.T, c.B = 290, 44, 290-34 // room above the plot for the bounds' labels
	var bars []hdrhistogram.Bar
	var lateBars []hdrhistogram.Bar
	var minV, maxV int64 = math.MaxInt64, 0
	var total int64
	collect := func(s *hdrhistogram.Snapshot, into *[]hdrhistogram.Bar) {
		if s == nil {
			return
		}
		h := hdrhistogram.Import(s)
		if h.TotalCount() == 0 {
			return
		}
		for _, br := range h.Distribution() {
			if br.Count == 0 {
				continue
			}
			*into = append(*into, br)
			minV, maxV = min(minV, max(br.From, 1)), max(maxV, br.To)
			total += br.Count
		}
	}
	collect(lat, &bars)
	collect(late, &lateBars)
	if total == 0 {
		c.Empty = "no deliveries"
		return c
	}
	latUS, lostUS := float64(b.Latency)/1e3, float64(b.LostAfter)/1e3
	lo := math.Pow(10, math.Floor(math.Log10(float64(minV))))
	topV := float64(maxV)
	if latUS > 0 {
		topV = math.Max(topV, latUS)
	}
	if len(lateBars) > 0 && lostUS > 0 {
		topV = math.Max(topV, lostUS)
	}
	hi := math.Pow(10, math.Ceil(math.Log10(topV*1.05)))
	const perDecade = 10
	nb := int(math.Round(math.Log10(hi/lo) * perDecade))
	binOf := func(v int64) int {
		k := int(math.Floor(math.Log10(math.Max(float64(v), lo)/lo) * perDecade))
		return max(0, min(nb-1, k))
	}
	counts, lateCounts := make([]int64, nb), make([]int64, nb)
	for _, br := range bars {
		counts[binOf((br.From+br.To)/2)] += br.Count
	}
	for _, br := range lateBars {
		lateCounts[binOf((br.From+br.To)/2)] += br.Count
	}
	var peak int64
	for i := range counts {
		peak = max(peak, counts[i]+lateCounts[i])
	}
	yHi := 4 * niceMax(float64(peak)*1.05/4)
	c.linTicks(0, yHi, countLabel)
	xAt := func(us float64) float64 {
		return float64(c.L) + (math.Log10(us)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*c.plotW()
	}
	for v := lo; v <= hi*1.0001; v *= 10 {
		c.XTicks = append(c.XTicks, tick{X: f1(xAt(v)), Y: strconv.Itoa(c.B), Label: msLabel(v / 1000)})
	}
	bw := c.plotW() / float64(nb)
	var cum int64
	var pts []string
	for i := 0; i < nb; i++ {
		from := lo * math.Pow(10, float64(i)/perDecade)
		to := lo * math.Pow(10, float64(i+1)/perDecade)
		x := float64(c.L) + float64(i)*bw
		span := msLabel(from/1000) + " – " + msLabel(to/1000)
		if counts[i] > 0 {
			y := barTop(c.linY(float64(counts[i]), 0, yHi), float64(c.B))
			c.Rects = append(c.Rects, rect{X: f1(x + 0.5), Y: f1(y), W: f1(math.Max(bw-1, 0.5)), H: f1(float64(c.B) - y),
				Class: "bar s1", Tip: span + ": " + strconv.FormatInt(counts[i], 10) + " deliveries"})
		}
		if lateCounts[i] > 0 {
			base := float64(c.B)
			if counts[i] > 0 {
				base = barTop(c.linY(float64(counts[i]), 0, yHi), base)
			}
			y := barTop(c.linY(float64(counts[i]+lateCounts[i]), 0, yHi), base)
			c.Rects = append(c.Rects, rect{X: f1(x + 0.5), Y: f1(y), W: f1(math.Max(bw-1, 0.5)), H: f1(base - y),
				Class: "bar lost", Tip: span + ": " + strconv.FormatInt(lateCounts[i], 10) + " late (lost)"})
		}
		cum += counts[i] + lateCounts[i]
		if counts[i]+lateCounts[i] > 0 {
			pts = append(pts, f1(x+bw)+","+f1(c.linY(float64(cum)/float64(total), 0, 1)))
		}
	}
	c.Lines = append(c.Lines, line{Points: joinPts(pts), Class: "s3"})
	for i := 0; i <= 4; i++ {
		v := float64(i) / 4
		c.Y2Ticks = append(c.Y2Ticks, tick{X: strconv.Itoa(c.R), Y: f1(c.linY(v, 0, 1)), Label: strconv.Itoa(25*i) + "%"})
	}
	if latUS > 0 {
		c.vmark(xAt(latUS), "on time ≤ "+msLabel(latUS/1000))
	}
	if lostUS > 0 && lostUS <= hi {
		c.vmark(xAt(lostUS), "lost > "+msLabel(lostUS/1000))
	}
	c.YLabel = "deliveries"
	c.Legend = []legend{{"bar s1", "delivered"}, {"bar lost", "late (arrived after the lost bound: lost)"}, {"line s3", "cumulative share (right axis)"}, {"mark", "bounds"}}
	c.Caption = "Every first arrival of an expected message, in logarithmic bins (10 a decade)."
	if lost > 0 {
		c.Caption += " " + strconv.FormatUint(lost, 10) + " lost deliveries are not in it (those that never arrived have no latency)."
	}
	return c
}

func joinPts(pts []string) string {
	s := ""
	for i, p := range pts {
		if i > 0 {
			s += " "
		}
		s += p
	}
	return s
}

// timeSteps are the round steps, in seconds, of a time axis: 30s and 1m,
// not 25s and 1m15s.
var timeSteps = []float64{1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400}

// timeStep is the least of timeSteps at least s (s when past them all).
func timeStep(s float64) float64 {
	for _, t := range timeSteps {
		if t >= s {
			return t
		}
	}
	return niceMax(s)
}

// tickAxis places samples by time on the x axis.
func tickAxis(c *chart, ts []Tick) func(float64) float64 {
	end := ts[len(ts)-1].AtS
	if end <= 0 {
		end = 1
	}
	step := timeStep(end / 6)
	for v := 0.0; v <= end+1e-9; v += step {
		c.XTicks = append(c.XTicks, tick{X: f1(float64(c.L) + v/end*c.plotW()), Y: strconv.Itoa(c.B), Label: durLabel(time.Duration(v * float64(time.Second)))})
	}
	return func(at float64) float64 { return float64(c.L) + at/end*c.plotW() }
}

// usersChart: running users by kind (and in all) over the run.
func usersChart(id string, ts []Tick, target int) *chart {
	c := newChart(id, "Users over time")
	kinds := map[string]bool{}
	var hi float64 = float64(target)
	for _, t := range ts {
		n := 0
		for k, v := range t.Users {
			kinds[k] = true
			n += v
		}
		hi = math.Max(hi, float64(n))
	}
	hi = 4 * niceMax(hi*1.05/4)
	c.linTicks(0, hi, countLabel)
	x := tickAxis(c, ts)
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	for i := 1; i < len(names); i++ {
		for j := i; j > 0 && names[j] < names[j-1]; j-- {
			names[j], names[j-1] = names[j-1], names[j]
		}
	}
	classes := []string{"s1", "s2", "s4"}
	series := append([]string{"all"}, names...)
	for i, name := range series {
		cls := "s3"
		if i > 0 {
			cls = classes[(i-1)%len(classes)]
		}
		var pts []string
		if ts[0].AtS > 0 {
			// Every run starts with no users; the first sample is a tick later.
			pts = append(pts, f1(x(0))+","+f1(c.linY(0, 0, hi)))
		}
		for _, t := range ts {
			n := t.Users[name]
			if name == "all" {
				n = 0
				for _, v := range t.Users {
					n += v
				}
			}
			pts = append(pts, f1(x(t.AtS))+","+f1(c.linY(float64(n), 0, hi)))
		}
		c.Lines = append(c.Lines, line{Points: joinPts(pts), Class: cls})
		c.Legend = append(c.Legend, legend{"line " + cls, name})
	}
	if target > 0 {
		c.hmark(c.linY(float64(target), 0, hi), "target "+strconv.Itoa(target))
		c.Legend = append(c.Legend, legend{"mark", "target users"})
	}
	c.Caption = "Users running at each live tick, by kind (none at the start)."
	return c
}

// opsChart: publishes and all operations per second, failures per second as bars.
func opsChart(id string, ts []Tick) *chart {
	c := newChart(id, "Operations per second")
	var hi float64
	for _, t := range ts {
		hi = math.Max(hi, math.Max(t.OperationsPerS, t.PublishesPerS))
	}
	hi = 4 * niceMax(hi*1.05/4)
	c.linTicks(0, hi, countLabel)
	x := tickAxis(c, ts)
	for i, t := range ts {
		if t.FailuresPerS <= 0 {
			continue
		}
		w := 4.0
		if i > 0 {
			w = math.Max(2, (x(t.AtS)-x(ts[i-1].AtS))*0.6)
		}
		y := c.linY(t.FailuresPerS, 0, hi)
		c.Rects = append(c.Rects, rect{X: f1(x(t.AtS) - w), Y: f1(y), W: f1(w), H: f1(float64(c.B) - y), Class: "bar lost",
			Tip: strconv.FormatFloat(t.AtS, 'f', 0, 64) + "s: " + strconv.FormatFloat(t.FailuresPerS, 'f', 2, 64) + " failed operations/s"})
	}
	for _, s := range []struct {
		class, name string
		get         func(Tick) float64
	}{{"s1", "operations/s", func(t Tick) float64 { return t.OperationsPerS }}, {"s4", "publishes/s (events and control)", func(t Tick) float64 { return t.PublishesPerS }}} {
		var pts []string
		for _, t := range ts {
			pts = append(pts, f1(x(t.AtS))+","+f1(c.linY(s.get(t), 0, hi)))
		}
		c.Lines = append(c.Lines, line{Points: joinPts(pts), Class: s.class})
		c.Legend = append(c.Legend, legend{"line " + s.class, s.name})
	}
	c.Legend = append(c.Legend, legend{"bar lost", "failed operations/s"})
	c.Caption = "Every operation (connect, subscribe, ready, publish, control, polls) per second between live ticks; red bars: failures."
	return c
}

// busKeys are the bus values charted, when present: load and clients
// (Mosquitto), messages and subscribers (Nchan), clients, in flight and
// requests (the embedded bus).
var busKeys = []string{
	"$SYS/broker/load/messages/received/1min", "$SYS/broker/load/messages/sent/1min",
	"$SYS/broker/load/publish/dropped/1min", "$SYS/broker/clients/connected",
	"subscribers", "channels", "stored messages",
	"clients_connected", "inflight", "subscriptions", "messages_dropped",
	"http_publishes", "http_polls", "injected_dropped",
}

// busChart: up to four of busKeys over the run, each scaled to its own
// maximum (the values have different units); the legend gives each maximum.
func busChart(id string, s *busstats.Series) *chart {
	c := newChart(id, "Bus health over the run")
	var keys []string
	for _, k := range busKeys {
		// A value that stays 0 (the MQTT clients of a long-poll run) would be
		// a flat line on the axis: only values that moved are drawn.
		for _, smp := range s.Samples {
			if v, ok := smp.Values[k]; ok && v != 0 {
				keys = append(keys, k)
				break
			}
		}
		if len(keys) == 4 {
			break
		}
	}
	if len(keys) == 0 || len(s.Samples) < 2 {
		return nil
	}
	end := float64(s.Samples[len(s.Samples)-1].AtMS) / 1000
	if end <= 0 {
		end = 1
	}
	step := timeStep(end / 6)
	for v := 0.0; v <= end+1e-9; v += step {
		c.XTicks = append(c.XTicks, tick{X: f1(float64(c.L) + v/end*c.plotW()), Y: strconv.Itoa(c.B), Label: durLabel(time.Duration(v * float64(time.Second)))})
	}
	c.linTicks(0, 1, func(v float64) string { return strconv.FormatFloat(v*100, 'f', 0, 64) + "%" })
	classes := []string{"s1", "s2", "s3", "s4"}
	for i, k := range keys {
		var hi float64
		for _, smp := range s.Samples {
			hi = math.Max(hi, smp.Values[k])
		}
		var pts []string
		for _, smp := range s.Samples {
			v, ok := smp.Values[k]
			if !ok {
				continue
			}
			y := float64(c.B)
			if hi > 0 {
				y = c.linY(v/hi, 0, 1)
			}
			pts = append(pts, f1(float64(c.L)+float64(smp.AtMS)/1000/end*c.plotW())+","+f1(y))
		}
		c.Lines = append(c.Lines, line{Points: joinPts(pts), Class: classes[i]})
		c.Legend = append(c.Legend, legend{"line " + classes[i], strings.TrimPrefix(k, "$SYS/broker/") + " (max " + strconv.FormatFloat(hi, 'g', 4, 64) + ")"})
	}
	c.Caption = "The bus's own numbers, sampled every few seconds; each line is scaled to its own maximum (values that stayed 0 are in the table only)."
	return c
}
