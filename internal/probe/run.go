package probe

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// subscriber is one probe subscriber: a connection subscribed to every stream.
type subscriber struct {
	p    *prober
	name string
	rec  *verify.SubscriberRecorder // the group's when g is set
	conn bus.Conn
	rs   *readiness // its own, or the group's
	g    *group     // the share group it is a member of, nil if none

	mu          sync.Mutex // guards the reconnect state below
	down        bool
	reconnectAt int64
	sp          bool // the session was present at the last Connected
}

// readiness is a subscription's readiness per stream: a marker seen.
type readiness struct {
	ready  []atomic.Bool
	nready atomic.Int32
}

// group is a share group: its members subscribe to $share/<name>/<topic>,
// the broker delivers each message to one of them, and all of them record
// into one SubscriberRecorder, so a message is expected once per group: lost
// when no member got it, a duplicate when the group got it twice.
//
// Readiness: the group expects a stream from the first marker any member
// received on it, but never before the last member's SUBACK (the connect
// phase subscribes every member before the barrier publishes a marker).
//
// Epochs: the group is in a disconnect epoch from the moment any member
// loses its connection until every member that lost it is back and
// resubscribed (a member's outage can lose what the broker had routed to
// it, so losses in that interval count as lost during disconnect). Each
// member's return marks the recorder's near-reconnect window (Rejoined); the
// epoch's reconnect time is the last member's; it is kept when every member
// that came back had its session present.
type group struct {
	name    string // the share group's name
	rec     *verify.SubscriberRecorder
	rs      readiness
	members int
	subAck  atomic.Int64 // the latest member SUBACK (run timeline)

	mu    sync.Mutex
	ndown int
	kept  bool
}

// memberDown is a member's Disconnected.
func (g *group) memberDown(now int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ndown == 0 {
		g.rec.Disconnected(now)
		g.kept = true
	}
	g.ndown++
}

// memberBack is a member resubscribed at now after reconnecting at at.
func (g *group) memberBack(at, now int64, kept bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.kept = g.kept && kept
	if g.ndown--; g.ndown > 0 {
		g.rec.Rejoined(at)
		return
	}
	g.ndown = 0
	g.rec.Reconnected(at, now, g.kept)
}

// HandleMessage is the receive hot path: straight into the ledger.
func (s *subscriber) HandleMessage(m bus.Message) {
	now := s.p.clock.Now()
	if s.rec.Deliver(m.Payload, m.Retained, m.Redelivery, now) != verify.Marker {
		return
	}
	var st verify.Stamp
	if verify.Decode(m.Payload, &st) != nil || st.Run != s.p.run || int(st.Publisher) >= len(s.rs.ready) {
		return
	}
	if !s.rs.ready[st.Publisher].Swap(true) {
		// The subscription to this stream is live: expect everything measured from here.
		at := now
		if s.g != nil {
			at = max(at, s.g.subAck.Load())
		}
		s.rec.Expect(st.Publisher, st.Publisher, at)
		s.rs.nready.Add(1)
	}
}

// HandleEvent records connection epochs for the loss split and keeps error examples.
func (s *subscriber) HandleEvent(e bus.Event) {
	now := s.p.clock.Now()
	switch e.Kind {
	case bus.Disconnected:
		s.mu.Lock()
		if !s.down {
			s.down = true
			if s.g != nil {
				s.g.memberDown(now)
			} else {
				s.rec.Disconnected(now)
			}
		}
		s.mu.Unlock()
		if e.Err != nil {
			s.p.noteError("subscriber connection lost", e.Err)
		}
	case bus.Connected:
		s.mu.Lock()
		if s.down {
			s.reconnectAt, s.sp = now, e.SessionPresent
			if !s.p.cfg.ResubscribeOnConnect {
				// Long-poll: the cursor is kept; being back is being subscribed.
				s.down = false
				s.rec.Reconnected(now, now, true)
			}
		}
		s.mu.Unlock()
	case bus.Subscribed:
		s.mu.Lock()
		if s.down && s.reconnectAt != 0 {
			s.down = false
			// MQTT says whether the session was kept on Connected; a stream
			// whether it resumed on Subscribed.
			kept := e.SessionPresent || s.sp
			if s.g != nil {
				s.g.memberBack(s.reconnectAt, now, kept)
			} else {
				s.rec.Reconnected(s.reconnectAt, now, kept)
			}
		}
		s.mu.Unlock()
	case bus.Retrying:
		if e.Err != nil {
			s.p.noteError("subscriber retry", e.Err)
		}
	}
}

