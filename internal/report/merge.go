package report

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/eventswarm/eventswarm/internal/stats"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// DefaultMaxStartSkew bounds how far apart the shards of one run may have
// started (their Start fields) for Merge to accept them.
const DefaultMaxStartSkew = 5 * time.Second

// ErrMerge: the shard files do not form one complete run.
var ErrMerge = errors.New("report: shard files do not form one run")

// ShardFile is the result file one shard of a distributed run writes
// (DESIGN.md "Distributed runs"): exact counters and HDR histograms with the
// shared settings, so that Merge is exact and the verdict is computed on
// merged data only.
type ShardFile struct {
	RunID      string    `json:"run_id"`
	Shard      int       `json:"shard"`  // index i in [0, Shards)
	Shards     int       `json:"shards"` // count N
	ConfigHash string    `json:"config_hash"`
	Start      time.Time `json:"start"` // when the shard actually started measuring
	End        time.Time `json:"end"`
	// Complete: the shard ran to its end and drained; false after an
	// interruption or crash (Merge refuses incomplete sets).
	Complete bool          `json:"complete"`
	Counts   verify.Counts `json:"counts"`
	// LatencyHist and LateHist are the ledger's delivery-latency and late
	// histograms (µs, the shared settings; see SetResult).
	LatencyHist stats.Hist     `json:"latency_histogram"`
	LateHist    stats.Hist     `json:"late_histogram"`
	Stats       stats.Snapshot `json:"stats"`
	// Streams are each direction's exact counts (their sum is Counts), so a
	// merged run is judged per direction too (e.g. its coverage).
	Streams map[string]verify.Counts `json:"streams,omitempty"`
	// Users are the shard's users (merged: summed; reached is the latest).
	Users Users `json:"users"`
	// Generator is the shard's own send lag (merged: summed, the largest
	// lag): over 1% of all shards' sends late makes a failing merged verdict
	// inconclusive, as on one shard. A file without it counts as keeping up.
	Generator verify.SendLag `json:"generator"`
	// OverloadedShards (merged only) are the shards whose own generator fell
	// behind: one is enough to make a failing merged verdict inconclusive,
	// since the failure may be that shard's lag alone.
	OverloadedShards []int `json:"overloaded_shards,omitempty"`
	// Setup is what the run ran (the same on every shard; merged: the first
	// file's), for the merged HTML report. Optional.
	Setup []Setting `json:"setup,omitempty"`
	// LatencyBoundMS and LostAfterMS are the run's on-time and lost bounds
	// (the same on every shard), drawn on the merged report's charts. Optional.
	LatencyBoundMS float64 `json:"latency_bound_ms,omitempty"`
	LostAfterMS    float64 `json:"lost_after_ms,omitempty"`
	// Windows are each direction's windows (shards share the window width
	// and start, so window i covers the same interval on every shard);
	// merged: counts summed exactly, latency percentiles the largest
	// shard's (an upper bound). Optional: without them the merged report
	// has no delivery charts over time.
	Windows map[string][]verify.Window `json:"windows,omitempty"`
	// Ticks are the shard's samples over the run (users by kind, operations
	// per second), seconds since its start; merged: summed per sample time.
	// Optional.
	Ticks []Tick `json:"ticks,omitempty"`
}

// Users are a run's users: its target, the most running at once, how many
// were started, by kind, and when the target was first reached (nil: never;
// a merged run reached its target when its last shard did).
type Users struct {
	Target       int            `json:"target"`
	Peak         int            `json:"peak"`
	Started      int            `json:"started"`
	ByKind       map[string]int `json:"by_kind"`
	ReachedAfter *float64       `json:"reached_after_s"`
	// Connections made by the users (each successful dial) and sessions
	// they opened: connections/started is connects per user.
	Connections uint64 `json:"connections"`
	Sessions    uint64 `json:"sessions"`
}

// Add sums o into u (peaks add: shards run at the same time).
func (u *Users) Add(o Users, first bool) {
	u.Target += o.Target
	u.Peak += o.Peak
	u.Started += o.Started
	u.Connections += o.Connections
	u.Sessions += o.Sessions
	if u.ByKind == nil {
		u.ByKind = map[string]int{}
	}
	for k, n := range o.ByKind {
		u.ByKind[k] += n
	}
	switch {
	case o.ReachedAfter == nil:
		u.ReachedAfter = nil
	case first:
		v := *o.ReachedAfter
		u.ReachedAfter = &v
	case u.ReachedAfter != nil && *o.ReachedAfter > *u.ReachedAfter:
		v := *o.ReachedAfter
		u.ReachedAfter = &v
	}
}

