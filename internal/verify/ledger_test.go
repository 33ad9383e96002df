package verify

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

const (
	ms1 = int64(time.Millisecond)
	sec = int64(time.Second)
)

// payload encodes a stamp of run for tests (allocates).
func payload(run RunID, pub, stream uint32, seq uint64, intended int64) []byte {
	b := make([]byte, StampSize+16)
	s := Stamp{Run: run, Publisher: pub, Stream: stream, Seq: seq, Intended: intended, Sent: intended}
	if err := s.Encode(b); err != nil {
		panic(err)
	}
	return b
}

// diff lists the fields where got and want differ.
// diff compares counts field by field. A want with Covered 0 means every
// attempted message was covered (the scenarios subscribe before publishing);
// tests of coverage itself set Covered, or use noneCovered.
func diff(got, want Counts) string {
	if want.Covered == 0 {
		want.Covered = want.PublishAttempted
	} else if want.Covered == noneCovered {
		want.Covered = 0
	}
	var out []string
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := 0; i < g.NumField(); i++ {
		if a, b := g.Field(i).Uint(), w.Field(i).Uint(); a != b {
			out = append(out, fmt.Sprintf("%s: got %d, want %d", g.Type().Field(i).Name, a, b))
		}
	}
	return strings.Join(out, "; ")
}

// noneCovered as a want's Covered means 0 messages covered.
const noneCovered = ^uint64(0)

// scen is one publisher stream (1, 1) and subscribers, driven by explicit times.
type scen struct {
	t        testing.TB
	l        *Ledger
	p        *StreamRecorder
	subs     []*SubscriberRecorder
	intended map[uint64]int64
}

func newScen(t testing.TB, cfg Config, nsubs int) *scen {
	t.Helper()
	l, err := NewLedger(testRun, cfg)
	if err != nil {
		t.Fatal(err)
	}
	x := &scen{t: t, l: l, p: l.Stream(1, 1), intended: map[uint64]int64{}}
	for i := 0; i < nsubs; i++ {
		s := l.Subscriber(fmt.Sprintf("s%d", i))
		s.Expect(1, 1, 0)
		x.subs = append(x.subs, s)
	}
	return x
}

// publish attempts seq at intended and reports outcome o (0: leave pending).
func (x *scen) publish(seq uint64, intended int64, o PublishOutcome) {
	x.intended[seq] = intended
	x.p.Attempt(seq, intended)
	if o != 0 {
		x.p.Result(seq, o, intended+ms1)
	}
}

func (x *scen) deliver(sub int, seq uint64, at int64) Arrival {
	return x.subs[sub].Deliver(payload(testRun, 1, 1, seq, x.intended[seq]), false, false, at)
}

func (x *scen) check(got Result, want Counts, verdict Verdict) {
	x.t.Helper()
	if d := diff(got.Counts, want); d != "" {
		x.t.Errorf("counts: %s", d)
	}
	if verdict != "" && got.Verdict != verdict {
		x.t.Errorf("verdict = %s (%s), want %s", got.Verdict, got.Reason, verdict)
	}
}

// pub1 is the publish part of the counts for n successful publishes.
func pub(ok, failed, unknown uint64) Counts {
	return Counts{PublishAttempted: ok + failed + unknown, PublishOK: ok, PublishFailed: failed, PublishUnknown: unknown}
}

func plus(a Counts, bs ...Counts) Counts {
	for _, b := range bs {
		a.Add(b)
	}
	return a
}

// Matrix item 1: inclusive boundaries.
func TestBoundaries(t *testing.T) {
	const t0 = 10 * sec
	tests := []struct {
		name    string
		d       int64 // -1: no arrival
		want    Counts
		verdict Verdict
	}{
		{"1.999s on time", 1999 * ms1, Counts{Expected: 1, OnTime: 1}, Pass},
		{"2.000s on time", 2 * sec, Counts{Expected: 1, OnTime: 1}, Pass},
		{"2.001s slow", 2001 * ms1, Counts{Expected: 1, Slow: 1}, Fail},
		{"15.000s slow", 15 * sec, Counts{Expected: 1, Slow: 1}, Fail},
		{"15s+1ns lost and late", 15*sec + 1, Counts{Expected: 1, Lost: 1, LostWhileConnected: 1, Late: 1}, Fail},
		{"no arrival lost", -1, Counts{Expected: 1, Lost: 1, LostWhileConnected: 1}, Fail},
		{"0s on time", 0, Counts{Expected: 1, OnTime: 1}, Pass},
	}
	for _, tt := range tests {
		for _, finish := range []string{"advance", "finish"} {
			t.Run(tt.name+"/"+finish, func(t *testing.T) {
				x := newScen(t, Config{}, 1)
				x.publish(1, t0, PublishOK)
				if tt.d >= 0 {
					if a := x.deliver(0, 1, t0+tt.d); a != Recorded {
						t.Fatalf("Deliver = %v, want recorded", a)
					}
				}
				if finish == "advance" {
					x.l.Advance(t0 + 16*sec)
				}
				x.check(x.l.Finish(t0+16*sec, true), plus(tt.want, pub(1, 0, 0)), tt.verdict)
			})
		}
	}
}

