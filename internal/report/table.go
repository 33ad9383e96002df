// Package report renders results: console tables (tablewriter), live lines,
// JSON result files, JUnit XML, and the merge of the result files of a
// distributed run's shards.
package report

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"

	"github.com/eventswarm/eventswarm/internal/stats"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// newTable returns an ASCII table (safe in CI logs) whose header is printed
// as given and whose columns after the first are right-aligned.
func newTable(w io.Writer, header ...any) *tablewriter.Table {
	align := make([]tw.Align, len(header))
	for i := range align {
		align[i] = tw.AlignRight
	}
	if len(align) > 0 {
		align[0] = tw.AlignLeft
	}
	t := tablewriter.NewTable(w,
		tablewriter.WithSymbols(tw.NewSymbols(tw.StyleASCII)),
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithHeaderAlignment(tw.AlignCenter),
		tablewriter.WithRowAlignmentConfig(tw.CellAlignment{Global: tw.AlignRight, PerColumn: align}),
	)
	t.Header(header...)
	return t
}

// render appends rows to t and renders it, returning the first error.
func render(t *tablewriter.Table, rows [][]string) error {
	for _, r := range rows {
		if err := t.Append(r); err != nil {
			return fmt.Errorf("report: table: %w", err)
		}
	}
	if err := t.Render(); err != nil {
		return fmt.Errorf("report: table: %w", err)
	}
	return nil
}

// pct formats num/den as a percentage with two decimals; "-" when den is 0.
func pct(num, den uint64) string {
	if den == 0 {
		return "-"
	}
	return fmtPct(float64(num) / float64(den))
}

func fmtPct(ratio float64) string { return strconv.FormatFloat(ratio*100, 'f', 2, 64) + "%" }

func u(n uint64) string { return strconv.FormatUint(n, 10) }

