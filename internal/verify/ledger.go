package verify

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram settings, the same everywhere (so shard results merge exactly):
// values in microseconds, 1 µs – 1 h, 3 significant digits.
const (
	HistLowestUS  = 1
	HistHighestUS = 3_600_000_000
	HistSigFigs   = 3
)

// NewHistogram returns an empty latency histogram with the settings above.
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(HistLowestUS, HistHighestUS, HistSigFigs)
}

func streamKey(publisher, stream uint32) uint64 { return uint64(publisher)<<32 | uint64(stream) }

// Ledger records publishes and deliveries and classifies every (subscriber,
// message) pair exactly as the package documentation says. Safe for
// concurrent use: each StreamRecorder / SubscriberRecorder may be used by its
// own goroutine, and Advance/Snapshot/Finish by another.
//
// Lock order: Ledger.mu → StreamRecorder.mu → SubscriberRecorder.mu →
// {StreamRecorder.finMu, Ledger.lateMu, Ledger.orphanMu} (leaves).
type Ledger struct {
	run      RunID
	cfg      Config
	ring     int   // initial ring length (power of two)
	deadline int64 // LostAfter + Grace, ns

	mStart, mStop atomic.Int64 // measurement interval of intended send times

	// finished: Finish has begun. Deliveries after it are not recorded: the
	// result is taken (an interrupted process reports at the cut while its
	// subscribers still run), and an expected seq Finish turned into Pending
	// that arrives after must not count at all, least of all as a duplicate
	// (it is final for its subscriber, and not lost). Set under l.mu before
	// Finish locks any subscriber; Deliver reads it under the subscriber's mu,
	// so each delivery is either wholly before Finish or ignored.
	finished atomic.Bool

	mu       sync.Mutex
	streams  map[uint64]*StreamRecorder // live and tombstoned streams
	live     []*StreamRecorder          // not released
	tombs    []*StreamRecorder          // released (closed and final), oldest first
	retired  intervals                  // keys of forgotten streams
	retiredT intervals                  // the same, keyed stream<<32|publisher
	subs     []*SubscriberRecorder
	names    map[string]*SubscriberRecorder
	pooled   Counts // finalized publish counts + counts of released subscribers
	hist     *hdrhistogram.Histogram
	markers  map[uint32]*StreamRecorder

	windows     map[int64]*windowAcc
	closedBelow int64 // windows with a lower index are closed
	closed      []Window
	histPool    []*hdrhistogram.Histogram

	lateMu sync.Mutex
	late   *hdrhistogram.Histogram

	orphanMu sync.Mutex
	orphan   Counts // deliveries to released subscribers
}

// NewLedger returns a ledger for run.
func NewLedger(run RunID, cfg Config) (*Ledger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	n := int(cfg.Rate*(cfg.LostAfter+cfg.Grace).Seconds()*1.25) + 1
	ring := 16
	for ring < n && ring < 1<<16 {
		ring *= 2
	}
	l := &Ledger{
		run:         run,
		cfg:         cfg,
		ring:        ring,
		deadline:    int64(cfg.LostAfter + cfg.Grace),
		streams:     make(map[uint64]*StreamRecorder),
		names:       make(map[string]*SubscriberRecorder),
		markers:     make(map[uint32]*StreamRecorder),
		hist:        NewHistogram(),
		late:        NewHistogram(),
		windows:     make(map[int64]*windowAcc),
		closedBelow: math.MinInt64,
	}
	l.mStart.Store(math.MinInt64)
	l.mStop.Store(math.MaxInt64)
	return l, nil
}

// Run is the ledger's run ID.
func (l *Ledger) Run() RunID { return l.run }

// Config is the ledger's configuration with defaults filled in.
func (l *Ledger) Config() Config { return l.cfg }

// StartMeasurement: messages with intended send time >= at are measured (after
// warm-up). Without it every message is measured from the start.
func (l *Ledger) StartMeasurement(at int64) { l.mStart.Store(at) }

// StopMeasurement: messages with intended send time >= at are not measured (publishing stopped).
func (l *Ledger) StopMeasurement(at int64) { l.mStop.Store(at) }

func (l *Ledger) measured(t int64) bool { return t >= l.mStart.Load() && t < l.mStop.Load() }

// Stream registers (or returns the existing) publisher-side recorder of
// (publisher, stream). For stream == MarkerStream it returns a recorder whose
// methods do nothing (markers are never expected nor counted as publishes).
func (l *Ledger) Stream(publisher, stream uint32) *StreamRecorder {
	l.mu.Lock()
	defer l.mu.Unlock()
	if stream == MarkerStream {
		p := l.markers[publisher]
		if p == nil {
			p = &StreamRecorder{l: l, key: streamKey(publisher, stream), marker: true}
			l.markers[publisher] = p
		}
		return p
	}
	return l.stream(streamKey(publisher, stream))
}

