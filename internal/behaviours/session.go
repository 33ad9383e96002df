package behaviours

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/stats"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// Topics of a learner ID: its events go to EventTopic, its control messages
// come on ControlTopic.
func EventTopic(id string) string   { return id + ".ev" }
func ControlTopic(id string) string { return id + ".ctl" }

// connID is a connection's client ID: unique per (run, user, connection),
// short enough for strict MQTT 3.1 brokers (23 bytes) in most runs.
func (r *Runner) connID(u *user) string {
	u.conns++
	return "es" + r.cfg.Run.String()[:8] + "-" + strconv.FormatUint(uint64(u.g), 36) + "-" + strconv.FormatUint(u.conns, 36)
}

// sleepUntil waits until the run's clock reaches at, or ctx ends.
func (r *Runner) sleepUntil(ctx context.Context, at int64) error {
	return backoff.Sleep(ctx, time.Duration(at-r.clock.Now()))
}

// stopping reports whether err is only our own stop (ctx cancelled), which is
// not a failure of the bus.
func stopping(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}

// dial opens a connection for u, retrying with backoff until it succeeds or
// pubCtx ends. The connection lives until connCtx ends; if pubCtx ends while
// dialling, connCtx is cancelled too (cancelConn) and dial returns nil. h
// receives the connection's messages and events; sub learns its client ID.
func (r *Runner) dial(pubCtx, connCtx context.Context, cancelConn context.CancelFunc, u *user, h bus.Handler, sub *subscription) bus.Conn {
	for pubCtx.Err() == nil {
		stop := context.AfterFunc(pubCtx, cancelConn)
		id := r.connID(u)
		sub.connID = id
		t0 := time.Now()
		conn, err := r.dialer.Dial(connCtx, id, h)
		d := time.Since(t0)
		aborted := !stop()
		if err == nil {
			if aborted {
				_ = conn.Close()
				return nil
			}
			r.connections.Add(1)
			u.shard.Record(opConnect, d, bus.ClassNone)
			u.bo.Reset()
			return conn
		}
		if aborted || stopping(connCtx, err) {
			return nil
		}
		r.noteRefused(err)
		u.shard.Record(opConnect, d, bus.Classify(err))
		if _, err := u.bo.Wait(pubCtx); err != nil {
			return nil
		}
	}
	return nil
}

// link is a user's connection kept across its sessions (on transports that
// can unsubscribe, unless Config.ReconnectPerSession): each session hands it
// its handler, subscribes on it, and unsubscribes when it ends. On a transport
// that cannot unsubscribe (us nil) the link serves the one session that dialled
// it and is closed when that session ends.
type link struct {
	conn   bus.Conn
	us     bus.Unsubscriber // nil: the connection cannot be kept
	id     string
	cancel context.CancelFunc // ends the connection's lifetime
	r      *Runner
	u      *user
	cur    atomic.Pointer[handler] // the session's, nil between sessions
}

// HandleMessage hands a delivery to the current session if it is on one of
// its topics. A delivery between sessions, or for a topic a session gave up
// (a broker may send what it queued before the UNSUBACK), belonged to a
// subscription that has ended: as on a closed connection, nobody gets it.
func (l *link) HandleMessage(m bus.Message) {
	h := l.cur.Load()
	if h == nil || (m.Topic != "" && !slices.Contains(h.sub.topics, m.Topic)) {
		return
	}
	h.HandleMessage(m)
}

// HandleEvent hands events to the current session; the transport's own
// reconnect attempts count as connects even between sessions.
func (l *link) HandleEvent(e bus.Event) {
	if h := l.cur.Load(); h != nil {
		h.HandleEvent(e)
		return
	}
	if e.Kind == bus.Dialled && !errors.Is(e.Err, context.Canceled) {
		l.u.shard.Record(opConnect, e.Latency, bus.Classify(e.Err))
	}
}

// close closes the connection and forgets it. When the run was interrupted
// it aborts the connection (bus.Aborter) if it can: thousands of users stop at
// once, and the polite goodbye (a write, then the FIN exchange) was a quarter
// of their stop's CPU.
func (l *link) close() {
	l.cur.Store(nil)
	if l.r.leave(l.conn, l.cancel) {
		if l.u.link == l {
			l.u.link = nil
		}
		return
	}
	if a, ok := l.conn.(bus.Aborter); ok && l.r.interrupted() {
		_ = a.Abort()
	} else {
		_ = l.conn.Close()
	}
	l.cancel()
	if l.u.link == l {
		l.u.link = nil
	}
}

