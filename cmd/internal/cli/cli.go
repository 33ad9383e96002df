// Package cli holds what the probe and swarm commands share: the target, TLS,
// SLO, output and embedded-bus fault flags, exit codes, and the one-line error
// printer. Flags live only under cmd/.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/eventswarm/eventswarm/internal/localbus"
	"github.com/eventswarm/eventswarm/internal/metrics"
	"github.com/eventswarm/eventswarm/internal/mqtt"
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
	// Metrics is the host:port to serve Prometheus /metrics on (--metrics).
	Metrics string
	// BusStats samples the bus's own health (--bus-stats, --bus-stats-path,
	// --bus-stats-interval).
	BusStats      bool
	BusStatsPath  string
	BusStatsEvery time.Duration

	faultDelays  string
	passwordFile string
	sourceAddrs  string
	cleanSession bool
	expirySet    bool // --session-expiry given
	headers      headerFlags
	headerFile   string
}

// RegisterGates defines the SLO gate flags on fs, with verify.DefaultGates
// as defaults (probe, swarm and swarm merge share them).
func RegisterGates(fs *flag.FlagSet, g *verify.Gates) {
	d := verify.DefaultGates
	g.MinExpected = d.MinExpected
	fs.Float64Var(&g.Within, "within", d.Within, "fraction of expected messages that must be on time")
	fs.Uint64Var(&g.MaxLost, "max-lost", d.MaxLost, "most lost messages allowed")
	fs.Uint64Var(&g.MaxDuplicates, "max-duplicates", d.MaxDuplicates, "most duplicate deliveries allowed")
	fs.Float64Var(&g.MinPublishAvailability, "min-publish-availability", d.MinPublishAvailability, "fraction of publishes that must succeed")
	fs.Float64Var(&g.MinCoverage, "min-coverage", d.MinCoverage, "fraction of published messages some subscriber must have been expected to receive; less is inconclusive (0 = off)")
}

