package report

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/stats"
	"github.com/eventswarm/eventswarm/internal/verify"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// shardFiles builds n shard files of one run, each shard recording its own
// deterministic latencies, plus the histogram and stats of everything
// recorded in one place, which an exact merge must reproduce.
func shardFiles(t *testing.T, n int) ([]ShardFile, stats.Hist, stats.Snapshot) {
	t.Helper()
	ops := []string{"publish", "poll.200"}
	all := stats.NewHistogram()
	allStats := stats.New(ops, 1)
	var files []ShardFile
	for i := range n {
		h := stats.NewHistogram()
		st := stats.New(ops, 2)
		for k := range 1000 {
			d := time.Duration((i*1000+k)*7919%3000000) * time.Microsecond
			_ = h.RecordValue(d.Microseconds())
			_ = all.RecordValue(d.Microseconds())
			class := bus.ClassNone
			if k%50 == 0 {
				class = bus.ClassTimeout
			}
			st.Shard(k).Record(stats.Op(k%2), d, class)
			allStats.Shard(0).Record(stats.Op(k%2), d, class)
		}
		files = append(files, ShardFile{
			RunID: "run-1", Shard: i, Shards: n, ConfigHash: "abc",
			Start: t0.Add(time.Duration(i) * 100 * time.Millisecond), End: t0.Add(time.Minute + time.Duration(i)*time.Second),
			Complete:    true,
			Counts:      verify.Counts{Expected: 1000, OnTime: 990, Slow: 10, PublishAttempted: 100, Covered: 100, PublishOK: 100, DupSteady: uint64(i)},
			LatencyHist: stats.ExportHistogram(h),
			Stats:       st.SnapshotAt(t0.Add(time.Minute)),
		})
	}
	return files, stats.ExportHistogram(all), allStats.SnapshotAt(t0.Add(time.Minute))
}

func TestMergeExact(t *testing.T) {
	files, all, allStats := shardFiles(t, 3)
	// Through files on disk, as `swarm merge` reads them, in any order.
	dir := t.TempDir()
	var read []ShardFile
	for _, i := range []int{2, 0, 1} {
		p := filepath.Join(dir, "shard-"+string(rune('0'+i))+".json")
		if err := WriteJSON(p, files[i]); err != nil {
			t.Fatal(err)
		}
		f, err := ReadShardFile(p)
		if err != nil {
			t.Fatal(err)
		}
		read = append(read, f)
	}
	m, err := Merge(read)
	if err != nil {
		t.Fatal(err)
	}
	want := verify.Counts{Expected: 3000, OnTime: 2970, Slow: 30, PublishAttempted: 300, Covered: 300, PublishOK: 300, DupSteady: 3}
	if m.Counts != want {
		t.Errorf("counts = %+v, want %+v", m.Counts, want)
	}
	if !m.LatencyHist.Histogram().Equals(all.Histogram()) || m.LatencyHist.Summary() != all.Summary() {
		t.Errorf("merged latency %+v, want %+v", m.LatencyHist.Summary(), all.Summary())
	}
	if m.Shards != 3 || m.RunID != "run-1" || !m.Complete || !m.Start.Equal(t0) || !m.End.Equal(t0.Add(time.Minute+2*time.Second)) {
		t.Errorf("merged header = %+v", m)
	}
	for i, w := range allStats.Ops {
		g := m.Stats.Ops[i]
		if g.Name != w.Name || g.Count != w.Count || g.Failures != w.Failures || g.LatencyMS != w.LatencyMS {
			t.Errorf("merged stats %s = %+v, want %+v", w.Name, g, w)
		}
	}
	r := m.Result(verify.DefaultGates)
	if r.Verdict != verify.Pass || r.LatencyMS.Count != 3000 || !reflect.DeepEqual(r.Counts, want) {
		t.Errorf("result = %s %q latency %+v", r.Verdict, r.Reason, r.LatencyMS)
	}
	// The merged result carries the histograms as verify does, and they read back.
	var again ShardFile
	if err := again.SetResult(r); err != nil {
		t.Fatal(err)
	}
	if again.LatencyHist.Summary() != all.Summary() || again.Counts != want || again.LateHist.Count() != 0 {
		t.Errorf("SetResult(Result) = %+v, want %+v", again.LatencyHist.Summary(), all.Summary())
	}
}

