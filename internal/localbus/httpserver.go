package localbus

import (
	"bytes"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// SubscriberHeader names the long-poll subscriber for fault decisions; without
// it the remote address is used.
const SubscriberHeader = "X-Eventswarm-Subscriber"

var (
	pubPrefix = []byte("/pub/")
	subPrefix = []byte("/sub/")
)

// store holds the long-poll channels, their message buffers and waiting polls,
// and the per-subscriber fault state. One mutex guards it all: a message id is
// assigned, appended and announced atomically, so a multiplexed poll never sees
// a later id on one channel before an earlier one on another.
type store struct {
	bufLen     int
	bufTimeout time.Duration
	subIdle    time.Duration
	faults     *Faults // nil when no faults are configured
	counters   *injectedCounters
	start      time.Time

	mu       sync.Mutex
	seq      uint64 // last message id issued
	channels map[string]*channel
	subs     map[string]*subscriber
}

type message struct {
	seq     uint64
	at      time.Time // publish time (wall clock advanced monotonically)
	payload []byte
	ctype   string
	hash    uint64 // payload hash, when faults are configured
	skip    bool   // Faults.Skip said so
}

type channel struct {
	name          string
	buf           []*message // buf[head:] are the live messages, ascending seq
	head          int
	waiters       map[*waiter]struct{}
	lastRequested time.Time
}

// waiter is one held poll.
type waiter struct{ ch chan struct{} }

func (w *waiter) signal() {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// subscriber is the fault state of one long-poll subscriber.
type subscriber struct {
	id       string
	hash     uint64
	decided  map[string]uint64 // per channel: highest id whose fault was decided (and counted)
	pending  []pendingDelivery // delayed and duplicate copies
	lastSeen time.Time
	held     *waiter // a poll of this subscriber currently waiting, if any
}

type pendingDelivery struct {
	due time.Time
	m   *message
}

func (c *channel) msgs() []*message { return c.buf[c.head:] }

// firstAfter is the index into msgs() of the first message with id > seq.
func (c *channel) firstAfter(seq uint64) int {
	ms := c.msgs()
	return sort.Search(len(ms), func(i int) bool { return ms[i].seq > seq })
}

func (c *channel) popFront() {
	c.buf[c.head] = nil
	c.head++
	if c.head == len(c.buf) {
		c.buf, c.head = c.buf[:0], 0
	} else if c.head > 32 && c.head*2 > len(c.buf) {
		n := copy(c.buf, c.buf[c.head:])
		clear(c.buf[n:])
		c.buf, c.head = c.buf[:n], 0
	}
}

// trim drops messages beyond the buffer length or older than the retention.
func (s *store) trim(c *channel, now time.Time) {
	for len(c.msgs()) > s.bufLen {
		c.popFront()
	}
	for len(c.msgs()) > 0 && now.Sub(c.msgs()[0].at) > s.bufTimeout {
		c.popFront()
	}
}

// clock is wall time that never goes backwards (start + monotonic elapsed).
func (s *store) clock() time.Time { return s.start.Add(time.Since(s.start)).Round(0) }

func (s *store) channel(name string) *channel {
	c := s.channels[name]
	if c == nil {
		c = &channel{name: name, waiters: map[*waiter]struct{}{}}
		s.channels[name] = c
	}
	return c
}

// publish stores a message and wakes the polls waiting on its channel. It
// returns how many polls were waiting, the messages now queued and the id.
func (s *store) publish(name string, payload []byte, ctype string, skip func([]byte) bool) (waiting, queued int, seq uint64) {
	m := &message{payload: bytes.Clone(payload), ctype: ctype}
	if s.faults != nil {
		m.hash = hashBytes(m.payload)
		m.skip = skip != nil && skip(m.payload)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	m.seq, m.at = s.seq, s.clock()
	c := s.channel(name)
	c.buf = append(c.buf, m)
	s.trim(c, m.at)
	for w := range c.waiters {
		w.signal()
	}
	return len(c.waiters), len(c.msgs()), m.seq
}

// wakeAll signals every held poll (outage).
func (s *store) wakeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.channels {
		for w := range c.waiters {
			w.signal()
		}
	}
}

// sweep expires old messages, empty channels and idle subscribers.
func (s *store) sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	wall := s.clock()
	for name, c := range s.channels {
		s.trim(c, wall)
		if len(c.msgs()) == 0 && len(c.waiters) == 0 {
			delete(s.channels, name)
		}
	}
	for id, sub := range s.subs {
		if sub.held == nil && now.Sub(sub.lastSeen) > s.subIdle {
			delete(s.subs, id)
		}
	}
}

// delivery is what a poll answers with.
type delivery struct {
	payload []byte
	ctype   string
	etag    uint64
	at      time.Time
}

// next finds the delivery for a poll at cursor on chans, deciding faults for
// sub (nil: no faults). Caller holds s.mu.
func (s *store) next(chans []string, cur uint64, sub *subscriber, now time.Time) (delivery, bool) {
	if sub != nil {
		best := -1
		for i, p := range sub.pending {
			if !p.due.After(now) && (best < 0 || p.due.Before(sub.pending[best].due)) {
				best = i
			}
		}
		if best >= 0 {
			p := sub.pending[best]
			sub.pending = append(sub.pending[:best], sub.pending[best+1:]...)
			// The id stays the poll's cursor: the client resumes where it was.
			return delivery{payload: p.m.payload, ctype: p.m.ctype, etag: cur, at: p.m.at}, true
		}
	}
	var stackIdx [8]int
	var stackChs [8]*channel
	idx, chs := stackIdx[:0], stackChs[:0]
	for _, name := range chans {
		c := s.channels[name]
		if c == nil || len(c.msgs()) == 0 {
			continue
		}
		i := c.firstAfter(cur)
		if i < len(c.msgs()) {
			idx, chs = append(idx, i), append(chs, c)
		}
	}
	for {
		best := -1
		var m *message
		for k, c := range chs {
			if idx[k] < len(c.msgs()) {
				if cand := c.msgs()[idx[k]]; m == nil || cand.seq < m.seq {
					best, m = k, cand
				}
			}
		}
		if m == nil {
			return delivery{}, false
		}
		idx[best]++
		d := delivery{payload: m.payload, ctype: m.ctype, etag: m.seq, at: m.at}
		if sub == nil || m.skip {
			return d, true
		}
		fault, h := s.faults.decide(sub.hash, m.hash)
		name := chs[best].name
		first := m.seq > sub.decided[name]
		di := 0
		if first {
			sub.decided[name] = m.seq
			if (fault == Delay || fault == Duplicate) && len(sub.pending) >= maxPending {
				fault = NoFault // cannot hold it: not injected (see maxPending)
			}
			if fault == Corrupt && len(m.payload) == 0 {
				fault = NoFault
			}
			if fault == Delay {
				di = int(h % uint64(len(s.faults.Delays)))
			}
			s.counters.count(fault, di)
		}
		switch fault {
		case Drop:
			continue
		case Delay:
			if first {
				sub.pending = append(sub.pending, pendingDelivery{due: now.Add(s.faults.Delays[di]), m: m})
				if sub.held != nil {
					sub.held.signal() // another poll of this subscriber may be waiting
				}
			}
			continue
		case Duplicate:
			if first {
				sub.pending = append(sub.pending, pendingDelivery{due: now, m: m})
				if sub.held != nil {
					sub.held.signal()
				}
			}
		case Corrupt:
			d.payload = corrupt(m.payload, h)
		}
		return d, true
	}
}

// nextDue is the earliest due time of sub's pending deliveries.
func (sub *subscriber) nextDue() (time.Time, bool) {
	var t time.Time
	for _, p := range sub.pending {
		if t.IsZero() || p.due.Before(t) {
			t = p.due
		}
	}
	return t, !t.IsZero()
}

func (b *Bus) startHTTP() error {
	ln, err := net.Listen("tcp", b.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("localbus: long-poll listen: %w", err)
	}
	maxDelay := time.Duration(0)
	for _, d := range b.cfg.Faults.Delays {
		maxDelay = max(maxDelay, d)
	}
	b.store = &store{
		bufLen:     b.cfg.BufferLength,
		bufTimeout: b.cfg.BufferTimeout,
		subIdle:    max(2*b.cfg.Hold, 30*time.Second) + maxDelay,
		counters:   &b.injected,
		start:      time.Now(),
		channels:   map[string]*channel{},
		subs:       map[string]*subscriber{},
	}
	if b.faults {
		f := b.cfg.Faults
		b.store.faults = &f
	}
	b.httpLn = newTrackingListener(ln)
	b.httpSrv = &fasthttp.Server{
		Handler:            b.serveHTTP,
		Name:               "localbus",
		Concurrency:        httpConcurrency,
		MaxRequestBodySize: b.cfg.MaxMessageSize + 64<<10, // the handler answers 413 above MaxMessageSize
		CloseOnShutdown:    true,
		Logger:             fasthttpLogger{b.cfg.Logger},
	}
	b.wg.Add(2)
	go func() {
		defer b.wg.Done()
		_ = b.httpSrv.Serve(b.httpLn)
	}()
	go func() {
		defer b.wg.Done()
		b.janitor()
	}()
	return nil
}

// janitor expires old messages, empty channels and idle subscribers until Close.
func (b *Bus) janitor() {
	every := min(time.Second, b.cfg.BufferTimeout)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			return
		case now := <-t.C:
			b.store.sweep(now)
		}
	}
}

