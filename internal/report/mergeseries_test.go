package report

import (
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/verify"
)

// TestMergeWindows: windows are summed by index where every shard has the
// same interval; counts exactly, latency percentiles the largest shard's.
func TestMergeWindows(t *testing.T) {
	w := func(i int, expected, lost uint64, p99 float64) verify.Window {
		return verify.Window{Index: i, StartMS: int64(i) * 10000, EndMS: int64(i+1) * 10000,
			Counts: verify.Counts{Expected: expected, OnTime: expected - lost, Lost: lost}, Latency: verify.Latency{Count: expected - lost, P99: p99}}
	}
	a := ShardFile{Windows: map[string][]verify.Window{"ev": {w(0, 10, 0, 5), w(1, 20, 1, 9), w(2, 5, 0, 1)}}}
	b := ShardFile{Windows: map[string][]verify.Window{"ev": {w(0, 7, 2, 8), w(1, 3, 0, 2)}}}
	got := mergeWindows([]ShardFile{a, b})["ev"]
	late := b
	late.Start = a.Start.Add(time.Second) // a tenth of the window: not the same intervals
	if m := mergeWindows([]ShardFile{a, late}); m != nil {
		t.Errorf("windows of shards started 1 s apart merged: %+v", m)
	}
	if len(got) != 2 {
		t.Fatalf("%d merged windows, want 2 (window 2 is on one shard only): %+v", len(got), got)
	}
	for i, want := range []struct {
		expected, lost uint64
		p99            float64
	}{{17, 2, 8}, {23, 1, 9}} {
		g := got[i]
		if g.Index != i || g.Counts.Expected != want.expected || g.Counts.Lost != want.lost || g.Counts.OnTime != want.expected-want.lost || g.Latency.P99 != want.p99 {
			t.Errorf("window %d: %+v, want expected %d lost %d p99 %v", i, g, want.expected, want.lost, want.p99)
		}
	}
	shifted := b
	shifted.Windows = map[string][]verify.Window{"ev": {{Index: 0, StartMS: 1, EndMS: 10001}}}
	if got := mergeWindows([]ShardFile{a, shifted}); got != nil {
		t.Errorf("windows of different intervals merged: %+v", got)
	}
}

// TestMergeTicks: samples of the shards taken at (about) the same moment are
// summed; a moment some shard has no sample for is left out.
func TestMergeTicks(t *testing.T) {
	tk := func(at float64, learners int, pub float64) Tick {
		return Tick{AtS: at, Users: map[string]int{"learner": learners}, PublishesPerS: pub}
	}
	a := ShardFile{Ticks: []Tick{tk(5, 10, 1), tk(10, 20, 2), tk(15, 30, 3)}}
	b := ShardFile{Ticks: []Tick{tk(5.02, 1, 10), tk(10.03, 2, 20)}}
	got := mergeTicks([]ShardFile{a, b})
	if len(got) != 2 {
		t.Fatalf("%d merged ticks, want 2: %+v", len(got), got)
	}
	for i, want := range []struct {
		at       float64
		learners int
		pub      float64
	}{{5.02, 11, 11}, {10.03, 22, 22}} {
		if g := got[i]; g.AtS != want.at || g.Users["learner"] != want.learners || g.PublishesPerS != want.pub {
			t.Errorf("tick %d: %+v, want at %v learners %d publishes/s %v", i, g, want.at, want.learners, want.pub)
		}
	}
	late := b
	late.Start = a.Start.Add(time.Second)
	if got := mergeTicks([]ShardFile{a, late}); got != nil {
		t.Errorf("samples of shards started 1 s apart merged: %+v", got)
	}
	if got := mergeTicks([]ShardFile{a, {}}); got != nil {
		t.Errorf("a shard without samples: merged %+v, want none", got)
	}
}
