package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/eventswarm/eventswarm/cmd/internal/cli"
	"github.com/eventswarm/eventswarm/internal/behaviours"
	"github.com/eventswarm/eventswarm/internal/report"
	"github.com/eventswarm/eventswarm/internal/target"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// setupOf is what a swarm run ran, for its HTML report and its shard file
// (the same on every shard: no shard index here).
func setupOf(o *options, cfg behaviours.Config, tgtDescribe string) []report.Setting {
	set := func(name, value string) report.Setting { return report.Setting{Name: name, Value: value} }
	v := cfg.Verify
	if tgtDescribe == "" {
		tgtDescribe = "embedded " + o.Target.Protocol() + " bus"
	}
	out := []report.Setting{set("target", tgtDescribe), set("protocol", o.Target.Protocol())}
	if o.Target.Protocol() == target.MQTT {
		out = append(out, set("QoS", strconv.Itoa(o.Target.QoS)))
	}
	drain := "auto (" + (v.LostAfter + v.Grace).String() + ", ending early once everything arrived)"
	switch {
	case cfg.Drain == behaviours.NoDrain:
		drain = "none"
	case cfg.Drain > 0:
		drain = cfg.Drain.String()
	}
	users := strconv.Itoa(cfg.Users)
	if cfg.Shards > 1 {
		users = fmt.Sprintf("%d in all %d shards", cfg.Users, cfg.Shards)
	}
	out = append(out,
		set("users", users),
		set("weights", cfg.Weights.String()),
		set("load", plan(cfg)),
		set("drain", drain),
		set("learner", fmt.Sprintf("%d events a session, one every %v", cfg.Items, cfg.LearnerInterval)),
		set("proctor", fmt.Sprintf("watches %d learner IDs, control to %d of them every %v, session ends after %v at most",
			cfg.LearnersPerProctor, cfg.ControlFanout, cfg.ControlInterval, cfg.ProctorTimeout)),
		set("payload", fmt.Sprintf("%d bytes", cfg.PayloadSize)),
		set("delivery bounds", fmt.Sprintf("on time ≤ %v, lost > %v", v.Latency, v.LostAfter)),
		set("window", v.Window.String()),
		set("gates", fmt.Sprintf("on time ≥ %s, lost ≤ %d, duplicates ≤ %d, publish availability ≥ %s, coverage ≥ %s",
			pctOf(v.Gates.Within), v.Gates.MaxLost, v.Gates.MaxDuplicates, pctOf(v.Gates.MinPublishAvailability), pctOf(v.Gates.MinCoverage))),
	)
	if f := o.Faults; f.Enabled() {
		out = append(out, set("injected faults (embedded bus)", fmt.Sprintf("drop %s, duplicate %s, delay %s by %v, corrupt %s, seed %d",
			pctOf(f.Drop), pctOf(f.Duplicate), pctOf(f.Delay), f.Delays, pctOf(f.Corrupt), f.Seed)))
	}
	out = append(out, set("seed", strconv.FormatUint(cfg.Seed, 10)), set("version", cli.Version()))
	return out
}

// swarmPage is swarm's HTML report: what was run, the pooled verdict, each
// direction with its charts, the users and the operations.
func swarmPage(o *options, cfg behaviours.Config, s behaviours.Summary, out output, ticks []report.Tick) report.Page {
	set := func(name, value string) report.Setting { return report.Setting{Name: name, Value: value} }
	setup := setupOf(o, cfg, out.Target)
	if cfg.Shards > 1 {
		setup = append(setup, set("shard", fmt.Sprintf("%d of %d (this report is this shard's share only)", cfg.Shard, cfg.Shards)))
	}
	setup = append(setup, set("started", s.Start.UTC().Format(time.RFC3339)), set("ended", s.End.UTC().Format(time.RFC3339)),
		set("stop", fmt.Sprintf("every user stopped %.0f ms after the stop", float64(s.StopTook)/float64(time.Millisecond))))
	if s.Interrupted {
		setup = append(setup, set("interrupted", "yes: messages in flight are pending, not lost"))
	}
	setup = append(setup, set("run ID", out.RunID))
	p := report.Page{
		Title: fmt.Sprintf("eventswarm swarm: %d users against %s", cfg.Users, out.Target), Result: s.Result, Setup: setup, Start: s.Start, End: s.End,
		Latency: cfg.Verify.Latency, LostAfter: cfg.Verify.LostAfter, Operations: &out.Operations, Users: &out.Users, Errors: out.Errors,
		Ticks: ticks, Bus: out.BusStats, Health: generatorHealth(s.Generator),
	}
	for _, name := range []string{behaviours.StreamLearnerToProctor, behaviours.StreamProctorToLearner} {
		p.Directions = append(p.Directions, report.Direction{Name: directionTitle(name), Result: s.Streams[name]})
	}
	return p
}

