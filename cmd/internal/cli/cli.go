// Package cli holds what the probe and swarm commands share: the target, TLS,
// SLO, output and embedded-bus fault flags, exit codes, and the one-line error
// printer. Flags live only under cmd/.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/localbus"
	"github.com/eventswarm/eventswarm/internal/target"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// Exit codes of every command (DESIGN.md).
const (
	ExitPass         = 0
	ExitFail         = 1
	ExitUsage        = 2
	ExitInconclusive = 3
	ExitCouldNotRun  = 4
	ExitSignal       = 130
)

// ExitCode maps a verdict to its exit code; anything but pass and fail is inconclusive.
func ExitCode(v verify.Verdict) int {
	switch v {
	case verify.Pass:
		return ExitPass
	case verify.Fail:
		return ExitFail
	}
	return ExitInconclusive
}

// Common are the flags both commands take.
type Common struct {
	Target target.Config
	Faults localbus.Faults
	Hold   time.Duration
	JSON   string
	HTML   string
	RunID  string
	Live   time.Duration
	Quiet  bool
	// PProf is a loopback address to serve net/http/pprof on (diagnostics).
	PProf string

	faultDelays string
}

// Register defines the common flags on fs; SLO flags write into ledger.
func (c *Common) Register(fs *flag.FlagSet, ledger *verify.Config) {
	t := &c.Target
	fs.StringVar(&t.URL, "target", "", "bus URL: mqtt://host:1883, mqtts://host:8883, http://host:port/ (Nchan long-poll); empty = embedded bus")
	fs.StringVar(&t.Embedded, "embedded", "http", "protocol against the embedded bus when --target is empty: http or mqtt")
	fs.IntVar(&t.QoS, "qos", 1, "MQTT QoS for publish and subscribe: 0, 1 or 2")
	fs.StringVar(&t.Username, "username", "", "MQTT username")
	fs.StringVar(&t.Password, "password", os.Getenv("EVENTSWARM_PASSWORD"), "MQTT password (default $EVENTSWARM_PASSWORD)")
	fs.StringVar(&t.CAFile, "ca-file", "", "PEM CA bundle to verify mqtts/https servers")
	fs.BoolVar(&t.Insecure, "insecure", false, "skip TLS certificate verification (explicit opt-in)")
	fs.StringVar(&t.PubPath, "pub-path", "pub/", "long-poll publish path under the target URL (POST <url>/<pub-path><channel>)")
	fs.StringVar(&t.SubPath, "sub-path", "sub/", "long-poll subscribe path under the target URL (GET <url>/<sub-path><ch1>,<ch2>)")
	fs.DurationVar(&t.PublishTimeout, "publish-timeout", 5*time.Second, "a publish not acknowledged within this has an unknown outcome")

	fs.DurationVar(&ledger.Latency, "latency", 2*time.Second, "on-time bound (inclusive)")
	fs.Float64Var(&ledger.Gates.Within, "within", 0.95, "fraction of expected messages that must be on time")
	fs.DurationVar(&ledger.LostAfter, "lost-after", 15*time.Second, "a message not delivered within this is lost")
	fs.DurationVar(&ledger.Grace, "grace", time.Second, "extra time after --lost-after before a message is final")
	fs.Uint64Var(&ledger.Gates.MaxLost, "max-lost", 0, "most lost messages allowed")
	fs.Uint64Var(&ledger.Gates.MaxDuplicates, "max-duplicates", 0, "most duplicate deliveries allowed")
	fs.Float64Var(&ledger.Gates.MinPublishAvailability, "min-publish-availability", 0.999, "fraction of publishes that must succeed")

	fs.StringVar(&c.JSON, "json", "", "write the result as JSON to FILE (- for stdout)")
	fs.StringVar(&c.HTML, "html", "", "write a self-contained HTML report to FILE")
	fs.StringVar(&c.RunID, "run-id", "", "run ID (32 hex digits); default random")
	fs.DurationVar(&c.Live, "live", 5*time.Second, "interval of the live output")
	fs.BoolVar(&c.Quiet, "quiet", false, "no live output")
	fs.StringVar(&c.PProf, "pprof", "", "serve Go profiles (net/http/pprof) on this loopback address, e.g. 127.0.0.1:6060")

	fs.Float64Var(&c.Faults.Drop, "fault-drop", 0, "embedded bus only: fraction of deliveries to drop")
	fs.Float64Var(&c.Faults.Duplicate, "fault-duplicate", 0, "embedded bus only: fraction of deliveries to duplicate")
	fs.Float64Var(&c.Faults.Delay, "fault-delay", 0, "embedded bus only: fraction of deliveries to delay by one of --fault-delays")
	fs.StringVar(&c.faultDelays, "fault-delays", "3s,16s", "embedded bus only: comma-separated delays for --fault-delay")
	fs.Float64Var(&c.Faults.Corrupt, "fault-corrupt", 0, "embedded bus only: fraction of deliveries to corrupt")
	fs.Uint64Var(&c.Faults.Seed, "fault-seed", 1, "embedded bus only: seed of the fault decisions")
	fs.DurationVar(&c.Hold, "hold", 25*time.Second, "embedded bus only: long-poll hold before 408")
}

