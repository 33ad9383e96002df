package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/behaviours"
	"github.com/eventswarm/eventswarm/internal/report"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// startAtTolerance is how far in the past --start-at may be: a shard
// scheduled a little late still starts (merge checks the start skew).
const startAtTolerance = 5 * time.Second

// perShardFlags may differ between the shards of one run, so they are not in
// the config hash; the password is left out so its hash is not written.
var perShardFlags = map[string]bool{
	"shard": true, "shard-file": true, "json": true, "html": true, "live": true, "quiet": true,
	"pprof": true, "start-at": true, "password": true, "metrics": true,
	"bus-stats": true, "bus-stats-path": true, "bus-stats-interval": true,
}

// configHash is a stable hash of every flag value that must be equal across
// the shards of one run (every flag but perShardFlags), defaults included.
func configHash(fs *flag.FlagSet) string {
	h := sha256.New()
	fs.VisitAll(func(f *flag.Flag) { // lexicographical order
		if !perShardFlags[f.Name] {
			fmt.Fprintf(h, "%s=%q\n", f.Name, f.Value.String())
		}
	})
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// parseStartAt parses --start-at (RFC 3339; fractional seconds allowed) and
// refuses a time more than startAtTolerance before now.
func (o *options) parseStartAt(s string, now time.Time) error {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return fmt.Errorf("swarm: --start-at %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", s)
	}
	if late := now.Sub(t); late > startAtTolerance {
		return fmt.Errorf("swarm: --start-at %s is %v in the past (more than %v): give a future time, the same to every shard", s, late.Round(time.Second), startAtTolerance)
	}
	o.StartAt = t
	return nil
}

// waitUntil sleeps until t or until ctx ends (then it returns ctx's error).
func waitUntil(ctx context.Context, t time.Time, w io.Writer) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	fmt.Fprintf(w, "swarm: waiting %v for --start-at %s\n", d.Round(time.Millisecond), t.Format(time.RFC3339Nano))
	return backoff.Sleep(ctx, d)
}

// writeShardFile writes this shard's result file: both directions pooled,
// exact counts and the directions' histograms added.
func writeShardFile(o *options, cfg behaviours.Config, s behaviours.Summary) error {
	f := report.ShardFile{
		RunID: s.Run.String(), Shard: cfg.Shard, Shards: cfg.Shards, ConfigHash: o.ConfigHash,
		Start: s.Start, End: s.End, Complete: !s.Interrupted, Stats: s.Ops,
		Users: usersOf(s), Streams: map[string]verify.Counts{},
		Setup:          setupOf(o, cfg, o.Target.URL),
		LatencyBoundMS: float64(cfg.Verify.Latency) / 1e6, LostAfterMS: float64(cfg.Verify.LostAfter) / 1e6,
	}
	for _, name := range []string{behaviours.StreamLearnerToProctor, behaviours.StreamProctorToLearner} {
		var d report.ShardFile
		f.Streams[name] = s.Streams[name].Counts
		if err := d.SetResult(s.Streams[name]); err != nil {
			return fmt.Errorf("swarm: --shard-file: %s: %w", name, err)
		}
		var err error
		if f.LatencyHist, err = f.LatencyHist.Add(d.LatencyHist); err != nil {
			return fmt.Errorf("swarm: --shard-file: %s: %w", name, err)
		}
		if f.LateHist, err = f.LateHist.Add(d.LateHist); err != nil {
			return fmt.Errorf("swarm: --shard-file: %s: %w", name, err)
		}
	}
	f.Counts = s.Result.Counts
	if err := report.WriteJSON(o.ShardFile, f); err != nil {
		return fmt.Errorf("swarm: --shard-file: %w", err)
	}
	return nil
}