// generatorHealth is the report's health section: swarm's own send lag.
func generatorHealth(g verify.SendLag) []report.Setting {
	return []report.Setting{
		{Name: "paced sends", Value: strconv.FormatUint(g.Sends, 10)},
		{Name: "late sends (over 100 ms behind schedule)", Value: strconv.FormatUint(g.LateSends, 10)},
		{Name: "max send lag", Value: fmt.Sprintf("%.1f ms", g.MaxSendLagMS)},
		{Name: "overloaded", Value: map[bool]string{true: "yes: failures are inconclusive", false: "no"}[verify.Overloaded(g.Sends, g.LateSends)]},
	}
}

func directionTitle(name string) string {
	switch name {
	case behaviours.StreamLearnerToProctor:
		return "learner → proctor (events)"
	case behaviours.StreamProctorToLearner:
		return "proctor → learner (control)"
	}
	return name
}

func pctOf(f float64) string { return strconv.FormatFloat(f*100, 'f', -1, 64) + "%" }

// mergePage is swarm merge's HTML report: the shards' setup, the merged
// verdict, each direction's counts, the pooled latency distribution, the
// users and the operations.
func mergePage(o *mergeOptions, m report.ShardFile, r verify.Result, files int) report.Page {
	set := func(name, value string) report.Setting { return report.Setting{Name: name, Value: value} }
	setup := append([]report.Setting{}, m.Setup...)
	setup = append(setup,
		set("shards", fmt.Sprintf("%d (%d files merged)", m.Shards, files)),
		set("config hash", m.ConfigHash),
		set("started", m.Start.UTC().Format(time.RFC3339)+" (the earliest shard)"),
		set("ended", m.End.UTC().Format(time.RFC3339)+" (the latest shard)"),
		set("merge gates", fmt.Sprintf("on time ≥ %s, lost ≤ %d, duplicates ≤ %d, publish availability ≥ %s, coverage ≥ %s",
			pctOf(o.gates.Within), o.gates.MaxLost, o.gates.MaxDuplicates, pctOf(o.gates.MinPublishAvailability), pctOf(o.gates.MinCoverage))),
		set("merged by", "swarm merge "+cli.Version()),
		set("run ID", m.RunID))
	p := report.Page{
		Title: fmt.Sprintf("eventswarm swarm merge: %d shards, run %s", m.Shards, m.RunID), Result: r, Setup: setup, Start: m.Start, End: m.End,
		Operations: &m.Stats, Users: &m.Users,
		Latency: time.Duration(m.LatencyBoundMS * 1e6), LostAfter: time.Duration(m.LostAfterMS * 1e6),
		Health: generatorHealth(m.Generator),
	}
	ev := verify.Evidence{Overloaded: m.Generator.Evidence("swarm")}
	for _, name := range []string{behaviours.StreamLearnerToProctor, behaviours.StreamProctorToLearner} {
		c, ok := m.Streams[name]
		if !ok {
			continue
		}
		v, reason, gates := o.gates.Judge(c, ev)
		// The shards' windows summed: each judged again from its exact
		// counts (its latency percentiles are the largest shard's).
		ws := append([]verify.Window(nil), m.Windows[name]...)
		for i := range ws {
			ws[i].Verdict, ws[i].Reason, _ = o.gates.Evaluate(ws[i].Counts)
		}
		p.Directions = append(p.Directions, report.Direction{Name: directionTitle(name),
			Result: verify.Result{Verdict: v, Reason: reason, Counts: c, Gates: gates, Windows: ws}})
	}
	p.Ticks = m.Ticks
	return p
}

// maxTicks bounds the samples kept for the report: past it every other is
// dropped and the interval doubles.
const maxTicks = 2000

// sampleTicks samples r's progress every interval until ctx ends, for the
// HTML report's charts over time (users by kind, operations per second).
func sampleTicks(ctx context.Context, r *behaviours.Runner, every time.Duration) []report.Tick {
	var ticks []report.Tick
	var prevOps, prevFail, prevPub uint64
	var prevAt float64
	t := time.NewTicker(every)
	defer t.Stop()
	sample := func() {
		p := r.Progress()
		if p.Elapsed <= 0 {
			return
		}
		var ops, fail, pub uint64
		for _, o := range p.Ops.Ops {
			ops += o.Count
			fail += o.Failures
			if o.Name == "publish" || o.Name == "control" {
				pub += o.Count
			}
		}
		at := p.Elapsed.Seconds()
		dt := at - prevAt
		if dt < every.Seconds()/2 {
			return // too short a step for a rate (the last sample at the stop)
		}
		users := make(map[string]int, len(p.Active))
		for k, v := range p.Active {
			users[k] = v
		}
		ticks = append(ticks, report.Tick{AtS: at, Users: users, OperationsPerS: float64(ops-prevOps) / dt,
			FailuresPerS: float64(fail-prevFail) / dt, PublishesPerS: float64(pub-prevPub) / dt})
		prevOps, prevFail, prevPub, prevAt = ops, fail, pub, at
		if len(ticks) >= maxTicks {
			kept := ticks[:0]
			for i := 1; i < len(ticks); i += 2 {
				kept = append(kept, ticks[i])
			}
			ticks = kept
			every *= 2
			t.Reset(every)
		}
	}
	for {
		select {
		case <-ctx.Done():
			sample()
			return ticks
		case <-t.C:
			sample()
		}
	}
}
