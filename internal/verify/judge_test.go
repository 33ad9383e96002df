package verify

import (
	"math"
	"strings"
	"testing"
)

// Coverage counts the measured attempts some subscriber expected: a
// subscriber that expects only [3s, 6s) of ten messages one second apart
// covers exactly the three sent at 3s, 4s and 5s, and the run is inconclusive
// under the default 95% coverage gate; with the gate off it passes.
func TestCoverageCounted(t *testing.T) {
	for _, gates := range []Gates{DefaultGates, {Within: 0.95, MinPublishAvailability: 0.999, MinExpected: 1}} {
		l, err := NewLedger(testRun, Config{Gates: gates})
		if err != nil {
			t.Fatal(err)
		}
		p := l.Stream(1, 1)
		s := l.Subscriber("s")
		s.Expect(1, 1, 3*sec)
		for seq := uint64(1); seq <= 10; seq++ {
			at := int64(seq) * sec
			if seq == 6 {
				s.Unexpect(1, 1, at)
			}
			p.Attempt(seq, at)
			p.Result(seq, PublishOK, at+ms1)
		}
		live := l.Snapshot(10 * sec)
		if live.Counts.Covered != 3 {
			t.Errorf("live covered = %d, want 3", live.Counts.Covered)
		}
		r := l.Finish(40*sec, true)
		if r.Counts.Covered != 3 || r.Counts.PublishAttempted != 10 {
			t.Fatalf("covered %d of %d, want 3 of 10", r.Counts.Covered, r.Counts.PublishAttempted)
		}
		if got := r.Counts.Coverage(); got != 0.3 {
			t.Errorf("coverage = %v, want 0.3", got)
		}
		// The three expected messages never arrived: lost, so the run fails
		// whatever the coverage; coverage alone cannot turn a fail into a pass.
		if r.Verdict != Fail {
			t.Errorf("verdict %s (%s), want fail (3 lost)", r.Verdict, r.Reason)
		}
	}
}

func TestJudge(t *testing.T) {
	full := Counts{Expected: 100, OnTime: 100, PublishAttempted: 100, PublishOK: 100, Covered: 100}
	lost := full
	lost.OnTime, lost.Lost = 99, 1
	corrupt := full
	corrupt.Corrupt = 1
	thin := full
	thin.Covered = 50
	pending := full
	pending.Pending = 1
	cutShort := full
	cutShort.PublishOK, cutShort.PublishUnknown = 98, 2
	cutShortLost := cutShort
	cutShortLost.OnTime, cutShortLost.Lost = 99, 1
	tests := []struct {
		name   string
		c      Counts
		ev     Evidence
		want   Verdict
		reason string
	}{
		{"complete pass", full, Evidence{}, Pass, ""},
		{"interrupted pass", full, Evidence{Incomplete: "the run was interrupted"}, Inconclusive, "interrupted"},
		{"interrupted fail stays fail", lost, Evidence{Incomplete: "the run was interrupted"}, Fail, "lost"},
		{"interrupted: unknown outcomes at the stop", cutShort, Evidence{Incomplete: "the run was interrupted"}, Inconclusive, "availability is not judged"},
		{"complete: unknown outcomes fail availability", cutShort, Evidence{}, Fail, "publish_availability"},
		{"interrupted: lost and availability stays fail", cutShortLost, Evidence{Incomplete: "the run was interrupted"}, Fail, "lost"},
		{"overloaded fail", lost, Evidence{Overloaded: "12 of 100 sends late"}, Inconclusive, "overloaded"},
		{"overloaded pass", full, Evidence{Overloaded: "12 of 100 sends late"}, Pass, ""},
		{"overloaded corrupt stays fail", corrupt, Evidence{Overloaded: "x"}, Fail, "corrupt"},
		{"interrupted corrupt stays fail", corrupt, Evidence{Incomplete: "x"}, Fail, "corrupt"},
		{"low coverage", thin, Evidence{}, Inconclusive, "coverage 50.0% below 95.0%"},
		{"pending", pending, Evidence{}, Inconclusive, "not final"},
		{"no data", Counts{}, Evidence{}, Inconclusive, "no message was published"},
		{"no data interrupted", Counts{}, Evidence{Incomplete: "the run was interrupted"}, Inconclusive, "interrupted; no message"},
	}
	for _, tt := range tests {
		v, reason, gates := DefaultGates.Judge(tt.c, tt.ev)
		if v != tt.want || !strings.Contains(reason, tt.reason) {
			t.Errorf("%s: verdict %s %q, want %s containing %q", tt.name, v, reason, tt.want, tt.reason)
		}
		if len(gates) != 6 || gates[5].Name != "coverage" {
			t.Errorf("%s: gates %+v, want the five SLO gates and coverage", tt.name, gates)
		}
	}
}

