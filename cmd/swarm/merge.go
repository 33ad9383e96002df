package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/eventswarm/eventswarm/cmd/internal/cli"
	"github.com/eventswarm/eventswarm/internal/behaviours"
	"github.com/eventswarm/eventswarm/internal/report"
	"github.com/eventswarm/eventswarm/internal/stats"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// mergeOutput is merge's --json result: the verdict on the merged data and
// the run's identity.
type mergeOutput struct {
	verify.Result
	RunID      string         `json:"run_id"`
	Shards     int            `json:"shards"`
	ConfigHash string         `json:"config_hash"`
	StartedAt  time.Time      `json:"started_at"`
	EndedAt    time.Time      `json:"ended_at"`
	Operations stats.Snapshot `json:"operations"`
	Users      report.Users   `json:"users"`
	// Generator is the shards' own send lag, summed, and the shards that
	// fell behind on their own.
	Generator        verify.SendLag `json:"generator"`
	OverloadedShards []int          `json:"overloaded_shards,omitempty"`
	// Streams and Coverage: each direction's merged counts and coverage.
	Streams  map[string]verify.Counts `json:"streams,omitempty"`
	Coverage map[string]float64       `json:"coverage,omitempty"`
}

// mergeOptions are merge's flags.
type mergeOptions struct {
	gates   verify.Gates
	json    string
	junit   string
	html    string
	maxSkew time.Duration
	files   []string
	// The collector (--listen): where to listen, how many shard files to
	// wait for, of which run, and until when.
	listen   string
	shards   int
	runID    string
	deadline time.Duration
}