// stream gets or creates a stream. l.mu held.
func (l *Ledger) stream(key uint64) *StreamRecorder {
	p := l.streams[key]
	if p == nil {
		p = &StreamRecorder{l: l, key: key, base: 1, lastIntended: math.MinInt64}
		l.streams[key] = p
		l.live = append(l.live, p)
	}
	return p
}

// Subscriber registers a subscriber; name is for diagnostics and must be
// unique (a second call with the same name returns the same recorder).
func (l *Ledger) Subscriber(name string) *SubscriberRecorder {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.names[name]; s != nil && !s.released {
		return s
	}
	s := &SubscriberRecorder{l: l, name: name, streams: make(map[uint64]*subStream)}
	l.names[name] = s
	l.subs = append(l.subs, s)
	return s
}

// attach makes sure s has a subStream for key and runs f on it (s.mu held).
// create: make the stream if unknown (Expect); otherwise an unknown stream is
// reported (known=false) and retired tells whether it was forgotten.
func (l *Ledger) attach(s *SubscriberRecorder, key uint64, create, closedOK bool, f func(*subStream)) (known, retired bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.streams[key]
	if p == nil {
		if !create {
			return false, l.retired.contains(key) || l.retiredT.contains(key<<32|key>>32)
		}
		p = l.stream(key)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.released || (s.closed && !closedOK) {
		return true, false
	}
	ss := s.streams[key]
	if ss == nil {
		ss = &subStream{sub: s, st: p, key: key, base: p.base, created: p.base}
		if p.released {
			ss.base = p.hi.Load() + 1
		}
		s.streams[key] = ss
		p.subs = append(p.subs, ss)
	}
	if f != nil {
		f(ss)
	}
	return true, false
}

// recordLate records a late first arrival (d > LostAfter) in the late histogram.
func (l *Ledger) recordLate(d int64) {
	l.lateMu.Lock()
	_ = l.late.RecordValue(histValue(d))
	l.lateMu.Unlock()
}

func histValue(d int64) int64 {
	v := d / 1000
	if v < HistLowestUS {
		return HistLowestUS
	}
	if v > HistHighestUS {
		return HistHighestUS
	}
	return v
}

func (l *Ledger) deliverOrphan(err error, st *Stamp, retained bool) Arrival {
	l.orphanMu.Lock()
	defer l.orphanMu.Unlock()
	switch {
	case err != nil:
		l.orphan.Corrupt++
		return Corrupt
	case st.Run != l.run:
		l.orphan.Foreign++
		return Foreign
	case retained:
		l.orphan.Retained++
		return Retained
	case st.Stream == MarkerStream:
		l.orphan.Markers++
		return Marker
	}
	l.orphan.Extra++
	return Recorded
}

func (l *Ledger) orphanExtra() {
	l.orphanMu.Lock()
	l.orphan.Extra++
	l.orphanMu.Unlock()
}

// finMode says how finalize treats seqs.
type finMode uint8

const (
	finDue     finMode = iota // seqs whose deadline passed; no arrival → lost
	finAll                    // every attempted seq; no arrival → lost (drain complete)
	finPending                // every attempted seq; no arrival → pending (drain interrupted)
)

// Advance finalizes every (subscriber, seq) whose deadline (intended + LostAfter +
// Grace) is <= now and closes windows that are complete. Call it every second or so.
func (l *Ledger) Advance(now int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.advance(now, finDue)
	l.closeWindows(now, false)
}

func satAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// advance runs finalization over every live stream. l.mu held.
func (l *Ledger) advance(now int64, mode finMode) {
	keep := l.live[:0] // filter in place: tombs stay in creation order
	for _, p := range l.live {
		p.mu.Lock()
		l.finalizeStream(p, now, mode)
		done := p.closed && p.base > p.hi.Load()
		if done {
			p.recs = nil
			p.released = true
			for _, ss := range p.subs {
				ss.sub.mu.Lock()
				ss.ring = nil
				ss.sub.mu.Unlock()
			}
		}
		p.mu.Unlock()
		if done {
			l.tombs = append(l.tombs, p)
		} else {
			keep = append(keep, p)
		}
	}
	clear(l.live[len(keep):])
	l.live = keep
	l.evict()
	l.reapSubscribers()
}

// finalizeStream finalizes p's due seqs for p and every subscriber. l.mu and p.mu held.
func (l *Ledger) finalizeStream(p *StreamRecorder, now int64, mode finMode) {
	hi := p.hi.Load()
	to := p.base
	if mode == finDue {
		for to <= hi && satAdd(p.rec(to).intended, l.deadline) <= now {
			to++
		}
	} else {
		to = hi + 1
	}
	if to <= p.base {
		return
	}
	for _, ss := range p.subs {
		ss.sub.mu.Lock()
		l.finalizeSub(ss, to, mode == finPending)
		ss.sub.mu.Unlock()
	}
	var d Counts
	var w *windowAcc
	wi := int64(math.MinInt64)
	flush := func() {
		l.pooled.Add(d)
		if w != nil {
			w.c.Add(d)
		}
		d = Counts{}
	}
	for seq := p.base; seq < to; seq++ {
		r := p.rec(seq)
		status := r.status
		if status == stPending {
			status = stUnknown
		}
		if status != stNone && l.measured(r.intended) {
			if x := l.windowIndex(r.intended); x != wi {
				flush()
				wi, w = x, l.window(x)
			}
			d.PublishAttempted++
			if r.covered {
				d.Covered++
			}
			switch status {
			case stOK:
				d.PublishOK++
			case stFailed:
				d.PublishFailed++
			default:
				d.PublishUnknown++
			}
		}
		switch status {
		case stNone, stFailed:
			p.finMu.Lock()
			p.failed.add(seq, l.cfg.MaxIntervals)
			p.finMu.Unlock()
		case stUnknown:
			p.finMu.Lock()
			p.unknown.add(seq, l.cfg.MaxIntervals)
			p.finMu.Unlock()
		}
		*r = pubRec{}
	}
	flush()
	p.base = to
}

// finalizeSub classifies ss's seqs [ss.base, to). l.mu, p.mu and ss.sub.mu held.
func (l *Ledger) finalizeSub(ss *subStream, to uint64, pending bool) {
	p, s, cfg := ss.st, ss.sub, &l.cfg
	base := ss.base
	n := uint64(len(ss.ring))
	max := cfg.MaxIntervals
	var d Counts
	var w *windowAcc
	wi := int64(math.MinInt64)
	flush := func() {
		s.c.Add(d)
		if w != nil {
			w.c.Add(d)
		}
		d = Counts{}
	}
	for seq := base; seq < to; seq++ {
		r := p.rec(seq)
		sl := emptySlot
		if seq-base < n {
			ps := &ss.ring[seq&(n-1)]
			sl = *ps
			*ps = emptySlot
		}
		if x := l.windowIndex(r.intended); x != wi {
			flush()
			wi, w = x, l.window(x)
		}
		arrived := sl.first != noArrival
		copies := uint64(sl.dups)
		if arrived {
			copies++
		}
		expected := l.measured(r.intended) && ss.expects(r.intended)
		if expected && r.status != stNone {
			r.covered = true
		}
		switch r.status {
		case stOK:
			if !expected {
				d.Extra += copies
				continue
			}
			lat := sl.first - r.intended
			switch {
			case arrived && lat <= int64(cfg.LostAfter):
				d.Expected++
				if lat <= int64(cfg.Latency) {
					d.OnTime++
				} else {
					d.Slow++
				}
				if sl.ooo {
					d.OutOfOrder++
				}
				v := histValue(lat)
				_ = l.hist.RecordValue(v)
				if w != nil {
					_ = w.h.RecordValue(v)
				}
			case !arrived && pending:
				d.Pending++
			default:
				d.Expected++
				d.Lost++
				if s.duringDisconnect(r.intended) {
					d.LostDuringDisconnect++
				} else {
					d.LostWhileConnected++
				}
				if arrived {
					d.Late++
					l.recordLate(lat)
				} else {
					ss.lost.add(seq, max)
				}
			}
			addDups(&d, &sl)
		case stPending, stUnknown:
			switch {
			case !expected:
				d.Extra += copies
			case arrived:
				d.Recovered++
				addDups(&d, &sl)
			default:
				ss.unseen.add(seq, max)
			}
		default: // failed, or never attempted
			d.Unexpected += copies
		}
	}
	flush()
	ss.base = to
}

func addDups(d *Counts, sl *slot) {
	d.Duplicates += uint64(sl.dups)
	d.DupRedelivered += uint64(sl.red)
	d.DupOther += uint64(sl.dups - sl.red)
	d.DupNearReconnect += uint64(sl.near)
	d.DupSteady += uint64(sl.dups - sl.near)
}

// evict forgets the oldest released streams beyond MaxClosedStreams. l.mu held.
func (l *Ledger) evict() {
	over := len(l.tombs) - l.cfg.MaxClosedStreams
	if over <= 0 {
		return
	}
	for _, p := range l.tombs[:over] {
		delete(l.streams, p.key)
		// Two orders, so that both many streams of one publisher and one
		// stream of many publishers form few intervals.
		l.retired.add(p.key, l.cfg.MaxIntervals)
		l.retiredT.add(p.key<<32|p.key>>32, l.cfg.MaxIntervals)
		p.mu.Lock()
		for _, ss := range p.subs {
			s := ss.sub
			s.mu.Lock()
			if s.streams[p.key] == ss {
				delete(s.streams, p.key)
			}
			if s.last == ss {
				s.last = nil
			}
			s.mu.Unlock()
		}
		p.subs = nil
		p.mu.Unlock()
	}
	n := copy(l.tombs, l.tombs[over:])
	clear(l.tombs[n:])
	l.tombs = l.tombs[:n]
}

// reapSubscribers frees closed subscribers once everything they expected is
// final, folding their counts into the pooled totals. l.mu held.
func (l *Ledger) reapSubscribers() {
	var list []*subStream
	for i := 0; i < len(l.subs); {
		s := l.subs[i]
		s.mu.Lock()
		closed, at := s.closed, s.closedAt
		list = list[:0]
		if closed {
			for _, ss := range s.streams {
				list = append(list, ss)
			}
		}
		s.mu.Unlock()
		if !closed {
			i++
			continue
		}
		for _, ss := range list {
			p := ss.st
			p.mu.Lock()
			// Free ss once nothing it expects can still come: every seq is
			// final and no later attempt can be due before at (the stream is
			// closed, or its latest attempt is already at or after at: intended
			// times never decrease), or the oldest non-final seq is due at or
			// after at. (Freeing it as soon as every seq so far was final lost
			// the expectation of a seq attempted later but due before at.)
			drained := p.base > p.hi.Load()
			if p.released || (drained && (p.closed || p.lastIntended >= at)) || (!drained && p.rec(p.base).intended >= at) {
				for j, x := range p.subs {
					if x == ss {
						last := len(p.subs) - 1
						p.subs[j] = p.subs[last]
						p.subs[last] = nil
						p.subs = p.subs[:last]
						break
					}
				}
				s.mu.Lock()
				delete(s.streams, ss.key)
				if s.last == ss {
					s.last = nil
				}
				s.mu.Unlock()
			}
			p.mu.Unlock()
		}
		s.mu.Lock()
		done := len(s.streams) == 0
		if done {
			s.released = true
			l.pooled.Add(s.c)
			s.c = Counts{}
			s.epochs = nil
			s.streams = nil
		}
		s.mu.Unlock()
		if done {
			if l.names[s.name] == s {
				delete(l.names, s.name)
			}
			last := len(l.subs) - 1
			l.subs[i] = l.subs[last]
			l.subs[last] = nil
			l.subs = l.subs[:last]
			continue
		}
		i++
	}
}

// Snapshot is a live view at now: final counts plus Pending for expected
// messages that are not final yet (their on-time/slow/lost outcome is decided
// LostAfter+Grace after their intended send time). Publish counts include the
// non-final seqs (attempted, and their outcome if already known). It does not
// finalize anything; call Advance for that.
func (l *Ledger) Snapshot(now int64) Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	var live Counts
	for _, p := range l.live {
		p.mu.Lock()
		for _, ss := range p.subs {
			ss.sub.mu.Lock()
		}
		for seq, hi := p.base, p.hi.Load(); seq <= hi; seq++ {
			r := p.rec(seq)
			if r.status == stNone || !l.measured(r.intended) {
				continue
			}
			live.PublishAttempted++
			switch r.status {
			case stOK:
				live.PublishOK++
			case stFailed:
				live.PublishFailed++
			case stUnknown:
				live.PublishUnknown++
			}
			covered := false
			for _, ss := range p.subs {
				if ss.expects(r.intended) {
					covered = true
					if r.status == stOK || r.status == stPending {
						live.Pending++
						if seq >= ss.base && seq-ss.base < uint64(len(ss.ring)) {
							if first := ss.ring[seq&uint64(len(ss.ring)-1)].first; first != noArrival {
								live.PendingArrived++
								if first-r.intended <= int64(l.cfg.Latency) {
									live.PendingOnTime++
								}
							}
						}
					}
				}
			}
			if covered {
				live.Covered++
			}
		}
		for _, ss := range p.subs {
			ss.sub.mu.Unlock()
		}
		p.mu.Unlock()
	}
	return l.result(live, false)
}

