package verify

import "time"

// LatencyBuckets reads the delivery-latency histogram (first arrivals of
// expected messages within LostAfter, recorded when they become final) at
// scrape time: for each bound (ascending) the number of recorded latencies
// at most that bound, with the histogram's total count and the sum of its
// values in seconds. The histogram keeps 3 significant digits, so a count at
// a bound can be off by the values within 0.1% of it; the exact on-time and
// slow counts are Counts.OnTime and Counts.Slow (internal/metrics pins its
// buckets at the on-time and lost bounds to them).
func (l *Ledger) LatencyBuckets(bounds []time.Duration) (cum []uint64, count uint64, sumSeconds float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cum = make([]uint64, len(bounds))
	total := l.hist.TotalCount()
	if total == 0 {
		return cum, 0, 0
	}
	us := make([]int64, len(bounds))
	for i, b := range bounds {
		us[i] = b.Microseconds()
	}
	for _, bar := range l.hist.Distribution() {
		if bar.Count == 0 {
			continue
		}
		for i := len(us) - 1; i >= 0 && bar.To <= us[i]; i-- {
			cum[i] += uint64(bar.Count)
		}
	}
	return cum, uint64(total), l.hist.Mean() * float64(total) / 1e6
}