// Register defines the common flags on fs; SLO flags write into ledger.
func (c *Common) Register(fs *flag.FlagSet, ledger *verify.Config) {
	t := &c.Target
	fs.StringVar(&t.URL, "target", "", "bus URL: mqtt://host:1883, mqtts://host:8883, mqtt+ws://host:port/mqtt, mqtt+wss://host:port/mqtt (MQTT over WebSocket), mqtt5://, mqtt5s://, mqtt5+ws(s):// (the same on MQTT 5), http://host:port/ (Nchan long-poll); empty = embedded bus")
	fs.StringVar(&t.Embedded, "embedded", "http", "protocol against the embedded bus when --target is empty: http, mqtt or mqtt+ws (MQTT over WebSocket)")
	fs.IntVar(&t.QoS, "qos", 1, "MQTT QoS for publish and subscribe: 0, 1 or 2")
	fs.StringVar(&t.Username, "username", "", "MQTT username")
	// The password is never a flag default: -h would print it.
	fs.StringVar(&t.Password, "password", "", "MQTT password (prefer --password-file or $EVENTSWARM_PASSWORD: a flag shows in ps)")
	fs.StringVar(&c.passwordFile, "password-file", "", "read the MQTT password from FILE (first line)")
	fs.StringVar(&t.CAFile, "ca-file", "", "PEM CA bundle to verify mqtts/https servers")
	fs.BoolVar(&t.Insecure, "insecure", false, "skip TLS certificate verification (explicit opt-in)")
	fs.StringVar(&t.PubPath, "pub-path", "pub/", "long-poll publish path under the target URL (POST <url>/<pub-path><channel>)")
	fs.StringVar(&t.SubPath, "sub-path", "sub/", "long-poll subscribe path under the target URL (GET <url>/<sub-path><ch1>,<ch2>)")
	fs.StringVar(&c.sourceAddrs, "source-addrs", "", "local IPs to spread connections over, past one address's ephemeral ports: a list or range, e.g. 127.0.0.2-127.0.0.9 or 10.0.0.5,10.0.0.6")
	fs.StringVar(&t.SubscribeVia, "subscribe-via", "longpoll", "how http(s) targets are subscribed to: longpoll, websocket or eventsource (publishing is POST either way)")
	fs.Var(&c.headers, "header", "extra HTTP request header \"Name: value\" on every http(s) request (repeatable; values are never printed; prefer --header-file or $"+HeadersEnv+" for secrets)")
	fs.StringVar(&c.headerFile, "header-file", "", "read extra HTTP request headers from FILE, one \"Name: value\" a line")
	fs.DurationVar(&t.PublishTimeout, "publish-timeout", verify.DefaultPublishTimeout, "a publish not acknowledged within this has an unknown outcome")
	fs.BoolVar(&c.cleanSession, "clean-session", true, "MQTT: the CONNECT clean-session flag; false keeps each client ID's session (subscriptions, queued QoS 1/2 messages) across its reconnects")
	fs.IntVar(&t.MQTTVersion, "mqtt-version", 0, "MQTT protocol version: 3 (3.1.1) or 5; default by --target scheme: mqtt5://, mqtt5s://, mqtt5+ws(s):// are MQTT 5, every other MQTT scheme 3.1.1 (an mqtt5 scheme with --mqtt-version 3 is a usage error)")
	t.SessionExpiry = mqtt.DefaultSessionExpiry
	fs.Var(expiryFlag{&t.SessionExpiry, &c.expirySet}, "session-expiry", "MQTT 5 with --clean-session=false: how long the broker keeps each session after its connection ends (Session Expiry Interval, whole seconds)")
	fs.DurationVar(&t.MQTTLinger, "mqtt-linger", 0, "MQTT: a write waits up to this for more to send with it, a busy read for more to read (fewer syscalls per message, at most this much added latency each way); 0 = at once")

	fs.DurationVar(&ledger.Latency, "latency", verify.DefaultLatency, "on-time bound (inclusive)")
	fs.DurationVar(&ledger.LostAfter, "lost-after", verify.DefaultLostAfter, "a message not delivered within this is lost")
	fs.DurationVar(&ledger.Grace, "grace", verify.DefaultGrace, "extra time after --lost-after before a message is final")
	fs.DurationVar(&ledger.Window, "window", verify.DefaultWindow, "window length for per-window results (by intended send time)")
	RegisterGates(fs, &ledger.Gates)

	fs.StringVar(&c.JSON, "json", "", "write the result as JSON to FILE (- for stdout)")
	fs.StringVar(&c.HTML, "html", "", "write a self-contained HTML report to FILE")
	fs.StringVar(&c.RunID, "run-id", "", "run ID (32 hex digits); default random")
	fs.DurationVar(&c.Live, "live", 5*time.Second, "interval of the live output")
	fs.BoolVar(&c.Quiet, "quiet", false, "no live output")
	fs.StringVar(&c.PProf, "pprof", "", "serve Go profiles (net/http/pprof) on this loopback address, e.g. 127.0.0.1:6060")
	fs.BoolVar(&c.BusStats, "bus-stats", true, "sample the bus's own health during the run into the result: Mosquitto's $SYS/#, Nchan's status page (off: --bus-stats=false)")
	fs.StringVar(&c.BusStatsPath, "bus-stats-path", "/nchan_stub_status", "long-poll: path of Nchan's nchan_stub_status page under the target URL")
	fs.DurationVar(&c.BusStatsEvery, "bus-stats-interval", 5*time.Second, "how often --bus-stats samples")
	fs.StringVar(&c.Metrics, "metrics", "", "serve Prometheus metrics on host:port at /metrics, e.g. 127.0.0.1:9464 (0.0.0.0:9464 in a pod); the host must be explicit")

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
	if addrs, err := ParseSourceAddrs(c.sourceAddrs); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", prog, err))
	} else if len(addrs) > 0 {
		c.Target.SourceAddrs = addrs
		if err := sourceFamily(addrs[0], c.Target.URL); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", prog, err))
		} else if err := CheckSourceAddrs(addrs); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", prog, err))
		}
	}
	c.Target.PersistentSession = !c.cleanSession
	if c.expirySet {
		switch {
		case !c.Target.MQTT5():
			errs = append(errs, fmt.Errorf("%s: --session-expiry is MQTT 5's (MQTT 3.1.1 has no session expiry): use an mqtt5:// target or --mqtt-version 5", prog))
		case c.cleanSession:
			errs = append(errs, fmt.Errorf("%s: --session-expiry applies with --clean-session=false (a clean session ends with its connection)", prog))
		case c.Target.SessionExpiry < time.Second:
			errs = append(errs, fmt.Errorf("%s: --session-expiry must be at least 1s, got %v", prog, c.Target.SessionExpiry))
		}
	}
	errs = append(errs, c.finishHeaders(prog)...)
	if err := c.Target.Validate(); err != nil {
		errs = append(errs, err)
	}
	switch {
	case c.passwordFile != "" && c.Target.Password != "":
		errs = append(errs, fmt.Errorf("%s: give --password or --password-file, not both", prog))
	case c.passwordFile != "":
		b, err := os.ReadFile(c.passwordFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: --password-file: cannot read %s: %v", prog, c.passwordFile, unwrapPath(err)))
		} else {
			c.Target.Password, _, _ = strings.Cut(string(b), "\n")
			c.Target.Password = strings.TrimSuffix(c.Target.Password, "\r")
		}
	case c.Target.Password == "":
		c.Target.Password = os.Getenv("EVENTSWARM_PASSWORD")
	}
	if c.Live < MinLive {
		errs = append(errs, fmt.Errorf("%s: --live must be at least %v (it paces human-readable output), got %v", prog, MinLive, c.Live))
	}
	if c.Hold <= 0 {
		errs = append(errs, fmt.Errorf("%s: --hold must be > 0, got %v", prog, c.Hold))
	}
	if c.Target.PublishTimeout <= 0 {
		errs = append(errs, fmt.Errorf("%s: --publish-timeout must be > 0, got %v", prog, c.Target.PublishTimeout))
	}
	for _, o := range []struct {
		flag, path string
		stdout     bool
	}{{"json", c.JSON, true}, {"html", c.HTML, false}} {
		if err := CheckOutput(o.flag, o.path, o.stdout); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", prog, err))
		}
	}
	if ledger.Window <= 0 {
		errs = append(errs, fmt.Errorf("%s: --window must be > 0, got %v", prog, ledger.Window))
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
	if c.BusStatsEvery < time.Second {
		errs = append(errs, fmt.Errorf("%s: --bus-stats-interval must be at least 1s, got %v", prog, c.BusStatsEvery))
	}
	if c.Metrics != "" {
		if err := metrics.CheckAddr(c.Metrics); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", prog, err))
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

// expiryFlag is --session-expiry: a duration that remembers it was given.
type expiryFlag struct {
	d   *time.Duration
	set *bool
}

func (f expiryFlag) String() string {
	if f.d == nil {
		return ""
	}
	return f.d.String()
}

func (f expiryFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a duration with a unit, e.g. 30s, 5m or 1h")
	}
	*f.d, *f.set = d, true
	return nil
}

// MinLive is the shortest --live interval: the live lines are for people.
const MinLive = time.Second

// ExitCodesText is the one-line summary of the exit codes every -h prints.
const ExitCodesText = "Exit codes: 0 pass, 1 SLO failed, 2 usage error, 3 inconclusive, 4 could not run, 130 second signal."

// ParseArgs parses args with fs, printing the flags only for -h (to stderr)
// and the version for --version (to stdout); both return flag.ErrHelp. Every
// other parse error comes back as one usage error line naming prog. Values
// are checked by type while parsing: a duration needs a unit, a number must
// be finite (no NaN or Inf).
func ParseArgs(fs *flag.FlagSet, prog, about string, args []string, stdout, stderr io.Writer, opts ...ParseOption) error {
	allowArgs := false
	for _, o := range opts {
		allowArgs = allowArgs || o == AllowArgs
	}
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	version := fs.Bool("version", false, "print the version and exit")
	strictValues(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			files := ""
			if allowArgs {
				files = " FILE..."
			}
			fmt.Fprintf(stderr, "Usage: %s [flags]%s\n\n%s\n%s\n\nFlags:\n", prog, files, about, ExitCodesText)
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			fs.SetOutput(io.Discard)
			return err
		}
		return Usage(fmt.Errorf("%s: %s (run %s -h for the flags)", prog, strings.Replace(err.Error(), "for flag -", "for --", 1), prog))
	}
	if *version {
		fmt.Fprintf(stdout, "%s %s\n", prog, Version())
		return flag.ErrHelp
	}
	if fs.NArg() > 0 && !allowArgs {
		return Usage(fmt.Errorf("%s: unexpected argument %q (flags only; run %s -h)", prog, fs.Arg(0), prog))
	}
	return nil
}

