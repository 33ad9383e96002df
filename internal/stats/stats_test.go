package stats

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/eventswarm/eventswarm/internal/bus"
)

var testOps = []string{"connect", "publish", "poll.200", "poll.408", "poll.error"}

// within reports whether got is within HDR precision (3 significant digits,
// plus one unit of 1 µs) of want, in ms.
func within(got, want float64) bool {
	return math.Abs(got-want) <= want*1e-3+1e-3
}

func TestConcurrentRecordExactCounts(t *testing.T) {
	const (
		workers = 200
		perW    = 500
	)
	s := New(testOps, 16)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sh := s.Shard(w)
			for i := range perW {
				switch i % 5 {
				case 0, 1, 2:
					sh.Record(1, time.Duration(1+i%100)*time.Millisecond, bus.ClassNone)
				case 3:
					sh.Record(1, 30*time.Second, bus.ClassTimeout)
				case 4:
					sh.Record(0, time.Millisecond, bus.Class5xx)
				}
			}
		}()
	}
	// Snapshots while recording must be safe (-race) and monotonic.
	var prev uint64
	for range 5 {
		o, _ := s.Snapshot().Op("publish")
		if o.Count < prev {
			t.Errorf("publish count went backwards: %d after %d", o.Count, prev)
		}
		prev = o.Count
	}
	wg.Wait()

	snap := s.Snapshot()
	pub, _ := snap.Op("publish")
	con, _ := snap.Op("connect")
	total := uint64(workers * perW)
	if want := total * 4 / 5; pub.Count != want {
		t.Errorf("publish count = %d, want %d", pub.Count, want)
	}
	if want := total / 5; pub.Failures != want || pub.FailuresByClass["timeout"] != want {
		t.Errorf("publish failures = %d %v, want %d timeouts", pub.Failures, pub.FailuresByClass, want)
	}
	if want := total * 3 / 5; pub.LatencyMS.Count != want || pub.Histogram.Count() != want {
		t.Errorf("publish latency count = %d/%d, want %d", pub.LatencyMS.Count, pub.Histogram.Count(), want)
	}
	if want := total / 5; pub.FailureLatencyMS.Count != want || !within(pub.FailureLatencyMS.Max, 30000) {
		t.Errorf("publish failure latency = %+v, want %d values of 30 s", pub.FailureLatencyMS, want)
	}
	if want := total / 5; con.Count != want || con.Failures != want || con.FailuresByClass["5xx"] != want {
		t.Errorf("connect = %d/%d %v, want %d 5xx", con.Count, con.Failures, con.FailuresByClass, want)
	}
	if con.LatencyMS.Count != 0 {
		t.Errorf("connect success latency count = %d, want 0", con.LatencyMS.Count)
	}
	for _, name := range []string{"poll.200", "poll.408", "poll.error"} {
		if o, _ := snap.Op(name); o.Count != 0 || o.FailuresByClass != nil {
			t.Errorf("%s = %+v, want empty", name, o)
		}
	}
}

func TestPercentiles(t *testing.T) {
	s := New([]string{"op"}, 4)
	// 1..10000 µs, one each, spread over shards: p50 = 5 ms, p95 = 9.5 ms, p99 = 9.9 ms, max 10 ms.
	for i := 1; i <= 10000; i++ {
		s.Shard(i).Record(0, time.Duration(i)*time.Microsecond, bus.ClassNone)
	}
	got := s.Snapshot().Ops[0].LatencyMS
	want := Latency{Count: 10000, P50: 5, P95: 9.5, P99: 9.9, Max: 10}
	if got.Count != want.Count || !within(got.P50, want.P50) || !within(got.P95, want.P95) ||
		!within(got.P99, want.P99) || !within(got.Max, want.Max) {
		t.Errorf("latency = %+v, want %+v within 0.1%%", got, want)
	}
}

func TestRecordEdgeCases(t *testing.T) {
	s := New([]string{"op"}, 0)
	if s.Shards() < 1 {
		t.Fatalf("shards = %d, want >= 1", s.Shards())
	}
	sh := s.Shard(-7)
	sh.Record(0, -time.Second, bus.ClassNone)      // clamped to 0
	sh.Record(0, 48*time.Hour, bus.ClassNone)      // clamped to 1 h
	sh.Record(0, time.Second, bus.ErrorClass(200)) // unknown class: other
	sh.Record(5, time.Second, bus.ClassNone)       // unknown op: dropped
	sh.Record(-1, time.Second, bus.ClassTimeout)   // unknown op: dropped
	snap := s.Snapshot()
	o := snap.Ops[0]
	if o.Count != 3 || o.Failures != 1 || o.FailuresByClass["other"] != 1 {
		t.Errorf("op = %+v, want 3 recorded, 1 other failure", o)
	}
	if !within(o.LatencyMS.Max, float64(time.Hour/time.Millisecond)) {
		t.Errorf("max = %v ms, want 1 h", o.LatencyMS.Max)
	}
	if snap.Dropped != 2 {
		t.Errorf("dropped = %d, want 2", snap.Dropped)
	}
	if op, ok := s.Op("op"); !ok || op != 0 {
		t.Errorf("Op(op) = %d, %v", op, ok)
	}
	if _, ok := s.Op("nope"); ok {
		t.Error("Op(nope) found")
	}
}