// Matrix item 2: arrival at 16 s → lost, late=1, not a dup; a second copy at 20 s → dup.
func TestLateThenDuplicate(t *testing.T) {
	for _, order := range []string{"advance-first", "deliver-first"} {
		t.Run("order="+order, func(t *testing.T) {
			x := newScen(t, Config{}, 1)
			x.publish(1, 0, PublishOK)
			x.publish(2, sec, PublishOK)
			x.deliver(0, 2, sec+ms1)
			if order == "advance-first" {
				x.l.Advance(16 * sec)
				x.deliver(0, 1, 16*sec)
			} else {
				x.deliver(0, 1, 16*sec)
				x.l.Advance(16 * sec)
			}
			lost := Counts{Expected: 2, OnTime: 1, Lost: 1, LostWhileConnected: 1, Late: 1}
			// seq 2 (intended 1 s) is due at 17 s: still pending, arrived on time (provisional).
			x.check(x.l.Snapshot(17*sec), plus(pub(2, 0, 0), Counts{Expected: 1, Lost: 1, LostWhileConnected: 1, Late: 1, Pending: 1,
				PendingArrived: 1, PendingOnTime: 1}), Fail)
			x.deliver(0, 1, 20*sec)
			r := x.l.Finish(30*sec, true)
			x.check(r, plus(lost, pub(2, 0, 0), Counts{Duplicates: 1, DupOther: 1, DupSteady: 1}), Fail)
			if r.LateMS.Count != 1 || r.LateMS.Max < 15999 || r.LateMS.Max > 16100 {
				t.Errorf("late histogram = %+v, want one value near 16000 ms", r.LateMS)
			}
			if r.LatencyMS.Count != 1 {
				t.Errorf("latency histogram count = %d, want 1", r.LatencyMS.Count)
			}
		})
	}
}

// Matrix item 3: a duplicate two hours after the original is still a dup; a
// lost seq arriving two hours later is late.
func TestDuplicateHoursLater(t *testing.T) {
	x := newScen(t, Config{Rate: 10}, 1)
	const n = 2 * 3600 * 10 // 2 h at 10 msg/s
	for seq := uint64(1); seq <= n; seq++ {
		at := int64(seq) * 100 * ms1
		x.publish(seq, at, PublishOK)
		if seq != 7 {
			x.deliver(0, seq, at+5*ms1)
		}
		if seq%10 == 0 {
			x.l.Advance(at)
		}
	}
	end := int64(n+1) * 100 * ms1
	x.l.Advance(end + 20*sec)
	x.deliver(0, 5, end+20*sec) // copy of a seq finalized 2 h ago
	x.deliver(0, 7, end+21*sec) // first arrival of a lost seq: late
	x.deliver(0, 7, end+22*sec) // its second copy: a duplicate
	r := x.l.Finish(end+30*sec, true)
	want := plus(pub(n, 0, 0), Counts{Expected: n, OnTime: n - 1, Lost: 1, LostWhileConnected: 1, Late: 1, Duplicates: 2, DupOther: 2, DupSteady: 2})
	x.check(r, want, Fail)
}

// Matrix item 4: reorder 1,2,4,3,5 → out of order 1, lost 0, dup 0.
func TestReorder(t *testing.T) {
	x := newScen(t, Config{}, 1)
	for seq := uint64(1); seq <= 5; seq++ {
		x.publish(seq, int64(seq)*sec, PublishOK)
	}
	for i, seq := range []uint64{1, 2, 4, 3, 5} {
		x.deliver(0, seq, 6*sec+int64(i)*ms1)
	}
	x.check(x.l.Finish(30*sec, true), plus(pub(5, 0, 0), Counts{Expected: 5, OnTime: 1, Slow: 4, OutOfOrder: 1}), Fail)
}

