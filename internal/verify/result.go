package verify

import (
	"errors"
	"fmt"
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
	// Pending: expected messages not yet final (live snapshots), or, after an
	// interrupted drain, the unfinished tail: inconclusive, not lost.
	Pending uint64 `json:"pending"`

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
	c.Pending += o.Pending
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
}

// DefaultGates are the SLO defaults of VERIFY.md.
var DefaultGates = Gates{Within: 0.95, MaxLost: 0, MaxDuplicates: 0, MinPublishAvailability: 0.999, MinExpected: 1}

// Validate reports every problem with g at once.
func (g Gates) Validate() error {
	var errs []error
	if g.Within < 0 || g.Within > 1 {
		errs = append(errs, fmt.Errorf("verify: --within must be in [0,1], got %v", g.Within))
	}
	if g.MinPublishAvailability < 0 || g.MinPublishAvailability > 1 {
		errs = append(errs, fmt.Errorf("verify: publish availability must be in [0,1], got %v", g.MinPublishAvailability))
	}
	return errors.Join(errs...)
}

// Evaluate applies the gates to c. Hard failures (unexpected, corrupt) fail the
// run whatever else happened; otherwise too few expected messages (or no
// publish attempted) make it inconclusive, never a pass.
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
		if !gt.Pass {
			failed = append(failed, gt.Name)
		}
	}
	if len(failed) > 0 {
		return Fail, fmt.Sprintf("gates failed: %v", failed), gates
	}
	return Pass, "", gates
}

// ms converts nanoseconds to float milliseconds.
func ms(ns int64) float64 { return float64(ns) / float64(time.Millisecond) }
