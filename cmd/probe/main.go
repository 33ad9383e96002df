// Command probe is eventswarm's delivery verifier: it publishes
// sequence-stamped messages, subscribes to them and judges delivery against
// SLOs (95% within 2 s, exactly once per subscriber, over 15 s is lost). Its
// exit code gates CI: 0 pass, 1 SLO failed, 2 usage/config error,
// 3 inconclusive, 4 could not run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/eventswarm/eventswarm/cmd/internal/cli"
	"github.com/eventswarm/eventswarm/internal/busstats"
	"github.com/eventswarm/eventswarm/internal/metrics"
	"github.com/eventswarm/eventswarm/internal/probe"
	"github.com/eventswarm/eventswarm/internal/report"
	"github.com/eventswarm/eventswarm/internal/target"
	"github.com/eventswarm/eventswarm/internal/verify"
)

func main() {
	cli.IgnoreSIGPIPE()
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, true))
}

// options are the parsed flags.
type options struct {
	cli.Common
	cfg            probe.Config
	run            verify.RunID
	junitPath      string
	connectTimeout time.Duration
	cpuProfile     string
	windowLog      string
	procs          int // --procs: -1 auto, 0 Go's default, else GOMAXPROCS
}

func parseFlags(args []string, stdout, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	o.Register(fs, &o.cfg.Ledger)
	fs.DurationVar(&o.cfg.Duration, "duration", 30*time.Second, "publishing time including warm-up; 0 = until SIGINT/SIGTERM, reporting each window")
	fs.DurationVar(&o.cfg.Warmup, "warmup", 2*time.Second, "initial publishing time not measured (may be 0)")
	fs.Float64Var(&o.cfg.Rate, "rate", 10, "messages per second per stream")
	fs.IntVar(&o.cfg.Streams, "streams", 1, "publishing streams (topics)")
	fs.IntVar(&o.cfg.Subscribers, "subscribers", 2, "subscribers per stream (fan-out); each subscribes to every stream")
	fs.StringVar(&o.cfg.ShareGroup, "share-group", "", "MQTT: the subscribers are one share group NAME (each subscribes to $share/NAME/<topic>; the broker delivers each message to one of them): every message is expected exactly once per group, not per subscriber")
	fs.IntVar(&o.cfg.PayloadSize, "payload-size", 256, "bytes per message (at least the stamp size)")
	fs.DurationVar(&o.cfg.Tick, "send-tick", time.Millisecond, "MQTT: messages due within this leave together, one write per stream (at most this much later than intended; latency counts from the intended time); 0 = each message at its own time, one write each")
	fs.StringVar(&o.cfg.TopicPrefix, "topic-prefix", "eventswarm.probe", "topics are <prefix>.<run id>.<stream>")
	fs.DurationVar(&o.cfg.BarrierTimeout, "barrier-timeout", 15*time.Second, "how long subscribers may take to receive the first readiness marker")
	fs.DurationVar(&o.connectTimeout, "connect-timeout", 10*time.Second, "how long the first reach of the target may take")
	fs.StringVar(&o.junitPath, "junit", "", "write one JUnit test case per gate to FILE")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a Go CPU profile of the probe to FILE (diagnostics)")
	procs := fs.String("procs", "auto", "scheduler threads (GOMAXPROCS) for probe: auto = 1 when the planned publishes + deliveries per second are at most 20000 (260000 on MQTT at QoS 0) against an external bus and $GOMAXPROCS is unset (idle threads' spinning costs more than it gives at paced rates), else Go's default; 0 = Go's default; N = N")
	fs.StringVar(&o.windowLog, "window-log", "", "append each closed window as one line of JSON to FILE (with --duration 0 and no --window-log: to stderr)")
	if err := cli.ParseArgs(fs, "probe", "Publishes sequence-stamped messages, subscribes to them and gates on delivery SLOs.", args, stdout, stderr); err != nil {
		return nil, err
	}
	run, errs := o.Finish("probe", o.cfg.Ledger)
	errs = append(errs, cli.RejectZero(fs, "probe", "barrier-timeout", "connect-timeout", "latency", "lost-after", "payload-size")...)
	if err := cli.CheckOutput("junit", o.junitPath, false); err != nil {
		errs = append(errs, err)
	}
	if err := cli.CheckOutput("window-log", o.windowLog, false); err != nil {
		errs = append(errs, err)
	}

	o.run = run
	if n, err := parseProcs(*procs); err != nil {
		errs = append(errs, err)
	} else {
		o.procs = n
	}
	// Flags have non-zero defaults, so a zero here was typed: reject it before
	// Defaults would replace it.
	if o.cfg.Rate <= 0 {
		errs = append(errs, fmt.Errorf("probe: --rate must be > 0 messages/s, got %v", o.cfg.Rate))
	}
	if o.cfg.Streams < 1 {
		errs = append(errs, fmt.Errorf("probe: --streams must be >= 1, got %d", o.cfg.Streams))
	}
	if o.cfg.Subscribers < 1 {
		errs = append(errs, fmt.Errorf("probe: --subscribers must be >= 1, got %d", o.cfg.Subscribers))
	}
	if o.cfg.BarrierTimeout <= 0 || o.connectTimeout <= 0 {
		errs = append(errs, errors.New("probe: --barrier-timeout and --connect-timeout must be > 0"))
	}
	if o.cfg.ShareGroup != "" && o.Target.Protocol() != target.MQTT {
		errs = append(errs, errors.New("probe: --share-group applies to MQTT targets (shared subscriptions are MQTT's)"))
	}
	if len(errs) > 0 {
		return nil, cli.Usage(errors.Join(errs...))
	}
	o.cfg.Live = o.Live
	o.cfg.ResubscribeOnConnect = o.Target.Protocol() == target.MQTT || o.Target.Streams()
	if o.Target.Protocol() == target.MQTT {
		o.cfg.MaxStreams = 100000
	}
	o.cfg.Defaults()
	if err := o.cfg.Validate(); err != nil {
		return nil, cli.Usage(err)
	}
	return o, nil
}

