package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/behaviours"
	"github.com/eventswarm/eventswarm/internal/localbus"
	"github.com/eventswarm/eventswarm/internal/metrics"
	"github.com/eventswarm/eventswarm/internal/target"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// TestSwarmScrape: after a short swarm run on the embedded bus with drops
// injected, /metrics holds each direction's exact counts, the operations
// and the users of the summary.
func TestSwarmScrape(t *testing.T) {
	faults := localbus.Faults{Seed: 3, Drop: 0.05, Skip: verify.IsMarker}
	tgt, err := target.Open(target.Config{Embedded: target.HTTP, Bus: localbus.Config{Hold: 2 * time.Second, Faults: faults}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tgt.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := tgt.Check(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := behaviours.Config{
		Users: 12, SpawnRate: 100, Duration: 1500 * time.Millisecond,
		Weights: behaviours.Weights{behaviours.Learner: 5, behaviours.Proctor: 1}, Items: 4,
		LearnerInterval: behaviours.Range{Min: 20 * time.Millisecond, Max: 50 * time.Millisecond},
		ControlInterval: behaviours.Range{Min: 20 * time.Millisecond, Max: 40 * time.Millisecond},
		ControlFanout:   2, LearnersPerProctor: 5, ProctorTimeout: time.Second,
		MarkerWait: 100 * time.Millisecond, MarkerAttempts: 30, LongPoll: true,
		Backoff: backoff.Config{Initial: 10 * time.Millisecond, Max: 200 * time.Millisecond, Multiplier: 2},
		Verify:  verify.Config{Latency: 1500 * time.Millisecond, LostAfter: 2 * time.Second, Grace: 200 * time.Millisecond},
		Seed:    1, Run: verify.NewRunID(),
	}
	r, err := behaviours.New(cfg, tgt.Dialer())
	if err != nil {
		t.Fatal(err)
	}
	col := metrics.NewSwarm(metrics.Info{Command: "swarm", RunID: cfg.Run.String(), Latency: cfg.Verify.Latency, LostAfter: cfg.Verify.LostAfter, Within: 0.95})
	col.Attach(r)
	reg, err := metrics.Registry(col)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := metrics.Serve("127.0.0.1:0", reg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	s, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	col.Finish(s.Result.Verdict)
	fams, body := scrape(t, srv.Addr())
	for _, dir := range metrics.Directions {
		c := s.Streams[dir].Counts
		l := map[string]string{"direction": dir}
		for name, want := range map[string]uint64{"expected": c.Expected, "on_time": c.OnTime, "lost": c.Lost, "duplicates": c.Duplicates,
			"publish_attempted": c.PublishAttempted, "publish_ok": c.PublishOK, "covered": c.Covered} {
			if got := value(t, fams, "eventswarm_"+name+"_total", l); got != float64(want) {
				t.Errorf("%s eventswarm_%s_total = %v, want %d", dir, name, got, want)
			}
		}
		h := histogram(t, fams, dir)
		if h.GetSampleCount() != c.Expected || bucketAt(t, h, cfg.Verify.Latency) != c.OnTime {
			t.Errorf("%s histogram count %d, le=latency %d; want %d expected, %d on time", dir, h.GetSampleCount(), bucketAt(t, h, cfg.Verify.Latency), c.Expected, c.OnTime)
		}
	}
	if inj := tgt.Embedded().Injected(); inj.Dropped == 0 {
		t.Fatalf("no drop injected: %+v", inj)
	}
	for _, op := range s.Ops.Ops {
		if got := value(t, fams, "eventswarm_swarm_operations_total", map[string]string{"op": op.Name, "outcome": "ok"}); got != float64(op.Count-op.Failures) {
			t.Errorf("operations_total{op=%s,outcome=ok} = %v, want %d", op.Name, got, op.Count-op.Failures)
		}
	}
	if got := value(t, fams, "eventswarm_swarm_users_started_total", nil); got != float64(s.UsersStarted) {
		t.Errorf("users_started_total = %v, want %d", got, s.UsersStarted)
	}
	checkPromtool(t, body)
}
