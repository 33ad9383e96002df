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
// "swarm merge --listen ADDR --shards N" collects the files instead (the
// shards POST them: --shard-file http://ADDR/…) and merges them the same
// way once all N have arrived, or names the missing ones at --deadline.
//
// JSON result fields: run_id, protocol, target, shard, shards, started_at,
// ended_at, interrupted, drained, stop_ms, still_stopping (when > 0); verdict, reason, counts, latency_ms,
// late_ms, gates (pooled over both directions, gates on the pooled counts,
// each latency percentile the larger of the two directions'); streams
// ("learner_to_proctor", "proctor_to_learner": probe's result shape per
// direction, windows and histograms included); users {started, by_kind};
// generator {sends, late_sends, max_send_lag_ms}: swarm's own send lag
// (over 1% of sends more than 100ms late turns a failure into inconclusive);
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
	"math"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventswarm/eventswarm/cmd/internal/cli"
	"github.com/eventswarm/eventswarm/internal/behaviours"
	"github.com/eventswarm/eventswarm/internal/busstats"
	"github.com/eventswarm/eventswarm/internal/metrics"
	"github.com/eventswarm/eventswarm/internal/report"
	"github.com/eventswarm/eventswarm/internal/stats"
	"github.com/eventswarm/eventswarm/internal/target"
	"github.com/eventswarm/eventswarm/internal/verify"
)

func main() {
	cli.IgnoreSIGPIPE()
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, true))
}

// stopLine says how long the users took to stop, or how many were still
// stopping when an interrupted run reported without them.
func stopLine(s behaviours.Summary) string {
	ms := float64(s.StopTook) / float64(time.Millisecond)
	if s.StillStopping > 0 {
		return fmt.Sprintf("swarm: reported %.0fms after the stop, at the cut: publishing stopped, %d users not yet ended, their connections left to the process exit (what they had in flight is pending either way)", ms, s.StillStopping)
	}
	return fmt.Sprintf("swarm: every user stopped %.0fms after the stop", ms)
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
	// processes is --processes (1: this process runs the users itself);
	// childFD is --child-fd, set by a --processes parent for its children;
	// targets are several --target URLs (shard i uses target i mod len).
	processes int
	childFD   int
	targets   []string
	visited   []visitedFlag
	// VerdictExit is --verdict-exit: exit 1 or 3 for this process's own
	// verdict (true), or 0 once the run happened and its files were
	// written (false: a shard whose run's verdict is swarm merge's).
	VerdictExit bool
}