// SetResult fills f's counts and histograms from a shard ledger's final
// result (verify.Result.LatencyHist/LateHist, set by Ledger.Finish).
func (f *ShardFile) SetResult(r verify.Result) error {
	lat, err := stats.FromHDRSnapshot(r.LatencyHist)
	if err != nil {
		return fmt.Errorf("report: latency histogram: %w", err)
	}
	late, err := stats.FromHDRSnapshot(r.LateHist)
	if err != nil {
		return fmt.Errorf("report: late histogram: %w", err)
	}
	f.Counts, f.LatencyHist, f.LateHist = r.Counts, lat, late
	return nil
}

// Result computes the verdict on f's counts with g and summarises its
// histograms. Use it on the output of Merge; windows and per-subscriber
// results are not merged.
func (f ShardFile) Result(g verify.Gates) verify.Result {
	return f.Judge(g, verify.Evidence{})
}

// Judge is Result with evidence the files cannot show (e.g. a shard that
// died); the generators' lag is added to it.
func (f ShardFile) Judge(g verify.Gates, ev verify.Evidence) verify.Result {
	ev.Overloaded = f.Generator.Evidence("swarm")
	if len(f.OverloadedShards) > 0 {
		ev.Overloaded = fmt.Sprintf("swarm fell behind on shard %s: over 1%% of its sends more than %v late; all shards: %d of %d",
			joinInts(f.OverloadedShards), verify.LateSend, f.Generator.LateSends, f.Generator.Sends)
	}
	v, reason, gates := g.Judge(f.Counts, ev)
	// Each direction on its own too: the verdict is the worst of them.
	names := make([]string, 0, len(f.Streams))
	for name := range f.Streams {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		// A direction that published nothing has nothing to judge.
		if dc := f.Streams[name]; dc.PublishAttempted > 0 {
			if dv, dr, _ := g.Judge(dc, ev); dv.Worse(v) {
				v, reason = dv, name+": "+dr
			}
		}
	}
	return verify.Result{Verdict: v, Reason: reason, Counts: f.Counts,
		LatencyMS: verifyLatency(f.LatencyHist.Summary()), LateMS: verifyLatency(f.LateHist.Summary()), Gates: gates,
		LatencyHist: f.LatencyHist.HDRSnapshot(), LateHist: f.LateHist.HDRSnapshot()}
}

func verifyLatency(l stats.Latency) verify.Latency {
	return verify.Latency{Count: l.Count, P50: l.P50, P95: l.P95, P99: l.P99, Max: l.Max}
}

// ReadShardFile reads one shard's result file.
func ReadShardFile(path string) (ShardFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return ShardFile{}, fmt.Errorf("report: %w", err)
	}
	var f ShardFile
	if err := json.Unmarshal(b, &f); err != nil {
		return ShardFile{}, fmt.Errorf("report: %s: %w", path, err)
	}
	return f, nil
}

// Merge checks that files are one complete run (DefaultMaxStartSkew) and
// merges them exactly. See MergeSkew.
func Merge(files []ShardFile) (ShardFile, error) { return MergeSkew(files, DefaultMaxStartSkew) }