// ClosedWindows returns the windows closed so far (by Advance), from the
// from-th on, in order. Unlike Snapshot it does not walk the seqs that are not
// final yet, so it is cheap at any rate: a live consumer of windows calls it
// at every Advance and Snapshot only when it needs the live counts.
func (l *Ledger) ClosedWindows(from int) []Window {
	l.mu.Lock()
	defer l.mu.Unlock()
	if from >= len(l.closed) {
		return nil
	}
	return append([]Window(nil), l.closed[max(from, 0):]...)
}

// Finish finalizes everything due at now and returns the final result with the
// verdict from Config.Gates. drained=true (subscribers kept listening
// LostAfter+Grace after publishing stopped) finalizes every attempted seq:
// no arrival means lost. drained=false (the drain was interrupted) turns every
// expected seq that has not arrived and is not due yet into Pending: such a run
// is inconclusive, not failed, unless another gate fails. Publishes still
// pending count as unknown. Every open window is closed and emitted.
func (l *Ledger) Finish(now int64, drained bool) Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.finished.Store(true)
	l.advance(now, finDue)
	if drained {
		l.advance(now, finAll)
	} else {
		l.advance(now, finPending)
	}
	l.closeWindows(now, true)
	r := l.result(Counts{}, true)
	return r
}

// result assembles a Result. l.mu held.
func (l *Ledger) result(extra Counts, final bool) Result {
	c := l.pooled
	c.Add(extra)
	l.orphanMu.Lock()
	c.Add(l.orphan)
	l.orphanMu.Unlock()
	r := Result{Windows: append([]Window(nil), l.closed...)}
	for _, s := range l.subs {
		s.mu.Lock()
		c.Add(s.c)
		sr := SubscriberResult{Name: s.name, Counts: s.c, EpochsDropped: s.dropped}
		for _, e := range s.epochs {
			sr.Epochs = append(sr.Epochs, e.export())
		}
		s.mu.Unlock()
		r.Subscribers = append(r.Subscribers, sr)
	}
	sort.Slice(r.Subscribers, func(i, j int) bool { return r.Subscribers[i].Name < r.Subscribers[j].Name })
	r.Counts = c
	r.LatencyMS = summarize(l.hist)
	l.lateMu.Lock()
	r.LateMS = summarize(l.late)
	if final {
		r.LatencyHist = l.hist.Export()
		r.LateHist = l.late.Export()
	}
	l.lateMu.Unlock()
	r.Verdict, r.Reason, r.Gates = l.cfg.Gates.Evaluate(c)
	return r
}