func parseFlags(args []string, stdout, stderr io.Writer) (*options, error) {
	o := &options{}
	var (
		weights, stages, learnerIvl, controlIvl, drain string
		shardFlag, startAt, perProctor, processes      string
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
	fs.StringVar(&perProctor, "learners-per-proctor", "auto", "learner IDs a proctor watches (≤ 255 on long-poll); auto = twice the learners per proctor of --weights, so every learner is watched")
	fs.BoolVar(&o.cfg.ReconnectPerSession, "reconnect-per-session", false, "open a new connection for every session (by default an MQTT user keeps its connection across its sessions and re-subscribes on it)")
	fs.DurationVar(&o.cfg.ProctorTimeout, "proctor-timeout", behaviours.DefaultProctorTimeout, "a proctor session ends after this even if its learners have not finished")
	fs.IntVar(&o.cfg.PayloadSize, "payload-size", behaviours.DefaultPayloadSize, "bytes per message")
	fs.StringVar(&drain, "drain", "auto", "how long subscribers keep receiving after publishing stops: a duration, 0 for none, auto = --lost-after + --grace")

	fs.StringVar(&shardFlag, "shard", os.Getenv("JOB_COMPLETION_INDEX"), "this shard's index (default $JOB_COMPLETION_INDEX, else 0)")
	fs.IntVar(&o.cfg.Shards, "shards", 1, "number of shards")
	fs.Uint64Var(&o.cfg.Seed, "seed", 0, "seed of the users' random choices (default random)")
	fs.StringVar(&o.ShardFile, "shard-file", "", "write this shard's result file (exact counts and histograms, for swarm merge) to FILE, even when interrupted; http://HOST:PORT/PATH POSTs it to a swarm merge --listen collector")
	fs.BoolVar(&o.VerdictExit, "verdict-exit", true, "exit 1 (fail) or 3 (inconclusive) for this process's own verdict; false: exit 0 once the run happened and its files were written, as a shard whose verdict is swarm merge's (2 and 4 stay)")
	fs.StringVar(&processes, "processes", "1", "run as N processes of this program (shards of one run, merged live and at the end; past one process's file limit); auto = enough for --users")
	fs.IntVar(&o.childFD, "child-fd", 0, "internal: the pipe a --processes parent reads this child's progress and result from")
	fs.StringVar(&startAt, "start-at", "", "absolute start time, RFC 3339 (e.g. 2026-01-02T15:04:05Z): wait until then so all shards start together; default now")

	if err := cli.ParseArgs(fs, "swarm", "Runs weighted learners and proctors against a bus and verifies their own traffic.\nswarm merge [flags] SHARD-FILE... merges the --shard-file results of a distributed run; swarm merge --listen ADDR --shards N collects them over HTTP (swarm merge -h).", args, stdout, stderr); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	o.visited = visited(fs)
	o.ConfigHash = configHash(fs)

	var errs []error
	addErr := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	errs = append(errs, cli.RejectZero(fs, "swarm", "items", "control-fanout", "proctor-timeout", "payload-size", "latency", "lost-after")...)
	if o.cfg.Shards < 1 {
		errs = append(errs, fmt.Errorf("swarm: --shards must be >= 1, got %d", o.cfg.Shards))
	}
	if perProctor != "auto" {
		n, err := strconv.Atoi(perProctor)
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("swarm: --learners-per-proctor %q: want a count >= 1 or auto", perProctor))
		}
		o.cfg.LearnersPerProctor = n
	}
	if isURL(o.ShardFile) {
		addErr(checkShardURL(o.ShardFile))
	} else {
		addErr(cli.CheckOutput("shard-file", o.ShardFile, false))
	}
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
	if strings.Contains(o.Target.URL, ",") {
		for _, u := range strings.Split(o.Target.URL, ",") {
			if u = strings.TrimSpace(u); u != "" {
				o.targets = append(o.targets, u)
			}
		}
		for _, u := range o.targets[1:] {
			if err := (target.Config{URL: u}).Validate(); err != nil {
				errs = append(errs, err)
			}
		}
		if len(o.targets) > 0 {
			o.Target.URL = o.targets[0]
		}
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
	o.processes, err = parseProcesses(processes, o.cfg, o.Target.Protocol())
	addErr(err)
	switch {
	case o.processes > 1 && (set["shards"] || set["shard"] || o.ShardFile != ""):
		errs = append(errs, errors.New("swarm: --processes makes its own shards: drop --shards, --shard and --shard-file"))
	case o.processes > 1 && o.Metrics != "":
		if _, err := childMetrics(o.Metrics, o.processes-1); err != nil {
			errs = append(errs, err)
		}
	case o.processes == 1 && len(o.targets) > 1:
		errs = append(errs, errors.New("swarm: several --target URLs need --processes N (shard i uses target i mod the number of targets)"))
	case o.childFD < 0 || o.childFD == 1 || o.childFD == 2:
		errs = append(errs, fmt.Errorf("swarm: --child-fd %d is not a pipe fd (set by --processes)", o.childFD))
	}
	if len(errs) > 0 {
		return nil, cli.Usage(errors.Join(errs...))
	}
	return o, nil
}

// spawnWarning is one line when the users cannot all start within the
// publishing time at the spawn rate (the README's --users 2000 example once
// ran 601 users and passed, saying nothing), or "".
func spawnWarning(c behaviours.Config) string {
	if len(c.Stages) > 0 || c.SpawnRate <= 0 || c.Duration <= 0 {
		return ""
	}
	need := time.Duration(float64(c.Users-1) / c.SpawnRate * float64(time.Second))
	if need <= c.Duration {
		return ""
	}
	reach := min(c.Users, int(c.SpawnRate*c.Duration.Seconds())+1)
	rate := math.Ceil(float64(c.Users) / c.Duration.Seconds())
	return fmt.Sprintf("swarm: --users %d at --spawn-rate %g takes %v to start, longer than --duration %v: at most %d users will run; raise --spawn-rate to %g or --duration to %v",
		c.Users, c.SpawnRate, need.Round(time.Second), c.Duration, reach, rate, (need + c.Duration/2).Round(time.Second))
}