// run is main without os.Exit, for tests. handleSignals installs SIGINT/SIGTERM
// handling: the first stops publishing and drains, the second cuts the drain
// short (the report is still written), the third exits at once.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, handleSignals bool) int {
	o, err := parseFlags(args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return cli.ExitPass
	}
	if err != nil {
		cli.PrintErr(stderr, "probe", err)
		return cli.Code(err)
	}

	hard, hardStop := context.WithCancel(ctx)
	defer hardStop()
	stop, stopPublishing := context.WithCancel(hard)
	defer stopPublishing()
	if handleSignals {
		defer cli.OnSignals(func() {
			fmt.Fprintln(stderr, "probe: stopping: publishing stopped, draining (signal again to cut the drain short)")
			stopPublishing()
		}, func() {
			fmt.Fprintln(stderr, "probe: drain cut short; the unfinished tail is inconclusive")
			hardStop()
		})()
	}

	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			err = cli.Usage(fmt.Errorf("probe: --cpuprofile: %w", err))
			cli.PrintErr(stderr, "probe", err)
			return cli.Code(err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	stopPProf, err := o.ServePProf()
	if err != nil {
		err = cli.Usage(fmt.Errorf("probe: %w", err))
		cli.PrintErr(stderr, "probe", err)
		return cli.Code(err)
	}
	defer stopPProf()
	run := o.run
	if run.IsZero() {
		run = verify.NewRunID()
	}
	// couldNotRun reports a failure before anything was measured: one line, and
	// the --json/--junit/--html files still say so (verdict inconclusive, never
	// pass). A signal during the check is an interrupted run (exit 3).
	couldNotRun := func(err error) int {
		out := probe.Outcome{RunID: run.String(), StartedAt: time.Now(), Errors: []string{err.Error()}}
		out.Protocol = o.Target.Protocol()
		out.Gates, out.Windows = []verify.Gate{}, []verify.Window{}
		code := cli.Code(err)
		out.Verdict, out.Reason = verify.Inconclusive, "could not run: "+err.Error()
		if stop.Err() != nil {
			out.Interrupted, out.Reason, code = true, "interrupted before the run began", cli.ExitInconclusive
			fmt.Fprintln(stderr, "probe: interrupted before the run began; verdict inconclusive")
		} else {
			cli.PrintErr(stderr, "probe", err)
		}
		if werr := writeOutputs(o, out, nil); werr != nil {
			cli.PrintErr(stderr, "probe", werr)
		}
		return code
	}
	o.Target.PayloadSize = o.cfg.PayloadSize // bounds the MQTT packets read
	tgt, err := target.Open(o.Target)
	if err != nil {
		return couldNotRun(err)
	}
	defer tgt.Close()
	checkCtx, cancel := context.WithTimeout(stop, o.connectTimeout)
	err = tgt.Check(checkCtx)
	cancel()
	if err != nil {
		return couldNotRun(fmt.Errorf("probe: cannot use %s: %w", tgt.Describe(), err))
	}
	if handleSignals { // the real process only: tests run probe in theirs
		if n, why := chooseProcs(o.procs, os.Getenv("GOMAXPROCS"), plannedLoad(o.cfg),
			tgt.Protocol() == target.MQTT && o.Target.QoS == 0, tgt.Embedded() != nil); n > 0 {
			runtime.GOMAXPROCS(n)
			if why != "" {
				fmt.Fprintln(stderr, "probe: "+why)
			}
		}
	}
	subs := fmt.Sprintf("%d subscriber(s)", o.cfg.Subscribers)
	if g := o.cfg.ShareGroup; g != "" {
		subs = fmt.Sprintf("share group %s of %d subscriber(s), each message expected once per group", g, o.cfg.Subscribers)
	}
	fmt.Fprintf(stderr, "probe: run %s against %s: %d stream(s) × %g msg/s, %s, %s\n",
		run, tgt.Describe(), o.cfg.Streams, o.cfg.Rate, subs, durationText(o.cfg.Duration))

	col := metrics.NewProbe(metrics.Info{Command: "probe", RunID: run.String(), Protocol: tgt.Protocol(), Target: tgt.Describe(),
		Version: cli.Version(), Latency: o.cfg.Ledger.Latency, LostAfter: o.cfg.Ledger.LostAfter, Within: o.cfg.Ledger.Gates.Within})
	busLive := col.BusStats()
	stopMetrics, err := o.ServeMetrics("probe", col, stderr)
	if err != nil {
		cli.PrintErr(stderr, "probe", err)
		return cli.Code(err)
	}
	defer stopMetrics()
	windowLog, closeLog, err := o.openWindowLog(stderr)
	if err != nil {
		cli.PrintErr(stderr, "probe", err)
		return cli.Code(err)
	}
	defer closeLog()
	var view *probe.View
	logged := 0 // windows written to the window log
	hooks := probe.Hooks{
		OnStart: func(v *probe.View) { view = v; col.Attach(v) },
		OnWindow: func(w verify.Window) {
			if windowLog != nil {
				_, _ = windowLog.Write(report.WindowJSON(run.String(), view.Origin(), time.Now(), w))
				logged++
			}
			if windowLog != stderr {
				fmt.Fprintln(stderr, report.WindowLine(w))
			}
		},
	}
	if !o.Quiet {
		var phase atomic.Value
		phase.Store("")
		var liveLine report.Live
		end := o.cfg.Duration + o.cfg.Ledger.LostAfter + o.cfg.Ledger.Grace // publishing and the drain
		hooks.OnLive = func(el time.Duration, snap verify.Result) {
			left := time.Duration(-1)
			if o.cfg.Duration > 0 {
				left = max(end-el, 0)
			}
			fmt.Fprintln(stderr, liveLine.Line(el, phase.Load().(string), left, snap))
		}
		hooks.OnPhase = func(ph string) { phase.Store(ph); fmt.Fprintf(stderr, "probe: %s\n", ph) }
	}
	stopBusStats := o.StartBusStats(hard, tgt, "probe-"+run.String()[:8]+"-sys", busLive)
	out, runErr := probe.Run(hard, stop, o.cfg, run, tgt.Dialer(), hooks)
	out.Protocol, out.Target = tgt.Protocol(), tgt.Describe()
	busStats := stopBusStats()
	if d := busStats.DroppedCount(); d > 0 {
		// The broker says it dropped messages: say so beside the verdict (the gates decide it).
		note := fmt.Sprintf("the broker reports %d messages dropped during the run (%s)", d, busstats.DroppedKey)
		fmt.Fprintln(stderr, "probe: "+note)
		out.Reason = strings.TrimPrefix(out.Reason+"; "+note, "; ")
	}
	col.Finish(out.Verdict)
	if windowLog != nil && view != nil {
		// The windows the run closed at its end (the drain's last ones).
		for _, w := range out.Windows[min(logged, len(out.Windows)):] {
			_, _ = windowLog.Write(report.WindowJSON(run.String(), view.Origin(), time.Now(), w))
		}
	}
	if runErr != nil {
		out.Errors = append(out.Errors, runErr.Error())
	}
	if lb := tgt.Embedded(); lb != nil && o.Faults.Enabled() {
		inj := lb.Injected()
		fmt.Fprintf(stderr, "probe: embedded bus injected: %+v\n", inj)
	}
	if runErr != nil && out.Interrupted {
		// A signal while connecting or at the barrier: the run was
		// interrupted, not broken.
		fmt.Fprintln(stderr, "probe: interrupted before publishing began; verdict inconclusive")
		runErr = nil
	}
	if runErr != nil && out.Counts.Corrupt+out.Counts.Unexpected == 0 {
		cli.PrintErr(stderr, "probe", runErr)
		if werr := writeOutputs(o, out, busStats); werr != nil {
			cli.PrintErr(stderr, "probe", werr)
		}
		return cli.Code(runErr)
	}
	if runErr != nil {
		// The bus delivered garbage: a failure of the bus, whatever else went wrong.
		cli.PrintErr(stderr, "probe", runErr)
		fmt.Fprintf(stderr, "probe: FAIL: the bus delivered %d corrupt and %d unexpected payloads\n", out.Counts.Corrupt, out.Counts.Unexpected)
	}
	if err := report.Table(o.TableOut(stdout, stderr), out.Result); err != nil {
		cli.PrintErr(stderr, "probe", err) // stdout gone (a closed pipe): the files still follow
	}
	if out.ShareGroup != "" {
		fmt.Fprintf(o.TableOut(stdout, stderr), "share group %s: %d members; every message expected once per group (lost: no member got it; duplicate: the group got it twice)\n", out.ShareGroup, out.GroupSize)
	}
	if out.Interrupted {
		fmt.Fprintln(stderr, "probe: the run was interrupted: the verdict cannot be a pass")
	}
	werr := writeOutputs(o, out, busStats)
	if werr != nil {
		cli.PrintErr(stderr, "probe", werr)
	}
	return cli.Exit(out.Result.Verdict, cli.CouldNotRun(werr))
}

