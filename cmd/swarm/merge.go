package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/eventswarm/eventswarm/cmd/internal/cli"
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
}

// mergeOptions are merge's flags.
type mergeOptions struct {
	gates   verify.Gates
	json    string
	junit   string
	maxSkew time.Duration
	files   []string
}

func parseMergeFlags(args []string, stderr io.Writer) (*mergeOptions, error) {
	o := &mergeOptions{gates: verify.DefaultGates}
	fs := flag.NewFlagSet("swarm merge", flag.ContinueOnError)
	fs.Float64Var(&o.gates.Within, "within", o.gates.Within, "fraction of expected messages that must be on time")
	fs.Uint64Var(&o.gates.MaxLost, "max-lost", o.gates.MaxLost, "most lost messages allowed")
	fs.Uint64Var(&o.gates.MaxDuplicates, "max-duplicates", o.gates.MaxDuplicates, "most duplicate deliveries allowed")
	fs.Float64Var(&o.gates.MinPublishAvailability, "min-publish-availability", o.gates.MinPublishAvailability, "fraction of publishes that must succeed")
	fs.StringVar(&o.json, "json", "", "write the merged result as JSON to FILE (- for stdout)")
	fs.StringVar(&o.junit, "junit", "", "write the merged verdict as JUnit XML to FILE")
	fs.DurationVar(&o.maxSkew, "max-skew", report.DefaultMaxStartSkew, "most the shards' start times may differ")
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	// Flags and files may be interleaved: parse, take a file, parse the rest.
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(stderr, "Usage: swarm merge [flags] SHARD-FILE...\n\nChecks that the shard files (swarm --shard-file) form one complete run and computes the verdict on the merged data.\nExit codes: 0 pass, 1 SLO failed, 2 usage error or invalid set of files, 3 inconclusive, 4 could not write a report.\n\nFlags:\n")
				fs.SetOutput(stderr)
				fs.PrintDefaults()
				return nil, err
			}
			return nil, fmt.Errorf("swarm merge: %v (run swarm merge -h for the flags)", err)
		}
		if fs.NArg() == 0 {
			break
		}
		o.files = append(o.files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	var errs []error
	if len(o.files) == 0 {
		errs = append(errs, errors.New("swarm merge: no shard files given (swarm merge [flags] SHARD-FILE...)"))
	}
	if err := o.gates.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.maxSkew < 0 {
		errs = append(errs, fmt.Errorf("swarm merge: --max-skew must be >= 0, got %v", o.maxSkew))
	}
	return o, errors.Join(errs...)
}

// runMerge is `swarm merge`: exit 0 pass, 1 fail, 2 usage or invalid set,
// 3 inconclusive, 4 a report could not be written.
func runMerge(args []string, stdout, stderr io.Writer) int {
	o, err := parseMergeFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitPass
	}
	if err != nil {
		cli.PrintErr(stderr, err)
		return exitUsage
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
	if len(errs) == 0 {
		m, err := report.MergeSkew(files, o.maxSkew)
		if err == nil {
			return reportMerged(o, m, len(files), stdout, stderr)
		}
		errs = append(errs, mergeProblems(err)...)
	}
	for _, e := range errs {
		fmt.Fprintf(stderr, "swarm merge: %s\n", e)
	}
	return exitUsage
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
	if err := report.OpsTable(stdout, m.Stats); err != nil {
		errs = append(errs, err)
	}
	if err := report.Table(stdout, r); err != nil {
		errs = append(errs, err)
	}
	if o.json != "" {
		out := mergeOutput{Result: r, RunID: m.RunID, Shards: m.Shards, ConfigHash: m.ConfigHash,
			StartedAt: m.Start, EndedAt: m.End, Operations: m.Stats}
		if err := report.WriteJSON(o.json, out); err != nil {
			errs = append(errs, fmt.Errorf("swarm merge: --json: %w", err))
		}
	}
	if o.junit != "" {
		if err := report.WriteJUnit(o.junit, "swarm "+m.RunID, r); err != nil {
			errs = append(errs, fmt.Errorf("swarm merge: --junit: %w", err))
		}
	}
	code := cli.ExitCode(r.Verdict)
	if len(errs) > 0 {
		cli.PrintErr(stderr, errors.Join(errs...))
		if code == exitPass {
			code = exitCouldNotRun
		}
	}
	return code
}
