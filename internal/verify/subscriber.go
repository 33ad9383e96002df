package verify

import (
	"math"
	"sync"
)

// noArrival marks an empty slot.
const noArrival = math.MinInt64

// slot is one subscriber's record of one seq that is not final yet.
type slot struct {
	first int64  // first arrival time, noArrival if none
	dups  uint32 // arrivals after the first
	red   uint32 // of which flagged as redeliveries
	near  uint32 // of which within NearReconnect after a reconnect
	ooo   bool   // first arrival came after a higher seq of the stream
}

const slotSize = 24

var emptySlot = slot{first: noArrival}

// expSpan is an interval [from, to) of intended send times in which a
// subscriber expects a stream.
type expSpan struct{ from, to int64 }

// maxSpans caps the Expect/Unexpect history of one (subscriber, stream).
const maxSpans = 64

// subStream is one subscriber's view of one stream. Guarded by sub.mu.
type subStream struct {
	sub *SubscriberRecorder
	st  *StreamRecorder
	key uint64

	base    uint64 // == st.base: seqs below are final for this subscriber
	created uint64 // seqs below this were final before the subscriber knew the stream
	ring    []slot // seq s at ring[s&(len-1)], covering [base, base+len)
	maxSeen uint64
	spans   []expSpan
	lost    intervals // final, expected, never arrived: a later arrival is late
	unseen  intervals // final, outcome unknown, would be expected, not arrived: a later arrival is recovered
}

func (ss *subStream) expects(t int64) bool {
	for _, sp := range ss.spans {
		if t >= sp.from && t < sp.to {
			return true
		}
	}
	return false
}

func (ss *subStream) grow(off uint64) {
	n := uint64(len(ss.ring))
	if n == 0 {
		n = uint64(ss.sub.l.ring)
	}
	for n <= off {
		n *= 2
	}
	ring := make([]slot, n)
	for i := range ring {
		ring[i] = emptySlot
	}
	for i, old := uint64(0), uint64(len(ss.ring)); i < old; i++ {
		s := ss.base + i
		ring[s&(n-1)] = ss.ring[s&(old-1)]
	}
	ss.ring = ring
}

func (ss *subStream) footprint() int {
	return 160 + cap(ss.ring)*slotSize + cap(ss.spans)*16 + ss.lost.footprint() + ss.unseen.footprint()
}

// epoch is one connection loss of a subscriber.
type epoch struct {
	down, back, resub int64 // back and resub are MaxInt64 while down
	kept              bool
}

// Epoch is one recorded connection loss, in ms on the run's timeline.
type Epoch struct {
	DisconnectedMS float64 `json:"disconnected_ms"`
	// ReconnectedMS and ResubscribedMS are absent while still disconnected.
	ReconnectedMS  *float64 `json:"reconnected_ms,omitempty"`
	ResubscribedMS *float64 `json:"resubscribed_ms,omitempty"`
	// Kept: the MQTT session was present, or the long-poll cursor was kept.
	Kept bool `json:"kept"`
}

// SubscriberResult is one subscriber's counts and connection epochs (only
// subscribers still registered; closed ones are folded into the totals).
type SubscriberResult struct {
	Name   string  `json:"name"`
	Counts Counts  `json:"counts"`
	Epochs []Epoch `json:"epochs,omitempty"`
	// EpochsDropped counts epochs forgotten beyond Config.MaxIntervals.
	EpochsDropped uint64 `json:"epochs_dropped,omitempty"`
}

// SubscriberRecorder is one subscriber's side of the ledger. Every method is
// safe for concurrent use. Deliver takes only this subscriber's mutex (no
// ledger-wide lock) and does not allocate once the subscriber knows the stream.
type SubscriberRecorder struct {
	l    *Ledger
	name string

	mu       sync.Mutex
	streams  map[uint64]*subStream
	lastKey  uint64
	last     *subStream
	c        Counts
	epochs   []epoch
	dropped  uint64
	back     int64
	hasBack  bool
	closed   bool
	closedAt int64
	released bool
}

// Name is the subscriber's name.
func (s *SubscriberRecorder) Name() string { return s.name }

