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
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/eventswarm/eventswarm/bus"
	"github.com/eventswarm/eventswarm/localbus"
	"github.com/eventswarm/eventswarm/mqtt"
	"github.com/eventswarm/eventswarm/probe"
	"github.com/eventswarm/eventswarm/report"
	"github.com/eventswarm/eventswarm/target"
	"github.com/eventswarm/eventswarm/verify"
)

// Exit codes (DESIGN.md).
const (
	exitPass         = 0
	exitFail         = 1
	exitUsage        = 2
	exitInconclusive = 3
	exitCouldNotRun  = 4
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, true))
}

// options are the parsed flags.
type options struct {
	tgt            target.Config
	cfg            probe.Config
	faults         localbus.Faults
	faultDelays    string
	hold           time.Duration
	jsonPath       string
	junitPath      string
	runID          string
	quiet          bool
	connectTimeout time.Duration
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.tgt.URL, "target", "", "bus URL: mqtt://host:1883, mqtts://host:8883, http://host:port/ (Nchan long-poll); empty = embedded bus")
	fs.StringVar(&o.tgt.Embedded, "embedded", "http", "protocol against the embedded bus when --target is empty: http or mqtt")
	fs.IntVar(&o.tgt.QoS, "qos", 1, "MQTT QoS for publish and subscribe: 0, 1 or 2")
	fs.StringVar(&o.tgt.Username, "username", "", "MQTT username")
	fs.StringVar(&o.tgt.Password, "password", os.Getenv("EVENTSWARM_PASSWORD"), "MQTT password (default $EVENTSWARM_PASSWORD)")
	fs.StringVar(&o.tgt.CAFile, "ca-file", "", "PEM CA bundle to verify mqtts/https servers")
	fs.BoolVar(&o.tgt.Insecure, "insecure", false, "skip TLS certificate verification (explicit opt-in)")
	fs.StringVar(&o.tgt.PubPath, "pub-path", "pub/", "long-poll publish path under the target URL (POST <url>/<pub-path><channel>)")
	fs.StringVar(&o.tgt.SubPath, "sub-path", "sub/", "long-poll subscribe path under the target URL (GET <url>/<sub-path><ch1>,<ch2>)")
	fs.DurationVar(&o.tgt.PublishTimeout, "publish-timeout", 5*time.Second, "a publish not acknowledged within this has an unknown outcome")

	fs.DurationVar(&o.cfg.Duration, "duration", 30*time.Second, "publishing time including warm-up; 0 = until SIGINT/SIGTERM, reporting each window")
	fs.DurationVar(&o.cfg.Warmup, "warmup", 2*time.Second, "initial publishing time not measured (may be 0)")
	fs.Float64Var(&o.cfg.Rate, "rate", 10, "messages per second per stream")
	fs.IntVar(&o.cfg.Streams, "streams", 1, "publishing streams (topics)")
	fs.IntVar(&o.cfg.Subscribers, "subscribers", 2, "subscribers per stream (fan-out); each subscribes to every stream")
	fs.IntVar(&o.cfg.PayloadSize, "payload-size", 256, "bytes per message (at least the stamp size)")
	fs.StringVar(&o.cfg.TopicPrefix, "topic-prefix", "eventswarm.probe", "topics are <prefix>.<run id>.<stream>")
	fs.DurationVar(&o.cfg.Ledger.Window, "window", time.Minute, "window length for per-window results")
	fs.DurationVar(&o.cfg.Live, "live", 5*time.Second, "interval of the live line")
	fs.DurationVar(&o.cfg.BarrierTimeout, "barrier-timeout", 15*time.Second, "how long subscribers may take to receive the first readiness marker")
	fs.DurationVar(&o.connectTimeout, "connect-timeout", 10*time.Second, "how long the first reach of the target may take")

	fs.DurationVar(&o.cfg.Ledger.Latency, "latency", 2*time.Second, "on-time bound (inclusive)")
	fs.Float64Var(&o.cfg.Ledger.Gates.Within, "within", 0.95, "fraction of expected messages that must be on time")
	fs.DurationVar(&o.cfg.Ledger.LostAfter, "lost-after", 15*time.Second, "a message not delivered within this is lost")
	fs.DurationVar(&o.cfg.Ledger.Grace, "grace", time.Second, "extra drain time after --lost-after")
	fs.Uint64Var(&o.cfg.Ledger.Gates.MaxLost, "max-lost", 0, "most lost messages allowed")
	fs.Uint64Var(&o.cfg.Ledger.Gates.MaxDuplicates, "max-duplicates", 0, "most duplicate deliveries allowed")
	fs.Float64Var(&o.cfg.Ledger.Gates.MinPublishAvailability, "min-publish-availability", 0.999, "fraction of publishes that must succeed")

	fs.StringVar(&o.jsonPath, "json", "", "write the result as JSON to FILE (- for stdout)")
	fs.StringVar(&o.junitPath, "junit", "", "write one JUnit test case per gate to FILE")
	fs.StringVar(&o.runID, "run-id", "", "run ID (32 hex digits); default random")
	fs.BoolVar(&o.quiet, "quiet", false, "no live line")

	fs.Float64Var(&o.faults.Drop, "fault-drop", 0, "embedded bus only: fraction of deliveries to drop")
	fs.Float64Var(&o.faults.Duplicate, "fault-duplicate", 0, "embedded bus only: fraction of deliveries to duplicate")
	fs.Float64Var(&o.faults.Delay, "fault-delay", 0, "embedded bus only: fraction of deliveries to delay by one of --fault-delays")
	fs.StringVar(&o.faultDelays, "fault-delays", "3s,16s", "embedded bus only: comma-separated delays for --fault-delay")
	fs.Float64Var(&o.faults.Corrupt, "fault-corrupt", 0, "embedded bus only: fraction of deliveries to corrupt")
	fs.Uint64Var(&o.faults.Seed, "fault-seed", 1, "embedded bus only: seed of the fault decisions")
	fs.DurationVar(&o.hold, "hold", 25*time.Second, "embedded bus only: long-poll hold before 408")

	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: probe [flags]\n\nPublishes sequence-stamped messages, subscribes to them and gates on delivery SLOs.\nExit codes: 0 pass, 1 SLO failed, 2 usage error, 3 inconclusive, 4 could not run.\n\nFlags:\n")
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.Usage()
			return nil, err
		}
		return nil, fmt.Errorf("probe: %v (run probe -h for the flags)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("probe: unexpected argument %q (flags only; run probe -h)", fs.Arg(0))
	}
	var errs []error
	if o.faults.Drop+o.faults.Duplicate+o.faults.Delay+o.faults.Corrupt > 0 {
		if o.tgt.URL != "" {
			errs = append(errs, errors.New("probe: --fault-* flags only apply to the embedded bus (no --target)"))
		}
		for _, f := range strings.Split(o.faultDelays, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(f))
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Errorf("probe: --fault-delays: %q is not a positive duration", f))
				continue
			}
			o.faults.Delays = append(o.faults.Delays, d)
		}
		o.faults.Skip = probe.IsMarker
	}
	o.tgt.Bus = localbus.Config{Hold: o.hold, Faults: o.faults}
	if err := o.tgt.Validate(); err != nil {
		errs = append(errs, err)
	}
	o.cfg.ResubscribeOnConnect = o.tgt.Protocol() == target.MQTT
	if o.tgt.Protocol() == target.MQTT {
		o.cfg.MaxStreams = 100000
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
	if o.cfg.Ledger.Window <= 0 || o.cfg.Ledger.Latency <= 0 || o.cfg.Ledger.LostAfter <= 0 || o.cfg.Live <= 0 ||
		o.cfg.BarrierTimeout <= 0 || o.connectTimeout <= 0 {
		errs = append(errs, errors.New("probe: --window, --latency, --lost-after, --live, --barrier-timeout and --connect-timeout must be > 0"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	o.cfg.Defaults()
	if err := o.cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := o.cfg.Ledger.Gates.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.runID != "" {
		if _, err := verify.ParseRunID(o.runID); err != nil {
			errs = append(errs, fmt.Errorf("probe: --run-id: %v", err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return o, nil
}

// run is main without os.Exit, for tests. handleSignals installs SIGINT/SIGTERM
// handling: the first stops publishing and drains, the second cuts the drain
// short (the report is still written), the third exits at once.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, handleSignals bool) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitPass
	}
	if err != nil {
		printErr(stderr, err)
		return exitUsage
	}

	hard, hardStop := context.WithCancel(ctx)
	defer hardStop()
	stop, stopPublishing := context.WithCancel(hard)
	defer stopPublishing()
	if handleSignals {
		sigs := make(chan os.Signal, 3)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		defer signal.Stop(sigs)
		go func() {
			n := 0
			for range sigs {
				n++
				switch n {
				case 1:
					fmt.Fprintln(stderr, "probe: stopping: publishing stopped, draining (signal again to cut the drain short)")
					stopPublishing()
				case 2:
					fmt.Fprintln(stderr, "probe: drain cut short; the unfinished tail is inconclusive")
					hardStop()
				default:
					os.Exit(130)
				}
			}
		}()
	}

	run := verify.NewRunID()
	if o.runID != "" {
		run, _ = verify.ParseRunID(o.runID)
	}
	// couldNotRun reports a failure before anything was measured: one line, and
	// the --json/--junit files still say so (verdict inconclusive, never pass).
	couldNotRun := func(err error) int {
		printErr(stderr, err)
		out := probe.Outcome{RunID: run.String(), StartedAt: time.Now(), Errors: []string{err.Error()}}
		out.Verdict, out.Reason = verify.Inconclusive, "could not run: "+err.Error()
		out.Gates = []verify.Gate{}
		out.Windows = []verify.Window{}
		if werr := writeOutputs(o, out); werr != nil {
			printErr(stderr, werr)
		}
		return exitCouldNotRun
	}
	tgt, err := target.Open(o.tgt)
	if err != nil {
		return couldNotRun(err)
	}
	defer tgt.Close()
	checkCtx, cancel := context.WithTimeout(hard, o.connectTimeout)
	err = tgt.Check(checkCtx)
	cancel()
	if err != nil {
		return couldNotRun(fmt.Errorf("probe: cannot use %s: %w", tgt.Describe(), err))
	}
	fmt.Fprintf(stderr, "probe: run %s against %s: %d stream(s) × %g msg/s, %d subscriber(s), %s\n",
		run, tgt.Describe(), o.cfg.Streams, o.cfg.Rate, o.cfg.Subscribers, durationText(o.cfg.Duration))

	hooks := probe.Hooks{
		OnWindow: func(w verify.Window) { fmt.Fprintln(stderr, report.WindowLine(w)) },
	}
	if !o.quiet {
		hooks.OnLive = func(el time.Duration, snap verify.Result) { fmt.Fprintln(stderr, report.LiveLine(el, snap)) }
		hooks.OnPhase = func(ph string) { fmt.Fprintf(stderr, "probe: %s\n", ph) }
	}
	out, runErr := probe.Run(hard, stop, o.cfg, run, tgt.Dialer(), hooks)
	out.Protocol, out.Target = tgt.Protocol(), tgt.Describe()
	if runErr != nil {
		out.Errors = append(out.Errors, runErr.Error())
	}
	if lb := tgt.Embedded(); lb != nil && o.faults.Drop+o.faults.Duplicate+o.faults.Delay+o.faults.Corrupt > 0 {
		inj := lb.Injected()
		fmt.Fprintf(stderr, "probe: embedded bus injected: %+v\n", inj)
	}
	if runErr == nil {
		if err := report.Table(stdout, out.Result); err != nil {
			printErr(stderr, err)
		}
	}
	code := exitCode(out.Result.Verdict)
	if runErr != nil {
		printErr(stderr, runErr)
		switch {
		case errors.Is(runErr, mqtt.ErrQoSDowngraded):
			code = exitUsage
		case out.Counts.Corrupt+out.Counts.Unexpected > 0:
			// The bus delivered garbage: a hard failure of the bus, not of the run.
			fmt.Fprintf(stderr, "probe: FAIL: the bus delivered %d corrupt and %d unexpected payloads\n", out.Counts.Corrupt, out.Counts.Unexpected)
			code = exitFail
		default:
			code = exitCouldNotRun
		}
	}
	if err := writeOutputs(o, out); err != nil {
		printErr(stderr, err)
		if code == exitPass {
			code = exitUsage
		}
	}
	return code
}

func writeOutputs(o *options, out probe.Outcome) error {
	var errs []error
	if o.jsonPath != "" {
		if err := report.WriteJSON(o.jsonPath, out); err != nil {
			errs = append(errs, fmt.Errorf("probe: --json: %w", err))
		}
	}
	if o.junitPath != "" {
		if err := report.WriteJUnit(o.junitPath, "eventswarm.probe", out.Result); err != nil {
			errs = append(errs, fmt.Errorf("probe: --junit: %w", err))
		}
	}
	return errors.Join(errs...)
}

func exitCode(v verify.Verdict) int {
	switch v {
	case verify.Pass:
		return exitPass
	case verify.Fail:
		return exitFail
	}
	return exitInconclusive
}

func durationText(d time.Duration) string {
	if d == 0 {
		return "until interrupted"
	}
	return "for " + d.String()
}

// printErr prints each joined error on its own line; a classified transport
// error gets its hint on the same line.
func printErr(w io.Writer, err error) {
	hint := ""
	switch {
	case errors.Is(err, bus.ErrUnreachable):
		hint = " (is the bus running and the --target host:port right?)"
	case errors.Is(err, bus.ErrProtocol):
		hint = " (the port answered, but not with the protocol of the --target scheme: mqtt:// vs http://)"
	}
	lines := strings.Split(err.Error(), "\n")
	for i, line := range lines {
		if i == len(lines)-1 {
			line += hint
		}
		fmt.Fprintln(w, line)
	}
}