// unsubscribeTimeout bounds how long a session waits for its connection to
// give up its topics before the connection is dropped instead.
const unsubscribeTimeout = 10 * time.Second

// release ends a session's use of the link: its topics are unsubscribed and
// the link waits for the next session. If the run is stopping, the transport
// cannot unsubscribe, or the unsubscribe fails (the broker would keep
// sending, or resubscribe a persistent session), the connection is closed
// instead.
func (l *link) release(pubCtx context.Context, topics []string) {
	if l.us != nil && pubCtx.Err() == nil {
		ctx, cancel := context.WithTimeout(pubCtx, unsubscribeTimeout)
		err := l.us.Unsubscribe(ctx, topics)
		cancel()
		if err == nil {
			l.cur.Store(nil)
			return
		}
	}
	l.close()
}

// publish sends one stamped message and records it with the ledger (sr), the
// registry and the stats. It reports whether the bus accepted it. sess is the
// session's context: a publish is never started once the session is stopping,
// and one in flight then has stopGrace to finish (see callContext).
func (r *Runner) publish(sess context.Context, u *user, conn bus.Conn, sr *verify.StreamRecorder, op stats.Op,
	topic string, stream uint32, seq uint64, intended int64, kind byte, id string) bool {
	if sess.Err() != nil {
		return false // the run stopped: no new request (and no attempt recorded)
	}
	if r.beforeSend != nil {
		r.beforeSend()
	}
	sent := r.clock.Now()
	// A user sends one message at a time: it is ready for the next one when
	// the previous publish call returned (a slow bus delays it there, which is
	// the bus's backpressure, not this process's lag).
	r.noteLag(sent - max(intended, u.readyAt))
	st := verify.Stamp{Run: r.cfg.Run, Publisher: u.pub, Stream: stream, Seq: seq, Intended: intended, Sent: sent}
	if err := encodePayload(u.buf, &st, kind, id); err != nil {
		return false // cannot happen: PayloadSize >= MinPayloadSize
	}
	key := msgKey{u.pub, stream, seq}
	sr.Attempt(seq, intended)
	r.reg.attempt(topic, key, intended, u.buf)
	call, release := callContext(sess)
	t0 := time.Now()
	err := conn.Publish(call, topic, u.buf)
	d := time.Since(t0)
	cut := stopping(call, err) // before release ends call
	release()
	now := r.clock.Now()
	u.readyAt = now
	if err == nil {
		sr.Result(seq, verify.PublishOK, now)
		u.shard.Record(op, d, bus.ClassNone)
		return true
	}
	r.reg.failed(topic, key)
	if errors.Is(err, bus.ErrUnknownOutcome) || cut {
		sr.Result(seq, verify.PublishUnknown, now)
		// The transport may still hold the payload (an MQTT retransmission):
		// never write into it again.
		u.buf = make([]byte, r.cfg.PayloadSize)
	} else {
		sr.Result(seq, verify.PublishFailed, now)
	}
	if !cut && sess.Err() == nil {
		// (a publish cut short by the stop is not the bus's failure)
		u.shard.Record(op, d, bus.Classify(err))
	}
	return false
}

// noteLag records one paced send that this process started lag ns behind its
// schedule (its intended time, or when its user was ready if that was later).
func (r *Runner) noteLag(lag int64) {
	r.sends.Add(1)
	if lag > int64(verify.LateSend) {
		r.lateSends.Add(1)
	}
	for {
		cur := r.maxLag.Load()
		if lag <= cur || r.maxLag.CompareAndSwap(cur, lag) {
			return
		}
	}
}

// sendLag is the generator's lag so far.
func (r *Runner) sendLag() verify.SendLag {
	return verify.SendLag{Sends: r.sends.Load(), LateSends: r.lateSends.Load(), MaxSendLagMS: float64(r.maxLag.Load()) / 1e6}
}

// stopGrace is how long a publish already in flight when the run stops may
// still wait for its acknowledgement, so that a stop does not turn it into an
// unknown outcome.
const stopGrace = 250 * time.Millisecond

