// Package stats counts operations of the swarm ("connect", "publish",
// "poll.200", …) and records their latencies in HDR histograms.
//
// It is built for 10,000+ goroutines recording at once: counters and
// histograms are sharded (a worker records into Stats.Shard(worker), each shard
// with its own mutex), Record allocates nothing once a shard has seen an
// operation, and no sample is kept, only histogram buckets. Snapshot merges
// the shards into a JSON-friendly view; Delta turns two snapshots into the
// counts and rates of the interval between them (the live "current rate"), and
// Merge adds the snapshots of the shards of a distributed run, exactly.
//
// Latency: successes are recorded in the operation's histogram
// (OpStats.LatencyMS); failures are counted by bus.ErrorClass and their latency
// goes to a separate failure histogram (OpStats.FailureLatencyMS), so a timeout
// never inflates the success percentiles but its duration is still visible.
//
// Histograms count microseconds from 1 µs to 1 h with 3 significant digits,
// the settings of verify's ledger (HistLowest, HistHighest, HistSigFigs).
//
// Memory: each (shard, operation) pair allocates a dense histogram of about
// 184 KB the first time it records a success, and another on its first
// failure. With the suggested GOMAXPROCS*4 shards and 7 operations on an
// 8-core machine that is at most 32*7*2*184 KB ≈ 82 MB, usually about half.
package stats

import (
	"fmt"
	"runtime"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/eventswarm/eventswarm/internal/bus"
)

// Op is an operation: an index into the list of names given to New.
type Op int

// Latency summarises a histogram in milliseconds (the same shape and JSON
// names as verify.Latency).
type Latency struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// Stats holds the shards. Create it with New.
type Stats struct {
	names  []string
	shards []Shard
	start  time.Time
}

// Shard is one worker group's counters and histograms. It is safe for
// concurrent use (its own mutex) and cheap when uncontended; spread workers
// over shards with Stats.Shard so that no lock is hammered by every goroutine.
type Shard struct {
	mu      sync.Mutex
	ops     []opData // guarded by mu; fixed length
	dropped uint64   // guarded by mu: records with an Op outside the list
	_       [64]byte // keep neighbouring shards' locks off one cache line
}

type opData struct {
	count  uint64
	fails  [bus.NumClasses]uint64
	ok     *hdr.Histogram // lazily allocated
	failed *hdr.Histogram // lazily allocated
}

// New returns stats for the operations ops (fixed up front; Op(i) is ops[i])
// with the given number of shards. shards <= 0 means GOMAXPROCS*4. The run's
// start (for total rates) is the time of the call.
func New(ops []string, shards int) *Stats {
	if shards <= 0 {
		shards = runtime.GOMAXPROCS(0) * 4
	}
	s := &Stats{names: append([]string(nil), ops...), shards: make([]Shard, shards), start: time.Now()}
	for i := range s.shards {
		s.shards[i].ops = make([]opData, len(ops))
	}
	return s
}

// Ops returns the operation names, in Op order.
func (s *Stats) Ops() []string { return append([]string(nil), s.names...) }

// Op returns the Op named name (the first one, if names repeat).
func (s *Stats) Op(name string) (Op, bool) {
	for i, n := range s.names {
		if n == name {
			return Op(i), true
		}
	}
	return -1, false
}

// Start is when the stats began (New): the origin of total rates.
func (s *Stats) Start() time.Time { return s.start }

// Shards is the number of shards.
func (s *Stats) Shards() int { return len(s.shards) }

// Shard returns the shard of worker (worker mod shards; negative workers are
// fine). Keep the result: it is the worker's recording handle.
func (s *Stats) Shard(worker int) *Shard {
	i := worker % len(s.shards)
	if i < 0 {
		i += len(s.shards)
	}
	return &s.shards[i]
}