func TestMergeErrors(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(fs []ShardFile) []ShardFile
		substr []string
	}{
		{"missing index", func(fs []ShardFile) []ShardFile { return fs[:2] }, []string{"missing 1 of 3 shards: [2]"}},
		{"duplicate index", func(fs []ShardFile) []ShardFile { fs[2].Shard = 1; return fs },
			[]string{"shard 1: 2 files", "missing 1 of 3 shards: [2]"}},
		{"mismatched hash", func(fs []ShardFile) []ShardFile { fs[1].ConfigHash = "xyz"; return fs },
			[]string{`shard 1: config hash "xyz", want "abc"`}},
		{"everything at once", func(fs []ShardFile) []ShardFile {
			fs[0].Complete = false
			fs[1].RunID = "run-2"
			fs[2].Start = t0.Add(time.Minute)
			fs[2].Shards = 4
			return fs
		}, []string{"shard 0: incomplete", `shard 1: run ID "run-2", want "run-1"`, "start skew 1m0s exceeds 5s",
			"file 2 (shard 2): shard count 4, want 3"}},
		{"out of range", func(fs []ShardFile) []ShardFile { fs[0].Shard = -1; return fs },
			[]string{"shard index -1 outside [0, 3)", "missing 1 of 3 shards: [0]"}},
		{"different histogram settings", func(fs []ShardFile) []ShardFile {
			if err := json.Unmarshal([]byte(`{"lowest":1,"highest":1000,"significant_figures":2,"total":1,"counts":[[5,1]]}`), &fs[1].LatencyHist); err != nil {
				t.Fatal(err)
			}
			return fs
		}, []string{"shard 1: latency histogram", "settings differ"}},
		{"none", func([]ShardFile) []ShardFile { return nil }, []string{"no shard files"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files, _, _ := shardFiles(t, 3)
			_, err := Merge(tt.edit(files))
			if !errors.Is(err, ErrMerge) {
				t.Fatalf("err = %v, want ErrMerge", err)
			}
			for _, s := range tt.substr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("err = %v\nwant it to contain %q", err, s)
				}
			}
		})
	}
}

// The verify ledger and stats must keep the same histogram settings, or
// merges of shard files stop being exact.
func TestHistogramSettingsMatchVerify(t *testing.T) {
	v, s := verify.NewHistogram(), stats.NewHistogram()
	_ = v.RecordValue(1500)
	_ = s.RecordValue(2500)
	sum, err := stats.ExportHistogram(v).Add(stats.ExportHistogram(s))
	if err != nil {
		t.Fatalf("verify and stats histograms do not merge: %v", err)
	}
	if sum.Count() != 2 {
		t.Errorf("merged count = %d, want 2", sum.Count())
	}
	var f ShardFile
	if err := f.SetResult(verify.Result{LatencyHist: v.Export()}); err != nil || f.LatencyHist.Count() != 1 {
		t.Errorf("SetResult: %v, count %d", err, f.LatencyHist.Count())
	}
}

// TestMergeGeneratorLag: the shards' send lags add, and one shard that fell
// behind is enough to make the merged latency failure inconclusive (the
// failure may be its lag alone) even when the summed lag is under 1%; with
// generators that kept up, the same counts fail.
func TestMergeGeneratorLag(t *testing.T) {
	files, _, _ := shardFiles(t, 3)
	for i := range files {
		files[i].Counts.OnTime, files[i].Counts.Slow = 500, 500 // 50% on time: the latency gate fails
		files[i].Streams = map[string]verify.Counts{"events": files[i].Counts}
		files[i].Generator = verify.SendLag{Sends: 1000, LateSends: 5, MaxSendLagMS: 120} // kept up
	}
	files[2].Generator = verify.SendLag{Sends: 100, LateSends: 2, MaxSendLagMS: 340} // 2%: behind
	for i, f := range files {
		want := verify.Fail
		if i == 2 {
			want = verify.Inconclusive
		}
		if r := f.Result(verify.DefaultGates); r.Verdict != want {
			t.Errorf("shard %d alone: %s (%s), want %s", i, r.Verdict, r.Reason, want)
		}
	}
	m, err := Merge(files)
	if err != nil {
		t.Fatal(err)
	}
	if want := (verify.SendLag{Sends: 2100, LateSends: 12, MaxSendLagMS: 340}); m.Generator != want || !reflect.DeepEqual(m.OverloadedShards, []int{2}) {
		t.Errorf("merged generator %+v overloaded shards %v, want %+v and [2]", m.Generator, m.OverloadedShards, want)
	}
	if r := m.Result(verify.DefaultGates); r.Verdict != verify.Inconclusive || !strings.Contains(r.Reason, "shard 2") {
		t.Errorf("merged: %s (%s), want inconclusive naming shard 2", r.Verdict, r.Reason)
	}
	files[2].Generator.LateSends = 1
	if m, err = Merge(files); err != nil {
		t.Fatal(err)
	}
	if r := m.Result(verify.DefaultGates); r.Verdict != verify.Fail || m.OverloadedShards != nil {
		t.Errorf("merged, every shard kept up: %s (%s), overloaded shards %v; want fail", r.Verdict, r.Reason, m.OverloadedShards)
	}
	// A hard failure stays a failure whatever the generators did.
	m.OverloadedShards = []int{0}
	m.Counts.Corrupt = 1
	if r := m.Result(verify.DefaultGates); r.Verdict != verify.Fail {
		t.Errorf("merged with a corrupt message: %s, want fail", r.Verdict)
	}
}
