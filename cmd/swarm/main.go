// Command swarm puts realistic load on a pub/sub event bus: simulated
// learners and proctors of weighted kinds sharing one ID pool, over HTTP
// long-poll (Nchan's protocol) or MQTT, backing off on every error, stopping
// cleanly, and verifying the delivery of their own messages.
//
// With no --target it starts the embedded bus in-process. It prints a live
// table every --live, a final table, and with --json FILE the result (field
// names below). Exit codes, as probe: 0 pass, 1 SLO failed, 2 usage or
// configuration error, 3 inconclusive, 4 could not run.
//
// The first SIGINT/SIGTERM stops every user at once (open polls cut, retries
// cancelled, nothing new sent) and still writes the report; a second exits at
// once with 130.
//
// Distributed runs (DESIGN.md): N shards, each started with the same flags,
// the same --run-id and --start-at, --shards N and its own --shard (default
// $JOB_COMPLETION_INDEX), run users g with g mod N = shard, wait until
// --start-at, and write --shard-file (report.ShardFile: exact counts and HDR
// histograms, a hash of the flags that must agree, complete = not
// interrupted). "swarm merge [gate flags] [--json F] [--junit F] FILE..."
// checks the files form one run (exit 2 with one line per problem
// otherwise) and computes the verdict on the merged data (exit 0/1/3).
//
// JSON result fields: run_id, protocol, target, shard, shards, started_at,
// ended_at, interrupted, drained, stop_ms; verdict, reason, counts, latency_ms,
// late_ms, gates (pooled over both directions, gates on the pooled counts,
// each latency percentile the larger of the two directions'); streams
// ("learner_to_proctor", "proctor_to_learner": probe's result shape per
// direction, windows and histograms included); users {started, by_kind};
// operations (per operation: count, failures, failures_by_class,
// rate_per_s, latency_ms, failure_latency_ms, histograms); id_pool {free,
// active}.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventswarm/eventswarm/cmd/internal/cli"
	"github.com/eventswarm/eventswarm/internal/behaviours"
	"github.com/eventswarm/eventswarm/internal/report"
	"github.com/eventswarm/eventswarm/internal/stats"
	"github.com/eventswarm/eventswarm/internal/target"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// Exit codes (DESIGN.md).
const (
	exitPass        = cli.ExitPass
	exitUsage       = cli.ExitUsage
	exitCouldNotRun = cli.ExitCouldNotRun
	exitSignal      = cli.ExitSignal

	exitInconclusive = cli.ExitInconclusive
)

// usageError carries exit code 2; runError exit code 4.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

type runError struct{ err error }

func (e runError) Error() string { return e.err.Error() }
func (e runError) Unwrap() error { return e.err }

// codeOf maps an error to its exit code.
func codeOf(err error) int {
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitCouldNotRun
}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, true))
}

// swarmGOGC is swarm's default GOGC (see swarm).
const swarmGOGC = 25