// Expect says this subscriber's subscription to (publisher, stream) was confirmed
// at confirmedAt: every successfully published, measured seq with intended send
// time >= confirmedAt is expected. Call it within LostAfter of confirmedAt (seqs
// already final when Expect is called are not evaluated for this subscriber).
// Expect while already expecting is a no-op (a reconnect does not reset the
// expectation: messages missed while disconnected are lost). Expect after
// Unexpect starts a new expectation. Expect after Close, with confirmedAt
// before the close, expects [confirmedAt, close): a stream that started
// before the subscriber stopped listening, but was registered after, is
// still expected up to the close (until the subscriber is freed).
func (s *SubscriberRecorder) Expect(publisher, stream uint32, confirmedAt int64) {
	if stream == MarkerStream {
		return
	}
	key := streamKey(publisher, stream)
	s.l.attach(s, key, true, true, func(ss *subStream) {
		to := int64(math.MaxInt64)
		if s.closed {
			if confirmedAt >= s.closedAt {
				return
			}
			to = s.closedAt
		}
		if n := len(ss.spans); n > 0 && ss.spans[n-1].to == math.MaxInt64 {
			return
		}
		if len(ss.spans) >= maxSpans {
			ss.spans = append(ss.spans[:0], ss.spans[1:]...)
		}
		ss.spans = append(ss.spans, expSpan{from: confirmedAt, to: to})
	})
}

// Unexpect says the subscriber stopped listening to (publisher, stream) at at:
// seqs with intended send time >= at are no longer expected.
func (s *SubscriberRecorder) Unexpect(publisher, stream uint32, at int64) {
	key := streamKey(publisher, stream)
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.streams[key]; ss != nil {
		ss.unexpect(at)
	}
}

func (ss *subStream) unexpect(at int64) {
	n := len(ss.spans)
	if n == 0 || ss.spans[n-1].to != math.MaxInt64 {
		return
	}
	if at <= ss.spans[n-1].from {
		ss.spans = ss.spans[:n-1]
		return
	}
	ss.spans[n-1].to = at
}

// Close says the subscriber is gone: it stops expecting every stream at at
// (like Unexpect). Deliveries are still accepted until every seq sent before
// at is final; then its state is freed and its counts are folded into the
// ledger's totals (later deliveries count as Extra).
func (s *SubscriberRecorder) Close(at int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed, s.closedAt = true, at
	for _, ss := range s.streams {
		ss.unexpect(at)
	}
}

// Disconnected records that the subscriber's connection was lost at at.
func (s *SubscriberRecorder) Disconnected(at int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.epochs); n > 0 && s.epochs[n-1].resub == math.MaxInt64 {
		return // already down
	}
	s.addEpoch(epoch{down: at, back: math.MaxInt64, resub: math.MaxInt64})
}

func (s *SubscriberRecorder) addEpoch(e epoch) {
	if max := s.l.cfg.MaxIntervals; len(s.epochs) >= max {
		over := len(s.epochs) - max + 1
		s.dropped += uint64(over)
		s.epochs = append(s.epochs[:0], s.epochs[over:]...)
	}
	s.epochs = append(s.epochs, e)
}

// Reconnected records the connection back at at, resubscribed at resubscribedAt,
// with the session (MQTT) or cursor (long-poll) kept or not. Losses of seqs
// with intended send time in [disconnected at, resubscribedAt) count as
// lost during disconnect; duplicates within Config.NearReconnect after at
// count as near-reconnect.
func (s *SubscriberRecorder) Reconnected(at, resubscribedAt int64, kept bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if resubscribedAt < at {
		resubscribedAt = at
	}
	n := len(s.epochs)
	if n == 0 || s.epochs[n-1].resub != math.MaxInt64 {
		s.addEpoch(epoch{down: at, back: at, resub: resubscribedAt, kept: kept})
	} else {
		e := &s.epochs[n-1]
		e.back, e.resub, e.kept = at, resubscribedAt, kept
	}
	s.back, s.hasBack = at, true
}

// Rejoined records a partial return at at: one member of a shared
// subscription (a share group recording into this one recorder) is back
// while others are still down. Duplicates within Config.NearReconnect after
// at count as near-reconnect, as after Reconnected, but the disconnect epoch
// stays open until Reconnected ends it.
func (s *SubscriberRecorder) Rejoined(at int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.back, s.hasBack = at, true
}

// duringDisconnect reports whether intended send time t falls in an epoch's
// [disconnected, resubscribed) interval. Epochs are in time order.
func (s *SubscriberRecorder) duringDisconnect(t int64) bool {
	for i := len(s.epochs) - 1; i >= 0; i-- {
		if e := &s.epochs[i]; t >= e.down {
			return t < e.resub
		}
	}
	return false
}

func (s *SubscriberRecorder) near(now int64) bool {
	return s.hasBack && now >= s.back && now-s.back <= int64(s.l.cfg.NearReconnect)
}

