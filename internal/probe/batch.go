package probe

import (
	"context"
	"errors"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// batchStream is one stream paced by publishBatched.
type batchStream struct {
	i       int
	b       bus.Batcher
	topic   string
	rec     *verify.StreamRecorder
	n       uint64 // next seq
	blocked int64  // when every in-flight slot was found taken (0 = not waiting)
	resumed int64  // the wake-up that found a slot free again after blocked
	// in flight, oldest first: a ring of InFlight entries
	seqs []uint64
	pend []bus.Pending
	h, k int
}

func (s *batchStream) due(start int64, nsPer float64) int64 {
	return start + int64(float64(s.n-1)*nsPer)
}

// publishBatched paces every stream from one goroutine when every publisher
// is a bus.Batcher (MQTT). At each wake-up it hands each stream every message
// due by then and flushes each connection once: a tick's messages leave in
// one write per stream instead of one write and one wake-up per message,
// which is most of a paced sender's cost. It sleeps until the next message is
// due, but at least Tick after the last wake-up, so a message leaves at most
// Tick after its intended time (the latency counts from the intended time
// all the same). It returns the intended time of the first message not sent,
// over all streams (the measurement's end).
//
// The split of a sender's lag is publishStream's: a stream whose InFlight
// slots are all waiting for the bus is the bus's backpressure (bus wait);
// only the lag added while the bus was ready counts as a late send.
func (p *prober) publishBatched(ctx context.Context, start int64) int64 {
	nsPer := 1e9 / p.cfg.Rate
	slots := p.cfg.InFlight
	streams := make([]*batchStream, len(p.pubs))
	for i := range p.pubs {
		streams[i] = &batchStream{
			i: i, b: p.pubs[i].(bus.Batcher), topic: p.topics[i],
			rec: p.ledger.Stream(uint32(i), uint32(i)), n: 1,
			seqs: make([]uint64, slots), pend: make([]bus.Pending, slots),
		}
	}
	buf := make([]byte, p.cfg.PayloadSize) // Enqueue copies it into the write queue
	// Publishes in flight at the stop still complete: bounded by PublishTimeout.
	pubCtx := context.WithoutCancel(ctx)
	settle := func(s *batchStream, block bool) {
		for s.k > 0 {
			pd := s.pend[s.h]
			if !block && !pd.Done() {
				return
			}
			err := pd.Wait()
			outcome := verify.PublishOK
			switch {
			case err == nil:
			case errors.Is(err, bus.ErrUnknownOutcome) || errors.Is(err, context.DeadlineExceeded):
				outcome = verify.PublishUnknown
			default:
				outcome = verify.PublishFailed
			}
			if err != nil {
				p.noteError("publish", err)
			}
			s.rec.Result(s.seqs[s.h], outcome, p.clock.Now())
			s.pend[s.h] = nil
			s.h = (s.h + 1) % slots
			s.k--
		}
	}
	defer func() {
		for _, s := range streams {
			settle(s, true)
			s.rec.Close(p.clock.Now())
		}
	}()
	tick := int64(p.cfg.Tick)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var lags lagBatch
	for {
		if ctx.Err() != nil {
			break
		}
		wake := p.clock.Now()
		next := int64(-1) // the earliest due time not reached
		for _, s := range streams {
			settle(s, false)
			sent := 0
			now := p.clock.Now() // one reading for the stream's batch: its messages leave in one write
			for {
				due := s.due(start, nsPer)
				if due > now {
					if next < 0 || due < next {
						next = due
					}
					break
				}
				if s.k == slots && sent > 0 {
					// Write what this wake-up queued: at QoS 0 that frees
					// its slots.
					s.b.Flush()
					sent = 0
					settle(s, false)
				}
				if s.k == slots {
					// Every slot is waiting for the bus.
					if s.blocked == 0 {
						s.blocked = now
					}
					if next < 0 || now+tick < next {
						next = now + tick
					}
					break
				}
				if s.blocked != 0 {
					s.resumed, s.blocked = wake, 0
				}
				// A message due while the bus held the stream back is
				// ready from when the bus let it go (its lag until then
				// is the bus's, as publishStream books it).
				ready := max(due, s.resumed)
				if ready > due {
					p.noteBusWait(ready - due)
				}
				if ctx.Err() != nil {
					break
				}
				lags.note(p, due, now-ready)
				s.rec.Attempt(s.n, due)
				st := verify.Stamp{Run: p.run, Publisher: uint32(s.i), Stream: uint32(s.i), Seq: s.n, Intended: due, Sent: now}
				st.Encode(buf)
				j := (s.h + s.k) % slots
				s.seqs[j], s.pend[j] = s.n, s.b.Enqueue(pubCtx, s.topic, buf)
				s.k++
				s.n++
				sent++
			}
			if sent > 0 {
				s.b.Flush()
			}
		}
		lags.flush(p)
		if ctx.Err() != nil {
			break
		}
		at := max(next, wake+tick)
		if next < 0 {
			at = wake + tick
		}
		if wait := time.Duration(at - p.clock.Now()); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
			case <-timer.C:
				if drift := p.clock.Now() - at; drift > p.health.maxDrift.Load() {
					p.health.maxDrift.Store(drift)
				}
			}
		}
	}
	end := int64(0)
	for _, s := range streams {
		end = max(end, s.due(start, nsPer))
	}
	return end
}

// lagBatch gathers noteLag's counts for the sends of one wake-up, so that
// the window map is locked once per wake-up, not once per send.
type lagBatch struct {
	idx         int64
	sends, late uint64
	max         int64
	any         bool
}

func (b *lagBatch) note(p *prober, intended, lag int64) {
	idx := intended / int64(p.cfg.Ledger.Window)
	if b.any && idx != b.idx {
		b.flush(p)
	}
	b.idx, b.any = idx, true
	b.sends++
	if lag > int64(verify.LateSend) {
		b.late++
	}
	b.max = max(b.max, lag)
}

func (b *lagBatch) flush(p *prober) {
	if !b.any {
		return
	}
	p.noteLags(b.idx, b.sends, b.late, b.max)
	*b = lagBatch{}
}