// Matrix items 5 and 6: foreign and retained are counted only; unexpected and
// corrupt fail hard.
func TestArrivalClasses(t *testing.T) {
	other := RunID{9}
	base := plus(pub(3, 1, 0), Counts{Expected: 3, OnTime: 3})
	tests := []struct {
		name    string
		extra   func(x *scen) Arrival
		arrival Arrival
		want    Counts
		verdict Verdict
	}{
		{"foreign", func(x *scen) Arrival {
			return x.subs[0].Deliver(payload(other, 1, 1, 2, sec), false, false, sec)
		}, Foreign, Counts{Foreign: 1}, Fail /* publish availability 3/4 */},
		{"retained", func(x *scen) Arrival {
			return x.subs[0].Deliver(payload(testRun, 1, 1, 1, sec), true, false, sec)
		}, Retained, Counts{Retained: 1}, Fail},
		{"marker", func(x *scen) Arrival {
			return x.subs[0].Deliver(payload(testRun, 1, MarkerStream, 1, sec), false, false, sec)
		}, Marker, Counts{Markers: 1}, Fail},
		{"seq never attempted", func(x *scen) Arrival { return x.deliver(0, 9, 2*sec) }, Unexpected, Counts{Unexpected: 1}, Fail},
		{"seq 0", func(x *scen) Arrival { return x.deliver(0, 0, 2*sec) }, Unexpected, Counts{Unexpected: 1}, Fail},
		{"unknown stream", func(x *scen) Arrival {
			return x.subs[0].Deliver(payload(testRun, 1, 2, 1, sec), false, false, sec)
		}, Unexpected, Counts{Unexpected: 1}, Fail},
		{"failed publish arrives", func(x *scen) Arrival { return x.deliver(0, 4, 4*sec) }, Recorded, Counts{Unexpected: 1}, Fail},
		{"failed publish arrives after finalization", func(x *scen) Arrival {
			x.l.Advance(25 * sec)
			return x.deliver(0, 4, 25*sec)
		}, Unexpected, Counts{Unexpected: 1}, Fail},
		{"bad checksum", func(x *scen) Arrival {
			b := payload(testRun, 1, 1, 1, sec)
			b[offSeq+3] ^= 1
			return x.subs[0].Deliver(b, false, false, sec)
		}, Corrupt, Counts{Corrupt: 1}, Fail},
		{"short", func(x *scen) Arrival { return x.subs[0].Deliver([]byte("hello"), false, false, sec) }, Corrupt, Counts{Corrupt: 1}, Fail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newScen(t, Config{Gates: Gates{Within: 0.95, MinPublishAvailability: 0.5, MinExpected: 1}}, 1)
			for seq := uint64(1); seq <= 3; seq++ {
				x.publish(seq, int64(seq)*sec, PublishOK)
				x.deliver(0, seq, int64(seq)*sec+ms1)
			}
			x.publish(4, 4*sec, PublishFailed)
			if a := tt.extra(x); a != tt.arrival {
				t.Errorf("Deliver = %v, want %v", a, tt.arrival)
			}
			v := Pass // foreign, retained, markers leave the verdict unchanged
			if tt.want.Unexpected+tt.want.Corrupt > 0 {
				v = Fail
			}
			x.check(x.l.Finish(30*sec, true), plus(base, tt.want), v)
		})
	}
}