func parseMergeFlags(args []string, stdout, stderr io.Writer) (*mergeOptions, error) {
	o := &mergeOptions{}
	fs := flag.NewFlagSet("swarm merge", flag.ContinueOnError)
	cli.RegisterGates(fs, &o.gates)
	fs.StringVar(&o.json, "json", "", "write the merged result as JSON to FILE (- for stdout)")
	fs.StringVar(&o.junit, "junit", "", "write the merged verdict as JUnit XML to FILE")
	fs.StringVar(&o.html, "html", "", "write a self-contained HTML report of the merged run to FILE")
	fs.DurationVar(&o.maxSkew, "max-skew", report.DefaultMaxStartSkew, "most the shards' start times may differ")
	fs.StringVar(&o.listen, "listen", "", "collect the shard files over HTTP instead of reading files: listen on ADDR (e.g. :8080) for swarm --shard-file http://HOST:PORT/… POSTs, merge once --shards have arrived")
	fs.IntVar(&o.shards, "shards", 0, "with --listen: the number of shard files to wait for")
	fs.StringVar(&o.runID, "run-id", "", "with --listen: accept only files of this run (32 hex digits)")
	fs.DurationVar(&o.deadline, "deadline", time.Hour, "with --listen: stop waiting after this long and report the shards still missing")
	// Flags and files may be interleaved: parse, take a file, parse the rest.
	for first := true; ; first = false {
		var err error
		if first {
			err = cli.ParseArgs(fs, "swarm merge", "Checks that the shard files (swarm --shard-file) form one complete run and computes the verdict on the merged data.\nWith --listen ADDR --shards N it collects them instead: shards POST them (swarm --shard-file http://ADDR/...), merged once all N arrived.\nAn invalid set of files (missing, incomplete or mismatched shards, or missing at --deadline) is a usage error (2).", args, stdout, stderr, cli.AllowArgs)
		} else {
			err = fs.Parse(args)
			if err != nil {
				err = cli.Usage(fmt.Errorf("swarm merge: %v (run swarm merge -h for the flags)", err))
			}
		}
		if err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		o.files = append(o.files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	var errs []error
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case o.listen != "":
		if len(o.files) > 0 {
			errs = append(errs, fmt.Errorf("swarm merge: give shard files or --listen, not both (got %s)", o.files[0]))
		}
		if _, _, err := net.SplitHostPort(o.listen); err != nil {
			errs = append(errs, fmt.Errorf("swarm merge: --listen %q: want HOST:PORT or :PORT", o.listen))
		}
		if o.shards < 1 || o.shards > maxCollectShards {
			errs = append(errs, fmt.Errorf("swarm merge: --listen needs --shards N, 1 <= N <= %d (got %d)", maxCollectShards, o.shards))
		}
		if o.runID != "" {
			if _, err := verify.ParseRunID(o.runID); err != nil {
				errs = append(errs, fmt.Errorf("swarm merge: --run-id: %v", err))
			}
		}
		if o.deadline <= 0 {
			errs = append(errs, fmt.Errorf("swarm merge: --deadline must be > 0, got %v", o.deadline))
		}
	case len(o.files) == 0:
		errs = append(errs, errors.New("swarm merge: no shard files given (swarm merge [flags] SHARD-FILE..., or --listen ADDR --shards N)"))
	default:
		for _, name := range []string{"shards", "run-id", "deadline"} {
			if set[name] {
				errs = append(errs, fmt.Errorf("swarm merge: --%s only applies with --listen", name))
			}
		}
	}
	if err := o.gates.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.maxSkew < 0 {
		errs = append(errs, fmt.Errorf("swarm merge: --max-skew must be >= 0, got %v", o.maxSkew))
	}
	for _, out := range []struct{ flag, path string }{{"json", o.json}, {"junit", o.junit}, {"html", o.html}} {
		if err := cli.CheckOutput(out.flag, out.path, out.flag == "json"); err != nil {
			errs = append(errs, fmt.Errorf("swarm merge: %w", err))
		}
	}
	return o, cli.Usage(errors.Join(errs...))
}

// runMerge is `swarm merge`: exit 0 pass, 1 fail, 2 usage or invalid set,
// 3 inconclusive, 4 a report could not be written (or, with --listen, the
// address could not be listened on).
func runMerge(ctx context.Context, args []string, stdout, stderr io.Writer, handleSignals bool) int {
	o, err := parseMergeFlags(args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return cli.ExitPass
	}
	if err != nil {
		cli.PrintErr(stderr, "swarm merge", err)
		return cli.Code(err)
	}
	if o.listen != "" {
		ln, err := net.Listen("tcp", o.listen)
		if err != nil {
			err = cli.CouldNotRun(fmt.Errorf("swarm merge: --listen: %w", err))
			cli.PrintErr(stderr, "swarm merge", err)
			return cli.Code(err)
		}
		ctx, stop := context.WithCancel(ctx)
		defer stop()
		if handleSignals {
			defer cli.OnSignals(func() {
				fmt.Fprintln(stderr, "swarm merge: stopping the collection (signal again to exit at once)")
				stop()
			})()
		}
		return collect(ctx, o, ln, stdout, stderr)
	}
	var (
		files []report.ShardFile
		errs  []string
	)
	for _, path := range o.files {
		f, err := report.ReadShardFile(path)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		files = append(files, f)
	}
	return mergeFiles(o, files, errs, stdout, stderr)
}

// mergeFiles merges files (read from disk or collected over HTTP) and
// reports, or prints every problem (errs and the merge's), one line each,
// and exits 2.
func mergeFiles(o *mergeOptions, files []report.ShardFile, errs []string, stdout, stderr io.Writer) int {
	if len(errs) == 0 {
		m, err := report.MergeSkew(files, o.maxSkew)
		if err == nil {
			return reportMerged(o, m, len(files), stdout, stderr)
		}
		errs = append(errs, mergeProblems(err)...)
	}
	for _, e := range errs {
		fmt.Fprintf(stderr, "swarm merge: %s\n", strings.TrimPrefix(e, "report: "))
	}
	return cli.ExitUsage
}

// mergeProblems splits a report.Merge error into one line per problem.
func mergeProblems(err error) []string {
	msg := strings.TrimPrefix(err.Error(), report.ErrMerge.Error()+": ")
	return strings.Split(msg, "\n")
}

func reportMerged(o *mergeOptions, m report.ShardFile, n int, stdout, stderr io.Writer) int {
	r := m.Result(o.gates)
	fmt.Fprintf(stdout, "swarm merge: run %s, %d shards (%d files), config %s, %s to %s\n", m.RunID, m.Shards, n,
		m.ConfigHash, m.Start.Format(time.RFC3339Nano), m.End.Format(time.RFC3339Nano))
	var errs []error
	tables := stdout
	if o.json == "-" {
		tables = stderr
	}
	coverage, err := printMerged(tables, m, r)
	if err != nil {
		errs = append(errs, err)
	}
	if o.html != "" {
		if err := report.WritePage(o.html, mergePage(o, m, r, n)); err != nil {
			errs = append(errs, fmt.Errorf("swarm merge: --html: %w", err))
		}
	}
	if o.json != "" {
		out := mergeOutput{Result: r, RunID: m.RunID, Shards: m.Shards, ConfigHash: m.ConfigHash,
			StartedAt: m.Start, EndedAt: m.End, Operations: m.Stats, Users: m.Users, Generator: m.Generator, OverloadedShards: m.OverloadedShards, Streams: m.Streams, Coverage: coverage}
		if err := report.WriteJSON(o.json, out); err != nil {
			errs = append(errs, fmt.Errorf("swarm merge: --json: %w", err))
		}
	}
	if o.junit != "" {
		if err := report.WriteJUnit(o.junit, "swarm "+m.RunID, r); err != nil {
			errs = append(errs, fmt.Errorf("swarm merge: --junit: %w", err))
		}
	}
	werr := errors.Join(errs...)
	cli.PrintErr(stderr, "swarm merge", werr)
	return cli.Exit(r.Verdict, cli.CouldNotRun(werr))
}

// printMerged prints a merged run's tables (operations, users, each
// direction's coverage, delivery and gates) and returns each direction's
// coverage; the error is a table that could not be written.
func printMerged(w io.Writer, m report.ShardFile, r verify.Result) (map[string]float64, error) {
	var errs []error
	if err := report.OpsTable(w, m.Stats); err != nil {
		errs = append(errs, err)
	}
	fmt.Fprintln(w, usersLine(m.Users, 0, 0))
	line := generatorLine(m.Generator)
	if len(m.OverloadedShards) > 0 {
		line += fmt.Sprintf("; shards that fell behind: %v (a failing verdict is inconclusive)", m.OverloadedShards)
	}
	fmt.Fprintln(w, line)
	coverage := map[string]float64{}
	for _, name := range []string{behaviours.StreamLearnerToProctor, behaviours.StreamProctorToLearner} {
		if c, ok := m.Streams[name]; ok {
			coverage[name] = c.Coverage()
			fmt.Fprintf(w, "%s: coverage %s (%d of %d published expected by a subscriber)\n", name,
				pctText(c.Covered, c.PublishAttempted), c.Covered, c.PublishAttempted)
		}
	}
	if err := report.Table(w, r); err != nil {
		errs = append(errs, err)
	}
	return coverage, errors.Join(errs...)
}