func prefixErr(flag string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("swarm: %s: %w", flag, err)
}

// run is main without os.Exit, for tests. handleSignals installs the
// SIGINT/SIGTERM handling: the first stops the run at once (the report is
// still written; the verdict is at best inconclusive), the second exits with
// 130.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, handleSignals bool) int {
	if len(args) > 0 && args[0] == "merge" {
		return runMerge(ctx, args[1:], stdout, stderr, handleSignals)
	}
	o, err := parseFlags(args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return cli.ExitPass
	}
	if err != nil {
		cli.PrintErr(stderr, "swarm", err)
		return cli.Code(err)
	}
	if o.processes > 1 {
		return runProcesses(ctx, o, stdout, stderr, handleSignals) // its own signal handling
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
		err = cli.Usage(fmt.Errorf("swarm: %w", err))
		cli.PrintErr(stderr, "swarm", err)
		return cli.Code(err)
	}
	defer stopPProf()
	if handleSignals {
		// A real process reports an interrupted run at the cut and leaves
		// its users' sockets to the process exit; tests in-process keep
		// Run's wait for every user.
		o.cfg.ReportAtCut = true
	}
	return swarm(ctx, o, stdout, stderr)
}

// swarm runs the load and reports, and returns the exit code.
func swarm(ctx context.Context, o *options, stdout, stderr io.Writer) int {
	// Thousands of mostly idle users keep little live heap, but the default
	// GOGC=100 lets the heap double before a collection: at 10,000 users that
	// headroom is ~11 KB a user. Collect sooner (GC CPU stays around 1%)
	// unless the user chose GOGC.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(swarmGOGC)
	}
	// couldNotRun reports a run that could not start: one line, and the
	// --json and --shard-file... files say so (never a pass). A signal before
	// the start is an interrupted run (exit 3).
	couldNotRun := func(err error) int {
		code := cli.Code(err)
		reason := "could not run: " + err.Error()
		if ctx.Err() != nil {
			code, reason = cli.ExitInconclusive, "interrupted before the run began"
			fmt.Fprintln(stderr, "swarm: interrupted before the run began; verdict inconclusive")
		} else {
			cli.PrintErr(stderr, "swarm", err)
		}
		if o.JSON != "" {
			out := output{RunID: o.cfg.Run.String(), Protocol: o.Target.Protocol(), Shard: o.cfg.Shard, Shards: o.cfg.Shards,
				StartedAt: time.Now(), EndedAt: time.Now(), Interrupted: ctx.Err() != nil, Errors: []string{err.Error()}}
			out.Verdict, out.Reason, out.Gates, out.Windows = verify.Inconclusive, reason, []verify.Gate{}, []verify.Window{}
			if werr := report.WriteJSON(o.JSON, out); werr != nil {
				cli.PrintErr(stderr, "swarm", fmt.Errorf("--json: %w", werr))
			}
		}
		return code
	}
	if err := preflight(o.cfg, o.Target); err != nil {
		cli.PrintErr(stderr, "swarm", err)
		return cli.Code(err)
	}
	if w := spawnWarning(o.cfg); w != "" {
		fmt.Fprintln(stderr, w)
	}
	o.Target.PayloadSize = o.cfg.PayloadSize // bounds the MQTT packets read
	tgt, err := target.Open(o.Target)
	if err != nil {
		return couldNotRun(err)
	}
	defer tgt.Close()
	checkCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = tgt.Check(checkCtx)
	cancel()
	if err != nil {
		return couldNotRun(fmt.Errorf("swarm: cannot use %s: %w", tgt.Describe(), err))
	}
	r, err := behaviours.New(o.cfg, tgt.Dialer())
	if err != nil {
		return couldNotRun(cli.Usage(err))
	}
	cfg := r.Config()
	fmt.Fprintf(stderr, "swarm: run %s shard %d/%d against %s: %d users (%s), %s\n",
		cfg.Run, cfg.Shard, cfg.Shards, tgt.Describe(), cfg.Users, cfg.Weights, plan(cfg))
	col := metrics.NewSwarm(metrics.Info{Command: "swarm", RunID: cfg.Run.String(), Shard: cfg.Shard, Protocol: tgt.Protocol(), Target: tgt.Describe(),
		Version: cli.Version(), Latency: cfg.Verify.Latency, LostAfter: cfg.Verify.LostAfter, Within: cfg.Verify.Gates.Within})
	col.Attach(r)
	busLive := col.BusStats()
	stopMetrics, err := o.ServeMetrics("swarm", col, stderr)
	if err != nil {
		cli.PrintErr(stderr, "swarm", err)
		return cli.Code(err)
	}
	defer stopMetrics()

	if !o.StartAt.IsZero() {
		if err := waitUntil(ctx, o.StartAt, stderr); err != nil {
			// Nothing ran: no report, no shard file (merge then reports the shard missing).
			fmt.Fprintln(stderr, "swarm: interrupted before --start-at; nothing ran, nothing written")
			return cli.ExitInconclusive
		}
	}

	var wg sync.WaitGroup
	liveCtx, stopLive := context.WithCancel(ctx)
	if !o.Quiet {
		wg.Go(func() { live(liveCtx, r, o.Live, stderr) })
	}
	var parent *childReporter
	if o.childFD > 0 {
		parent = newChildReporter(o.childFD)
		wg.Go(func() { parent.progressLoop(liveCtx, r) })
	}
	var ticks []report.Tick // the HTML report's samples over time
	if o.HTML != "" || o.ShardFile != "" || parent != nil {
		// (a shard's samples go into its shard file, for the merged report)
		wg.Go(func() { ticks = sampleTicks(liveCtx, r, o.Live) })
	}
	stopBusStats := o.StartBusStats(ctx, tgt, "swarm-"+cfg.Run.String()[:8]+"-sys-s"+strconv.Itoa(cfg.Shard), busLive)
	var stoppedAt atomic.Int64
	stopWatch := context.AfterFunc(ctx, func() { stoppedAt.Store(time.Now().UnixNano()) })
	s, err := r.Run(ctx)
	if !stopWatch() {
		if at := stoppedAt.Load(); at != 0 && s.StillStopping == 0 { // (else the stop line says it)
			fmt.Fprintf(stderr, "swarm: every user stopped in %v\n", time.Since(time.Unix(0, at)).Round(time.Millisecond))
		}
	}
	stopLive()
	wg.Wait()
	busStats := stopBusStats()
	if err != nil {
		return couldNotRun(err)
	}
	if lb := tgt.Embedded(); lb != nil && o.Faults.Enabled() {
		fmt.Fprintf(stderr, "swarm: embedded bus injected: %+v\n", lb.Injected())
	}
	// What stopped the run from measuring anything: a refusal retrying will
	// not fix, or a bus that took no connection at all.
	var runErr error
	if s.Result.Verdict != verify.Fail {
		if c, _ := s.Ops.Op("connect"); c.Count > 0 && c.Failures == c.Count {
			runErr = cli.CouldNotRun(fmt.Errorf("swarm: every one of %d connects to %s failed (%s)", c.Count, tgt.Describe(), topClasses(c.FailuresByClass)))
		} else if s.Refused != nil {
			runErr = fmt.Errorf("swarm: the bus refused: %w", s.Refused)
		}
	}
	col.Finish(s.Result.Verdict)
	if d := busStats.DroppedCount(); d > 0 {
		// The broker says it dropped messages: say so beside the verdict (the gates decide it).
		note := fmt.Sprintf("the broker reports %d messages dropped during the run (%s)", d, busstats.DroppedKey)
		fmt.Fprintln(stderr, "swarm: "+note)
		s.Result.Reason = strings.TrimPrefix(s.Result.Reason+"; "+note, "; ")
	}
	out := newOutput(s, tgt, cfg)
	out.BusStats = busStats
	if runErr != nil {
		out.Errors = append(out.Errors, runErr.Error())
	}
	var errs []error
	tables := o.TableOut(stdout, stderr) // --json - keeps stdout for the JSON
	if err := report.OpsTable(tables, s.Ops); err != nil {
		errs = append(errs, err)
	}
	fmt.Fprintln(tables, usersLine(out.Users, s.PoolFree, s.PoolActive))
	fmt.Fprintln(tables, generatorLine(s.Generator))
	for _, name := range []string{behaviours.StreamLearnerToProctor, behaviours.StreamProctorToLearner} {
		c := s.Streams[name].Counts
		fmt.Fprintf(tables, "%s: coverage %s (%d of %d published expected by a subscriber); windows %s; %s\n", name,
			pctText(c.Covered, c.PublishAttempted), c.Covered, c.PublishAttempted, report.WindowsSummary(s.Streams[name].Windows), report.VerdictLine(s.Streams[name]))
	}
	if err := report.Table(tables, s.Result); err != nil {
		errs = append(errs, err)
	}
	fmt.Fprintln(tables, stopLine(s))
	if s.Interrupted {
		fmt.Fprintln(stderr, "swarm: the run was interrupted; messages still in flight are pending, not lost; the verdict cannot be a pass")
	}
	if len(errs) > 0 {
		// stdout gone (a closed pipe): say so, and still write the files.
		cli.PrintErr(stderr, "swarm", errors.Join(errs...))
		errs = nil
	}
	if o.JSON != "" {
		if err := report.WriteJSON(o.JSON, out); err != nil {
			errs = append(errs, fmt.Errorf("swarm: --json: %w", err))
		}
	}
	if o.HTML != "" {
		if err := report.WritePage(o.HTML, swarmPage(o, cfg, s, out, ticks)); err != nil {
			errs = append(errs, fmt.Errorf("swarm: --html: %w", err))
		}
	}
	if o.ShardFile != "" || parent != nil {
		f, err := shardFileOf(o, cfg, s, ticks)
		switch {
		case err != nil:
			errs = append(errs, err)
		case parent != nil:
			parent.send(childMsg{Type: "final", Shard: &f})
		default:
			if err := writeShard(o, f); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if runErr != nil {
		cli.PrintErr(stderr, "swarm", runErr)
	}
	werr := errors.Join(errs...)
	if werr != nil {
		cli.PrintErr(stderr, "swarm", werr)
		if runErr == nil {
			runErr = cli.CouldNotRun(werr)
		}
	}
	if !o.VerdictExit {
		// This process's verdict is not the run's: only what kept the run
		// or its files from happening fails it.
		if runErr != nil {
			return cli.Code(runErr)
		}
		if code := cli.ExitCode(s.Result.Verdict); code != cli.ExitPass {
			fmt.Fprintf(stderr, "swarm: this shard's own verdict is %s (exit %d); --verdict-exit=false: exit 0, the run's verdict is swarm merge's\n", s.Result.Verdict, code)
		}
		return cli.ExitPass
	}
	return cli.Exit(s.Result.Verdict, runErr)
}

// topClasses names the failure classes of an operation, most frequent first.
func topClasses(m map[string]uint64) string {
	type kv struct {
		k string
		n uint64
	}
	var l []kv
	for k, n := range m {
		l = append(l, kv{k, n})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].n > l[j].n || (l[i].n == l[j].n && l[i].k < l[j].k) })
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = fmt.Sprintf("%s %d", e.k, e.n)
	}
	return strings.Join(parts, ", ")
}

