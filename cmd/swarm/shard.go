package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/eventswarm/eventswarm/cmd/internal/cli"
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
	"pprof": true, "start-at": true, "password": true, "password-file": true, "target": true, "processes": true, "child-fd": true,
	"verdict-exit": true, "metrics": true,
	"bus-stats": true, "bus-stats-path": true, "bus-stats-interval": true,
	// Each shard may have its own share of the machine's source addresses.
	"source-addrs": true,
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

// shardFileOf is this shard's result file: both directions pooled, exact
// counts and the directions' histograms added.
func shardFileOf(o *options, cfg behaviours.Config, s behaviours.Summary, ticks []report.Tick) (report.ShardFile, error) {
	f := report.ShardFile{
		RunID: s.Run.String(), Shard: cfg.Shard, Shards: cfg.Shards, ConfigHash: o.ConfigHash,
		Start: s.Start, End: s.End, Complete: !s.Interrupted, Stats: s.Ops,
		Users: usersOf(s), Generator: s.Generator, Streams: map[string]verify.Counts{},
		Setup:          setupOf(o, cfg, o.Target.URL),
		LatencyBoundMS: float64(cfg.Verify.Latency) / 1e6, LostAfterMS: float64(cfg.Verify.LostAfter) / 1e6,
		Windows: map[string][]verify.Window{}, Ticks: ticks,
	}
	for _, name := range []string{behaviours.StreamLearnerToProctor, behaviours.StreamProctorToLearner} {
		var d report.ShardFile
		f.Streams[name] = s.Streams[name].Counts
		if ws := s.Streams[name].Windows; len(ws) > 0 {
			f.Windows[name] = ws
		}
		if err := d.SetResult(s.Streams[name]); err != nil {
			return f, fmt.Errorf("swarm: --shard-file: %s: %w", name, err)
		}
		var err error
		if f.LatencyHist, err = f.LatencyHist.Add(d.LatencyHist); err != nil {
			return f, fmt.Errorf("swarm: --shard-file: %s: %w", name, err)
		}
		if f.LateHist, err = f.LateHist.Add(d.LateHist); err != nil {
			return f, fmt.Errorf("swarm: --shard-file: %s: %w", name, err)
		}
	}
	f.Counts = s.Result.Counts
	return f, nil
}

// writeShard writes f to --shard-file: a file, or a POST to a swarm merge
// --listen collector.
func writeShard(o *options, f report.ShardFile) error {
	if isURL(o.ShardFile) {
		return uploadShardFile(o.ShardFile, f)
	}
	if err := report.WriteJSON(o.ShardFile, f); err != nil {
		return fmt.Errorf("swarm: --shard-file: %w", err)
	}
	return nil
}

// isURL: --shard-file names a collector (swarm merge --listen), not a file.
func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// checkShardURL checks a --shard-file URL before the run.
func checkShardURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Hostname() == "" || u.User != nil || u.Fragment != "" {
		return cli.Usage(fmt.Errorf("swarm: --shard-file %q: want http://HOST:PORT/PATH of a swarm merge --listen collector", s))
	}
	return nil
}

// uploadWindow is how long uploadShardFile keeps trying (the collector may
// start after the shards, or restart its listener); a var for tests.
var uploadWindow = 2 * time.Minute

// uploadShardFile POSTs f to a swarm merge --listen collector, retrying with
// backoff while it cannot be reached or answers 5xx, for at most
// uploadWindow; a 4xx answer (not of this run, a different file for this
// index, too large) is final.
func uploadShardFile(to string, f report.ShardFile) error {
	body, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("swarm: --shard-file: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), uploadWindow)
	defer cancel()
	client := &http.Client{Timeout: 30 * time.Second}
	b := backoff.New(backoff.Config{Initial: 250 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2}, nil)
	var last error
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, to, bytes.NewReader(body))
		if err != nil {
			return cli.Usage(fmt.Errorf("swarm: --shard-file %s: %w", to, err))
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err == nil {
			answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			msg := strings.TrimSpace(string(answer))
			switch {
			case resp.StatusCode/100 == 2:
				return nil
			case resp.StatusCode/100 == 4:
				return cli.CouldNotRun(fmt.Errorf("swarm: --shard-file %s refused the file: %s %s", to, resp.Status, msg))
			}
			last = fmt.Errorf("%s %s", resp.Status, msg)
		} else {
			last = err
		}
		if err := backoff.Sleep(ctx, b.Next()); err != nil {
			return cli.CouldNotRun(fmt.Errorf("swarm: --shard-file %s: not delivered after %d attempts in %v: %v", to, attempt, uploadWindow, last))
		}
	}
}
