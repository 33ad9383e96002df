package verify

import (
	"sync"
	"sync/atomic"
)

// pubStatus is the publish state of one seq.
type pubStatus uint8

const (
	stNone    pubStatus = iota // never attempted (a gap in the seqs): never published
	stPending                  // attempted, outcome not reported yet
	stOK
	stFailed
	stUnknown
)

// pubRec is the publisher's record of one seq that is not final yet.
type pubRec struct {
	intended int64
	status   pubStatus
	// covered: some subscriber expected it (set while finalizing subscribers).
	covered bool
}

// maxJump bounds how far ahead of the lowest non-final seq an Attempt may
// jump; attempts further ahead are ignored (their arrivals are unexpected).
const maxJump = 1 << 20

// StreamRecorder is the publisher side of one (publisher, stream). Its methods
// are safe for concurrent use; the per-stream mutex is only shared with the
// ledger's Advance (never with Deliver).
type StreamRecorder struct {
	l      *Ledger
	key    uint64
	marker bool // MarkerStream: every method is a no-op

	hi atomic.Uint64 // highest attempted seq (read lock-free by Deliver)

	mu     sync.Mutex
	base   uint64   // lowest seq that is not final; every seq below it is final
	recs   []pubRec // ring: seq s lives at recs[s&(len-1)], covering [base, hi]
	closed bool
	// lastIntended is the intended send time of the latest attempt (-1:
	// none). A stream's intended times never decrease, so no later attempt
	// can be due before it.
	lastIntended int64
	released     bool         // closed and final: recs and the subscribers' rings are freed
	subs         []*subStream // subscribers that expect or received this stream

	// finMu guards the final sets below; a leaf lock (Deliver takes it for
	// arrivals of final seqs while holding its subscriber's mutex).
	finMu   sync.Mutex
	failed  intervals // final seqs whose publish failed or that were never attempted
	unknown intervals // final seqs whose publish outcome stayed unknown (or pending)
}

func (p *StreamRecorder) rec(seq uint64) *pubRec { return &p.recs[seq&uint64(len(p.recs)-1)] }

// ensure makes the ring cover [base, seq]. Called with mu held.
func (p *StreamRecorder) ensure(seq uint64) {
	need := seq - p.base + 1
	if uint64(len(p.recs)) >= need {
		return
	}
	n := uint64(len(p.recs))
	if n == 0 {
		n = uint64(p.l.ring)
	}
	for n < need {
		n *= 2
	}
	recs := make([]pubRec, n)
	if len(p.recs) > 0 {
		for s, hi := p.base, p.hi.Load(); s <= hi; s++ {
			recs[s&(n-1)] = *p.rec(s)
		}
	}
	p.recs = recs
}

// Attempt records that seq (intended send time intended) is about to be sent.
// Call it before sending: a delivery of a seq above the highest attempted one
// is unexpected. Seqs start at 1 and increase; skipped seqs count as never
// published. Attempts after Close, for a final seq, or more than 2^20 ahead of
// the oldest non-final seq are ignored.
func (p *StreamRecorder) Attempt(seq uint64, intended int64) {
	if p.marker {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || seq < p.base || seq-p.base >= maxJump {
		return
	}
	hi := p.hi.Load()
	if seq <= hi {
		if r := p.rec(seq); r.status == stNone {
			*r = pubRec{intended: intended, status: stPending}
		}
		return
	}
	p.lastIntended = max(p.lastIntended, intended)
	p.ensure(seq)
	for s := hi + 1; s < seq; s++ {
		*p.rec(s) = pubRec{intended: intended, status: stNone}
	}
	*p.rec(seq) = pubRec{intended: intended, status: stPending}
	p.hi.Store(seq)
}

// Result records the outcome of seq's publish. A result for a seq that is
// already final (its deadline passed while the outcome was pending, so it
// was counted unknown) or never attempted is ignored.
func (p *StreamRecorder) Result(seq uint64, outcome PublishOutcome, now int64) {
	if p.marker {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if seq < p.base || seq > p.hi.Load() || p.released {
		return
	}
	r := p.rec(seq)
	if r.status != stPending {
		return
	}
	switch outcome {
	case PublishOK:
		r.status = stOK
	case PublishFailed:
		r.status = stFailed
	case PublishUnknown:
		r.status = stUnknown
	}
}

// Close says no seq after the last attempted one will be sent. Once every
// attempted seq is final the stream's rings are freed (a small tombstone stays
// so late duplicates are still recognised, up to Config.MaxClosedStreams).
func (p *StreamRecorder) Close(now int64) {
	if p.marker {
		return
	}
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}