// Record counts one operation that took d. class == bus.ClassNone is a
// success (latency into the op's histogram); any other class is a failure
// counted under that class (latency into the op's failure histogram; classes
// out of range count as bus.ClassOther). Durations are clamped to [0, 1 h].
// An op outside the list given to New is counted as dropped (Snapshot.Dropped),
// never a panic. No allocation once the shard has seen op succeed and fail.
func (sh *Shard) Record(op Op, d time.Duration, class bus.ErrorClass) {
	if class >= bus.NumClasses {
		class = bus.ClassOther
	}
	v := histValue(d)
	sh.mu.Lock()
	if uint(op) >= uint(len(sh.ops)) {
		sh.dropped++
		sh.mu.Unlock()
		return
	}
	o := &sh.ops[op]
	o.count++
	if class == bus.ClassNone {
		if o.ok == nil {
			o.ok = NewHistogram()
		}
		_ = o.ok.RecordValue(v) // v is in range
	} else {
		o.fails[class]++
		if o.failed == nil {
			o.failed = NewHistogram()
		}
		_ = o.failed.RecordValue(v)
	}
	sh.mu.Unlock()
}

// Snapshot is a merged view of all shards. Counts are cumulative since Since
// (the start of the stats, or of the interval for a Delta). It round-trips
// through JSON, histograms included.
type Snapshot struct {
	Since   time.Time `json:"since"`
	At      time.Time `json:"at"`
	Ops     []OpStats `json:"ops"`
	Dropped uint64    `json:"dropped,omitempty"` // records with an unknown Op
}

// OpStats are one operation's numbers in a Snapshot.
type OpStats struct {
	Name string `json:"name"`
	// Count is every recorded operation, successes and failures.
	Count    uint64 `json:"count"`
	Failures uint64 `json:"failures"`
	// FailuresByClass maps bus.ErrorClass names ("timeout", "5xx", …) to
	// counts; only classes that occurred are present.
	FailuresByClass map[string]uint64 `json:"failures_by_class,omitempty"`
	// Rate is Count per second over [Since, At].
	Rate float64 `json:"rate_per_s"`
	// LatencyMS summarises successes; FailureLatencyMS failures.
	LatencyMS        Latency `json:"latency_ms"`
	FailureLatencyMS Latency `json:"failure_latency_ms"`
	// Histogram and FailureHistogram hold the exact buckets, for merging.
	Histogram        Hist `json:"histogram"`
	FailureHistogram Hist `json:"failure_histogram"`
}

// FailRatio is Failures/Count (0 when Count is 0).
func (o OpStats) FailRatio() float64 {
	if o.Count == 0 {
		return 0
	}
	return float64(o.Failures) / float64(o.Count)
}

// Op returns the stats of the operation named name.
func (s Snapshot) Op(name string) (OpStats, bool) {
	for _, o := range s.Ops {
		if o.Name == name {
			return o, true
		}
	}
	return OpStats{}, false
}

// Snapshot merges the shards at time.Now(). Safe while recording: each shard
// is locked only while its data is merged.
func (s *Stats) Snapshot() Snapshot { return s.SnapshotAt(time.Now()) }

// SnapshotAt is Snapshot with the time given (for rates), for tests and for
// callers that own the clock.
func (s *Stats) SnapshotAt(now time.Time) Snapshot {
	type acc struct {
		count      uint64
		fails      [bus.NumClasses]uint64
		ok, failed *hdr.Histogram
	}
	accs := make([]acc, len(s.names))
	var dropped uint64
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		dropped += sh.dropped
		for j := range sh.ops {
			o, a := &sh.ops[j], &accs[j]
			a.count += o.count
			for c, n := range o.fails {
				a.fails[c] += n
			}
			if o.ok != nil {
				if a.ok == nil {
					a.ok = NewHistogram()
				}
				a.ok.Merge(o.ok)
			}
			if o.failed != nil {
				if a.failed == nil {
					a.failed = NewHistogram()
				}
				a.failed.Merge(o.failed)
			}
		}
		sh.mu.Unlock()
	}
	snap := Snapshot{Since: s.start, At: now, Ops: make([]OpStats, len(s.names)), Dropped: dropped}
	secs := now.Sub(s.start).Seconds()
	for j, a := range accs {
		o := OpStats{Name: s.names[j], Count: a.count}
		for c, n := range a.fails {
			if n == 0 {
				continue
			}
			o.Failures += n
			if o.FailuresByClass == nil {
				o.FailuresByClass = make(map[string]uint64)
			}
			o.FailuresByClass[bus.ErrorClass(c).String()] += n
		}
		o.Rate = rate(o.Count, secs)
		if a.ok != nil {
			o.LatencyMS = summarize(a.ok)
			o.Histogram = ExportHistogram(a.ok)
		}
		if a.failed != nil {
			o.FailureLatencyMS = summarize(a.failed)
			o.FailureHistogram = ExportHistogram(a.failed)
		}
		snap.Ops[j] = o
	}
	return snap
}

