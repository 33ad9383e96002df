package report

import (
	"encoding/json"
	"time"

	"github.com/eventswarm/eventswarm/internal/verify"
)

// WindowRecord is one closed window as a log line (probe --duration 0,
// --window-log): stable field names, one JSON object per line.
type WindowRecord struct {
	Time  time.Time `json:"time"`  // when the window closed (was reported)
	Event string    `json:"event"` // always "window"
	RunID string    `json:"run_id"`
	Index int       `json:"window"`
	Start time.Time `json:"start"` // intended send times [start, end)
	End   time.Time `json:"end"`
	// OnTimeRatio is on_time / expected (0 when nothing was expected).
	OnTimeRatio float64        `json:"on_time_ratio"`
	Verdict     verify.Verdict `json:"verdict"`
	Reason      string         `json:"reason,omitempty"`
	Counts      verify.Counts  `json:"counts"`
	Latency     verify.Latency `json:"latency_ms"`
}

// WindowJSON is w as one line of JSON (with its newline); origin is the
// run's timeline zero (window offsets are from it), now the closing time.
func WindowJSON(runID string, origin, now time.Time, w verify.Window) []byte {
	rec := WindowRecord{
		Time: now.UTC(), Event: "window", RunID: runID, Index: w.Index,
		Start:   origin.Add(time.Duration(w.StartMS) * time.Millisecond).UTC(),
		End:     origin.Add(time.Duration(w.EndMS) * time.Millisecond).UTC(),
		Verdict: w.Verdict, Reason: w.Reason, Counts: w.Counts, Latency: w.Latency,
	}
	if w.Counts.Expected > 0 {
		rec.OnTimeRatio = float64(w.Counts.OnTime) / float64(w.Counts.Expected)
	}
	b, _ := json.Marshal(rec) // plain fields: cannot fail
	return append(b, '\n')
}