// fmtMS formats milliseconds: two decimals below 100 ms, one below 10 s, none above.
func fmtMS(v float64) string {
	switch {
	case v < 100:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v < 10000:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// countRows are the rows of the counts table (outcome, count, share), shared
// by the console table and the HTML page. The headline outcomes are always
// there; a breakdown of one of them (lost while connected, duplicates near a
// reconnect, …) and the counts that never fail a gate (pending, recovered,
// extra, foreign, retained) only when they are not 0 (the JSON has every
// count): a clean run's table is 14 rows, not 25.
func countRows(c verify.Counts) [][]string {
	e := c.Expected
	var rows [][]string
	row := func(name string, n uint64, share string) { rows = append(rows, []string{name, u(n), share}) }
	detail := func(name string, n uint64, share string) {
		if n > 0 {
			row(name, n, share)
		}
	}
	row("expected", e, "")
	row("on time", c.OnTime, pct(c.OnTime, e))
	row("slow", c.Slow, pct(c.Slow, e))
	row("lost", c.Lost, pct(c.Lost, e))
	detail("lost while connected", c.LostWhileConnected, pct(c.LostWhileConnected, e))
	detail("lost during disconnect", c.LostDuringDisconnect, pct(c.LostDuringDisconnect, e))
	row("late (after lost bound)", c.Late, pct(c.Late, e))
	row("duplicates", c.Duplicates, pct(c.Duplicates, e))
	detail("duplicates redelivered", c.DupRedelivered, pct(c.DupRedelivered, e))
	detail("duplicates other", c.DupOther, pct(c.DupOther, e))
	detail("duplicates near reconnect", c.DupNearReconnect, pct(c.DupNearReconnect, e))
	detail("duplicates steady", c.DupSteady, pct(c.DupSteady, e))
	row("out of order", c.OutOfOrder, pct(c.OutOfOrder, e))
	detail("pending", c.Pending, pct(c.Pending, e))
	detail("recovered (unknown publish)", c.Recovered, "")
	detail("extra (not expected)", c.Extra, "")
	detail("foreign (other runs)", c.Foreign, "")
	detail("retained (ignored)", c.Retained, "")
	row("unexpected", c.Unexpected, "")
	row("corrupt", c.Corrupt, "")
	row("publish attempted", c.PublishAttempted, "")
	row("publish ok", c.PublishOK, pct(c.PublishOK, c.PublishAttempted))
	row("publish failed", c.PublishFailed, pct(c.PublishFailed, c.PublishAttempted))
	row("publish unknown", c.PublishUnknown, pct(c.PublishUnknown, c.PublishAttempted))
	row("covered (some subscriber expected it)", c.Covered, pct(c.Covered, c.PublishAttempted))
	return rows
}

// latencyRows are the delivered and late latency rows (name, count, p50, p95,
// p99, max in ms), shared by the console table and the HTML page.
func latencyRows(r verify.Result) [][]string {
	lat := func(name string, l verify.Latency) []string {
		if l.Count == 0 {
			return []string{name, "0", "-", "-", "-", "-"}
		}
		return []string{name, u(l.Count), fmtMS(l.P50), fmtMS(l.P95), fmtMS(l.P99), fmtMS(l.Max)}
	}
	return [][]string{lat("delivered", r.LatencyMS), lat("late", r.LateMS)}
}

// Table writes the final console output of a probe or swarm run: a counts
// table, a latency table, a gates table and one verdict line.
func Table(w io.Writer, r verify.Result) error {
	rows := countRows(r.Counts)
	if err := render(newTable(w, "outcome", "count", "share"), rows); err != nil {
		return err
	}

	if err := render(newTable(w, "latency", "count", "p50 ms", "p95 ms", "p99 ms", "max ms"), latencyRows(r)); err != nil {
		return err
	}

	if len(r.Gates) > 0 {
		rows = rows[:0]
		for _, g := range r.Gates {
			th, obs := gateValues(g)
			rows = append(rows, []string{g.Name, g.Comparison + " " + th, obs, passFail(g.Pass)})
		}
		if err := render(newTable(w, "gate", "threshold", "observed", "result"), rows); err != nil {
			return err
		}
	}
	if len(r.Windows) > 0 {
		if _, err := fmt.Fprintf(w, "windows: %s\n", WindowsSummary(r.Windows)); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	if _, err := fmt.Fprintln(w, VerdictLine(r)); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// VerdictLine is the last line of Table: "verdict: PASS", or the verdict with
// its reason, e.g. "verdict: FAIL (gates failed: lost)".
func VerdictLine(r verify.Result) string {
	v := strings.ToUpper(string(r.Verdict))
	if v == "" {
		v = strings.ToUpper(string(verify.Inconclusive))
	}
	if r.Reason != "" {
		return "verdict: " + v + " (" + r.Reason + ")"
	}
	return "verdict: " + v
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// ratioGates are the gates whose threshold and observed value are ratios.
var ratioGates = map[string]bool{"latency": true, "publish_availability": true, "coverage": true}

// gateValues formats a gate's threshold and observed value: percentages for
// ratio gates (with more decimals when two decimals would hide the
// difference), integers for count gates.
func gateValues(g verify.Gate) (threshold, observed string) {
	if ratioGates[g.Name] {
		th, obs := fmtPct(g.Threshold), fmtPct(g.Observed)
		if th == obs && g.Threshold != g.Observed {
			th = strconv.FormatFloat(g.Threshold*100, 'f', 4, 64) + "%"
			obs = strconv.FormatFloat(g.Observed*100, 'f', 4, 64) + "%"
		}
		return th, obs
	}
	return fmtNum(g.Threshold), fmtNum(g.Observed)
}

func fmtNum(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', 6, 64)
}

// Live turns a run's successive verifier snapshots into live lines. What is
// known from the first tick comes first: the phase, time left, what was sent
// and received so far with the interval's rates, and the provisional on-time
// share of what has arrived (a message is final only LostAfter+Grace after
// its intended send time, so the final counts stay empty for that long).
// The zero value is ready; a Live is not safe for concurrent use.
type Live struct {
	at       time.Duration
	sent     uint64
	received uint64
}

// Line is one line, e.g.
//
//	[1m5s publishing, 55s left] sent 500/500 (10.0/s) received 998 (20.0/s) on-time so far 99.90% | final: expected 1000 on-time 99.00% lost 3 dups 0 pending 42 p99 1500.0ms coverage 100.00%
//
// phase may be empty; left < 0 means unknown (no end, or not known here).
// Rates are over the interval since the previous line; the rest is the
// whole run so far.
func (l *Live) Line(elapsed time.Duration, phase string, left time.Duration, r verify.Result) string {
	c := r.Counts
	received := c.OnTime + c.Slow + c.PendingArrived
	onTime := c.OnTime + c.PendingOnTime
	var b strings.Builder
	b.WriteString("[")
	b.WriteString(elapsed.Truncate(time.Second).String())
	if phase != "" {
		b.WriteString(" " + phase)
	}
	if left >= 0 {
		b.WriteString(", " + left.Round(time.Second).String() + " left")
	}
	b.WriteString("] ")
	dt := (elapsed - l.at).Seconds()
	rate := func(now, before uint64) string {
		if dt <= 0 || now < before {
			return "-"
		}
		return strconv.FormatFloat(float64(now-before)/dt, 'f', 1, 64) + "/s"
	}
	p99 := "-"
	if r.LatencyMS.Count > 0 {
		p99 = fmtMS(r.LatencyMS.P99) + "ms"
	}
	fmt.Fprintf(&b, "sent %d/%d (%s) received %d (%s) on-time so far %s | final: expected %d on-time %s lost %d dups %d pending %d p99 %s coverage %s",
		c.PublishOK, c.PublishAttempted, rate(c.PublishAttempted, l.sent), received, rate(received, l.received),
		pct(onTime, received), c.Expected, pct(c.OnTime, c.Expected), c.Lost, c.Duplicates, c.Pending, p99,
		pct(c.Covered, c.PublishAttempted))
	l.at, l.sent, l.received = elapsed, c.PublishAttempted, received
	return b.String()
}

// WindowLine is one line per closed measurement window, e.g.
//
//	window 3 [3m0s..4m0s] PASS expected 600 on-time 99.50% lost 0 dups 0 p99 15.20ms
func WindowLine(w verify.Window) string {
	c := w.Counts
	p99 := "-"
	if w.Latency.Count > 0 {
		p99 = fmtMS(w.Latency.P99) + "ms"
	}
	v := strings.ToUpper(string(w.Verdict))
	if v == "" {
		v = "?"
	}
	s := fmt.Sprintf("window %d [%s..%s] %s expected %d on-time %s lost %d dups %d p99 %s",
		w.Index, time.Duration(w.StartMS)*time.Millisecond, time.Duration(w.EndMS)*time.Millisecond, v,
		c.Expected, pct(c.OnTime, c.Expected), c.Lost, c.Duplicates, p99)
	if w.Reason != "" {
		s += " (" + w.Reason + ")"
	}
	return s
}

// OpsTable writes the swarm's per-operation table (Locust-like): count,
// failures, fail %, rate, latency percentiles of successes, and the top
// failure classes. Pass a Snapshot for totals or a Delta for the interval.
// A last "total" row sums counts and rates (no percentiles: mixing
// operations' latencies means nothing).
func OpsTable(w io.Writer, s stats.Snapshot) error {
	rows := make([][]string, 0, len(s.Ops)+1)
	var count, fails uint64
	var rate float64
	for _, o := range s.Ops {
		count += o.Count
		fails += o.Failures
		rate += o.Rate
		l := o.LatencyMS
		p50, p95, p99, max := "-", "-", "-", "-"
		if l.Count > 0 {
			p50, p95, p99, max = fmtMS(l.P50), fmtMS(l.P95), fmtMS(l.P99), fmtMS(l.Max)
		}
		rows = append(rows, []string{o.Name, u(o.Count), u(o.Failures), pct(o.Failures, o.Count),
			strconv.FormatFloat(o.Rate, 'f', 1, 64), p50, p95, p99, max, topFailures(o.FailuresByClass, 3)})
	}
	rows = append(rows, []string{"total", u(count), u(fails), pct(fails, count),
		strconv.FormatFloat(rate, 'f', 1, 64), "", "", "", "", ""})
	return render(newTable(w, "op", "count", "failures", "fail %", "rate/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "top failures"), rows)
}

// topFailures lists the n most frequent classes, "timeout:12 5xx:3".
func topFailures(m map[string]uint64, n int) string {
	type kv struct {
		k string
		v uint64
	}
	var all []kv
	for k, v := range m {
		if v > 0 {
			all = append(all, kv{k, v})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].v != all[j].v {
			return all[i].v > all[j].v
		}
		return all[i].k < all[j].k
	})
	if len(all) > n {
		all = all[:n]
	}
	parts := make([]string, len(all))
	for i, e := range all {
		parts[i] = e.k + ":" + u(e.v)
	}
	return strings.Join(parts, " ")
}

// UsersLine is one line with the active simulated users by kind and the ID
// pool sizes, keys sorted, e.g.
//
//	users 1000 (learner=900 proctor=100) ids active=900 free=20
func UsersLine(users map[string]int, pools map[string]int) string {
	total := 0
	for _, n := range users {
		total += n
	}
	var b strings.Builder
	fmt.Fprintf(&b, "users %d (%s)", total, kvs(users))
	if len(pools) > 0 {
		b.WriteString(" ids " + kvs(pools))
	}
	return b.String()
}

func kvs(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Itoa(m[k])
	}
	return strings.Join(parts, " ")
}

// WindowsSummary is how many windows there are, and how many of them pass,
// fail and are inconclusive: "3 (2 pass, 1 fail, 0 inconclusive)".
func WindowsSummary(ws []verify.Window) string {
	pass, fail, inc := WindowTally(ws)
	return fmt.Sprintf("%d (%d pass, %d fail, %d inconclusive)", len(ws), pass, fail, inc)
}

// WindowTally counts the windows by verdict.
func WindowTally(ws []verify.Window) (pass, fail, inconclusive int) {
	for _, win := range ws {
		switch win.Verdict {
		case verify.Pass:
			pass++
		case verify.Fail:
			fail++
		default:
			inconclusive++
		}
	}
	return pass, fail, inconclusive
}
