package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/eventswarm/eventswarm/cmd/internal/cli"
	"github.com/eventswarm/eventswarm/internal/probe"
	"github.com/eventswarm/eventswarm/internal/report"
	"github.com/eventswarm/eventswarm/internal/target"
)

// htmlPage is probe's HTML report of out: what was run (from the flags),
// the result, and the probe's own health.
func htmlPage(o *options, out probe.Outcome, end time.Time) report.Page {
	c, l := o.cfg, o.cfg.Ledger
	set := func(name, value string) report.Setting { return report.Setting{Name: name, Value: value} }
	tgt := out.Target
	if tgt == "" {
		tgt = o.Target.URL
	}
	if tgt == "" {
		tgt = "embedded " + o.Target.Protocol() + " bus"
	}
	setup := []report.Setting{set("target", tgt), set("protocol", o.Target.Protocol())}
	if o.Target.Protocol() == target.MQTT {
		v := "3.1.1"
		if o.Target.MQTT5() {
			v = "5"
		}
		setup = append(setup, set("MQTT version", v), set("QoS", strconv.Itoa(o.Target.QoS)))
	}
	setup = append(setup,
		set("rate", fmt.Sprintf("%g msg/s per stream (%g msg/s in all)", c.Rate, c.Rate*float64(c.Streams))),
		set("streams", strconv.Itoa(c.Streams)),
		set("subscribers", subscribersText(c.Subscribers, c.ShareGroup)),
		set("payload", fmt.Sprintf("%d bytes", c.PayloadSize)),
		set("duration", durationText(c.Duration)+fmt.Sprintf(", of which %v warm-up (not measured), then a %v drain", c.Warmup, l.LostAfter+l.Grace)),
		set("window", l.Window.String()),
		set("delivery bounds", fmt.Sprintf("on time ≤ %v, lost > %v (final %v after the intended send time)", l.Latency, l.LostAfter, l.LostAfter+l.Grace)),
		set("gates", fmt.Sprintf("on time ≥ %s, lost ≤ %d, duplicates ≤ %d, publish availability ≥ %s, coverage ≥ %s",
			pctOf(l.Gates.Within), l.Gates.MaxLost, l.Gates.MaxDuplicates, pctOf(l.Gates.MinPublishAvailability), pctOf(l.Gates.MinCoverage))),
	)
	if f := o.Faults; f.Enabled() {
		setup = append(setup, set("injected faults (embedded bus)", fmt.Sprintf("drop %s, duplicate %s, delay %s by %v, corrupt %s, seed %d",
			pctOf(f.Drop), pctOf(f.Duplicate), pctOf(f.Delay), f.Delays, pctOf(f.Corrupt), f.Seed)))
	}
	setup = append(setup, set("started", out.StartedAt.UTC().Format(time.RFC3339)), set("ended", end.UTC().Format(time.RFC3339)))
	if out.Interrupted {
		setup = append(setup, set("interrupted", "yes: a signal ended the run before its end or cut the drain short"))
	}
	setup = append(setup, set("version", cli.Version()), set("run ID", out.RunID))
	h := out.Health
	health := []report.Setting{
		set("late sends (over 100 ms behind schedule)", strconv.FormatUint(h.LateSends, 10)),
		set("max send lag", fmt.Sprintf("%.1f ms", h.MaxSendLagMS)),
		set("max ticker drift", fmt.Sprintf("%.1f ms", h.MaxTickerDriftMS)),
		set("max wait for the bus (backpressure)", fmt.Sprintf("%.1f ms", h.MaxBusWaitMS)),
		set("GC pause total", fmt.Sprintf("%.1f ms", h.GCPauseTotalMS)),
		set("heap first / max / last", fmt.Sprintf("%.1f / %.1f / %.1f MB", h.HeapFirstMB, h.HeapMaxMB, h.HeapLastMB)),
		set("overloaded", map[bool]string{true: "yes: failures are inconclusive", false: "no"}[h.Overloaded]),
	}
	return report.Page{
		Title: "eventswarm probe: " + tgt, Result: out.Result, Setup: setup,
		Start: out.StartedAt, End: end, Latency: l.Latency, LostAfter: l.LostAfter,
		Health: health, Errors: out.Errors,
	}
}

func pctOf(f float64) string { return strconv.FormatFloat(f*100, 'f', -1, 64) + "%" }

func subscribersText(n int, group string) string {
	if group != "" {
		return fmt.Sprintf("%d, one share group %q ($share/%s/<topic>): every message expected once per group", n, group, group)
	}
	return fmt.Sprintf("%d, each subscribed to every stream", n)
}