func TestDelta(t *testing.T) {
	s := New([]string{"publish", "poll"}, 2)
	t0 := s.Start()
	for range 100 {
		s.Shard(0).Record(0, 100*time.Millisecond, bus.ClassNone)
	}
	s.Shard(1).Record(0, time.Second, bus.ClassReset)
	prev := s.SnapshotAt(t0.Add(10 * time.Second))
	for range 50 {
		s.Shard(1).Record(0, 2*time.Millisecond, bus.ClassNone)
	}
	for range 3 {
		s.Shard(0).Record(0, time.Second, bus.ClassReset)
	}
	s.Shard(0).Record(1, time.Millisecond, bus.ClassNone)
	cur := s.SnapshotAt(t0.Add(15 * time.Second))

	if p, _ := cur.Op("publish"); p.Count != 154 || !within(p.Rate, 154.0/15) {
		t.Errorf("total publish = %d at %v/s, want 154 at %v/s", p.Count, p.Rate, 154.0/15)
	}
	d := cur.Delta(prev)
	if !d.Since.Equal(prev.At) || !d.At.Equal(cur.At) {
		t.Errorf("delta interval = %v..%v, want %v..%v", d.Since, d.At, prev.At, cur.At)
	}
	p, _ := d.Op("publish")
	if p.Count != 53 || p.Failures != 3 || p.FailuresByClass["reset"] != 3 || !within(p.Rate, 53.0/5) {
		t.Errorf("delta publish = %+v, want 53 (3 reset) at 10.6/s", p)
	}
	// Interval percentiles see only the 50 new 2 ms successes, not the 100 ms ones.
	if p.LatencyMS.Count != 50 || !within(p.LatencyMS.P99, 2) || !within(p.LatencyMS.Max, 2) {
		t.Errorf("delta publish latency = %+v, want 50 values of 2 ms", p.LatencyMS)
	}
	if p.FailureLatencyMS.Count != 3 {
		t.Errorf("delta failure latency count = %d, want 3", p.FailureLatencyMS.Count)
	}
	if q, _ := d.Op("poll"); q.Count != 1 || q.LatencyMS.Count != 1 {
		t.Errorf("delta poll = %+v, want 1", q)
	}
	// Delta against the zero snapshot is the snapshot itself.
	if z := cur.Delta(Snapshot{}); z.Ops[0].Count != 154 || !z.Since.Equal(t0) {
		t.Errorf("delta vs zero = %d since %v, want 154 since %v", z.Ops[0].Count, z.Since, t0)
	}
}

func TestJSONRoundTripAndMerge(t *testing.T) {
	a, b := New(testOps, 3), New(testOps, 5)
	all := New(testOps, 1)
	for i := range 3000 {
		d := time.Duration(i*7919%50000) * time.Microsecond
		class := bus.ClassNone
		if i%17 == 0 {
			class = bus.ClassTimeout
		}
		op := Op(i % len(testOps))
		if i%3 == 0 {
			a.Shard(i).Record(op, d, class)
		} else {
			b.Shard(i).Record(op, d, class)
		}
		all.Shard(0).Record(op, d, class)
	}
	now := time.Now()
	sa, sb := a.SnapshotAt(now), b.SnapshotAt(now)

	// Through JSON, as result files of shards would be.
	var ra, rb Snapshot
	for _, c := range []struct {
		in  Snapshot
		out *Snapshot
	}{{sa, &ra}, {sb, &rb}} {
		buf, err := json.Marshal(c.in)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(buf, c.out); err != nil {
			t.Fatal(err)
		}
	}
	m, err := Merge(ra, rb)
	if err != nil {
		t.Fatal(err)
	}
	want := all.SnapshotAt(now)
	for i, w := range want.Ops {
		g := m.Ops[i]
		if g.Name != w.Name || g.Count != w.Count || g.Failures != w.Failures || g.LatencyMS != w.LatencyMS ||
			g.FailureLatencyMS != w.FailureLatencyMS || g.FailuresByClass["timeout"] != w.FailuresByClass["timeout"] {
			t.Errorf("merged %s = %+v\nwant %+v", w.Name, g, w)
		}
		if !g.Histogram.Histogram().Equals(w.Histogram.Histogram()) {
			t.Errorf("merged %s histogram differs from recording everything in one", w.Name)
		}
	}
}