func pctText(num, den uint64) string {
	if den == 0 {
		return "-"
	}
	return strconv.FormatFloat(100*float64(num)/float64(den), 'f', 1, 64) + "%"
}

// usersLine is the users in the final table: target, peak, when the target
// was reached, by kind, and the ID pool.
func usersLine(u report.Users, free, active int) string {
	reached := "target never reached"
	if u.ReachedAfter != nil {
		reached = fmt.Sprintf("target reached after %.1fs", *u.ReachedAfter)
	}
	return fmt.Sprintf("users: target %d peak %d started %d, %s; %s%s", u.Target, u.Peak, u.Started, reached,
		report.UsersLine(u.ByKind, map[string]int{"free": free, "active": active}), connsText(u))
}

// generatorLine is swarm's own lag: a failure is inconclusive when over 1% of
// its sends started late (it says more about this machine than the bus).
func generatorLine(g verify.SendLag) string {
	line := fmt.Sprintf("generator: %d paced sends, %d started over %v late (max lag %.0fms)", g.Sends, g.LateSends, verify.LateSend, g.MaxSendLagMS)
	if verify.Overloaded(g.Sends, g.LateSends) {
		line += "; overloaded: a failing verdict is inconclusive (give swarm more CPU, fewer users per process, or --processes)"
	}
	return line
}