// callContext returns the context of one publish call of session sess, and a
// func releasing it: sess ends when the session must stop (no new publish
// starts), the call stopGrace later (a publish in flight may finish). It is
// made per call, not per session, so an idle user holds none.
func callContext(sess context.Context) (context.Context, func()) {
	call, cancel := context.WithCancel(context.WithoutCancel(sess))
	stop := context.AfterFunc(sess, func() { time.AfterFunc(stopGrace, cancel) })
	return call, func() { stop(); cancel() }
}

// subscribeAndConfirm subscribes conn to sub's topics, retrying with backoff,
// then confirms the subscription in the registry: at once on MQTT (SUBACK),
// after a readiness marker on long-poll. It returns when confirmed or when
// ctx ends. It runs on its own goroutine, with its own backoff and buffer.
func (r *Runner) subscribeAndConfirm(ctx context.Context, u *user, seed uint64, conn bus.Conn, h *handler, sub *subscription) {
	rnd := rand.New(rand.NewPCG(r.cfg.Seed^0x5eed, seed))
	bo := backoff.New(u.bo.Config(), rnd.Int64N)
	for {
		t0 := time.Now()
		err := conn.Subscribe(ctx, sub.topics)
		d := time.Since(t0)
		if err == nil {
			u.shard.Record(opSubscribe, d, bus.ClassNone)
			break
		}
		if stopping(ctx, err) {
			return
		}
		r.noteRefused(err)
		u.shard.Record(opSubscribe, d, bus.Classify(err))
		if _, err := bo.Wait(ctx); err != nil {
			return
		}
	}
	if !r.cfg.LongPoll {
		r.reg.confirm(sub)
		return
	}
	// Long-poll readiness barrier: markers on the first topic until one comes back.
	buf := make([]byte, r.cfg.PayloadSize)
	t0 := time.Now()
	h.markerFrom.Store(u.markers + 1)
	for i := 0; i < r.cfg.MarkerAttempts; i++ {
		u.markers++
		now := r.clock.Now()
		st := verify.Stamp{Run: r.cfg.Run, Publisher: u.pub, Stream: verify.MarkerStream, Seq: u.markers, Intended: now, Sent: now}
		if err := encodePayload(buf, &st, kindMarker, ""); err != nil {
			return
		}
		err := conn.Publish(ctx, sub.topics[0], buf)
		if err != nil {
			if stopping(ctx, err) {
				return
			}
			u.shard.Record(opReady, time.Since(t0), bus.Classify(err))
			if errors.Is(err, bus.ErrUnknownOutcome) {
				buf = make([]byte, r.cfg.PayloadSize)
			}
			if _, err := bo.Wait(ctx); err != nil {
				return
			}
			continue
		}
		bo.Reset()
		// Wait longer for each marker: the first usually only has to
		// outrun the poll's registration by one round trip.
		t := time.NewTimer(min(r.cfg.MarkerWait, markerFirstWait<<i))
		select {
		case <-h.marker:
			t.Stop()
			r.reg.confirm(sub)
			u.shard.Record(opReady, time.Since(t0), bus.ClassNone)
			return
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	u.shard.Record(opReady, time.Since(t0), bus.ClassTimeout)
}

// markerFirstWait is how long a subscriber waits for its first readiness
// marker; each next one waits twice as long, up to Config.MarkerWait.
const markerFirstWait = 50 * time.Millisecond

// endSubscription stops expecting new messages, lingers until everything
// expected has arrived (or can only be lost, or ctx ends), and forgets sub.
func (r *Runner) endSubscription(ctx context.Context, sub *subscription) {
	r.reg.close(sub)
	r.reg.linger(ctx, sub, sub.closedAt+r.lingerFor)
	if r.cfg.MinLinger > 0 {
		_ = r.sleepUntil(ctx, sub.closedAt+int64(r.cfg.MinLinger))
	}
	r.reg.remove(sub)
}

// session is what a learner or proctor session opens: a subscriber in ledger,
// its connection, and the subscribe attempt running beside the session's work.
type session struct {
	r       *Runner
	pubCtx  context.Context
	ctx     context.Context // the session's subscriber context
	cancel  context.CancelFunc
	sub     *subscription
	conn    bus.Conn
	link    *link // conn's link (the user's kept connection, or one closed with the session), nil with ReconnectPerSession
	stopTry context.CancelFunc
	wg      sync.WaitGroup
}

// openSession gets user u's connection for one session (kind names the
// subscriber, n numbers the session) and starts subscribing to topics in
// parallel: on the user's kept connection if it has one, else on a new one
// (kept for the next sessions when the transport can unsubscribe). It returns
// nil if no connection could be made before the run stopped.
func (r *Runner) openSession(pubCtx, subCtx context.Context, u *user, ledger *verify.Ledger, kind string, n uint64, topics []string,
	onMessage func(byte, []byte, *verify.Stamp)) *session {
	s := &session{r: r, pubCtx: pubCtx}
	s.ctx, s.cancel = context.WithCancel(subCtx)
	rec := ledger.Subscriber(kind + "-" + strconv.Itoa(u.g) + "-" + strconv.FormatUint(n, 10))
	s.sub = newSubscription(rec, topics)
	h := newHandler(r, u, s.sub, onMessage)
	switch {
	case u.link != nil:
		s.link, s.conn = u.link, u.link.conn
		s.sub.connID = s.link.id
		s.link.cur.Store(h)
	case r.cfg.ReconnectPerSession:
		s.conn = r.dial(pubCtx, s.ctx, s.cancel, u, h, s.sub)
	default:
		// The connection outlives the session: its lifetime is the user's
		// subscriber context, and the link routes to the current session.
		// Only close ends it (not subCtx: on a stop, the user's own close
		// decides between a goodbye and an abort).
		lctx, lcancel := context.WithCancel(context.WithoutCancel(subCtx))
		l := &link{r: r, u: u, cancel: lcancel}
		l.cur.Store(h)
		s.conn = r.dial(pubCtx, lctx, lcancel, u, l, s.sub)
		if s.conn == nil {
			lcancel()
			break
		}
		// The user keeps it if the transport can unsubscribe; else the
		// session owns it (release closes it).
		l.conn, l.id = s.conn, s.sub.connID
		s.link = l
		if us, ok := s.conn.(bus.Unsubscriber); ok {
			l.us, u.link = us, l
		}
	}
	if s.conn == nil {
		rec.Close(r.clock.Now())
		s.cancel()
		return nil
	}
	// Counted once it has a connection: a session the stop caught while
	// dialling never opened (and made no connection to count beside it).
	r.sessions.Add(1)
	tryCtx, stopTry := context.WithCancel(pubCtx)
	s.stopTry = stopTry
	seed := uint64(u.g)<<32 | n
	s.wg.Go(func() {
		defer stopTry() // confirmed (or stopped): an idle session holds no attempt context
		r.subscribeAndConfirm(tryCtx, u, seed, s.conn, h, s.sub)
	})
	return s
}

// finish ends the subscribe attempt and the subscription (draining what it
// still expects, see endSubscription) once the session's work is done.
func (s *session) finish() {
	s.stopTry()
	s.wg.Wait()
	s.r.endSubscription(s.ctx, s.sub)
}

// close releases the session: the subscribe attempt, the connection (kept for
// the user's next session if it can be), the context.
func (s *session) close() {
	s.stopTry()
	s.wg.Wait()
	switch {
	case s.link != nil:
		s.link.release(s.pubCtx, s.sub.topics)
	case s.r.leave(s.conn, s.cancel):
		return
	default:
		s.conn.Close()
	}
	s.cancel()
}

// learnerSession runs one learner session. It reports whether it started
// (got a connection).
func (r *Runner) learnerSession(pubCtx, subCtx context.Context, u *user) bool {
	cfg := &r.cfg
	id := r.pool.TakeLearner()
	defer r.pool.ReturnLearner(id)
	u.sessions++
	stream := u.sessions
	evTopic, ctlTopic := EventTopic(id), ControlTopic(id)

	// Subscribe to the control topic in parallel with publishing.
	sess := r.openSession(pubCtx, subCtx, u, r.control, "learner", uint64(stream), []string{ctlTopic}, nil)
	if sess == nil {
		return false
	}
	defer sess.close()
	conn := sess.conn
	sr := r.events.Stream(u.pub, stream)
	next := r.clock.Now() + int64(cfg.LearnerInterval.pick(u.rnd))
	r.reg.startStream(evTopic, u.pub, stream, next)
	var seq uint64
items:
	for item := 0; item <= cfg.Items; item++ {
		kind := byte(kindEvent)
		if item == cfg.Items {
			kind = kindFinished
		}
		if item > 0 {
			next += int64(cfg.LearnerInterval.pick(u.rnd))
			r.reg.reserve(evTopic, u.pub, stream, next)
		}
		if r.sleepUntil(pubCtx, next) != nil {
			break
		}
		// Retry the item (as a new seq) until the bus takes it.
		for {
			seq++
			if r.publish(sess.ctx, u, conn, sr, opPublish, evTopic, stream, seq, next, kind, id) {
				u.bo.Reset()
				break
			}
			d := u.bo.Next()
			r.reg.reserve(evTopic, u.pub, stream, r.clock.Now()+int64(d))
			if backoff.Sleep(pubCtx, d) != nil {
				break items
			}
			next = r.clock.Now()
		}
	}
	sr.Close(r.clock.Now())
	r.reg.endStream(evTopic, u.pub, stream)
	sess.finish()
	return true
}

// learnerState is a proctor's view of one of its learner IDs.
type learnerState struct {
	id       string
	ctlTopic string
	live     bool // an event of a learner on this ID arrived
	finished bool // its "finished" event arrived

	// Owned by the proctor's control loop.
	stream uint32
	sr     *verify.StreamRecorder
	seq    uint64
	closed bool
}

// proctorState tracks a proctor session's learners from its handler.
type proctorState struct {
	mu        sync.Mutex
	byID      map[string]*learnerState
	list      []*learnerState
	remaining int
	done      chan struct{} // closed when every learner finished
}

func (ps *proctorState) onMessage(kind byte, id []byte, _ *verify.Stamp) {
	if kind != kindEvent && kind != kindFinished {
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	l := ps.byID[string(id)]
	if l == nil || l.finished {
		return
	}
	if kind == kindEvent {
		l.live = true
		return
	}
	l.finished, l.live = true, false
	ps.remaining--
	if ps.remaining == 0 {
		close(ps.done)
	}
}

// pick returns up to n random live, unfinished learners, and the finished
// ones whose control stream is still open.
func (ps *proctorState) pick(rnd *rand.Rand, n int) (live, finished []*learnerState) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, l := range ps.list {
		switch {
		case l.finished && l.sr != nil && !l.closed:
			finished = append(finished, l)
		case l.live:
			live = append(live, l)
		}
	}
	rnd.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
	if len(live) > n {
		live = live[:n]
	}
	return live, finished
}

// proctorSession runs one proctor session. It reports whether it started.
func (r *Runner) proctorSession(pubCtx, subCtx context.Context, u *user) bool {
	cfg := &r.cfg
	ids := r.pool.TakeForProctor(cfg.LearnersPerProctor)
	defer r.pool.ReleaseProctor(ids)
	u.sessions++
	ps := &proctorState{byID: make(map[string]*learnerState, len(ids)), remaining: len(ids), done: make(chan struct{})}
	topics := make([]string, len(ids))
	for i, id := range ids {
		topics[i] = EventTopic(id)
		l := &learnerState{id: id, ctlTopic: ControlTopic(id)}
		ps.byID[id] = l
		ps.list = append(ps.list, l)
	}

	sess := r.openSession(pubCtx, subCtx, u, r.events, "proctor", uint64(u.sessions), topics, ps.onMessage)
	if sess == nil {
		return false
	}
	defer sess.close()
	conn := sess.conn
	closeStream := func(l *learnerState) {
		if l.sr != nil && !l.closed {
			l.closed = true
			l.sr.Close(r.clock.Now())
			r.reg.endStream(l.ctlTopic, u.pub, l.stream)
		}
	}
	timeout := time.NewTimer(cfg.ProctorTimeout)
	defer timeout.Stop()
	// reserveAll tells the registry that no open control stream sends
	// anything intended before next (see registry.reserve).
	reserveAll := func(next int64) {
		for _, l := range ps.list {
			if l.sr != nil && !l.closed {
				r.reg.reserve(l.ctlTopic, u.pub, l.stream, next)
			}
		}
	}
	next := r.clock.Now()
control:
	for {
		next += int64(cfg.ControlInterval.pick(u.rnd))
		reserveAll(next)
		tick := time.NewTimer(time.Duration(next - r.clock.Now()))
		select {
		case <-pubCtx.Done():
			tick.Stop()
			break control
		case <-ps.done:
			tick.Stop()
			break control
		case <-timeout.C:
			tick.Stop()
			break control
		case <-tick.C:
		}
		live, finished := ps.pick(u.rnd, cfg.ControlFanout)
		for _, l := range finished {
			closeStream(l)
		}
		for _, l := range live {
			if l.sr == nil {
				u.streams++
				l.stream = u.streams
				l.sr = r.control.Stream(u.pub, l.stream)
				r.reg.startStream(l.ctlTopic, u.pub, l.stream, next)
			}
			l.seq++
			if r.publish(sess.ctx, u, conn, l.sr, opControl, l.ctlTopic, l.stream, l.seq, next, kindControl, l.id) {
				u.bo.Reset()
				continue
			}
			// A failed control message is not resent; back off before the next.
			d := u.bo.Next()
			next = r.clock.Now() + int64(d)
			reserveAll(next)
			if backoff.Sleep(pubCtx, d) != nil {
				break control
			}
		}
	}
	for _, l := range ps.list {
		closeStream(l)
	}
	sess.finish()
	return true
}

// handler receives one session's messages and connection events.
type handler struct {
	r         *Runner
	u         *user
	sub       *subscription
	onMessage func(kind byte, id []byte, st *verify.Stamp)

	// markerFrom: our markers with seq >= markerFrom prove readiness (0: none expected).
	markerFrom atomic.Uint64
	marker     chan struct{}

	mu     sync.Mutex
	down   bool  // disconnected, not yet back
	connAt int64 // when the connection came back
}

func newHandler(r *Runner, u *user, sub *subscription, onMessage func(byte, []byte, *verify.Stamp)) *handler {
	return &handler{r: r, u: u, sub: sub, onMessage: onMessage, marker: make(chan struct{}, 1)}
}

// HandleMessage records a delivery with the ledger and the pending set.
func (h *handler) HandleMessage(m bus.Message) {
	now := h.r.clock.Now()
	a := h.sub.rec.Deliver(m.Payload, m.Retained, m.Redelivery, now)
	switch a {
	case verify.Corrupt, verify.Foreign, verify.Retained:
		return
	}
	var st verify.Stamp
	if verify.Decode(m.Payload, &st) != nil || st.Run != h.r.cfg.Run {
		return
	}
	if st.Stream == verify.MarkerStream {
		if from := h.markerFrom.Load(); st.Publisher == h.u.pub && from != 0 && st.Seq >= from {
			select {
			case h.marker <- struct{}{}:
			default:
			}
		}
		return
	}
	h.sub.arrived(msgKey{st.Publisher, st.Stream, st.Seq})
	if h.onMessage != nil {
		kind, id := payloadKind(m.Payload)
		h.onMessage(kind, id, &st)
	}
}

// HandleEvent counts long-poll cycles and the transport's reconnect attempts,
// and records reconnects with the ledger.
func (h *handler) HandleEvent(e bus.Event) {
	switch e.Kind {
	case bus.Polled:
		switch {
		case e.Err == nil && e.Status == 200:
			h.u.shard.Record(opPoll200, e.Latency, bus.ClassNone)
			h.back(true)
		case e.Err == nil && (e.Status == 408 || e.Status == 304):
			h.u.shard.Record(opPoll408, e.Latency, bus.ClassNone)
			h.back(true)
		case errors.Is(e.Err, context.Canceled):
			// our own stop
		default:
			err := e.Err
			if err == nil {
				err = &bus.StatusError{Status: e.Status}
			}
			h.u.shard.Record(opPollError, e.Latency, bus.Classify(err))
		}
	case bus.Disconnected:
		if errors.Is(e.Err, context.Canceled) {
			return
		}
		h.mu.Lock()
		if !h.down {
			h.down = true
			h.sub.rec.Disconnected(h.r.clock.Now())
		}
		h.mu.Unlock()
	case bus.Dialled:
		// The transport's own reconnect attempt: counted with Dial's connects.
		if errors.Is(e.Err, context.Canceled) {
			return
		}
		h.u.shard.Record(opConnect, e.Latency, bus.Classify(e.Err))
	case bus.Connected:
		h.mu.Lock()
		if h.down {
			h.connAt = h.r.clock.Now()
		}
		h.mu.Unlock()
	case bus.Subscribed:
		h.back(e.SessionPresent || h.r.cfg.LongPoll)
	}
}

// back records that a disconnected subscriber is subscribed again.
func (h *handler) back(kept bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.down {
		return
	}
	now := h.r.clock.Now()
	at := h.connAt
	if at == 0 {
		at = now
	}
	h.sub.rec.Reconnected(at, now, kept)
	h.down, h.connAt = false, 0
}
