package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/eventswarm/eventswarm/cmd/internal/cli"
	"github.com/eventswarm/eventswarm/internal/behaviours"
	"github.com/eventswarm/eventswarm/internal/report"
	"github.com/eventswarm/eventswarm/internal/stats"
	"github.com/eventswarm/eventswarm/internal/target"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// swarm --processes N runs one run as N child processes of this binary, shard
// i of N each (the same run ID, start time and flags), past one process's
// file limit. The children send their progress and, at the end, their shard
// file over a pipe (fd 3, --child-fd); the parent shows one live view merged
// from them, merges their results exactly as swarm merge does, stops every
// child on the first signal and turns a child that died into an
// inconclusive run.

// childMsg is one line a child writes on its pipe.
type childMsg struct {
	Type string `json:"type"` // "progress" or "final"
	// Progress.
	ElapsedMS int64          `json:"elapsed_ms,omitempty"`
	Events    verify.Counts  `json:"events"`
	Control   verify.Counts  `json:"control"`
	Active    map[string]int `json:"active,omitempty"`
	Target    int            `json:"target,omitempty"`
	Peak      int            `json:"peak,omitempty"`
	Ops       stats.Snapshot `json:"ops"`
	// Final: the shard's result file.
	Shard *report.ShardFile `json:"shard,omitempty"`
}

// childSetup is what the parent overrides in every child's flags.
var childSetup = map[string]bool{
	"processes": true, "child-fd": true, "shards": true, "shard": true, "run-id": true, "start-at": true,
	"target": true, "embedded": true, "json": true, "html": true, "shard-file": true, "quiet": true, "live": true,
	"pprof": true, "password": true, "password-file": true, "hold": true, "source-addrs": true, "metrics": true,
	"header": true, "header-file": true,
	"fault-drop": true, "fault-duplicate": true, "fault-delay": true, "fault-delays": true, "fault-corrupt": true, "fault-seed": true,
}