func TestHistErrors(t *testing.T) {
	h := ExportHistogram(NewHistogram())
	other := ExportHistogram(hdr.New(1, 1000, 2))
	if _, err := h.Add(other); !errors.Is(err, ErrGeometry) {
		t.Errorf("Add with different settings: err = %v, want ErrGeometry", err)
	}
	bad := []string{
		`{"unit":"us","lowest":1,"highest":3600000000,"significant_figures":3,"total":1,"counts":[[99999999,1]]}`,
		`{"unit":"us","lowest":1,"highest":3600000000,"significant_figures":3,"total":5,"counts":[[1,1]]}`,
		`{"unit":"us","lowest":1,"highest":3600000000,"significant_figures":3,"total":0,"counts":[[1,-1],[2,1]]}`,
		`{"unit":"us","lowest":1,"highest":3600000000,"significant_figures":3,"total":2,"counts":[[2,1],[1,1]]}`,
		`{"unit":"us","lowest":1,"highest":3600000000,"significant_figures":9,"total":0,"counts":[]}`,
		`{"unit":"us","lowest":4611686018427387904,"highest":9223372036854775807,"significant_figures":5,"total":0,"counts":[]}`,
		`{"unit":"ms","lowest":1,"highest":1000,"significant_figures":3,"total":0,"counts":[]}`,
		`[1,2]`,
	}
	for _, in := range bad {
		var got Hist
		if err := json.Unmarshal([]byte(in), &got); err == nil {
			t.Errorf("Unmarshal(%s) = nil error, want one", in)
		}
	}
	var empty Hist
	if err := json.Unmarshal([]byte(`{}`), &empty); err != nil || empty.Count() != 0 || empty.Summary() != (Latency{}) {
		t.Errorf("empty hist: %v %+v", err, empty)
	}
}

func TestRecordAllocs(t *testing.T) {
	s := New([]string{"op"}, 1)
	sh := s.Shard(0)
	sh.Record(0, time.Millisecond, bus.ClassNone)
	sh.Record(0, time.Millisecond, bus.ClassTimeout)
	n := testing.AllocsPerRun(1000, func() {
		sh.Record(0, 3*time.Millisecond, bus.ClassNone)
		sh.Record(0, 3*time.Second, bus.ClassTimeout)
	})
	if n != 0 {
		t.Errorf("Record allocs = %v, want 0", n)
	}
}

func BenchmarkRecord(b *testing.B) {
	for _, shards := range []int{1, 16} {
		b.Run("shards="+strconv.Itoa(shards), func(b *testing.B) {
			s := New(testOps, shards)
			for w := range shards { // warm up: allocate the histograms
				s.Shard(w).Record(1, time.Millisecond, bus.ClassNone)
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				sh := s.Shard(int(next.Add(1)))
				d := time.Duration(0)
				for pb.Next() {
					d = (d + 7919*time.Microsecond) % time.Second
					sh.Record(1, d, bus.ClassNone)
				}
			})
		})
	}
}

func BenchmarkSnapshot(b *testing.B) {
	s := New(testOps, 16)
	for w := range 16 {
		for op := range len(testOps) {
			s.Shard(w).Record(Op(op), time.Duration(w*op+1)*time.Millisecond, bus.ClassNone)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Snapshot()
	}
}

// FuzzHistJSON: decoding result files never panics, and what decodes
// re-encodes to the same histogram.
func FuzzHistJSON(f *testing.F) {
	h := NewHistogram()
	for _, v := range []int64{0, 1, 999, 1000, 123456, 3_600_000_000} {
		_ = h.RecordValue(v)
	}
	good, _ := json.Marshal(ExportHistogram(h))
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"lowest":1,"highest":1000,"significant_figures":2,"total":1,"counts":[[5,1]]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got Hist
		if err := json.Unmarshal(b, &got); err != nil {
			return
		}
		_ = got.Summary()
		again, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		var back Hist
		if err := json.Unmarshal(again, &back); err != nil {
			t.Fatalf("re-decode %s: %v", again, err)
		}
		if back.Count() != got.Count() || back.Summary() != got.Summary() {
			t.Errorf("round trip changed %+v to %+v", got.Summary(), back.Summary())
		}
	})
}
