package behaviours

import (
	"context"
	"hash/maphash"
	"math"
	"sync"
	"time"

	"github.com/eventswarm/eventswarm/internal/verify"
)

// The registry connects publishers and subscribers that meet on a topic, so
// that the ledger knows who expects what while sessions come and go (learner
// IDs are reused: one topic sees many learner sessions, and several proctors
// may watch one learner).
//
// For every topic it keeps the current publishing streams (with the intended
// send time of their first message) and the current subscriptions (with their
// confirmation time and, once they stop listening, their close time):
//
//   - a stream that starts on a topic is expected by every confirmed
//     subscription from max(confirmed, stream start);
//   - a subscription confirmed on a topic expects every current stream from
//     max(confirmed, stream start);
//   - a subscription that stops listening stops expecting at its close time
//     (verify.SubscriberRecorder.Close).
//
// Times are read on the run's clock while the topic's lock is held, so a
// publish attempt and a confirmation are ordered the same way for the ledger
// and for the pending sets below.
//
// Pending sets: a subscription also tracks, exactly, the messages it expects
// that have not arrived yet (a publish attempt adds the message to every
// subscription that expects it; an arrival or a failed publish removes it).
// A session that ends lingers until its pending set is empty (or until the
// oldest could only be lost: close time + LostAfter + Grace), so a subscriber
// never turns messages still in flight into losses by leaving, and a drain
// ends as soon as everything has arrived.
type registry struct {
	clock  verify.Clock
	seed   maphash.Seed
	shards [64]regShard

	// Test seams (nil in production): a (subscriber connection, message) pair
	// became expected (payload is only valid during the call) or stopped being
	// expected (failed publish, or attempted at or after the close); a
	// subscription closed at: nothing with intended send time >= at is
	// expected of it, even a message that arrived before close ran (an
	// attempt may slip in between reading the close time and setting it).
	onExpect   func(connID string, k msgKey, intended int64, payload []byte)
	onUnexpect func(connID string, k msgKey)
	onClose    func(connID string, at int64)
}

type regShard struct {
	mu     sync.Mutex
	topics map[string]*topicState
}

type streamID struct{ pub, stream uint32 }

// topicState is one topic's publishers and subscribers. Guarded by its shard's mu.
type topicState struct {
	streams map[streamID]*streamState
	subs    map[*subscription]*subEntry // current and lingering subscriptions
}

// streamState is one publishing stream on a topic.
type streamState struct {
	start int64 // intended send time of its first message
	// next: the stream may still attempt messages with intended send time >=
	// next (a lower bound the publisher keeps up to date, see reserve).
	next int64
}

// subEntry is a subscription's window on one topic: it expects messages with
// intended send time in [confirmed, closed).
type subEntry struct {
	confirmed int64 // -1 until confirmed
	closed    int64 // MaxInt64 until closed
}

func newRegistry(clock verify.Clock) *registry {
	r := &registry{clock: clock, seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].topics = make(map[string]*topicState)
	}
	return r
}

func (r *registry) shard(topic string) *regShard {
	return &r.shards[maphash.String(r.seed, topic)%uint64(len(r.shards))]
}

// state returns topic's state, creating it. sh.mu must be held.
func (sh *regShard) state(topic string) *topicState {
	ts := sh.topics[topic]
	if ts == nil {
		ts = &topicState{streams: make(map[streamID]*streamState), subs: make(map[*subscription]*subEntry)}
		sh.topics[topic] = ts
	}
	return ts
}

// gc drops topic's state when nothing refers to it. sh.mu must be held.
func (sh *regShard) gc(topic string, ts *topicState) {
	if len(ts.streams) == 0 && len(ts.subs) == 0 {
		delete(sh.topics, topic)
	}
}

// startStream registers (pub, stream) publishing on topic from start on.
func (r *registry) startStream(topic string, pub, stream uint32, start int64) {
	sh := r.shard(topic)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ts := sh.state(topic)
	ts.streams[streamID{pub, stream}] = &streamState{start: start, next: start}
	// Lingering (closed) subscriptions too: a stream that starts before a
	// subscription's close time is expected by it up to the close, as attempt
	// below counts it (registered after the close, it was once expected by
	// the registry and not by the ledger).
	for s, e := range ts.subs {
		if e.confirmed >= 0 && start < e.closed {
			s.rec.Expect(pub, stream, max(e.confirmed, start))
		}
	}
}

// endStream says (pub, stream) sends nothing more on topic.
func (r *registry) endStream(topic string, pub, stream uint32) {
	sh := r.shard(topic)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if ts := sh.topics[topic]; ts != nil {
		delete(ts.streams, streamID{pub, stream})
		ts.signalClosing()
		sh.gc(topic, ts)
	}
}

// reserve says (pub, stream) on topic will attempt nothing with an intended
// send time before next. A publisher calls it before it sleeps until its next
// message (or backs off), so a subscription that stops listening at time at
// knows whether a message with intended time < at may still come: that is
// the case while the publisher is due but has not attempted yet, and the
// subscription then lingers (see subscription.linger).
func (r *registry) reserve(topic string, pub, stream uint32, next int64) {
	sh := r.shard(topic)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if ts := sh.topics[topic]; ts != nil {
		if st := ts.streams[streamID{pub, stream}]; st != nil {
			st.next = next
			ts.signalClosing()
		}
	}
}

// signalClosing wakes the lingering subscriptions of the topic. Its shard's mu must be held.
func (ts *topicState) signalClosing() {
	for s, e := range ts.subs {
		if e.closed != math.MaxInt64 {
			s.signal()
		}
	}
}