// parseProcesses reads --processes: "1" (no children), N, or auto (enough
// processes for --users within the file limit).
func parseProcesses(s string, cfg behaviours.Config, proto string) (int, error) {
	if s == "auto" {
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Max == 0 {
			return 1, nil
		}
		users := cfg.Users
		for _, st := range cfg.Stages {
			users = max(users, st.Target)
		}
		// The fewest children each of which fits its share (the shared
		// publish connections are per child) in 90% of the file limit.
		per := uint64(float64(lim.Max) * 0.9)
		for n := 1; n <= 256; n++ {
			if filesNeeded((users+n-1)/n, proto, false) <= per {
				return n, nil
			}
		}
		return 256, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 256 {
		return 0, fmt.Errorf("swarm: --processes %q: want a count from 1 to 256, or auto", s)
	}
	return n, nil
}

// childArgs are the flags of child i of n: every flag the user set except
// those the parent decides, then the parent's choices.
func childArgs(o *options, i, n int, run verify.RunID, startAt time.Time, tgt string) []string {
	var args []string
	for _, f := range o.visited {
		if !childSetup[f.name] {
			args = append(args, "--"+f.name+"="+f.value)
		}
	}
	if share := sourceShare(o.Target.SourceAddrs, i, n); len(share) > 0 {
		args = append(args, "--source-addrs="+strings.Join(share, ","))
	}
	if o.Metrics != "" {
		addr, _ := childMetrics(o.Metrics, i) // checked with the flags
		args = append(args, "--metrics="+addr)
	}
	return append(args, "--processes=1", "--child-fd=3", "--quiet", "--shards="+strconv.Itoa(n), "--shard="+strconv.Itoa(i),
		"--run-id="+run.String(), "--start-at="+startAt.UTC().Format(time.RFC3339Nano), "--target="+tgt)
}

// childMetrics is child i's --metrics address for the parent's --metrics
// addr: port+i on the same host (port 0: each child its own free port, which
// it announces), so a scrape config lists one target per shard and sums over
// the shard label, as for pods.
func childMetrics(addr string, i int) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("swarm: --metrics %q: want host:port", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p+i > 65535 {
		return "", fmt.Errorf("swarm: --metrics %q with --processes: child %d would serve on port %s+%d, beyond 65535; give a lower port (child i serves on port+i) or port 0", addr, i, port, i)
	}
	if p == 0 {
		return addr, nil
	}
	return net.JoinHostPort(host, strconv.Itoa(p+i)), nil
}

// sourceShare is child i of n's share of --source-addrs: every n-th address
// from i when there are at least n (each child its own ports), else all of
// them (the children share them).
func sourceShare(addrs []string, i, n int) []string {
	if len(addrs) < n {
		return addrs
	}
	var out []string
	for j := i; j < len(addrs); j += n {
		out = append(out, addrs[j])
	}
	return out
}

type child struct {
	shard int
	cmd   *exec.Cmd
	mu    sync.Mutex
	last  childMsg
	final *report.ShardFile
	err   error // why it failed (exit status, no final result)
	done  chan struct{}
}

// runProcesses is the parent of swarm --processes.
func runProcesses(ctx context.Context, o *options, stdout, stderr io.Writer, handleSignals bool) int {
	n := o.processes
	run := o.cfg.Run
	if run.IsZero() {
		run = verify.NewRunID()
	}
	// The parent runs the embedded bus when there is no --target; the
	// children target it.
	targets := o.targets
	if len(targets) == 0 && o.Target.URL != "" {
		targets = []string{o.Target.URL} // one real target for every child
	}
	if len(targets) == 0 {
		tgt, err := target.Open(o.Target)
		if err != nil {
			cli.PrintErr(stderr, "swarm", cli.CouldNotRun(err))
			return cli.ExitCouldNotRun
		}
		defer tgt.Close()
		targets = []string{tgt.URL()}
		fmt.Fprintf(stderr, "swarm: %s for %d processes\n", tgt.Describe(), n)
	}
	startAt := o.StartAt
	if startAt.IsZero() {
		startAt = time.Now().Add(2 * time.Second).Round(time.Millisecond) // time for the children to start
	}
	exe, err := os.Executable()
	if err != nil {
		cli.PrintErr(stderr, "swarm", cli.CouldNotRun(fmt.Errorf("swarm: --processes: cannot find this program: %w", err)))
		return cli.ExitCouldNotRun
	}
	children := make([]*child, n)
	for i := range children {
		c, err := startChild(exe, o, i, n, run, startAt, targets[i%len(targets)], stderr)
		if err != nil {
			for _, c := range children[:i] {
				_ = c.cmd.Process.Kill()
				<-c.done
			}
			cli.PrintErr(stderr, "swarm", cli.CouldNotRun(fmt.Errorf("swarm: starting child %d: %w", i, err)))
			return cli.ExitCouldNotRun
		}
		children[i] = c
		fmt.Fprintf(stderr, "swarm: shard %d/%d pid %d against %s\n", i, n, c.cmd.Process.Pid, redactURL(targets[i%len(targets)]))
	}
	signalAll := func(sig os.Signal) {
		for _, c := range children {
			_ = c.cmd.Process.Signal(sig)
		}
	}
	interrupted := false
	var intMu sync.Mutex
	if handleSignals {
		defer cli.OnSignals(func() {
			intMu.Lock()
			interrupted = true
			intMu.Unlock()
			fmt.Fprintln(stderr, "swarm: stopping every process now (signal again to exit at once)")
			signalAll(syscall.SIGINT)
		}, func() {
			signalAll(syscall.SIGKILL)
			os.Exit(cli.ExitSignal)
		})()
	}
	stopWatch := context.AfterFunc(ctx, func() { // a cancelled ctx stops the children as a signal would
		intMu.Lock()
		interrupted = true
		intMu.Unlock()
		signalAll(syscall.SIGINT)
	})
	defer stopWatch()
	// A child that dies makes the run inconclusive whatever the others
	// measure: stop them at once rather than let them run on.
	for _, c := range children {
		go func() {
			<-c.done
			c.mu.Lock()
			dead := c.err != nil
			c.mu.Unlock()
			if dead {
				signalAll(syscall.SIGINT)
			}
		}()
	}
	liveDone := make(chan struct{})
	var liveWG sync.WaitGroup
	if !o.Quiet {
		liveWG.Go(func() { liveMerged(liveDone, children, o.Live, stderr) })
	}
	for _, c := range children {
		<-c.done
	}
	close(liveDone)
	liveWG.Wait()
	intMu.Lock()
	wasInterrupted := interrupted
	intMu.Unlock()
	return reportChildren(o, children, wasInterrupted, stdout, stderr)
}

// redactURL is u with any password removed, for the console.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Redacted()
}

