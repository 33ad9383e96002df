package verify

import (
	"math"
	"sort"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// windowAcc accumulates one open window. Guarded by Ledger.mu.
type windowAcc struct {
	idx int64
	c   Counts
	h   *hdrhistogram.Histogram
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// windowIndex is the window holding intended send time t.
func (l *Ledger) windowIndex(t int64) int64 { return floorDiv(t, int64(l.cfg.Window)) }

// window returns the open window idx, creating it, or nil if it is closed
// (what is finalized after its window closed counts in the pooled totals only).
// l.mu held.
func (l *Ledger) window(idx int64) *windowAcc {
	if idx < l.closedBelow {
		return nil
	}
	w := l.windows[idx]
	if w == nil {
		w = &windowAcc{idx: idx}
		if n := len(l.histPool); n > 0 {
			w.h = l.histPool[n-1]
			l.histPool = l.histPool[:n-1]
		} else {
			w.h = NewHistogram()
		}
		l.windows[idx] = w
	}
	return w
}

// closeWindows emits every window whose end + LostAfter + Grace <= now (all
// open windows if all). Closed windows are immutable. l.mu held.
func (l *Ledger) closeWindows(now int64, all bool) {
	limit := int64(math.MaxInt64)
	if !all {
		limit = floorDiv(now-l.deadline, int64(l.cfg.Window))
		if now < math.MinInt64+l.deadline {
			limit = math.MinInt64
		}
	}
	if limit <= l.closedBelow {
		return
	}
	l.closedBelow = limit
	var due []*windowAcc
	for idx, w := range l.windows {
		if idx < limit {
			due = append(due, w)
		}
	}
	sort.Slice(due, func(i, j int) bool { return due[i].idx < due[j].idx })
	for _, w := range due {
		delete(l.windows, w.idx)
		win := Window{
			Index:   int(w.idx),
			StartMS: w.idx * int64(l.cfg.Window) / int64(time.Millisecond),
			EndMS:   (w.idx + 1) * int64(l.cfg.Window) / int64(time.Millisecond),
			Counts:  w.c,
			Latency: summarize(w.h),
		}
		win.Verdict, win.Reason, _ = l.cfg.Gates.Evaluate(w.c)
		l.closed = append(l.closed, win)
		w.h.Reset()
		l.histPool = append(l.histPool, w.h)
	}
}
