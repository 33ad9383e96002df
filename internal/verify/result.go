package verify

import (
	"errors"
	"fmt"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Verdict is the outcome of a run or a window.
type Verdict string

const (
	Pass         Verdict = "pass"
	Fail         Verdict = "fail"
	Inconclusive Verdict = "inconclusive"
)

// Worse reports whether v is a worse verdict than w: fail is worse than
// inconclusive, which is worse than pass (an unknown verdict counts as
// inconclusive). A result made of parts (directions, shards) has the worst
// of their verdicts.
func (v Verdict) Worse(w Verdict) bool { return v.rank() > w.rank() }

func (v Verdict) rank() int {
	switch v {
	case Pass:
		return 0
	case Fail:
		return 2
	}
	return 1
}

// Counts are exact counters. Field names are the stable JSON names documented in
// the README; do not rename them.
type Counts struct {
	Expected   uint64 `json:"expected"`
	OnTime     uint64 `json:"on_time"`
	Slow       uint64 `json:"slow"`
	Lost       uint64 `json:"lost"`
	Late       uint64 `json:"late"`
	Duplicates uint64 `json:"duplicates"`
	OutOfOrder uint64 `json:"out_of_order"`
	Foreign    uint64 `json:"foreign"`
	Unexpected uint64 `json:"unexpected"`
	Corrupt    uint64 `json:"corrupt"`
	Recovered  uint64 `json:"recovered"`

	PublishAttempted uint64 `json:"publish_attempted"`
	PublishOK        uint64 `json:"publish_ok"`
	PublishFailed    uint64 `json:"publish_failed"`
	PublishUnknown   uint64 `json:"publish_unknown"`

	// Retained deliveries (RETAIN flag) are ignored and counted here.
	Retained uint64 `json:"retained"`
	// Extra: this run's published messages delivered to a subscriber that was not
	// expecting them (arrived for a stream it never subscribed to, or sent before its
	// subscription was confirmed, or during warm-up). Informational.
	Extra uint64 `json:"extra"`
	// Markers: readiness-barrier messages received (never expected).
	Markers uint64 `json:"markers"`
	// Covered: measured published messages (of PublishAttempted) that at least
	// one subscriber was expected to receive; Covered/PublishAttempted is the
	// run's coverage. A message nobody expects is published but not verified.
	Covered uint64 `json:"covered"`
	// Pending: expected messages not yet final (live snapshots), or, after an
	// interrupted drain, the unfinished tail: inconclusive, not lost.
	Pending uint64 `json:"pending"`
	// PendingArrived and PendingOnTime (live snapshots only): of Pending,
	// the messages whose first copy has arrived, and of those the ones that
	// arrived within Latency — the provisional on-time share of what has
	// arrived, known long before the message is final (LostAfter+Grace).
	PendingArrived uint64 `json:"pending_arrived,omitempty"`
	PendingOnTime  uint64 `json:"pending_on_time,omitempty"`

	LostWhileConnected   uint64 `json:"lost_while_connected"`
	LostDuringDisconnect uint64 `json:"lost_during_disconnect"`
	DupRedelivered       uint64 `json:"duplicates_redelivered"`
	DupOther             uint64 `json:"duplicates_other"`
	DupNearReconnect     uint64 `json:"duplicates_near_reconnect"`
	DupSteady            uint64 `json:"duplicates_steady"`
}

// Add adds o to c, field by field.
func (c *Counts) Add(o Counts) {
	c.Expected += o.Expected
	c.OnTime += o.OnTime
	c.Slow += o.Slow
	c.Lost += o.Lost
	c.Late += o.Late
	c.Duplicates += o.Duplicates
	c.OutOfOrder += o.OutOfOrder
	c.Foreign += o.Foreign
	c.Unexpected += o.Unexpected
	c.Corrupt += o.Corrupt
	c.Recovered += o.Recovered
	c.PublishAttempted += o.PublishAttempted
	c.PublishOK += o.PublishOK
	c.PublishFailed += o.PublishFailed
	c.PublishUnknown += o.PublishUnknown
	c.Retained += o.Retained
	c.Extra += o.Extra
	c.Markers += o.Markers
	c.Covered += o.Covered
	c.Pending += o.Pending
	c.PendingArrived += o.PendingArrived
	c.PendingOnTime += o.PendingOnTime
	c.LostWhileConnected += o.LostWhileConnected
	c.LostDuringDisconnect += o.LostDuringDisconnect
	c.DupRedelivered += o.DupRedelivered
	c.DupOther += o.DupOther
	c.DupNearReconnect += o.DupNearReconnect
	c.DupSteady += o.DupSteady
}

// Latency summarises a latency histogram in milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// Gate is one SLO check with its threshold and what was observed.
type Gate struct {
	Name       string  `json:"name"`
	Comparison string  `json:"comparison"` // ">=" or "<="
	Threshold  float64 `json:"threshold"`
	Observed   float64 `json:"observed"`
	Pass       bool    `json:"pass"`
}

// Window is the immutable result of one measurement window, keyed by intended
// send time. Start and End are offsets from the ledger's time origin.
type Window struct {
	Index   int     `json:"index"`
	StartMS int64   `json:"start_ms"`
	EndMS   int64   `json:"end_ms"`
	Counts  Counts  `json:"counts"`
	Latency Latency `json:"latency_ms"`
	Verdict Verdict `json:"verdict"`
	Reason  string  `json:"reason,omitempty"`
}

// Result is what a ledger reports: pooled counts, latency, gates and windows.
type Result struct {
	Verdict   Verdict  `json:"verdict"`
	Reason    string   `json:"reason,omitempty"`
	Counts    Counts   `json:"counts"`
	LatencyMS Latency  `json:"latency_ms"`
	LateMS    Latency  `json:"late_ms"`
	Gates     []Gate   `json:"gates"`
	Windows   []Window `json:"windows"`
	// Subscribers: per-subscriber counts and connection epochs (registered
	// subscribers; closed and freed ones are only in the pooled Counts).
	Subscribers []SubscriberResult `json:"subscribers,omitempty"`
	// LatencyHist and LateHist are the full histograms (µs, see NewHistogram),
	// set by Finish so shard results can be merged exactly (hdrhistogram.Import).
	LatencyHist *hdrhistogram.Snapshot `json:"latency_hist,omitempty"`
	LateHist    *hdrhistogram.Snapshot `json:"late_hist,omitempty"`
}

// Gates are the SLO thresholds. Defaults: DefaultGates.
type Gates struct {
	// Within is the minimum fraction of expected messages on time (default 0.95).
	Within float64
	// MaxLost is the most lost messages allowed (default 0).
	MaxLost uint64
	// MaxDuplicates is the most duplicate deliveries allowed (default 0).
	MaxDuplicates uint64
	// MinPublishAvailability is the minimum publish_ok/publish_attempted (default 0.999).
	MinPublishAvailability float64
	// MinExpected: fewer expected messages make the verdict inconclusive (default 1).
	MinExpected uint64
	// MinCoverage is the minimum Covered/PublishAttempted (default 0.95): a run
	// that verified less of its own traffic is inconclusive, never a pass. 0
	// turns the gate off.
	MinCoverage float64
}

// DefaultGates are the SLO defaults.
var DefaultGates = Gates{Within: 0.95, MaxLost: 0, MaxDuplicates: 0, MinPublishAvailability: 0.999, MinExpected: 1, MinCoverage: 0.95}

// Validate reports every problem with g at once, naming the flag of each
// field. NaN is rejected (it would make a gate that can never pass).
func (g Gates) Validate() error {
	var errs []error
	for _, f := range []struct {
		flag string
		v    float64
	}{{"--within", g.Within}, {"--min-publish-availability", g.MinPublishAvailability}, {"--min-coverage", g.MinCoverage}} {
		if !(f.v >= 0 && f.v <= 1) { // also false for NaN
			errs = append(errs, fmt.Errorf("%s must be a fraction in [0,1] (e.g. 0.95), got %v", f.flag, f.v))
		}
	}
	return errors.Join(errs...)
}

// Evidence is what the counts alone cannot show about a run: why its data may
// be partial or say more about the generator than about the bus. The zero
// Evidence is a complete run by a generator that kept up.
type Evidence struct {
	// Incomplete says why the run's data is partial ("" = complete): the run
	// was interrupted, its drain was cut short, a shard or child process died.
	// An incomplete run is never a pass.
	Incomplete string
	// Overloaded says how the generator itself fell behind ("" = it kept up):
	// its numbers say more about the generator than about the bus, so a
	// failing verdict (other than a hard failure) becomes inconclusive.
	Overloaded string
}

// Judge is the one place that decides a verdict: Evaluate's gates on c, then
// the evidence. A hard failure (unexpected or corrupt messages) fails whatever
// else happened; an overloaded generator turns any other failure into
// inconclusive; an incomplete run turns a pass into inconclusive (a failure it
// saw stays a failure: the lost or slow messages it counted are final).
func (g Gates) Judge(c Counts, ev Evidence) (Verdict, string, []Gate) {
	v, reason, gates := g.Evaluate(c)
	hard := c.Unexpected+c.Corrupt > 0
	switch {
	case v == Fail && !hard && ev.Incomplete != "" && onlyAvailability(gates):
		// Publishes in flight when the run was cut short have unknown
		// outcomes by construction: an interrupted run cannot judge
		// availability, only what it counted as final (lost, slow, duplicates).
		return Inconclusive, ev.Incomplete + "; publish availability is not judged on an incomplete run (" + reason + ")", gates
	case v == Fail && !hard && ev.Overloaded != "":
		return Inconclusive, "the generator was overloaded (" + ev.Overloaded + "); " + reason, gates
	case v == Pass && ev.Incomplete != "":
		return Inconclusive, ev.Incomplete, gates
	case v == Inconclusive && ev.Incomplete != "":
		return Inconclusive, ev.Incomplete + "; " + reason, gates
	}
	return v, reason, gates
}

// onlyAvailability reports whether publish_availability is the one failed
// gate that decides a verdict (coverage only makes a run inconclusive).
func onlyAvailability(gates []Gate) bool {
	n := 0
	for _, gt := range gates {
		if !gt.Pass && gt.Name != "coverage" {
			if gt.Name != "publish_availability" {
				return false
			}
			n++
		}
	}
	return n == 1
}

// Coverage is c.Covered/c.PublishAttempted (0 when nothing was attempted).
func (c Counts) Coverage() float64 {
	if c.PublishAttempted == 0 {
		return 0
	}
	return float64(c.Covered) / float64(c.PublishAttempted)
}

// Evaluate applies the gates to c (see Judge for the evidence beyond c).
// Hard failures (unexpected, corrupt) fail the run whatever else happened;
// otherwise too few expected messages, no publish attempted or too little
// coverage make it inconclusive, and so do expected deliveries not final yet
// (Pending): never a pass.
func (g Gates) Evaluate(c Counts) (Verdict, string, []Gate) {
	ratio := func(num, den uint64) float64 {
		if den == 0 {
			return 0
		}
		return float64(num) / float64(den)
	}
	onTime := ratio(c.OnTime, c.Expected)
	avail := ratio(c.PublishOK, c.PublishAttempted)
	hard := c.Unexpected + c.Corrupt
	gates := []Gate{
		{Name: "latency", Comparison: ">=", Threshold: g.Within, Observed: onTime, Pass: c.Expected > 0 && onTime >= g.Within},
		{Name: "lost", Comparison: "<=", Threshold: float64(g.MaxLost), Observed: float64(c.Lost), Pass: c.Lost <= g.MaxLost},
		{Name: "duplicates", Comparison: "<=", Threshold: float64(g.MaxDuplicates), Observed: float64(c.Duplicates), Pass: c.Duplicates <= g.MaxDuplicates},
		{Name: "publish_availability", Comparison: ">=", Threshold: g.MinPublishAvailability, Observed: avail, Pass: c.PublishAttempted > 0 && avail >= g.MinPublishAvailability},
		{Name: "hard_failures", Comparison: "<=", Threshold: 0, Observed: float64(hard), Pass: hard == 0},
	}
	coverage := c.Coverage()
	covered := coverage >= g.MinCoverage
	if g.MinCoverage > 0 {
		gates = append(gates, Gate{Name: "coverage", Comparison: ">=", Threshold: g.MinCoverage, Observed: coverage, Pass: c.PublishAttempted > 0 && covered})
	}
	if hard > 0 {
		return Fail, fmt.Sprintf("%d unexpected and %d corrupt messages", c.Unexpected, c.Corrupt), gates
	}
	min := g.MinExpected
	if min == 0 {
		min = 1
	}
	if c.PublishAttempted == 0 {
		return Inconclusive, "no message was published", gates
	}
	if c.Expected < min {
		return Inconclusive, fmt.Sprintf("only %d expected deliveries (need %d)", c.Expected, min), gates
	}
	var failed []string
	for _, gt := range gates {
		if !gt.Pass && gt.Name != "coverage" {
			failed = append(failed, gt.Name)
		}
	}
	if len(failed) > 0 {
		return Fail, "gates failed: " + strings.Join(failed, ", "), gates
	}
	if !covered {
		return Inconclusive, fmt.Sprintf("coverage %.1f%% below %.1f%%: only %d of %d published messages had a subscriber expecting them",
			100*coverage, 100*g.MinCoverage, c.Covered, c.PublishAttempted), gates
	}
	if c.Pending > 0 {
		return Inconclusive, fmt.Sprintf("%d expected deliveries not final (drain interrupted)", c.Pending), gates
	}
	return Pass, "", gates
}

// ms converts nanoseconds to float milliseconds.
func ms(ns int64) float64 { return float64(ns) / float64(time.Millisecond) }