func startChild(exe string, o *options, i, n int, run verify.RunID, startAt time.Time, tgt string, stderr io.Writer) (*child, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, childArgs(o, i, n, run, startAt, tgt)...)
	cmd.ExtraFiles = []*os.File{pw}
	// Secrets travel in the environment, never on a command line: the
	// password, and the extra headers (resolved from --header, --header-file
	// and the environment, one "Name: value" a line).
	var headers strings.Builder
	for _, h := range o.Target.Headers {
		headers.WriteString(h.Name + ": " + h.Value + "\n")
	}
	cmd.Env = append(os.Environ(), "EVENTSWARM_PASSWORD="+o.Target.Password, cli.HeadersEnv+"="+headers.String())
	cmd.Stdout = io.Discard
	errR, errW, err := os.Pipe()
	if err != nil {
		pr.Close()
		pw.Close()
		return nil, err
	}
	cmd.Stderr = errW
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		errR.Close()
		errW.Close()
		return nil, err
	}
	pw.Close()
	errW.Close()
	c := &child{shard: i, cmd: cmd, done: make(chan struct{})}
	var readers sync.WaitGroup
	readers.Go(func() { // the child's own error lines, prefixed
		sc := bufio.NewScanner(errR)
		for sc.Scan() {
			if line := sc.Text(); !strings.Contains(line, ": waiting ") {
				fmt.Fprintf(stderr, "[shard %d] %s\n", i, line)
			}
		}
		errR.Close()
	})
	readers.Go(func() {
		r := bufio.NewReaderSize(pr, 64<<10)
		for {
			line, err := readBoundedLine(r, 64<<20)
			if err != nil {
				break
			}
			var m childMsg
			if json.Unmarshal(line, &m) != nil {
				continue
			}
			c.mu.Lock()
			switch m.Type {
			case "progress":
				c.last = m
			case "final":
				c.final = m.Shard
			}
			c.mu.Unlock()
		}
		pr.Close()
	})
	go func() {
		readers.Wait()
		c.mu.Lock()
		got := c.final != nil
		c.mu.Unlock()
		if got {
			// The result is in and the child closed its pipes (it is
			// exiting): the report need not wait until the kernel has
			// torn down the sockets it still held.
			close(c.done)
			_ = cmd.Wait()
			return
		}
		werr := cmd.Wait()
		c.mu.Lock()
		switch {
		case c.final == nil && werr != nil:
			c.err = fmt.Errorf("shard %d (pid %d) died: %v, no result", i, cmd.Process.Pid, werr)
		case c.final == nil:
			c.err = fmt.Errorf("shard %d (pid %d) ended without a result", i, cmd.Process.Pid)
		}
		c.mu.Unlock()
		close(c.done)
	}()
	return c, nil
}