func rate(n uint64, secs float64) float64 {
	if secs <= 0 {
		return 0
	}
	return float64(n) / secs
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// Delta returns what happened between prev and s (two snapshots of the same
// Stats, prev taken first): counts, failures and latency percentiles of the
// interval, and rates per second over it (the live "current rate"). Ops are
// matched by name; an op missing from prev counts from zero.
func (s Snapshot) Delta(prev Snapshot) Snapshot {
	d := Snapshot{Since: prev.At, At: s.At, Ops: make([]OpStats, len(s.Ops)), Dropped: sub(s.Dropped, prev.Dropped)}
	if prev.At.IsZero() {
		d.Since = s.Since
	}
	secs := d.At.Sub(d.Since).Seconds()
	for i, cur := range s.Ops {
		p, _ := prev.Op(cur.Name)
		o := OpStats{Name: cur.Name, Count: sub(cur.Count, p.Count), Failures: sub(cur.Failures, p.Failures)}
		for c, n := range cur.FailuresByClass {
			if dn := sub(n, p.FailuresByClass[c]); dn > 0 {
				if o.FailuresByClass == nil {
					o.FailuresByClass = make(map[string]uint64)
				}
				o.FailuresByClass[c] = dn
			}
		}
		o.Rate = rate(o.Count, secs)
		// Sub only fails on different settings; then the interval's
		// percentiles are unknown and left zero rather than wrong.
		if h, err := cur.Histogram.Sub(p.Histogram); err == nil {
			o.Histogram, o.LatencyMS = h, h.Summary()
		}
		if h, err := cur.FailureHistogram.Sub(p.FailureHistogram); err == nil {
			o.FailureHistogram, o.FailureLatencyMS = h, h.Summary()
		}
		d.Ops[i] = o
	}
	return d
}

// Merge adds snapshots of concurrent shards of one run, exactly: counts and
// histogram buckets are summed, percentiles recomputed from the merged
// histograms, and rates taken over [earliest Since, latest At]. Ops are
// matched by name, in order of first appearance. Errors (histograms with
// different settings) are wrapped ErrGeometry.
func Merge(snaps ...Snapshot) (Snapshot, error) {
	var m Snapshot
	index := map[string]int{}
	for _, s := range snaps {
		if m.Since.IsZero() || (!s.Since.IsZero() && s.Since.Before(m.Since)) {
			m.Since = s.Since
		}
		if s.At.After(m.At) {
			m.At = s.At
		}
		m.Dropped += s.Dropped
		for _, o := range s.Ops {
			i, ok := index[o.Name]
			if !ok {
				i = len(m.Ops)
				index[o.Name] = i
				m.Ops = append(m.Ops, OpStats{Name: o.Name})
			}
			t := &m.Ops[i]
			t.Count += o.Count
			t.Failures += o.Failures
			for c, n := range o.FailuresByClass {
				if t.FailuresByClass == nil {
					t.FailuresByClass = make(map[string]uint64)
				}
				t.FailuresByClass[c] += n
			}
			var err error
			if t.Histogram, err = t.Histogram.Add(o.Histogram); err != nil {
				return Snapshot{}, fmt.Errorf("stats: merge %s: %w", o.Name, err)
			}
			if t.FailureHistogram, err = t.FailureHistogram.Add(o.FailureHistogram); err != nil {
				return Snapshot{}, fmt.Errorf("stats: merge %s failures: %w", o.Name, err)
			}
		}
	}
	secs := m.At.Sub(m.Since).Seconds()
	for i := range m.Ops {
		o := &m.Ops[i]
		o.Rate = rate(o.Count, secs)
		o.LatencyMS = o.Histogram.Summary()
		o.FailureLatencyMS = o.FailureHistogram.Summary()
	}
	return m, nil
}