// options are the parsed flags.
type options struct {
	cli.Common
	cfg behaviours.Config
	// ShardFile is --shard-file: where to write this shard's report.ShardFile.
	ShardFile string
	// StartAt is --start-at: when to start the users (zero: at once).
	StartAt time.Time
	// ConfigHash hashes every flag that must be equal across shards.
	ConfigHash string
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	var (
		weights, stages, learnerIvl, controlIvl, drain string
		shardFlag, startAt                             string
	)
	fs := flag.NewFlagSet("swarm", flag.ContinueOnError)
	o.Register(fs, &o.cfg.Verify)

	fs.IntVar(&o.cfg.Users, "users", 100, "simulated users (all shards together)")
	fs.Float64Var(&o.cfg.SpawnRate, "spawn-rate", 10, "users started per second")
	fs.DurationVar(&o.cfg.Duration, "duration", time.Minute, "publishing time (then subscribers drain); not with --stages")
	fs.StringVar(&stages, "stages", "", "ramp like k6: duration:users,… e.g. 30s:100,2m:1000,30s:0 (replaces --duration and --spawn-rate)")
	fs.StringVar(&weights, "weights", "learner=20,proctor=1", "relative numbers of users per kind")
	fs.IntVar(&o.cfg.Items, "items", behaviours.DefaultItems, "events per learner session before its finished event")
	fs.StringVar(&learnerIvl, "learner-interval", "1s-3s", "time between a learner's events: a duration or a range")
	fs.StringVar(&controlIvl, "control-interval", "5s-10s", "time between a proctor's control rounds: a duration or a range")
	fs.IntVar(&o.cfg.ControlFanout, "control-fanout", behaviours.DefaultControlFanout, "learners a proctor sends a control message per round")
	fs.IntVar(&o.cfg.LearnersPerProctor, "learners-per-proctor", behaviours.DefaultLearnersPerProctor, "learner IDs a proctor watches (≤ 255 on long-poll)")
	fs.DurationVar(&o.cfg.ProctorTimeout, "proctor-timeout", behaviours.DefaultProctorTimeout, "a proctor session ends after this even if its learners have not finished")
	fs.IntVar(&o.cfg.PayloadSize, "payload-size", behaviours.DefaultPayloadSize, "bytes per message")
	fs.StringVar(&drain, "drain", "auto", "how long subscribers keep receiving after publishing stops: a duration, 0 for none, auto = --lost-after + --grace")

	fs.StringVar(&shardFlag, "shard", os.Getenv("JOB_COMPLETION_INDEX"), "this shard's index (default $JOB_COMPLETION_INDEX, else 0)")
	fs.IntVar(&o.cfg.Shards, "shards", 1, "number of shards")
	fs.Uint64Var(&o.cfg.Seed, "seed", 0, "seed of the users' random choices (default random)")
	fs.StringVar(&o.ShardFile, "shard-file", "", "write this shard's result file (exact counts and histograms, for swarm merge) to FILE, even when interrupted")
	fs.StringVar(&startAt, "start-at", "", "absolute start time, RFC 3339 (e.g. 2026-01-02T15:04:05Z): wait until then so all shards start together; default now")

	if err := cli.ParseArgs(fs, "swarm", "Runs weighted learners and proctors against a bus and verifies their own traffic.\nswarm merge [flags] SHARD-FILE... merges the --shard-file results of a distributed run (swarm merge -h).", args, stderr); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	o.ConfigHash = configHash(fs)

	var errs []error
	addErr := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	o.cfg.Weights, err = behaviours.ParseWeights(weights)
	addErr(err)
	o.cfg.Stages, err = behaviours.ParseStages(stages)
	addErr(err)
	if len(o.cfg.Stages) > 0 {
		if set["duration"] {
			errs = append(errs, errors.New("swarm: give --duration or --stages, not both"))
		}
		o.cfg.Duration = 0 // the stages' total
		if !set["users"] {
			o.cfg.Users = 0 // the stages' peak
		}
	} else if o.cfg.Duration == 0 {
		errs = append(errs, errors.New("swarm: --duration must be > 0"))
	}
	o.cfg.LearnerInterval, err = behaviours.ParseRange(learnerIvl)
	addErr(prefixErr("--learner-interval", err))
	o.cfg.ControlInterval, err = behaviours.ParseRange(controlIvl)
	addErr(prefixErr("--control-interval", err))
	switch drain {
	case "auto", "":
	case "0", "0s":
		o.cfg.Drain = behaviours.NoDrain
	default:
		d, err := time.ParseDuration(drain)
		if err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("swarm: --drain %q: want a duration >= 0 or auto", drain))
		} else {
			o.cfg.Drain = d
		}
	}
	if o.cfg.SpawnRate <= 0 && len(o.cfg.Stages) == 0 {
		errs = append(errs, fmt.Errorf("swarm: --spawn-rate must be > 0 users/s, got %v", o.cfg.SpawnRate))
	}
	if shardFlag != "" {
		if o.cfg.Shard, err = strconv.Atoi(shardFlag); err != nil {
			errs = append(errs, fmt.Errorf("swarm: --shard %q is not an integer", shardFlag))
		}
	}
	if startAt != "" {
		addErr(o.parseStartAt(startAt, time.Now()))
	}
	if o.ShardFile != "" && o.cfg.Shards > 1 && strings.Trim(o.RunID, "0") == "" {
		// The zero run ID means a random one, different on every shard.
		errs = append(errs, errors.New("swarm: --shard-file with --shards > 1 needs a non-zero --run-id (the same on every shard)"))
	}
	o.Target.Backoff = o.cfg.Backoff
	run, commonErrs := o.Finish("swarm", o.cfg.Verify)
	o.cfg.Run = run
	errs = append(errs, commonErrs...)
	o.cfg.LongPoll = o.Target.Protocol() == target.HTTP
	if len(errs) == 0 {
		// Only once each flag parsed: Validate would repeat the problems above.
		addErr(o.cfg.Validate())
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return o, nil
}