// readBoundedLine reads one line of at most limit bytes.
func readBoundedLine(r *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > limit {
			return nil, errors.New("line too long")
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// liveMerged prints the children's progress, merged, every interval.
func liveMerged(done <-chan struct{}, children []*child, every time.Duration, w io.Writer) {
	t := time.NewTicker(every)
	defer t.Stop()
	var prev stats.Snapshot
	var line report.Live
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		var ev, ct verify.Counts
		active := map[string]int{}
		target, peak := 0, 0
		var elapsed int64
		var snaps []stats.Snapshot
		for _, c := range children {
			c.mu.Lock()
			m := c.last
			c.mu.Unlock()
			ev.Add(m.Events)
			ct.Add(m.Control)
			for k, v := range m.Active {
				active[k] += v
			}
			target += m.Target
			peak += m.Peak
			elapsed = max(elapsed, m.ElapsedMS)
			if m.Ops.Ops != nil {
				snaps = append(snaps, m.Ops)
			}
		}
		all := ev
		all.Add(ct)
		res := verify.Result{Counts: all}
		fmt.Fprintf(w, "%s; %d processes; coverage events %s control %s\n",
			line.Line(time.Duration(elapsed)*time.Millisecond, "", -1, res), len(children),
			pctText(ev.Covered, ev.PublishAttempted), pctText(ct.Covered, ct.PublishAttempted))
		fmt.Fprintf(w, "%s; target %d peak %d\n", report.UsersLine(active, nil), target, peak)
		if ops, err := stats.Merge(snaps...); err == nil && len(snaps) > 0 {
			_ = report.OpsTable(w, ops.Delta(prev))
			prev = ops
		}
	}
}

// processesOutput is the parent's --json: the merged run, and each child.
type processesOutput struct {
	mergeOutput
	Interrupted bool           `json:"interrupted"`
	Children    []childOutcome `json:"children"`
	Errors      []string       `json:"errors,omitempty"`
}

type childOutcome struct {
	Shard    int            `json:"shard"`
	Pid      int            `json:"pid"`
	ExitCode int            `json:"exit_code"`
	Complete bool           `json:"complete"`
	Counts   *verify.Counts `json:"counts,omitempty"`
	Error    string         `json:"error,omitempty"`
}

// reportChildren merges the children's results exactly (as swarm merge)
// and reports; a missing or incomplete child makes the run inconclusive.
func reportChildren(o *options, children []*child, interrupted bool, stdout, stderr io.Writer) int {
	var files []report.ShardFile
	var problems []string
	out := processesOutput{Interrupted: interrupted}
	for _, c := range children {
		co := childOutcome{Shard: c.shard, Pid: c.cmd.Process.Pid, ExitCode: c.cmd.ProcessState.ExitCode()}
		if c.final != nil {
			co.Complete, co.Counts = c.final.Complete, &c.final.Counts
			files = append(files, *c.final)
			if !c.final.Complete {
				problems = append(problems, fmt.Sprintf("shard %d was interrupted", c.shard))
			}
		}
		if c.err != nil {
			co.Error = c.err.Error()
			problems = append(problems, c.err.Error())
			fmt.Fprintf(stderr, "swarm: %v\n", c.err)
		}
		out.Children = append(out.Children, co)
	}
	// Sum what arrived, exactly: every complete set goes through the same
	// checks as swarm merge; a partial one is summed and judged inconclusive.
	var m report.ShardFile
	if len(problems) == 0 {
		var err error
		if m, err = report.MergeSkew(files, report.DefaultMaxStartSkew); err != nil {
			problems = append(problems, mergeProblems(err)...)
		}
	}
	if len(problems) > 0 {
		m, _ = report.Sum(files) // no consistency checks: a partial set is inconclusive anyway
	}
	r := m.Judge(o.cfg.Verify.Gates, verify.Evidence{Incomplete: strings.Join(problems, "; ")})
	tables := o.TableOut(stdout, stderr)
	var errs []error
	coverage, err := printMerged(tables, m, r)
	if err != nil {
		errs = append(errs, err)
	}
	out.mergeOutput = mergeOutput{Result: r, RunID: m.RunID, Shards: len(children), ConfigHash: m.ConfigHash,
		StartedAt: m.Start, EndedAt: m.End, Operations: m.Stats, Users: m.Users, Generator: m.Generator, OverloadedShards: m.OverloadedShards, Streams: m.Streams, Coverage: coverage}
	out.Errors = problems
	if o.JSON != "" {
		if err := report.WriteJSON(o.JSON, out); err != nil {
			errs = append(errs, fmt.Errorf("swarm: --json: %w", err))
		}
	}
	if o.HTML != "" {
		page := mergePage(&mergeOptions{gates: o.cfg.Verify.Gates}, m, r, len(files))
		page.Title = fmt.Sprintf("eventswarm swarm: %d processes, run %s", len(children), m.RunID)
		if err := report.WritePage(o.HTML, page); err != nil {
			errs = append(errs, fmt.Errorf("swarm: --html: %w", err))
		}
	}
	werr := errors.Join(errs...)
	cli.PrintErr(stderr, "swarm", werr)
	return cli.Exit(r.Verdict, cli.CouldNotRun(werr))
}

// childReporter is the child side: progress every interval, then the final
// shard file, on fd.
type childReporter struct {
	w  *os.File
	mu sync.Mutex
}

func newChildReporter(fd int) *childReporter {
	return &childReporter{w: os.NewFile(uintptr(fd), "parent-pipe")}
}

func (c *childReporter) send(m childMsg) {
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _ = c.w.Write(append(b, '\n')) // the parent gone: nothing to tell
}

// progressLoop sends r's progress every second until ctx ends.
func (c *childReporter) progressLoop(ctx context.Context, r *behaviours.Runner) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p := r.Progress()
		c.send(childMsg{Type: "progress", ElapsedMS: p.Elapsed.Milliseconds(),
			Events: p.Streams[behaviours.StreamLearnerToProctor].Counts, Control: p.Streams[behaviours.StreamProctorToLearner].Counts,
			Active: p.Active, Target: p.UsersTarget, Peak: p.UsersPeak, Ops: p.Ops})
	}
}

// visitedFlag is one flag the user set, as text.
type visitedFlag struct{ name, value string }

func visited(fs *flag.FlagSet) []visitedFlag {
	var out []visitedFlag
	fs.Visit(func(f *flag.Flag) { out = append(out, visitedFlag{f.Name, f.Value.String()}) })
	return out
}