// Matrix item 7: a publish that timed out and arrives later → recovered, not
// expected, not lost; pending publishes count as unknown at finalization.
func TestRecovered(t *testing.T) {
	tests := []struct {
		name    string
		outcome PublishOutcome
		arrive  []int64 // arrival times of seq 2 (intended 2 s)
		advance bool    // finalize before the arrivals
		want    Counts
	}{
		{"unknown, not arriving", PublishUnknown, nil, false, Counts{}},
		{"unknown, arrives", PublishUnknown, []int64{3 * sec}, false, Counts{Recovered: 1}},
		{"unknown, arrives twice", PublishUnknown, []int64{3 * sec, 4 * sec}, false, Counts{Recovered: 1, Duplicates: 1, DupOther: 1, DupSteady: 1}},
		{"unknown, arrives after finalization", PublishUnknown, []int64{40 * sec, 41 * sec}, true, Counts{Recovered: 1, Duplicates: 1, DupOther: 1, DupSteady: 1}},
		{"pending, arrives", 0, []int64{3 * sec}, false, Counts{Recovered: 1}},
		{"pending, arrives after finalization", 0, []int64{40 * sec}, true, Counts{Recovered: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newScen(t, Config{Gates: Gates{Within: 0.95, MinPublishAvailability: 0.5, MinExpected: 1}}, 1)
			x.publish(1, sec, PublishOK)
			x.deliver(0, 1, sec+ms1)
			x.publish(2, 2*sec, tt.outcome)
			if tt.advance {
				x.l.Advance(39 * sec)
				x.p.Result(2, PublishOK, 39*sec) // too late: already final (unknown)
			}
			for _, at := range tt.arrive {
				x.deliver(0, 2, at)
			}
			v := Pass
			if tt.want.Duplicates > 0 {
				v = Fail // duplicates of a recovered message still break exactly-once
			}
			x.check(x.l.Finish(60*sec, true), plus(pub(1, 0, 1), Counts{Expected: 1, OnTime: 1}, tt.want), v)
		})
	}
}

// Matrix item 8: subscriber down 30 s → losses split during-disconnect / while-connected.
func TestLostDuringDisconnect(t *testing.T) {
	x := newScen(t, Config{}, 2)
	s := x.subs[0]
	const n = 120
	for seq := uint64(1); seq <= n; seq++ {
		at := int64(seq) * sec
		x.publish(seq, at, PublishOK)
		if seq == 30 {
			s.Disconnected(30*sec + 500*ms1)
		}
		if seq == 60 {
			s.Reconnected(60*sec+500*ms1, 61*sec+500*ms1, false)
		}
		x.deliver(1, seq, at+ms1)
		down := at > 30*sec && at < 62*sec // seqs 31..61 intended while down
		if !down && seq != 90 {
			x.deliver(0, seq, at+ms1)
		}
		if seq == 63 { // a duplicate right after reconnecting
			x.deliver(0, seq, at+2*ms1)
		}
		x.l.Advance(at)
	}
	r := x.l.Finish(200*sec, true)
	want := plus(pub(n, 0, 0), Counts{
		Expected: 2 * n, OnTime: 2*n - 32, Lost: 32, LostDuringDisconnect: 31, LostWhileConnected: 1,
		Duplicates: 1, DupOther: 1, DupNearReconnect: 1,
	})
	x.check(r, want, Fail)
	if len(r.Subscribers) != 2 || len(r.Subscribers[0].Epochs) != 1 {
		t.Fatalf("subscribers = %+v, want 2 with one epoch on s0", r.Subscribers)
	}
	e := r.Subscribers[0].Epochs[0]
	if e.DisconnectedMS != 30500 || e.ReconnectedMS == nil || *e.ReconnectedMS != 60500 || *e.ResubscribedMS != 61500 || e.Kept {
		t.Fatalf("epoch = %+v", e)
	}
	if got := r.Subscribers[1].Counts.Lost; got != 0 {
		t.Fatalf("s1 lost %d, want 0", got)
	}
}

// Matrix item 9: zero messages received never passes.
func TestZeroReceived(t *testing.T) {
	tests := []struct {
		name    string
		publish bool
		expect  bool
		want    Verdict
	}{
		{"published, expected, none received", true, true, Fail},
		{"nothing published", false, true, Inconclusive},
		{"published, nobody expected", true, false, Inconclusive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newScen(t, Config{}, 0)
			s := x.l.Subscriber("s")
			if tt.expect {
				s.Expect(1, 1, 0)
			}
			if tt.publish {
				for seq := uint64(1); seq <= 10; seq++ {
					x.publish(seq, int64(seq)*sec, PublishOK)
				}
			}
			r := x.l.Finish(100*sec, true)
			if r.Verdict != tt.want {
				t.Fatalf("verdict = %s (%s), want %s", r.Verdict, r.Reason, tt.want)
			}
		})
	}
}

