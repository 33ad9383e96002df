package verify

import (
	"fmt"
	"time"
)

// LateSend is how far behind its schedule a generator may start a send before
// the send counts as late. The schedule is the send's intended time, or the
// moment the bus was ready to take it if that was later: time spent waiting
// for the bus is the bus's backpressure (it shows as latency), not the
// generator's lag.
const LateSend = 100 * time.Millisecond

// Overloaded reports whether a generator that made sends paced sends, late of
// them late, fell behind: more than 1% of them were late. Its numbers then say
// more about the generator than about the bus (see Evidence.Overloaded).
func Overloaded(sends, late uint64) bool { return late*100 > sends }

// SendLag is a generator's own lag over a run: how many paced sends it made,
// how many of them started more than LateSend behind their schedule, and the
// largest lag it added. Shards' SendLags add.
type SendLag struct {
	Sends        uint64  `json:"sends"`
	LateSends    uint64  `json:"late_sends"`
	MaxSendLagMS float64 `json:"max_send_lag_ms"`
}

// Add sums o into s (the largest lag is the larger).
func (s *SendLag) Add(o SendLag) {
	s.Sends += o.Sends
	s.LateSends += o.LateSends
	s.MaxSendLagMS = max(s.MaxSendLagMS, o.MaxSendLagMS)
}

// Evidence is s as a verdict's evidence: Overloaded says how the generator
// fell behind, named by who (e.g. "swarm"), or is "" when it kept up.
func (s SendLag) Evidence(who string) string {
	if !Overloaded(s.Sends, s.LateSends) {
		return ""
	}
	return fmt.Sprintf("%s itself sent %d of its %d messages more than %v late, the latest %.0fms",
		who, s.LateSends, s.Sends, LateSend, s.MaxSendLagMS)
}