// jsonResult is the --json file: the outcome and the bus's own statistics.
type jsonResult struct {
	probe.Outcome
	BusStats *busstats.Series `json:"bus_stats,omitempty"`
}

func writeOutputs(o *options, out probe.Outcome, bus *busstats.Series) error {
	var errs []error
	if o.JSON != "" {
		if err := report.WriteJSON(o.JSON, jsonResult{out, bus}); err != nil {
			errs = append(errs, fmt.Errorf("probe: --json: %w", err))
		}
	}
	if o.HTML != "" {
		page := htmlPage(o, out, time.Now())
		page.Bus = bus
		if err := report.WritePage(o.HTML, page); err != nil {
			errs = append(errs, fmt.Errorf("probe: --html: %w", err))
		}
	}
	if o.junitPath != "" {
		if err := report.WriteJUnit(o.junitPath, "eventswarm.probe", out.Result); err != nil {
			errs = append(errs, fmt.Errorf("probe: --junit: %w", err))
		}
	}
	return errors.Join(errs...)
}

// openWindowLog is where closed windows go as JSON lines: --window-log FILE
// (appended), else stderr with --duration 0, else nowhere (nil).
func (o *options) openWindowLog(stderr io.Writer) (w io.Writer, closeLog func(), err error) {
	switch {
	case o.windowLog != "":
		f, err := os.OpenFile(o.windowLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, nil, cli.Usage(fmt.Errorf("probe: --window-log: %w", err))
		}
		return f, func() { f.Close() }, nil
	case o.cfg.Duration == 0:
		return stderr, func() {}, nil
	}
	return nil, func() {}, nil
}

func durationText(d time.Duration) string {
	if d == 0 {
		return "until interrupted"
	}
	return "for " + d.String()
}
