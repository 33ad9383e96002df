package behaviours

import (
	"time"

	"github.com/eventswarm/eventswarm/internal/verify"
)

// LatencyBuckets reads direction's delivery-latency histogram at scrape time
// (verify.Ledger.LatencyBuckets); ok is false for an unknown direction.
func (r *Runner) LatencyBuckets(direction string, bounds []time.Duration) (cum []uint64, count uint64, sumSeconds float64, ok bool) {
	var l *verify.Ledger
	switch direction {
	case StreamLearnerToProctor:
		l = r.events
	case StreamProctorToLearner:
		l = r.control
	default:
		return nil, 0, 0, false
	}
	cum, count, sumSeconds = l.LatencyBuckets(bounds)
	return cum, count, sumSeconds, true
}