func prefixErr(flag string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("swarm: %s: %w", flag, err)
}

// run is main without os.Exit, for tests. handleSignals installs the
// SIGINT/SIGTERM handling: the first stops the run at once (the report is
// still written), the second exits with 130.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, handleSignals bool) int {
	if len(args) > 0 && args[0] == "merge" {
		return runMerge(args[1:], stdout, stderr)
	}
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitPass
	}
	if err != nil {
		cli.PrintErr(stderr, err)
		return exitUsage
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	if handleSignals {
		defer cli.OnSignals(func() {
			fmt.Fprintln(stderr, "swarm: stopping every user now (signal again to exit at once)")
			stop()
		})()
	}
	stopPProf, err := o.ServePProf()
	if err != nil {
		cli.PrintErr(stderr, fmt.Errorf("swarm: %w", err))
		return exitUsage
	}
	defer stopPProf()
	code, err := swarm(ctx, o, stdout, stderr)
	if err != nil {
		cli.PrintErr(stderr, err)
		return codeOf(err)
	}
	return code
}

// swarm runs the load and reports; an error is a usageError or a runError.
func swarm(ctx context.Context, o *options, stdout, stderr io.Writer) (int, error) {
	// Thousands of mostly idle users keep little live heap, but the default
	// GOGC=100 lets the heap double before a collection: at 10,000 users that
	// headroom is ~11 KB a user. Collect sooner (GC CPU stays around 1%)
	// unless the user chose GOGC.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(swarmGOGC)
	}
	embedded := o.Target.URL == ""
	if err := preflight(o.cfg, o.Target.Protocol(), embedded); err != nil {
		return 0, err
	}
	tgt, err := target.Open(o.Target)
	if err != nil {
		return 0, runError{err}
	}
	defer tgt.Close()
	checkCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = tgt.Check(checkCtx)
	cancel()
	if err != nil {
		return 0, runError{fmt.Errorf("swarm: cannot use %s: %w", tgt.Describe(), err)}
	}
	r, err := behaviours.New(o.cfg, tgt.Dialer())
	if err != nil {
		return 0, usageError{err}
	}
	cfg := r.Config()
	fmt.Fprintf(stderr, "swarm: run %s shard %d/%d against %s: %d users (%s), %s\n",
		cfg.Run, cfg.Shard, cfg.Shards, tgt.Describe(), cfg.Users, cfg.Weights, plan(cfg))

	if !o.StartAt.IsZero() {
		if err := waitUntil(ctx, o.StartAt, stderr); err != nil {
			// Nothing ran: no report, no shard file (merge then reports the shard missing).
			fmt.Fprintln(stderr, "swarm: interrupted before --start-at; nothing ran, nothing written")
			return exitInconclusive, nil
		}
	}

	var wg sync.WaitGroup
	liveCtx, stopLive := context.WithCancel(ctx)
	if !o.Quiet {
		wg.Go(func() { live(liveCtx, r, o.Live, stderr) })
	}
	var stoppedAt atomic.Int64
	stopWatch := context.AfterFunc(ctx, func() { stoppedAt.Store(time.Now().UnixNano()) })
	s, err := r.Run(ctx)
	if !stopWatch() {
		if at := stoppedAt.Load(); at != 0 {
			fmt.Fprintf(stderr, "swarm: every user stopped in %v\n", time.Since(time.Unix(0, at)).Round(time.Millisecond))
		}
	}
	stopLive()
	wg.Wait()
	if err != nil {
		return 0, runError{err}
	}
	if lb := tgt.Embedded(); lb != nil && o.Faults.Enabled() {
		fmt.Fprintf(stderr, "swarm: embedded bus injected: %+v\n", lb.Injected())
	}
	out := newOutput(s, tgt, cfg)
	var errs []error
	stdout = o.TableOut(stdout, stderr) // --json - keeps stdout for the JSON
	if err := report.OpsTable(stdout, s.Ops); err != nil {
		errs = append(errs, err)
	}
	fmt.Fprintln(stdout, report.UsersLine(s.UsersByKind, map[string]int{"free": s.PoolFree, "active": s.PoolActive}))
	for _, name := range []string{behaviours.StreamLearnerToProctor, behaviours.StreamProctorToLearner} {
		fmt.Fprintf(stdout, "%s: %s\n", name, report.VerdictLine(s.Streams[name]))
	}
	if err := report.Table(stdout, s.Result); err != nil {
		errs = append(errs, err)
	}
	fmt.Fprintf(stdout, "swarm: every user stopped %.0fms after the stop\n", float64(s.StopTook)/float64(time.Millisecond))
	if s.Interrupted {
		fmt.Fprintln(stdout, "swarm: the run was interrupted; messages still in flight are pending, not lost")
	}
	if o.JSON != "" {
		if err := report.WriteJSON(o.JSON, out); err != nil {
			errs = append(errs, fmt.Errorf("swarm: --json: %w", err))
		}
	}
	if o.HTML != "" {
		if err := report.WriteHTML(o.HTML, "eventswarm swarm "+out.RunID, s.Result); err != nil {
			errs = append(errs, fmt.Errorf("swarm: --html: %w", err))
		}
	}
	if o.ShardFile != "" {
		if err := writeShardFile(o, cfg, s); err != nil {
			errs = append(errs, err)
		}
	}
	code := cli.ExitCode(s.Result.Verdict)
	if len(errs) > 0 {
		cli.PrintErr(stderr, errors.Join(errs...))
		if code == exitPass {
			code = exitCouldNotRun
		}
	}
	return code, nil
}

