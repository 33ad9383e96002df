package stats

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram settings used everywhere (stats shards, the verify ledger, result
// files of sharded runs), so that merges are exact: values are microseconds,
// tracked from 1 µs to 1 h with 3 significant digits. They equal verify's
// HistLowestUS/HistHighestUS/HistSigFigs (verify.NewHistogram).
const (
	HistLowest  = 1             // lowest discernible value, µs
	HistHighest = 3_600_000_000 // highest trackable value, µs (1 h); longer durations are clamped to it
	HistSigFigs = 3
)

var (
	// ErrGeometry: two histograms with different settings cannot be merged exactly.
	ErrGeometry = errors.New("stats: histogram settings differ")
	// ErrHistogram: an exported histogram is invalid (negative or out-of-range counts).
	ErrHistogram = errors.New("stats: invalid histogram")
)

// NewHistogram returns an empty hdrhistogram with the shared settings.
func NewHistogram() *hdr.Histogram { return hdr.New(HistLowest, HistHighest, HistSigFigs) }

// histValue converts d to a recordable value: whole microseconds, clamped to
// [0, 1 h].
func histValue(d time.Duration) int64 {
	v := d.Microseconds()
	if v < 0 {
		return 0
	}
	if v > HistHighest {
		return HistHighest
	}
	return v
}

// Hist is an exported, immutable-by-convention latency histogram: the
// geometry plus the bucket counts in hdrhistogram's index layout. It is
// JSON-friendly: the counts are written sparsely as [index, count] pairs, so a
// typical histogram is a few KB. Merges (Add) and interval differences (Sub)
// of histograms with equal settings are exact. The zero Hist is empty.
type Hist struct {
	Lowest  int64
	Highest int64
	SigFigs int64
	counts  []int64 // dense, hdrhistogram layout; nil when empty and geometry unknown
	total   int64
}

// ExportHistogram exports h (any settings; values in µs). h must not be
// recorded into concurrently.
func ExportHistogram(h *hdr.Histogram) Hist {
	if h == nil {
		return Hist{}
	}
	s := h.Export()
	return Hist{Lowest: s.LowestTrackableValue, Highest: s.HighestTrackableValue, SigFigs: s.SignificantFigures, counts: s.Counts, total: h.TotalCount()}
}

// FromHDRSnapshot converts an hdrhistogram export (for example
// verify.Result.LatencyHist, values in µs) after validating it. nil is the
// empty Hist.
func FromHDRSnapshot(s *hdr.Snapshot) (Hist, error) {
	if s == nil {
		return Hist{}, nil
	}
	if err := s.Validate(); err != nil {
		return Hist{}, fmt.Errorf("%w: %w", ErrHistogram, err)
	}
	if s.SignificantFigures < 1 || s.LowestTrackableValue < 1 {
		return Hist{}, fmt.Errorf("%w: settings %d..%d/%d", ErrHistogram, s.LowestTrackableValue, s.HighestTrackableValue, s.SignificantFigures)
	}
	return ExportHistogram(hdr.Import(s)), nil
}

// HDRSnapshot returns h as an hdrhistogram export (nil for the zero Hist),
// the form verify.Result carries.
func (h Hist) HDRSnapshot() *hdr.Snapshot {
	if h.empty() {
		return nil
	}
	return h.Histogram().Export()
}

// Histogram returns a new hdrhistogram holding h's data (the shared settings
// when h is the zero Hist).
func (h Hist) Histogram() *hdr.Histogram {
	if h.counts == nil && h.Lowest == 0 {
		return NewHistogram()
	}
	return hdr.Import(&hdr.Snapshot{LowestTrackableValue: h.Lowest, HighestTrackableValue: h.Highest, SignificantFigures: h.SigFigs, Counts: h.counts})
}

// Count is the number of recorded values.
func (h Hist) Count() uint64 { return uint64(h.total) }

// Summary returns count, p50, p95, p99 and max in milliseconds. The values
// are within the histogram's precision (3 significant digits).
func (h Hist) Summary() Latency {
	if h.total == 0 {
		return Latency{}
	}
	return summarize(h.Histogram())
}

func summarize(hh *hdr.Histogram) Latency {
	n := hh.TotalCount()
	if n == 0 {
		return Latency{}
	}
	q := hh.ValueAtPercentilesSlice([]float64{50, 95, 99})
	return Latency{Count: uint64(n), P50: ms(q[0]), P95: ms(q[1]), P99: ms(q[2]), Max: ms(hh.Max())}
}

func ms(us int64) float64 { return float64(us) / 1000 }

func (h Hist) empty() bool { return h.counts == nil && h.Lowest == 0 && h.Highest == 0 }

func (h Hist) sameGeometry(o Hist) bool {
	return h.Lowest == o.Lowest && h.Highest == o.Highest && h.SigFigs == o.SigFigs && len(h.counts) == len(o.counts)
}

// Add returns h+o. Both must have the same settings (ErrGeometry otherwise);
// a zero Hist takes the other's settings.
func (h Hist) Add(o Hist) (Hist, error) {
	switch {
	case o.empty():
		return h, nil
	case h.empty():
		return o.clone(), nil
	case !h.sameGeometry(o):
		return h, fmt.Errorf("%w: %d..%d/%d vs %d..%d/%d", ErrGeometry, h.Lowest, h.Highest, h.SigFigs, o.Lowest, o.Highest, o.SigFigs)
	}
	r := h.clone()
	for i, c := range o.counts {
		r.counts[i] += c
	}
	r.total += o.total
	return r, nil
}

// Sub returns h−prev, the values recorded between two exports of the same
// cumulative histogram. Buckets that would go negative (prev is not an
// earlier export of h) are clamped to zero.
func (h Hist) Sub(prev Hist) (Hist, error) {
	if prev.empty() {
		return h.clone(), nil
	}
	if h.empty() {
		return Hist{}, nil
	}
	if !h.sameGeometry(prev) {
		return h, fmt.Errorf("%w: %d..%d/%d vs %d..%d/%d", ErrGeometry, h.Lowest, h.Highest, h.SigFigs, prev.Lowest, prev.Highest, prev.SigFigs)
	}
	r := h.clone()
	r.total = 0
	for i, c := range prev.counts {
		r.counts[i] -= c
		if r.counts[i] < 0 {
			r.counts[i] = 0
		}
		r.total += r.counts[i]
	}
	return r, nil
}

func (h Hist) clone() Hist {
	h.counts = append([]int64(nil), h.counts...)
	return h
}

// histJSON is the wire form of Hist.
type histJSON struct {
	Unit    string     `json:"unit"` // "us"
	Lowest  int64      `json:"lowest"`
	Highest int64      `json:"highest"`
	SigFigs int64      `json:"significant_figures"`
	Total   int64      `json:"total"`
	Counts  [][2]int64 `json:"counts"` // [index, count], ascending index, nonzero counts only
}

// MarshalJSON writes the sparse form.
func (h Hist) MarshalJSON() ([]byte, error) {
	j := histJSON{Unit: "us", Lowest: h.Lowest, Highest: h.Highest, SigFigs: h.SigFigs, Total: h.total, Counts: [][2]int64{}}
	for i, c := range h.counts {
		if c != 0 {
			j.Counts = append(j.Counts, [2]int64{int64(i), c})
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the sparse form and validates it (geometry, indices,
// counts, total), so a corrupt file is an error, never a panic or a silently
// wrong merge.
func (h *Hist) UnmarshalJSON(b []byte) error {
	var j histJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("stats: histogram: %w", err)
	}
	if j.Lowest == 0 && j.Highest == 0 && len(j.Counts) == 0 {
		*h = Hist{}
		return nil
	}
	if j.Unit != "" && j.Unit != "us" {
		return fmt.Errorf("%w: unit %q, want us", ErrHistogram, j.Unit)
	}
	if j.Lowest < 1 || j.Highest < 2*j.Lowest || j.SigFigs < 1 || j.SigFigs > 5 {
		return fmt.Errorf("%w: settings %d..%d/%d", ErrHistogram, j.Lowest, j.Highest, j.SigFigs)
	}
	if err := (&hdr.Snapshot{LowestTrackableValue: j.Lowest, HighestTrackableValue: j.Highest, SignificantFigures: j.SigFigs}).Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrHistogram, err)
	}
	// Geometry from the library itself: the length of an empty histogram's counts.
	n := len(hdr.New(j.Lowest, j.Highest, int(j.SigFigs)).Export().Counts)
	counts := make([]int64, n)
	var total int64
	last := int64(-1)
	for _, p := range j.Counts {
		idx, c := p[0], p[1]
		if idx <= last || idx >= int64(n) || c < 0 {
			return fmt.Errorf("%w: bad bucket [%d, %d]", ErrHistogram, idx, c)
		}
		last = idx
		counts[idx] = c
		total += c
		if total < 0 {
			return fmt.Errorf("%w: total overflows", ErrHistogram)
		}
	}
	if total != j.Total {
		return fmt.Errorf("%w: total %d, buckets sum to %d", ErrHistogram, j.Total, total)
	}
	*h = Hist{Lowest: j.Lowest, Highest: j.Highest, SigFigs: j.SigFigs, counts: counts, total: total}
	return nil
}