// pubHandler only collects publisher-connection errors.
type pubHandler struct{ p *prober }

func (h pubHandler) HandleMessage(bus.Message) {}
func (h pubHandler) HandleEvent(e bus.Event) {
	if (e.Kind == bus.Disconnected || e.Kind == bus.Retrying) && e.Err != nil {
		h.p.noteError("publisher connection", e.Err)
	}
}

// connect dials every publisher and subscriber and subscribes the subscribers.
// The whole phase is bounded (BarrierTimeout + PublishTimeout): a dial or
// subscribe still waiting then is given up, so a silent broker cannot hold the
// probe. Every failure is a *ConnectError (errors.Is ErrConnect) wrapping the
// transport's classified error. Connections that did connect are in p.pubs and
// p.subs for closeAll; the others are nil.
func (p *prober) connect(ctx, connCtx context.Context, dialer bus.Dialer) error {
	short := p.run.String()[:8]
	p.pubs = make([]bus.Conn, p.cfg.Streams)
	p.subs = make([]*subscriber, p.cfg.Subscribers)
	subTopics := p.topics
	var g *group
	if name := p.cfg.ShareGroup; name != "" {
		subTopics = make([]string, len(p.topics))
		for i, t := range p.topics {
			subTopics[i] = "$share/" + name + "/" + t
		}
		g = &group{name: name, rec: p.ledger.Subscriber("$share/" + name), members: len(p.subs)}
		g.rs.ready = make([]atomic.Bool, p.cfg.Streams)
	}
	for j := range p.subs {
		name := fmt.Sprintf("probe-%s-sub-%d", short, j)
		s := &subscriber{p: p, name: name, g: g}
		if g != nil {
			s.rec, s.rs = g.rec, &g.rs
		} else {
			s.rec, s.rs = p.ledger.Subscriber(name), &readiness{ready: make([]atomic.Bool, p.cfg.Streams)}
		}
		p.subs[j] = s
	}
	limit := p.cfg.BarrierTimeout + p.cfg.PublishTimeout
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	// dial opens a connection that lives on connCtx, but gives the dial up
	// when the connect phase ends first.
	dial := func(id string, h bus.Handler) (bus.Conn, error) {
		dctx, dcancel := context.WithCancel(connCtx)
		unwatch := context.AfterFunc(ctx, dcancel)
		c, err := dialer.Dial(dctx, id, h)
		if !unwatch() {
			// The phase ended during the dial: a Conn that made it is
			// already cancelled.
			if c != nil && err == nil {
				c.Close()
			}
			c = nil
			if err == nil {
				err = ctx.Err()
			}
		}
		if err != nil {
			if c != nil {
				c.Close()
			}
			return nil, err
		}
		if c == nil {
			return nil, errors.New("the transport returned no connection")
		}
		return c, nil
	}
	type job func(context.Context) error
	var jobs []job
	var ready atomic.Int32
	for i := range p.pubs {
		jobs = append(jobs, func(ctx context.Context) error {
			c, err := dial(fmt.Sprintf("probe-%s-pub-%d", short, i), pubHandler{p})
			if err != nil {
				return &ConnectError{Op: fmt.Sprintf("connecting publisher %d", i), Err: err}
			}
			p.pubs[i] = c
			ready.Add(1)
			return nil
		})
	}
	for _, s := range p.subs {
		jobs = append(jobs, func(ctx context.Context) error {
			c, err := dial(s.name, s)
			if err != nil {
				return &ConnectError{Op: "connecting subscriber " + s.name, Err: err}
			}
			s.conn = c
			if err := c.Subscribe(ctx, subTopics); err != nil {
				return &ConnectError{Op: "subscribing " + s.name, Err: err}
			}
			if g != nil {
				for at := p.clock.Now(); ; {
					cur := g.subAck.Load()
					if at <= cur || g.subAck.CompareAndSwap(cur, at) {
						break
					}
				}
			}
			ready.Add(1)
			return nil
		})
	}
	// Bounded parallel connects: bursts beyond the broker's listen backlog just stall.
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, j := range jobs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := j(ctx)
			if err == nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			// A failure after the phase ended is a consequence of its end,
			// not its cause (unless nothing else went wrong, see below).
			if first == nil && ctx.Err() == nil {
				first = err
				cancel()
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	if err := ctx.Err(); err != nil {
		total := len(p.pubs) + len(p.subs)
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%d of %d connections ready within %v: %w", ready.Load(), total, limit, err)
		}
		return &ConnectError{Op: "connecting", Err: err}
	}
	for i, c := range p.pubs {
		if c == nil {
			return &ConnectError{Op: fmt.Sprintf("connecting publisher %d", i), Err: errors.New("not connected")}
		}
	}
	return nil
}