// Finish with an interrupted drain: the unfinished tail is pending, not lost.
func TestFinishUndrained(t *testing.T) {
	tests := []struct {
		name    string
		drained bool
		want    Counts
		verdict Verdict
	}{
		{"drained", true, Counts{Expected: 10, OnTime: 8, Lost: 2, LostWhileConnected: 2}, Fail},
		{"interrupted", false, Counts{Expected: 8, OnTime: 8, Pending: 2}, Inconclusive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newScen(t, Config{}, 1)
			for seq := uint64(1); seq <= 10; seq++ {
				x.publish(seq, int64(seq)*sec, PublishOK)
				if seq < 9 {
					x.deliver(0, seq, int64(seq)*sec+ms1)
				}
			}
			x.check(x.l.Finish(12*sec, tt.drained), plus(pub(10, 0, 0), tt.want), tt.verdict)
		})
	}
}

// TestDeliveryAfterFinish: an interrupted process takes its result at the
// cut while its subscribers still run (swarm's ReportAtCut, probe's cut
// drain). A seq Finish turned into Pending is final for its subscriber but
// not lost; when it arrives after, it must not count at all: it once counted
// as a duplicate (final, expected, not in the lost set), and a no-fault
// interrupted swarm run failed on "duplicates 1" now and then.
func TestDeliveryAfterFinish(t *testing.T) {
	x := newScen(t, Config{}, 1)
	for seq := uint64(1); seq <= 10; seq++ {
		x.publish(seq, int64(seq)*sec, PublishOK)
		if seq < 9 {
			x.deliver(0, seq, int64(seq)*sec+ms1)
		}
	}
	want := plus(pub(10, 0, 0), Counts{Expected: 8, OnTime: 8, Pending: 2})
	x.check(x.l.Finish(12*sec, false), want, Inconclusive)
	for _, seq := range []uint64{9, 10, 3} { // the pending tail, then a real second copy
		if a := x.deliver(0, seq, 12*sec+ms1); a != AfterFinish {
			t.Errorf("seq %d delivered after Finish: %s, want %s", seq, a, AfterFinish)
		}
	}
	x.check(x.l.Snapshot(13*sec), want, Inconclusive)
}

func TestSnapshotPending(t *testing.T) {
	x := newScen(t, Config{}, 2)
	for seq := uint64(1); seq <= 5; seq++ {
		x.publish(seq, int64(seq)*sec, PublishOK)
		x.deliver(0, seq, int64(seq)*sec+ms1)
	}
	x.publish(6, 6*sec, 0)
	r := x.l.Snapshot(7 * sec)
	// Of the 12 pending, subscriber 0's 5 arrived within Latency.
	x.check(r, Counts{PublishAttempted: 6, PublishOK: 5, Pending: 12, PendingArrived: 5, PendingOnTime: 5}, Inconclusive)
	x.l.Advance(19 * sec) // seqs 1..3 final
	r = x.l.Snapshot(19 * sec)
	x.check(r, Counts{PublishAttempted: 6, PublishOK: 5, Pending: 6, Expected: 6, OnTime: 3, Lost: 3, LostWhileConnected: 3,
		PendingArrived: 2, PendingOnTime: 2}, Fail)
	// A provisional arrival past Latency is arrived, not on time.
	y := newScen(t, Config{}, 1)
	y.publish(1, sec, PublishOK)
	y.deliver(0, 1, sec+3*sec)
	y.check(y.l.Snapshot(5*sec), Counts{PublishAttempted: 1, PublishOK: 1, Pending: 1, PendingArrived: 1}, Inconclusive)
}