// Finish checks the common flags after parsing and fills the embedded bus's
// config, with faults kept off readiness markers. It returns every problem,
// each prefixed with prog.
func (c *Common) Finish(prog string, ledger verify.Config) (run verify.RunID, errs []error) {
	if c.Faults.Enabled() {
		if c.Target.URL != "" {
			errs = append(errs, fmt.Errorf("%s: --fault-* flags only apply to the embedded bus (no --target)", prog))
		}
		for _, f := range strings.Split(c.faultDelays, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(f))
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Errorf("%s: --fault-delays: %q is not a positive duration", prog, f))
				continue
			}
			c.Faults.Delays = append(c.Faults.Delays, d)
		}
		c.Faults.Skip = verify.IsMarker
	}
	c.Target.Bus = localbus.Config{Hold: c.Hold, Faults: c.Faults}
	if err := c.Target.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Live <= 0 {
		errs = append(errs, fmt.Errorf("%s: --live must be > 0, got %v", prog, c.Live))
	}
	if ledger.Latency <= 0 || ledger.LostAfter <= 0 || ledger.Grace < 0 {
		errs = append(errs, fmt.Errorf("%s: --latency and --lost-after must be > 0 and --grace >= 0", prog))
	} else if ledger.Latency > ledger.LostAfter {
		errs = append(errs, fmt.Errorf("%s: --latency %v must not exceed --lost-after %v (lower --latency or raise --lost-after)", prog, ledger.Latency, ledger.LostAfter))
	}
	if err := ledger.Gates.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.PProf != "" {
		if host, _, err := net.SplitHostPort(c.PProf); err != nil || !isLoopback(host) {
			errs = append(errs, fmt.Errorf("%s: --pprof %q: want a loopback host:port such as 127.0.0.1:6060", prog, c.PProf))
		}
	}
	if c.RunID != "" {
		var err error
		if run, err = verify.ParseRunID(c.RunID); err != nil {
			errs = append(errs, fmt.Errorf("%s: --run-id: %v", prog, err))
		}
	}
	return run, errs
}

// ParseArgs parses args with fs, printing the flags only for -h: every other
// parse error comes back as one line naming prog.
func ParseArgs(fs *flag.FlagSet, prog, about string, args []string, stderr io.Writer) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "Usage: %s [flags]\n\n%s\nExit codes: 0 pass, 1 SLO failed, 2 usage error, 3 inconclusive, 4 could not run.\n\nFlags:\n", prog, about)
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			fs.SetOutput(io.Discard)
			return err
		}
		return fmt.Errorf("%s: %v (run %s -h for the flags)", prog, err, prog)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q (flags only; run %s -h)", prog, fs.Arg(0), prog)
	}
	return nil
}

// PrintErr prints each joined error on its own line; a classified transport
// error gets its hint on the same line.
func PrintErr(w io.Writer, err error) {
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

// OnSignals calls steps[0] on the first SIGINT/SIGTERM, steps[1] on the second
// and so on; one signal more than there are steps exits at once with 130.
// The returned func stops listening.
func OnSignals(steps ...func()) (stop func()) {
	sigs := make(chan os.Signal, len(steps)+1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		for n := 0; ; n++ {
			select {
			case <-done:
				return
			case <-sigs:
			}
			if n >= len(steps) {
				os.Exit(ExitSignal)
			}
			steps[n]()
		}
	}()
	return func() { signal.Stop(sigs); close(done) }
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ServePProf serves net/http/pprof on c.PProf until the returned func is
// called; it does nothing when --pprof was not given.
func (c *Common) ServePProf() (stop func(), err error) {
	if c.PProf == "" {
		return func() {}, nil
	}
	l, err := net.Listen("tcp", c.PProf)
	if err != nil {
		return nil, fmt.Errorf("--pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	return func() { srv.Close(); <-done }, nil
}

// TableOut is where the human-readable final tables go: stdout, unless
// --json - claimed stdout for the machine-readable result.
func (c *Common) TableOut(stdout, stderr io.Writer) io.Writer {
	if c.JSON == "-" {
		return stderr
	}
	return stdout
}