func (e epoch) export() Epoch {
	x := Epoch{DisconnectedMS: ms(e.down), Kept: e.kept}
	if e.back != math.MaxInt64 {
		b, r := ms(e.back), ms(e.resub)
		x.ReconnectedMS, x.ResubscribedMS = &b, &r
	}
	return x
}

func summarize(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	const usPerMS = 1000.0
	return Latency{
		Count: uint64(h.TotalCount()),
		P50:   float64(h.ValueAtQuantile(50)) / usPerMS,
		P95:   float64(h.ValueAtQuantile(95)) / usPerMS,
		P99:   float64(h.ValueAtQuantile(99)) / usPerMS,
		Max:   float64(h.Max()) / usPerMS,
	}
}

// MemoryFootprint estimates the bytes held by the ledger's per-stream and
// per-subscriber state (rings, interval sets, epochs, open windows). It grows
// with failures and with the number of live streams, not with run length.
func (l *Ledger) MemoryFootprint() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 64*len(l.streams) + l.retired.footprint() + l.retiredT.footprint() + len(l.windows)*(256+l.hist.ByteSize())
	count := func(p *StreamRecorder) {
		p.mu.Lock()
		n += 256 + cap(p.recs)*16 + 8*cap(p.subs)
		p.finMu.Lock()
		n += p.failed.footprint() + p.unknown.footprint()
		p.finMu.Unlock()
		for _, ss := range p.subs {
			ss.sub.mu.Lock()
			n += 64 + ss.footprint()
			ss.sub.mu.Unlock()
		}
		p.mu.Unlock()
	}
	for _, p := range l.live {
		count(p)
	}
	for _, p := range l.tombs {
		count(p)
	}
	for _, s := range l.subs {
		s.mu.Lock()
		n += 256 + cap(s.epochs)*32
		s.mu.Unlock()
	}
	return n
}

// Streams reports how many streams the ledger holds: live (not yet closed
// and final) and remembered (closed, final, kept as tombstones).
func (l *Ledger) Streams() (live, remembered int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.live), len(l.tombs)
}