func plan(c behaviours.Config) string {
	if len(c.Stages) > 0 {
		parts := make([]string, len(c.Stages))
		for i, st := range c.Stages {
			parts[i] = st.Duration.String() + ":" + strconv.Itoa(st.Target)
		}
		return "stages " + strings.Join(parts, ",")
	}
	return fmt.Sprintf("%g users/s for %v", c.SpawnRate, c.Duration)
}

// live prints, every interval, a Locust-like table of the last interval's
// operations, the users and the delivery so far.
func live(ctx context.Context, r *behaviours.Runner, every time.Duration, w io.Writer) {
	t := time.NewTicker(every)
	defer t.Stop()
	var prev stats.Snapshot
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p := r.Progress()
		fmt.Fprintln(w, report.LiveLine(p.Elapsed, p.Result)+" ["+p.Phase+"]")
		fmt.Fprintln(w, report.UsersLine(p.Active, map[string]int{"free": p.PoolFree, "active": p.PoolActive}))
		_ = report.OpsTable(w, p.Ops.Delta(prev))
		prev = p.Ops
	}
}

// output is the --json result; see the package comment for the fields.
type output struct {
	verify.Result
	RunID       string                   `json:"run_id"`
	Protocol    string                   `json:"protocol"`
	Target      string                   `json:"target"`
	Shard       int                      `json:"shard"`
	Shards      int                      `json:"shards"`
	StartedAt   time.Time                `json:"started_at"`
	EndedAt     time.Time                `json:"ended_at"`
	Interrupted bool                     `json:"interrupted"`
	Drained     bool                     `json:"drained"`
	StopMS      float64                  `json:"stop_ms"`
	Streams     map[string]verify.Result `json:"streams"`
	Users       users                    `json:"users"`
	Operations  stats.Snapshot           `json:"operations"`
	IDPool      idPool                   `json:"id_pool"`
}

type users struct {
	Started int            `json:"started"`
	ByKind  map[string]int `json:"by_kind"`
}

type idPool struct {
	Free   int `json:"free"`
	Active int `json:"active"`
}

func newOutput(s behaviours.Summary, tgt *target.Target, cfg behaviours.Config) output {
	streams := make(map[string]verify.Result, len(s.Streams))
	for name, r := range s.Streams {
		r.Subscribers = nil // one per session: too many to be useful here
		streams[name] = r
	}
	return output{
		Result: s.Result, RunID: s.Run.String(), Protocol: tgt.Protocol(), Target: tgt.Describe(),
		Shard: cfg.Shard, Shards: cfg.Shards, StartedAt: s.Start, EndedAt: s.End,
		Interrupted: s.Interrupted, Drained: s.Drained, Streams: streams,
		StopMS:     float64(s.StopTook) / float64(time.Millisecond),
		Users:      users{Started: s.UsersStarted, ByKind: s.UsersByKind},
		Operations: s.Ops, IDPool: idPool{Free: s.PoolFree, Active: s.PoolActive},
	}
}