// MergeSkew checks that files are exactly one file per shard index 0..N-1,
// all with the same run ID, shard count and config hash, all complete, with
// start times at most maxSkew apart; then it sums counts and histograms
// exactly. Every problem is reported at once, joined under ErrMerge. The
// merged file has Shard 0, the common Shards, the earliest Start and the
// latest End.
func MergeSkew(files []ShardFile, maxSkew time.Duration) (ShardFile, error) {
	if len(files) == 0 {
		return ShardFile{}, fmt.Errorf("%w: no shard files", ErrMerge)
	}
	first := files[0]
	var errs []error
	n := first.Shards
	if n <= 0 {
		errs = append(errs, fmt.Errorf("shard %d: shard count %d, want > 0", first.Shard, n))
	}
	seen := map[int]int{}
	var minStart, maxStart time.Time
	for i, f := range files {
		if f.Shards != n {
			errs = append(errs, fmt.Errorf("file %d (shard %d): shard count %d, want %d", i, f.Shard, f.Shards, n))
		}
		if f.Shard < 0 || (n > 0 && f.Shard >= n) {
			errs = append(errs, fmt.Errorf("file %d: shard index %d outside [0, %d)", i, f.Shard, n))
		} else {
			seen[f.Shard]++
		}
		if f.RunID != first.RunID {
			errs = append(errs, fmt.Errorf("shard %d: run ID %q, want %q", f.Shard, f.RunID, first.RunID))
		}
		if f.ConfigHash != first.ConfigHash {
			errs = append(errs, fmt.Errorf("shard %d: config hash %q, want %q", f.Shard, f.ConfigHash, first.ConfigHash))
		}
		if !f.Complete {
			errs = append(errs, fmt.Errorf("shard %d: incomplete", f.Shard))
		}
		if minStart.IsZero() || f.Start.Before(minStart) {
			minStart = f.Start
		}
		if f.Start.After(maxStart) {
			maxStart = f.Start
		}
	}
	dups := []int{}
	for idx, c := range seen {
		if c > 1 {
			dups = append(dups, idx)
		}
	}
	slices.Sort(dups)
	for _, idx := range dups {
		errs = append(errs, fmt.Errorf("shard %d: %d files", idx, seen[idx]))
	}
	var missing []int
	for i := 0; i < n && i < 1<<20; i++ {
		if seen[i] == 0 {
			missing = append(missing, i)
		}
	}
	switch {
	case len(missing) > 20:
		errs = append(errs, fmt.Errorf("missing %d of %d shards: %v …", len(missing), n, missing[:20]))
	case len(missing) > 0:
		errs = append(errs, fmt.Errorf("missing %d of %d shards: %v", len(missing), n, missing))
	}
	if skew := maxStart.Sub(minStart); skew > maxSkew {
		errs = append(errs, fmt.Errorf("start skew %v exceeds %v", skew, maxSkew))
	}

	m, sumErrs := Sum(files)
	m.Shards, m.Start, m.Complete = n, minStart, true
	errs = append(errs, sumErrs...)
	if len(errs) > 0 {
		return ShardFile{}, fmt.Errorf("%w: %w", ErrMerge, errors.Join(errs...))
	}
	return m, nil
}

// Sum adds files exactly — counts (pooled and per direction), users,
// histograms and operation stats — with the first file's identity and setup,
// the earliest start and the latest end, and no check that they form one run
// (MergeSkew does that). It returns what could not be added.
func Sum(files []ShardFile) (ShardFile, []error) {
	var m ShardFile
	var errs []error
	snaps := make([]stats.Snapshot, 0, len(files))
	for i, f := range files {
		if i == 0 {
			m = ShardFile{RunID: f.RunID, Shards: f.Shards, ConfigHash: f.ConfigHash, Start: f.Start, Setup: f.Setup,
				LatencyBoundMS: f.LatencyBoundMS, LostAfterMS: f.LostAfterMS}
		}
		if f.Start.Before(m.Start) {
			m.Start = f.Start
		}
		if f.End.After(m.End) {
			m.End = f.End
		}
		m.Counts.Add(f.Counts)
		m.Users.Add(f.Users, i == 0)
		m.Generator.Add(f.Generator)
		if verify.Overloaded(f.Generator.Sends, f.Generator.LateSends) {
			m.OverloadedShards = append(m.OverloadedShards, f.Shard)
		}
		for name, c := range f.Streams {
			if m.Streams == nil {
				m.Streams = map[string]verify.Counts{}
			}
			sc := m.Streams[name]
			sc.Add(c)
			m.Streams[name] = sc
		}
		var err error
		if m.LatencyHist, err = m.LatencyHist.Add(f.LatencyHist); err != nil {
			errs = append(errs, fmt.Errorf("shard %d: latency histogram: %w", f.Shard, err))
		}
		if m.LateHist, err = m.LateHist.Add(f.LateHist); err != nil {
			errs = append(errs, fmt.Errorf("shard %d: late histogram: %w", f.Shard, err))
		}
		snaps = append(snaps, f.Stats)
	}
	slices.Sort(m.OverloadedShards)
	var err error
	if m.Stats, err = stats.Merge(snaps...); err != nil {
		errs = append(errs, err)
	}
	m.Windows = mergeWindows(files)
	m.Ticks = mergeTicks(files)
	return m, errs
}

