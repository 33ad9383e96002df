package probe

import (
	"time"

	"github.com/eventswarm/eventswarm/internal/verify"
)

// View is a live, read-only view of a running probe (Hooks.OnStart), safe
// for concurrent use: what a scrape-time exporter reads. Every count comes
// from the ledger itself (verify.Ledger.Snapshot), never from a second tally.
type View struct{ p *prober }

// Config is the run's configuration, defaults filled in.
func (v *View) Config() Config { return v.p.cfg }

// Run is the run's ID.
func (v *View) Run() verify.RunID { return v.p.run }

// Snapshot is the ledger's live snapshot (verify.Ledger.Snapshot) with each
// closed window's verdict as the probe reports it (a window in which the
// probe itself was overloaded is inconclusive, not failed).
func (v *View) Snapshot() verify.Result {
	r := v.p.ledger.Snapshot(v.p.clock.Now())
	for i := range r.Windows {
		v.p.markOverloaded(&r.Windows[i])
	}
	return r
}

// LatencyBuckets reads the ledger's delivery-latency histogram
// (verify.Ledger.LatencyBuckets).
func (v *View) LatencyBuckets(bounds []time.Duration) (cum []uint64, count uint64, sumSeconds float64) {
	return v.p.ledger.LatencyBuckets(bounds)
}

// Health is the probe's own health so far (Outcome.Health's fields; the
// heap samples are taken at each live tick).
func (v *View) Health() Health { return v.p.healthReport() }

// Phase is the last phase reported ("" before connecting; then
// "connecting", "barrier", "publishing", "draining").
func (v *View) Phase() string {
	s, _ := v.p.curPhase.Load().(string)
	return s
}

// Origin is the wall-clock time of the run's timeline zero: a window's
// StartMS and EndMS are offsets from it.
func (v *View) Origin() time.Time { return v.p.clock.Origin }