// connsText is the connections and sessions per user started, if known.
func connsText(u report.Users) string {
	if u.Started == 0 || u.Sessions == 0 {
		return ""
	}
	n := float64(u.Started)
	return fmt.Sprintf("; per user: %.2f connections, %.2f sessions", float64(u.Connections)/n, float64(u.Sessions)/n)
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
	var line report.Live
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p := r.Progress()
		ev, ct := p.Streams[behaviours.StreamLearnerToProctor].Counts, p.Streams[behaviours.StreamProctorToLearner].Counts
		phase := p.Phase
		if phase == behaviours.PhaseRun {
			phase = "steady"
			if p.UsersPeak < p.UsersTarget {
				phase = "ramp-up"
			}
		}
		fmt.Fprintf(w, "%s; coverage events %s control %s\n", line.Line(p.Elapsed, phase, p.Left, p.Result),
			pctText(ev.Covered, ev.PublishAttempted), pctText(ct.Covered, ct.PublishAttempted))
		fmt.Fprintf(w, "%s; target %d peak %d\n", report.UsersLine(p.Active, map[string]int{"free": p.PoolFree, "active": p.PoolActive}),
			p.UsersTarget, p.UsersPeak)
		_ = report.OpsTable(w, p.Ops.Delta(prev))
		prev = p.Ops
	}
}