// due reports whether a publisher on one of s's topics may still attempt a
// message with intended send time before at (s's close time).
func (r *registry) due(s *subscription, at int64) bool {
	for _, topic := range s.topics {
		sh := r.shard(topic)
		sh.mu.Lock()
		ts := sh.topics[topic]
		if ts != nil {
			for _, st := range ts.streams {
				if st.next < at {
					sh.mu.Unlock()
					return true
				}
			}
		}
		sh.mu.Unlock()
	}
	return false
}

// attempt says seq of (pub, stream) with intended send time intended is about
// to be published on topic: every subscription that expects it adds it to its
// pending set. Call it after StreamRecorder.Attempt and before publishing.
func (r *registry) attempt(topic string, key msgKey, intended int64, payload []byte) {
	sh := r.shard(topic)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ts := sh.topics[topic]
	if ts == nil {
		return
	}
	for s, e := range ts.subs {
		if e.confirmed >= 0 && intended >= e.confirmed && intended < e.closed {
			s.addPending(key, intended)
			if r.onExpect != nil {
				r.onExpect(s.connID, key, intended, payload)
			}
		}
	}
}

// failed says the publish of key on topic failed or has an unknown outcome:
// nobody waits for it.
func (r *registry) failed(topic string, key msgKey) {
	sh := r.shard(topic)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if ts := sh.topics[topic]; ts != nil {
		for s := range ts.subs {
			if s.removePending(key) && r.onUnexpect != nil {
				r.onUnexpect(s.connID, key)
			}
		}
	}
}

// confirm says s's subscription to its topics is confirmed (now): it expects
// every current stream on them from now on.
func (r *registry) confirm(s *subscription) {
	for _, topic := range s.topics {
		sh := r.shard(topic)
		sh.mu.Lock()
		now := r.clock.Now()
		ts := sh.state(topic)
		e := ts.subs[s]
		if e == nil {
			e = &subEntry{confirmed: -1, closed: math.MaxInt64}
			ts.subs[s] = e
		}
		if e.confirmed < 0 && e.closed == math.MaxInt64 {
			e.confirmed = now
			for id, st := range ts.streams {
				s.rec.Expect(id.pub, id.stream, max(now, st.start))
			}
		}
		sh.mu.Unlock()
	}
}

// close says s stops listening (now): nothing published from now on is
// expected. s stays registered (so failed publishes still reach its pending
// set) until remove.
func (r *registry) close(s *subscription) {
	// One close time for every topic, since the ledger's Close is one call.
	at := r.clock.Now()
	for _, topic := range s.topics {
		sh := r.shard(topic)
		sh.mu.Lock()
		if ts := sh.topics[topic]; ts != nil {
			if e := ts.subs[s]; e != nil && e.closed == math.MaxInt64 {
				e.closed = at
			}
		}
		sh.mu.Unlock()
	}
	s.rec.Close(at)
	if r.onClose != nil {
		r.onClose(s.connID, at)
	}
	s.mu.Lock()
	s.closedAt = at
	// Attempts registered on a topic before its close time was set may be
	// sent at or after at: the ledger does not expect those, so neither do we.
	for k, intended := range s.pending {
		if intended >= at {
			delete(s.pending, k)
			if r.onUnexpect != nil {
				r.onUnexpect(s.connID, k)
			}
		}
	}
	s.mu.Unlock()
}

// remove forgets s.
func (r *registry) remove(s *subscription) {
	for _, topic := range s.topics {
		sh := r.shard(topic)
		sh.mu.Lock()
		if ts := sh.topics[topic]; ts != nil {
			delete(ts.subs, s)
			sh.gc(topic, ts)
		}
		sh.mu.Unlock()
	}
}

// msgKey identifies one message of this run.
type msgKey struct {
	pub, stream uint32
	seq         uint64
}

// subscription is one subscriber session's listening on its topics: its
// ledger recorder and the set of expected messages not arrived yet.
type subscription struct {
	rec    *verify.SubscriberRecorder
	topics []string
	connID string // the connection's client ID, set before it subscribes

	mu       sync.Mutex
	pending  map[msgKey]int64 // -> intended send time
	closedAt int64
	changed  chan struct{} // signalled (non-blocking) when pending shrinks
}

func newSubscription(rec *verify.SubscriberRecorder, topics []string) *subscription {
	return &subscription{rec: rec, topics: topics, pending: make(map[msgKey]int64),
		closedAt: math.MaxInt64, changed: make(chan struct{}, 1)}
}

func (s *subscription) addPending(k msgKey, intended int64) {
	s.mu.Lock()
	s.pending[k] = intended
	s.mu.Unlock()
}

// removePending removes k and reports whether it was pending.
func (s *subscription) removePending(k msgKey) bool {
	s.mu.Lock()
	_, ok := s.pending[k]
	if ok {
		delete(s.pending, k)
	}
	s.mu.Unlock()
	if ok {
		s.signal()
	}
	return ok
}

// arrived records the arrival of k (any copy).
func (s *subscription) arrived(k msgKey) { s.removePending(k) }

func (s *subscription) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// pendingLen is the number of expected messages not arrived yet.
func (s *subscription) pendingLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// linger waits until every expected message has arrived and no publisher on
// s's topics can still send one (r.due), or until deadline on the run's clock
// (after which a missing one can only be lost), or until ctx ends. It reports
// whether everything arrived. s must be closed (registry.close).
func (r *registry) linger(ctx context.Context, s *subscription, deadline int64) bool {
	for {
		if s.pendingLen() == 0 && !r.due(s, s.closedAt) {
			return true
		}
		wait := time.Duration(deadline - r.clock.Now())
		if wait <= 0 {
			return false
		}
		t := time.NewTimer(wait)
		select {
		case <-s.changed:
			t.Stop()
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false
		}
	}
}