// countDup adds one duplicate with its diagnosis split to c.
func (s *SubscriberRecorder) countDup(c *Counts, redelivery bool, now int64) {
	c.Duplicates++
	if redelivery {
		c.DupRedelivered++
	} else {
		c.DupOther++
	}
	if s.near(now) {
		c.DupNearReconnect++
	} else {
		c.DupSteady++
	}
}

// Deliver records one delivery of payload at now (the run's timeline). The
// classification on arrival is returned; the final outcome (on time, slow,
// lost, ...) is decided when the seq is finalized (Ledger.Advance). In order:
// once Ledger.Finish has begun → AfterFinish (nothing is recorded);
// undecodable → Corrupt; another run → Foreign; retained → Retained;
// MarkerStream → Marker; unknown stream or a seq above the highest attempted
// one → Unexpected; otherwise Recorded. No allocation on the hot path.
func (s *SubscriberRecorder) Deliver(payload []byte, retained, redelivery bool, now int64) Arrival {
	var st Stamp
	err := Decode(payload, &st)
	s.mu.Lock()
	if s.l.finished.Load() {
		s.mu.Unlock()
		return AfterFinish
	}
	if s.released {
		s.mu.Unlock()
		return s.l.deliverOrphan(err, &st, retained)
	}
	c := &s.c
	var a Arrival
	switch {
	case err != nil:
		c.Corrupt++
		a = Corrupt
	case st.Run != s.l.run:
		c.Foreign++
		a = Foreign
	case retained:
		c.Retained++
		a = Retained
	case st.Stream == MarkerStream:
		c.Markers++
		a = Marker
	default:
		key := streamKey(st.Publisher, st.Stream)
		ss := s.last
		if ss == nil || s.lastKey != key {
			ss = s.streams[key]
			if ss == nil {
				s.mu.Unlock()
				return s.deliverNew(key, &st, redelivery, now)
			}
			s.last, s.lastKey = ss, key
		}
		a = ss.deliver(&st, redelivery, now)
	}
	s.mu.Unlock()
	return a
}

// deliverNew is Deliver's slow path for a stream this subscriber has not seen.
func (s *SubscriberRecorder) deliverNew(key uint64, st *Stamp, redelivery bool, now int64) Arrival {
	known, retired := s.l.attach(s, key, false, false, nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.l.finished.Load() {
		return AfterFinish
	}
	if s.released {
		s.l.orphanExtra()
		return Recorded
	}
	if ss := s.streams[key]; ss != nil {
		return ss.deliver(st, redelivery, now)
	}
	if known || retired {
		// A forgotten stream, or a closed subscriber: informational.
		s.c.Extra++
		return Recorded
	}
	s.c.Unexpected++
	return Unexpected
}

// deliver records an arrival of this run's message for a known stream. s.mu held.
func (ss *subStream) deliver(st *Stamp, redelivery bool, now int64) Arrival {
	s := ss.sub
	seq := st.Seq
	if seq == 0 || seq > ss.st.hi.Load() {
		s.c.Unexpected++
		return Unexpected
	}
	if seq < ss.base {
		return ss.deliverFinal(st, redelivery, now)
	}
	off := seq - ss.base
	if off >= uint64(len(ss.ring)) {
		ss.grow(off)
	}
	sl := &ss.ring[seq&uint64(len(ss.ring)-1)]
	if sl.first == noArrival {
		sl.first = now
		if seq < ss.maxSeen {
			sl.ooo = true
		} else {
			ss.maxSeen = seq
		}
		return Recorded
	}
	sl.dups++
	if redelivery {
		sl.red++
	}
	if s.near(now) {
		sl.near++
	}
	return Recorded
}

// deliverFinal classifies an arrival of a seq that is already final for this
// subscriber. These count in the pooled totals only (their window may be
// closed already). s.mu held.
func (ss *subStream) deliverFinal(st *Stamp, redelivery bool, now int64) Arrival {
	s, l, seq := ss.sub, ss.sub.l, st.Seq
	ss.st.finMu.Lock()
	failed := ss.st.failed.contains(seq)
	unknown := ss.st.unknown.contains(seq)
	ss.st.finMu.Unlock()
	max := l.cfg.MaxIntervals
	switch {
	case failed:
		s.c.Unexpected++
		return Unexpected
	case ss.lost.remove(seq, max):
		// Late: stays lost; its next copy is a duplicate.
		s.c.Late++
		l.recordLate(now - st.Intended)
	case unknown && ss.unseen.remove(seq, max):
		s.c.Recovered++
	case seq < ss.created:
		s.c.Extra++
	case l.measured(st.Intended) && ss.expects(st.Intended):
		s.countDup(&s.c, redelivery, now)
	default:
		s.c.Extra++
	}
	return Recorded
}