func TestGatesValidateRejectsNaN(t *testing.T) {
	for _, g := range []Gates{
		{Within: math.NaN()}, {MinPublishAvailability: math.NaN()}, {MinCoverage: math.NaN()},
		{Within: 1.5}, {MinCoverage: -0.1}, {MinPublishAvailability: math.Inf(1)},
	} {
		err := g.Validate()
		if err == nil {
			t.Errorf("%+v: Validate = nil, want an error", g)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "--") || strings.Contains(msg, "verify:") {
			t.Errorf("%+v: %q: want one line naming the flag, no package prefix", g, msg)
		}
	}
	if err := DefaultGates.Validate(); err != nil {
		t.Errorf("DefaultGates: %v", err)
	}
}

// A closed subscriber stays attached while its stream may still attempt a
// seq due before the close: every seq so far being final is not enough (a
// late publisher's next message, due before the close, was once counted as
// extra instead of expected).
func TestClosedSubscriberKeepsLateSeq(t *testing.T) {
	x := newScen(t, Config{}, 1)
	x.publish(1, 1*sec, PublishOK)
	x.deliver(0, 1, 1*sec+ms1)
	x.l.Advance(20 * sec) // seq 1 final
	x.subs[0].Close(25 * sec)
	x.l.Advance(21 * sec) // reaps what it may
	x.publish(2, 22*sec, PublishOK)
	if a := x.deliver(0, 2, 22*sec+ms1); a != Recorded {
		t.Fatalf("Deliver = %v, want recorded", a)
	}
	x.check(x.l.Finish(60*sec, true), plus(Counts{Expected: 2, OnTime: 2}, pub(2, 0, 0)), Pass)
}

// Expect after Close: a stream that started before the subscriber stopped
// listening but was registered after its close is expected up to the close
// (swarm's registry counts it so: a control stream to a learner whose session
// was ending); a stream starting at or after the close is not.
func TestExpectAfterClose(t *testing.T) {
	l, err := NewLedger(testRun, Config{})
	if err != nil {
		t.Fatal(err)
	}
	s := l.Subscriber("s")
	s.Close(10 * sec)
	before, after := l.Stream(1, 1), l.Stream(2, 1)
	s.Expect(1, 1, 5*sec)
	s.Expect(2, 1, 10*sec)
	for seq, at := range []int64{6 * sec, 9 * sec, 11 * sec} {
		before.Attempt(uint64(seq+1), at)
		before.Result(uint64(seq+1), PublishOK, at+ms1)
		after.Attempt(uint64(seq+1), at+2*sec)
		after.Result(uint64(seq+1), PublishOK, at+2*sec+ms1)
	}
	stamp := func(pub uint32, seq uint64, at int64) {
		s.Deliver(payload(testRun, pub, 1, seq, at), false, false, at+ms1)
	}
	stamp(1, 1, 6*sec)
	stamp(1, 2, 9*sec)
	r := l.Finish(60*sec, true)
	// Stream 1: seqs at 6s and 9s expected and on time, 11s not (after the
	// close); stream 2 starts at the close: nothing expected of it.
	if r.Counts.Expected != 2 || r.Counts.OnTime != 2 || r.Counts.Lost != 0 {
		t.Fatalf("counts %+v, want 2 expected on time, none lost", r.Counts)
	}
}