func (b *Bus) serveHTTP(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	switch {
	case bytes.HasPrefix(path, pubPrefix):
		if ctx.IsPost() {
			b.httpPubs.Add(1)
		}
		if b.refused(ctx) {
			return
		}
		b.handlePub(ctx, path[len(pubPrefix):])
	case bytes.HasPrefix(path, subPrefix):
		b.httpPolls.Add(1)
		if b.refused(ctx) {
			return
		}
		if k := streamKindOf(ctx); k != 0 {
			b.handleStream(ctx, path[len(subPrefix):], k)
			return
		}
		b.handleSub(ctx, path[len(subPrefix):])
	default:
		ctx.Error("localbus: not found (use /pub/<channel> or /sub/<channel>[,<channel>…])", fasthttp.StatusNotFound)
	}
}

// refused answers during an outage or after Close.
func (b *Bus) refused(ctx *fasthttp.RequestCtx) bool {
	select {
	case <-b.done:
		ctx.SetConnectionClose()
		ctx.Error("localbus: closed", fasthttp.StatusServiceUnavailable)
		return true
	default:
	}
	if st := b.outage.Load(); st != 0 {
		ctx.Error("localbus: outage", int(st))
		return true
	}
	return false
}

func (b *Bus) handlePub(ctx *fasthttp.RequestCtx, ch []byte) {
	names, err := parseChannels(ch)
	if err == nil && len(names) != 1 {
		err = errBadChannel
	}
	if err != nil {
		ctx.Error("localbus: "+err.Error(), fasthttp.StatusBadRequest)
		return
	}
	switch {
	case ctx.IsPost():
	case ctx.IsGet():
		b.channelInfo(ctx, names[0])
		return
	default:
		ctx.Response.Header.Set("Allow", "GET, POST")
		ctx.Error("localbus: method not allowed", fasthttp.StatusMethodNotAllowed)
		return
	}
	body := ctx.PostBody()
	switch {
	case len(body) == 0:
		ctx.Error("localbus: empty message", fasthttp.StatusBadRequest)
		return
	case len(body) > b.cfg.MaxMessageSize:
		ctx.Error("localbus: message too large", fasthttp.StatusRequestEntityTooLarge)
		return
	}
	ctype := string(ctx.Request.Header.ContentType())
	waiting, queued, seq := b.store.publish(names[0], body, ctype, b.cfg.Faults.Skip)
	status := fasthttp.StatusAccepted
	if waiting > 0 {
		status = fasthttp.StatusCreated
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/plain")
	fmt.Fprintf(ctx, "queued messages: %d\nlast requested: 0 sec. ago\nactive subscribers: %d\nlast message id: %d\n", queued, waiting, seq)
}

func (b *Bus) channelInfo(ctx *fasthttp.RequestCtx, name string) {
	s := b.store
	s.mu.Lock()
	c := s.channels[name]
	if c == nil {
		s.mu.Unlock()
		ctx.Error("localbus: no such channel", fasthttp.StatusNotFound)
		return
	}
	queued, waiting := len(c.msgs()), len(c.waiters)
	var last uint64
	if queued > 0 {
		last = c.msgs()[queued-1].seq
	}
	ago := -1
	if !c.lastRequested.IsZero() {
		ago = int(time.Since(c.lastRequested) / time.Second)
	}
	s.mu.Unlock()
	ctx.SetContentType("text/plain")
	fmt.Fprintf(ctx, "queued messages: %d\nlast requested: %d sec. ago\nactive subscribers: %d\nlast message id: %d\n", queued, ago, waiting, last)
}

func (b *Bus) handleSub(ctx *fasthttp.RequestCtx, list []byte) {
	if !ctx.IsGet() {
		ctx.Response.Header.Set("Allow", "GET")
		ctx.Error("localbus: method not allowed", fasthttp.StatusMethodNotAllowed)
		return
	}
	chans, err := parseChannels(list)
	if err != nil {
		ctx.Error("localbus: "+err.Error(), fasthttp.StatusBadRequest)
		return
	}
	s := b.store
	now := time.Now()
	deadline := now.Add(b.cfg.Hold)

	s.mu.Lock()
	cur, err := parseCursor(ctx.Request.Header.Peek("If-None-Match"), ctx.Request.Header.Peek("If-Modified-Since"), s.seq)
	if err != nil {
		s.mu.Unlock()
		ctx.Error("localbus: "+err.Error(), fasthttp.StatusBadRequest)
		return
	}
	seq := s.resolve(cur, chans)
	var sub *subscriber
	if s.faults != nil {
		id := string(ctx.Request.Header.Peek(SubscriberHeader))
		if id == "" {
			id = ctx.RemoteAddr().String()
		}
		sub = s.subs[id]
		if sub == nil {
			sub = &subscriber{id: id, hash: hashString(id), decided: map[string]uint64{}}
			s.subs[id] = sub
		}
	}
	w := &waiter{ch: make(chan struct{}, 1)}
	var registered []*channel
	unregister := func() {
		for _, c := range registered {
			delete(c.waiters, w)
		}
		registered = nil
		if sub != nil && sub.held == w {
			sub.held = nil
		}
	}
	timer := time.NewTimer(b.cfg.Hold)
	defer timer.Stop()
	for {
		// s.mu is held here.
		now = time.Now()
		if sub != nil {
			sub.lastSeen = now
		}
		if st := b.outage.Load(); st != 0 {
			unregister()
			s.mu.Unlock()
			ctx.Error("localbus: outage", int(st))
			return
		}
		d, ok := s.next(chans, seq, sub, now)
		if ok {
			unregister()
			s.mu.Unlock()
			writeDelivery(ctx, d)
			return
		}
		if !now.Before(deadline) {
			unregister()
			s.mu.Unlock()
			ctx.SetStatusCode(fasthttp.StatusRequestTimeout)
			return
		}
		if registered == nil {
			for _, name := range chans {
				c := s.channel(name)
				c.waiters[w] = struct{}{}
				c.lastRequested = now
				registered = append(registered, c)
			}
		}
		wake := deadline
		if sub != nil {
			sub.held = w
			if due, ok := sub.nextDue(); ok && due.Before(wake) {
				wake = due
			}
		}
		s.mu.Unlock()

		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(max(wake.Sub(now), 0))
		select {
		case <-w.ch:
		case <-timer.C:
		case <-b.done:
			s.mu.Lock()
			unregister()
			s.mu.Unlock()
			ctx.SetConnectionClose()
			ctx.Error("localbus: closed", fasthttp.StatusServiceUnavailable)
			return
		}
		s.mu.Lock()
	}
}

// resolve turns a cursor into the id after which the poll delivers. Caller holds s.mu.
func (s *store) resolve(cur cursor, chans []string) uint64 {
	switch cur.kind {
	case fromSeq:
		return cur.seq
	case fromTime:
		first := uint64(0)
		for _, name := range chans {
			c := s.channels[name]
			if c == nil {
				continue
			}
			ms := c.msgs()
			i := sort.Search(len(ms), func(i int) bool { return ms[i].at.Unix() > cur.t })
			if i < len(ms) && (first == 0 || ms[i].seq < first) {
				first = ms[i].seq
			}
		}
		if first > 0 {
			return first - 1
		}
	}
	return s.seq
}

func writeDelivery(ctx *fasthttp.RequestCtx, d delivery) {
	ctx.SetStatusCode(fasthttp.StatusOK)
	h := &ctx.Response.Header
	h.SetLastModified(d.at)
	var buf [20]byte
	h.SetBytesV("Etag", formatEtag(buf[:0], d.etag))
	h.Set("Cache-Control", "no-cache")
	h.Set("Vary", "If-None-Match, If-Modified-Since")
	if d.ctype != "" {
		ctx.SetContentType(d.ctype)
	} else {
		ctx.SetContentType("text/plain")
	}
	ctx.SetBody(d.payload)
}

// fasthttpLogger adapts slog to fasthttp.Logger.
type fasthttpLogger struct {
	l interface{ Debug(string, ...any) }
}

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Debug("fasthttp: " + fmt.Sprintf(format, args...))
}