// barrier publishes markers on every topic until every subscriber has seen one
// on every topic.
func (p *prober) barrier(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.BarrierTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	want := int32(p.cfg.Streams)
	for seq := uint64(1); ; seq++ {
		ready := 0
		for _, s := range p.subs {
			if s.rs.nready.Load() == want {
				ready++
			}
		}
		if ready == len(p.subs) {
			return nil
		}
		for i, c := range p.pubs {
			now := p.clock.Now()
			st := verify.Stamp{Run: p.run, Publisher: uint32(i), Stream: verify.MarkerStream, Seq: seq, Intended: now, Sent: now}
			// A fresh buffer per marker: a publish that timed out may still be
			// held (and written) by the transport.
			buf := make([]byte, p.cfg.PayloadSize)
			if err := st.Encode(buf); err != nil {
				return err
			}
			pctx, pcancel := context.WithTimeout(ctx, p.cfg.PublishTimeout)
			err := c.Publish(pctx, p.topics[i], buf)
			pcancel()
			if err != nil && ctx.Err() == nil {
				p.noteError("marker publish", err)
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				if p.cfg.ShareGroup != "" {
					return fmt.Errorf("%w: share group %q not ready on every stream after %v (does the broker support shared subscriptions, $share/%s/<topic>?)", ErrBarrier, p.cfg.ShareGroup, p.cfg.BarrierTimeout, p.cfg.ShareGroup)
				}
				return fmt.Errorf("%w: %d of %d subscribers ready after %v", ErrBarrier, ready, len(p.subs), p.cfg.BarrierTimeout)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// pipeliner is a bus.Conn that can hand publishes to its connection in call
// order without waiting for each outcome (mqtt.Conn.PublishAsync): several
// publishes of a stream are in flight and still leave in sequence order.
type pipeliner interface {
	PublishAsync(ctx context.Context, topic string, payload []byte) (wait func() error)
}

// inflight is one publish handed to the connection, waiting for its outcome.
type inflight struct {
	seq  uint64
	buf  []byte
	wait func() error
}

// publishStream paces stream i: the n-th message is due at start + (n-1)/rate.
// It returns the intended time of the first message it did not send.
//
// One sender per stream hands the messages to the connection in sequence
// order, so a delivery out of order is the bus's doing. On a pipelining
// transport (MQTT) up to InFlight publishes wait for their outcome at once;
// on another (long-poll: concurrent requests could reach the bus in any
// order) one at a time.
//
// The sender's lag behind schedule is split in two. Waiting for the bus — for
// a free in-flight slot (earlier publishes not acknowledged yet) or for the
// transport to take the publish — is the bus's backpressure: it shows in the
// latency (a message keeps its intended time) and in publish availability,
// never as the probe's overload. Only the lag the generator adds while the bus
// is ready (a late timer, a starved goroutine) counts as a late send.
func (p *prober) publishStream(ctx context.Context, i int, start int64) int64 {
	conn, topic := p.pubs[i], p.topics[i]
	rec := p.ledger.Stream(uint32(i), uint32(i))
	nsPer := 1e9 / p.cfg.Rate
	pl, _ := conn.(pipeliner)
	slots := 1
	if pl != nil {
		slots = p.cfg.InFlight
	}
	free := make(chan []byte, slots) // a buffer per in-flight slot
	for range slots {
		free <- make([]byte, p.cfg.PayloadSize)
	}
	// settle books a publish's outcome and frees its slot.
	settle := func(seq uint64, buf []byte, err error) {
		outcome := verify.PublishOK
		switch {
		case err == nil:
		case errors.Is(err, bus.ErrUnknownOutcome) || errors.Is(err, context.DeadlineExceeded):
			outcome = verify.PublishUnknown
			// The transport may still hold the buffer: never reuse it.
			buf = make([]byte, p.cfg.PayloadSize)
		default:
			outcome = verify.PublishFailed
		}
		if err != nil {
			p.noteError("publish", err)
		}
		rec.Result(seq, outcome, p.clock.Now())
		free <- buf
	}
	var pending chan inflight
	var wg sync.WaitGroup
	if pl != nil {
		pending = make(chan inflight, slots)
		for range slots {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for f := range pending {
					settle(f.seq, f.buf, f.wait())
				}
			}()
		}
	}
	defer func() {
		if pending != nil {
			close(pending)
		}
		wg.Wait()
		rec.Close(p.clock.Now())
	}()
	// Publishes in flight at the stop still complete: bounded by PublishTimeout.
	pubCtx := context.WithoutCancel(ctx)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for n := uint64(1); ; n++ {
		due := start + int64(float64(n-1)*nsPer)
		var buf []byte
		select {
		case buf = <-free:
		default:
			// Every slot is waiting for the bus.
			select {
			case buf = <-free:
			case <-ctx.Done():
				return due
			}
		}
		ready := p.clock.Now() // the bus can take this publish from here on
		if wait := time.Duration(due - ready); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return due
			case <-timer.C:
			}
			if drift := p.clock.Now() - due; drift > p.health.maxDrift.Load() {
				p.health.maxDrift.Store(drift)
			}
		}
		select {
		case <-ctx.Done():
			return due
		default:
		}
		sent := p.clock.Now()
		p.noteLag(due, sent-max(due, ready))
		p.noteBusWait(ready - due)
		rec.Attempt(n, due)
		st := verify.Stamp{Run: p.run, Publisher: uint32(i), Stream: uint32(i), Seq: n, Intended: due, Sent: sent}
		st.Encode(buf)
		pctx, cancel := context.WithTimeout(pubCtx, p.cfg.PublishTimeout)
		if pl == nil {
			err := conn.Publish(pctx, topic, buf)
			cancel()
			settle(n, buf, err)
			continue
		}
		wait := pl.PublishAsync(pctx, topic, buf)
		pending <- inflight{seq: n, buf: buf, wait: func() error { defer cancel(); return wait() }}
	}
}

// noteBusWait records how far behind schedule the bus held a send (waiting
// for a free slot or the transport); informational, never overload.
func (p *prober) noteBusWait(d int64) {
	for {
		cur := p.health.maxBusWait.Load()
		if d <= cur || p.health.maxBusWait.CompareAndSwap(cur, d) {
			return
		}
	}
}

// noteLag records one send's lag behind its intended time, in total and in the
// window of its intended time (see markOverloaded).
func (p *prober) noteLag(intended, lag int64) {
	var late uint64
	if lag > int64(verify.LateSend) {
		late = 1
	}
	p.noteLags(intended/int64(p.cfg.Ledger.Window), 1, late, lag)
}

// noteLags records sends of window idx, late of them late, the largest lag maxLag.
func (p *prober) noteLags(idx int64, sends, late uint64, maxLag int64) {
	p.health.sends.Add(sends)
	if late > 0 {
		p.health.lateSends.Add(late)
	}
	p.health.winMu.Lock()
	if p.health.windows == nil {
		p.health.windows = map[int64]*windowSends{}
	}
	ws := p.health.windows[idx]
	if ws == nil {
		ws = &windowSends{}
		p.health.windows[idx] = ws
	}
	ws.sends += sends
	ws.late += late
	p.health.winMu.Unlock()
	for {
		cur := p.health.maxLag.Load()
		if maxLag <= cur || p.health.maxLag.CompareAndSwap(cur, maxLag) {
			return
		}
	}
}

// windowSends counts one window's sends and late sends.
type windowSends struct{ sends, late uint64 }

// overloaded reports whether more than 1% of sends were late.
func (w windowSends) overloaded() bool { return verify.Overloaded(w.sends, w.late) }

// markOverloaded turns a window in which the probe itself fell behind (more
// than 1% of its sends started over 100ms late while the bus was ready to
// take them) from fail into inconclusive: its numbers say more about the
// probe than about the bus.
func (p *prober) markOverloaded(w *verify.Window) {
	p.health.winMu.Lock()
	ws, ok := p.health.windows[int64(w.Index)]
	var c windowSends
	if ok {
		c = *ws
	}
	p.health.winMu.Unlock()
	if !c.overloaded() || w.Verdict == verify.Pass {
		return
	}
	w.Verdict = verify.Inconclusive
	w.Reason = fmt.Sprintf("probe overloaded: %d of %d sends late; %s", c.late, c.sends, w.Reason)
}