// mergeWindows adds the shards' windows of each direction by index: counts
// summed exactly, each latency percentile the largest shard's (an upper
// bound of the merged one), Verdict left for the caller to judge from the
// summed counts. A window is kept only if every shard has it (same interval);
// nil when a shard has no windows.
func mergeWindows(files []ShardFile) map[string][]verify.Window {
	if len(files) == 0 {
		return nil
	}
	out := map[string][]verify.Window{}
	for name, first := range files[0].Windows {
		if len(first) == 0 || !aligned(files, time.Duration(first[0].EndMS-first[0].StartMS)*time.Millisecond) {
			continue
		}
		byIndex := map[int]*verify.Window{}
		seen := map[int]int{}
		for _, f := range files {
			for _, w := range f.Windows[name] {
				m := byIndex[w.Index]
				if m == nil {
					m = &verify.Window{Index: w.Index, StartMS: w.StartMS, EndMS: w.EndMS}
					byIndex[w.Index] = m
				}
				if w.StartMS != m.StartMS || w.EndMS != m.EndMS {
					continue // not the same interval: never summed
				}
				seen[w.Index]++
				m.Counts.Add(w.Counts)
				m.Latency = maxLatency(m.Latency, w.Latency)
			}
		}
		var ws []verify.Window
		for i, w := range byIndex {
			if seen[i] == len(files) {
				ws = append(ws, *w)
			}
		}
		if len(ws) == 0 {
			continue
		}
		slices.SortFunc(ws, func(a, b verify.Window) int { return a.Index - b.Index })
		out[name] = ws
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// aligned reports whether the shards started within a twentieth of width
// of each other (as they do with --start-at: swarm --processes, deploy/), so
// that a window or sample time relative to each shard's start is the same
// moment on all of them.
func aligned(files []ShardFile, width time.Duration) bool {
	lo, hi := files[0].Start, files[0].Start
	for _, f := range files[1:] {
		if f.Start.Before(lo) {
			lo = f.Start
		}
		if f.Start.After(hi) {
			hi = f.Start
		}
	}
	return width > 0 && hi.Sub(lo) <= width/20
}

// maxLatency is the larger of each percentile of a and b.
func maxLatency(a, b verify.Latency) verify.Latency {
	a.Count += b.Count
	a.P50, a.P95, a.P99, a.Max = max(a.P50, b.P50), max(a.P95, b.P95), max(a.P99, b.P99), max(a.Max, b.Max)
	return a
}

// mergeTicks adds the shards' samples taken at the same moment: each shard's
// samples are placed on the grid of its sampling interval (the first shard's
// median step), the last sample in a cell counting, and a cell is kept only
// if every shard has a sample in it (a sum with a shard missing would show a
// dip that never happened). nil when a shard has fewer than two samples.
func mergeTicks(files []ShardFile) []Tick {
	if len(files) == 0 || len(files[0].Ticks) < 2 {
		return nil
	}
	steps := make([]float64, 0, len(files[0].Ticks)-1)
	for i := 1; i < len(files[0].Ticks); i++ {
		steps = append(steps, files[0].Ticks[i].AtS-files[0].Ticks[i-1].AtS)
	}
	slices.Sort(steps)
	step := steps[len(steps)/2]
	if step <= 0 || !aligned(files, time.Duration(step*float64(time.Second))) {
		return nil
	}
	type cell struct {
		t Tick
		n int
	}
	cells := map[int64]*cell{}
	for _, f := range files {
		if len(f.Ticks) < 2 {
			return nil
		}
		mine := map[int64]Tick{}
		for _, t := range f.Ticks {
			mine[int64(math.Round(t.AtS/step))] = t
		}
		for k, t := range mine {
			c := cells[k]
			if c == nil {
				c = &cell{t: Tick{Users: map[string]int{}}}
				cells[k] = c
			}
			c.n++
			c.t.AtS = max(c.t.AtS, t.AtS)
			for kind, n := range t.Users {
				c.t.Users[kind] += n
			}
			c.t.PublishesPerS += t.PublishesPerS
			c.t.OperationsPerS += t.OperationsPerS
			c.t.FailuresPerS += t.FailuresPerS
		}
	}
	var out []Tick
	for _, c := range cells {
		if c.n == len(files) {
			out = append(out, c.t)
		}
	}
	slices.SortFunc(out, func(a, b Tick) int { return cmp.Compare(a.AtS, b.AtS) })
	if len(out) < 2 {
		return nil
	}
	return out
}

// joinInts is 1, 3, 4.
func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}