// Expect / Unexpect / measurement interval decide what is expected; the rest is Extra.
func TestExpectUnexpect(t *testing.T) {
	l, err := NewLedger(testRun, Config{})
	if err != nil {
		t.Fatal(err)
	}
	p := l.Stream(1, 1)
	a := l.Subscriber("a") // confirmed at 5 s, stops at 15 s
	b := l.Subscriber("b") // never subscribes but receives
	c := l.Subscriber("c") // subscribes before the stream exists, gets everything
	c.Expect(1, 1, 0)
	a.Expect(1, 1, 5*sec)
	a.Expect(1, 1, 7*sec) // no-op: already expecting
	l.StartMeasurement(3 * sec)
	l.StopMeasurement(18 * sec)
	for seq := uint64(1); seq <= 20; seq++ {
		at := int64(seq) * sec
		p.Attempt(seq, at)
		p.Result(seq, PublishOK, at)
		if seq == 15 {
			a.Unexpect(1, 1, at)
		}
		for _, s := range []*SubscriberRecorder{a, b, c} {
			s.Deliver(payload(testRun, 1, 1, seq, at), false, false, at+ms1)
		}
		l.Advance(at)
	}
	// Copies of seqs already final (Advance) follow the same rules: dup if
	// expected, else extra.
	l.Advance(60 * sec)
	a.Deliver(payload(testRun, 1, 1, 6, 6*sec), false, true, 60*sec)
	a.Deliver(payload(testRun, 1, 1, 16, 16*sec), false, true, 60*sec)
	r := l.Finish(60*sec, true)
	got := map[string]Counts{}
	for _, s := range r.Subscribers {
		got[s.Name] = s.Counts
	}
	// Measured: intended in [3 s, 18 s) = seqs 3..17.
	want := map[string]Counts{
		"a": {Expected: 10, OnTime: 10, Extra: 11, Duplicates: 1, DupRedelivered: 1, DupSteady: 1}, // seqs 5..14, copies of 6 and 16
		"b": {Extra: 20},
		"c": {Expected: 15, OnTime: 15, Extra: 5},
	}
	for name, w := range want {
		if d := diff(got[name], w); d != "" {
			t.Errorf("%s: %s", name, d)
		}
	}
	if r.Counts.PublishAttempted != 15 {
		t.Errorf("publish attempted = %d, want 15 (measured only)", r.Counts.PublishAttempted)
	}
	if r.Counts.Duplicates != 1 || r.Counts.DupRedelivered != 1 || r.Counts.Extra != 36 {
		t.Errorf("after copies: dup %d redelivered %d extra %d, want 1 1 36", r.Counts.Duplicates, r.Counts.DupRedelivered, r.Counts.Extra)
	}
}

func TestWindows(t *testing.T) {
	x := newScen(t, Config{Window: 10 * time.Second}, 1)
	var emitted []Window
	for seq := uint64(1); seq <= 35; seq++ {
		at := int64(seq) * sec // windows [0,10) [10,20) [20,30) [30,40)
		x.publish(seq, at, PublishOK)
		switch seq {
		case 12: // lost
		case 13:
			x.deliver(0, seq, at+3*sec) // slow
		default:
			x.deliver(0, seq, at+100*ms1)
		}
		x.l.Advance(at)
		r := x.l.Snapshot(at)
		for i, w := range emitted {
			if !reflect.DeepEqual(r.Windows[i], w) {
				t.Fatalf("window %d changed after emission: %+v → %+v", w.Index, w, r.Windows[i])
			}
		}
		// ClosedWindows is the snapshot's windows, from any index on.
		if got := x.l.ClosedWindows(0); !reflect.DeepEqual(got, nilIfEmpty(r.Windows)) {
			t.Fatalf("at %ds: ClosedWindows(0) = %+v, want the snapshot's %+v", seq, got, r.Windows)
		}
		if got := x.l.ClosedWindows(len(emitted)); !reflect.DeepEqual(got, nilIfEmpty(r.Windows[len(emitted):])) {
			t.Fatalf("at %ds: ClosedWindows(%d) = %+v, want %+v", seq, len(emitted), got, r.Windows[len(emitted):])
		}
		emitted = r.Windows
		// Window k closes once now >= (k+1)*10s + 16s.
		if want := int((at - 16*sec) / (10 * sec)); len(r.Windows) != max(want, 0) {
			t.Fatalf("at %ds: %d windows emitted, want %d", seq, len(r.Windows), max(want, 0))
		}
	}
	x.deliver(0, 5, 36*sec) // duplicate after window 0 closed: pooled only
	x.l.Advance(36 * sec)
	r := x.l.Finish(36*sec, true)
	if len(r.Windows) != 4 {
		t.Fatalf("got %d windows, want 4", len(r.Windows))
	}
	wants := []struct {
		c       Counts
		verdict Verdict
	}{
		{plus(pub(9, 0, 0), Counts{Expected: 9, OnTime: 9}), Pass},
		{plus(pub(10, 0, 0), Counts{Expected: 10, OnTime: 8, Slow: 1, Lost: 1, LostWhileConnected: 1}), Fail},
		{plus(pub(10, 0, 0), Counts{Expected: 10, OnTime: 10}), Pass},
		{plus(pub(6, 0, 0), Counts{Expected: 6, OnTime: 6}), Pass},
	}
	for i, w := range r.Windows {
		if w.Index != i || w.StartMS != int64(i)*10000 || w.EndMS != int64(i+1)*10000 {
			t.Errorf("window %d: index %d [%d,%d)", i, w.Index, w.StartMS, w.EndMS)
		}
		if d := diff(w.Counts, wants[i].c); d != "" {
			t.Errorf("window %d: %s", i, d)
		}
		if w.Verdict != wants[i].verdict {
			t.Errorf("window %d: verdict %s (%s), want %s", i, w.Verdict, w.Reason, wants[i].verdict)
		}
		if w.Latency.Count != w.Counts.OnTime+w.Counts.Slow {
			t.Errorf("window %d: latency count %d", i, w.Latency.Count)
		}
	}
	if w := r.Windows[1].Latency; w.Max < 2999 || w.Max > 3010 || w.P50 < 99 || w.P50 > 101 {
		t.Errorf("window 1 latency %+v, want p50 ≈ 100 ms, max ≈ 3000 ms", w)
	}
	if r.Counts.Duplicates != 1 || r.Windows[0].Counts.Duplicates != 0 {
		t.Errorf("late duplicate: pooled %d, window 0 %d; want 1, 0", r.Counts.Duplicates, r.Windows[0].Counts.Duplicates)
	}
}