// output is the --json result; see the package comment for the fields.
type output struct {
	verify.Result
	RunID       string    `json:"run_id"`
	Protocol    string    `json:"protocol"`
	Target      string    `json:"target"`
	Shard       int       `json:"shard"`
	Shards      int       `json:"shards"`
	StartedAt   time.Time `json:"started_at"`
	EndedAt     time.Time `json:"ended_at"`
	Interrupted bool      `json:"interrupted"`
	Drained     bool      `json:"drained"`
	StopMS      float64   `json:"stop_ms"`
	// StillStopping: users still closing when an interrupted run reported.
	StillStopping int                      `json:"still_stopping,omitempty"`
	Streams       map[string]verify.Result `json:"streams"`
	Users         report.Users             `json:"users"`
	Generator     verify.SendLag           `json:"generator"`
	Operations    stats.Snapshot           `json:"operations"`
	IDPool        idPool                   `json:"id_pool"`
	// Coverage is each direction's Covered/PublishAttempted.
	Coverage map[string]float64 `json:"coverage"`
	Errors   []string           `json:"errors,omitempty"`
	// BusStats is the bus's own health during the run (--bus-stats).
	BusStats *busstats.Series `json:"bus_stats,omitempty"`
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// usersOf is the summary's users in the JSON and shard-file form.
func usersOf(s behaviours.Summary) report.Users {
	u := report.Users{Target: s.UsersTarget, Peak: s.UsersPeak, Started: s.UsersStarted, ByKind: s.UsersByKind,
		Connections: s.Connections, Sessions: s.Sessions}
	if s.UsersReachedAfter >= 0 {
		v := math.Round(s.UsersReachedAfter.Seconds()*1000) / 1000
		u.ReachedAfter = &v
	}
	return u
}

type idPool struct {
	Free   int `json:"free"`
	Active int `json:"active"`
}

func newOutput(s behaviours.Summary, tgt *target.Target, cfg behaviours.Config) output {
	streams := make(map[string]verify.Result, len(s.Streams))
	coverage := make(map[string]float64, len(s.Streams))
	for name, r := range s.Streams {
		r.Subscribers = nil // one per session: too many to be useful here
		streams[name] = r
		coverage[name] = r.Counts.Coverage()
	}
	return output{
		Result: s.Result, RunID: s.Run.String(), Protocol: tgt.Protocol(), Target: tgt.Describe(),
		Shard: cfg.Shard, Shards: cfg.Shards, StartedAt: s.Start, EndedAt: s.End,
		Interrupted: s.Interrupted, Drained: s.Drained, Streams: streams,
		StopMS: float64(s.StopTook) / float64(time.Millisecond), StillStopping: s.StillStopping,
		Users: usersOf(s), Generator: s.Generator,
		Operations: s.Ops, IDPool: idPool{Free: s.PoolFree, Active: s.PoolActive},
		Coverage: coverage,
	}
}