// ParseOption changes what ParseArgs accepts.
type ParseOption int

// AllowArgs lets arguments follow the flags (swarm merge's files).
const AllowArgs ParseOption = 1

// strictValues wraps fs's duration and float flags so that a bad value says
// what is wanted: the flag package's own message for "1" as a duration is
// only "parse error", and it accepts NaN and Inf as numbers.
func strictValues(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if !ok {
			return
		}
		switch g.Get().(type) {
		case time.Duration:
			f.Value = checkedValue{g, func(s string) error {
				if _, err := time.ParseDuration(s); err != nil {
					return fmt.Errorf("want a duration with a unit, e.g. 500ms, 30s, 5m or 1h")
				}
				return nil
			}}
		case float64:
			f.Value = checkedValue{g, func(s string) error {
				v, err := strconv.ParseFloat(s, 64)
				if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
					return fmt.Errorf("want a finite number, e.g. 0.95")
				}
				return nil
			}}
		}
	})
}

type checkedValue struct {
	flag.Getter
	check func(string) error
}

// String is safe on the zero checkedValue: the flag package makes one to
// decide whether a default is worth printing in -help.
func (v checkedValue) String() string {
	if v.Getter == nil {
		return ""
	}
	return v.Getter.String()
}

func (v checkedValue) Set(s string) error {
	if err := v.check(s); err != nil {
		return err
	}
	return v.Getter.Set(s)
}

// RejectZero returns an error for each named flag that was given explicitly
// as zero: for these a zero would silently mean the default.
func RejectZero(fs *flag.FlagSet, prog string, names ...string) []error {
	var errs []error
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	fs.Visit(func(f *flag.Flag) {
		if !want[f.Name] {
			return
		}
		g, ok := f.Value.(flag.Getter)
		if !ok {
			return
		}
		switch v := g.Get().(type) {
		case time.Duration:
			if v == 0 {
				errs = append(errs, fmt.Errorf("%s: --%s must be > 0, got 0", prog, f.Name))
			}
		case int:
			if v == 0 {
				errs = append(errs, fmt.Errorf("%s: --%s must be >= 1, got 0", prog, f.Name))
			}
		}
	})
	return errs
}

// Version is the build's version: the module version, else the VCS revision,
// else "dev".
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "dev-" + rev
}

// IgnoreSIGPIPE keeps the process alive when stdout or stderr is a closed
// pipe (probe … | tee, then Ctrl-C kills tee first): writes then fail with
// EPIPE instead of killing the process, so the report files are still
// written. Call it once from main.
func IgnoreSIGPIPE() { signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE) }

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
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