func nilIfEmpty(w []Window) []Window {
	if len(w) == 0 {
		return nil
	}
	return w
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		errs []string
	}{
		{"zero is valid", Config{}, nil},
		{"negative", Config{Latency: -1, Grace: -1, Rate: -1, MaxIntervals: -1}, []string{"latency must not", "grace", "rate", "max intervals"}},
		{"latency above lost-after", Config{Latency: 20 * time.Second}, []string{"must not exceed"}},
		{"bad gates", Config{Gates: Gates{Within: 2}}, []string{"within"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != (len(tt.errs) == 0) {
				t.Fatalf("Validate() = %v, want errors %v", err, tt.errs)
			}
			for _, e := range tt.errs {
				if !strings.Contains(err.Error(), e) {
					t.Errorf("Validate() = %v, want it to mention %q", err, e)
				}
			}
			if _, err := NewLedger(testRun, tt.cfg); (err == nil) != (len(tt.errs) == 0) {
				t.Errorf("NewLedger error = %v", err)
			}
		})
	}
}

func TestIntervals(t *testing.T) {
	var v intervals
	for _, x := range []uint64{1, 2, 3, 7, 5, 6, 10, 4} {
		v.add(x, 100)
	}
	if want := []span{{1, 7}, {10, 10}}; !reflect.DeepEqual(v.s, want) {
		t.Fatalf("intervals = %v, want %v", v.s, want)
	}
	if !v.remove(4, 100) || v.remove(4, 100) || v.contains(4) || !v.contains(3) || !v.contains(5) {
		t.Fatalf("remove/contains wrong: %v", v.s)
	}
	if want := []span{{1, 3}, {5, 7}, {10, 10}}; !reflect.DeepEqual(v.s, want) {
		t.Fatalf("intervals = %v, want %v", v.s, want)
	}
	v.add(20, 3)
	if want := []span{{5, 7}, {10, 10}, {20, 20}}; !reflect.DeepEqual(v.s, want) || v.forgotten != 3 {
		t.Fatalf("capped intervals = %v (forgotten %d), want %v (3)", v.s, v.forgotten, want)
	}
	for _, x := range []uint64{5, 6, 7, 10, 20} {
		v.remove(x, 3)
	}
	if v.len() != 0 {
		t.Fatalf("intervals = %v, want empty", v.s)
	}
}

// Skipped seqs are never published: their arrival is unexpected, before or after finalization.
func TestGapSeq(t *testing.T) {
	x := newScen(t, Config{}, 1)
	x.publish(1, sec, PublishOK)
	x.publish(4, 2*sec, PublishOK) // 2 and 3 never attempted
	x.deliver(0, 1, sec+ms1)
	x.deliver(0, 4, 2*sec+ms1)
	x.intended[2], x.intended[3] = 2*sec, 2*sec
	if a := x.deliver(0, 2, 2*sec); a != Recorded {
		t.Fatalf("Deliver(2) = %v", a)
	}
	x.l.Advance(20 * sec)
	if a := x.deliver(0, 3, 20*sec); a != Unexpected {
		t.Fatalf("Deliver(3) after finalization = %v, want unexpected", a)
	}
	x.p.Attempt(3, 20*sec) // too late: seq 3 is final
	x.check(x.l.Finish(40*sec, true), plus(pub(2, 0, 0), Counts{Expected: 2, OnTime: 2, Unexpected: 2}), Fail)
}
