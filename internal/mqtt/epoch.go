package mqtt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
)

// maxSlots bounds a connection's QoS 1/2 window: packet IDs 1..maxSlots-1
// are used for publishes; subscribeIDBase and up for SUBSCRIBE.
const (
	maxSlots        = 1 << 15
	firstSlots      = 16
	subscribeIDBase = 0xff00
	keepWriteBuf    = 64 << 10 // a write buffer larger than this is dropped after its flush
)

// epoch is one TCP connection of a Conn, from CONNACK to its loss. Its reader
// (the Conn's goroutine) frames packets and calls the handler; its writer is
// whoever calls flushLocked: a publisher, the reader (acknowledgements, before
// it blocks on a read) or the keeper (PINGREQ). Bytes are appended to wbuf
// under mu; one flusher at a time writes the whole of wbuf in one syscall and
// loops while more was appended meanwhile, so writes batch under load.
type epoch struct {
	c    *Conn
	conn net.Conn
	rd   *reader // the reader goroutine's only

	topics map[string]string // delivery topics seen, so a topic string is not allocated per message

	// Set at connect, read-only after: the protocol and what the broker's
	// CONNACK allows (MQTT 5; 3.1.1 has no such limits).
	v5        bool
	maxOut    int   // the broker's Maximum Packet Size (whole packet), 0 = none
	window    int   // QoS 1/2 publishes in flight at most: the broker's Receive Maximum
	keepAlive int64 // ns: ours, or the broker's Server Keep Alive

	mu        sync.Mutex
	cond      sync.Cond // QoS 0 waiters: written advanced or werr set
	condWait  int
	wbuf      []byte // bytes waiting to be written
	spare     []byte // the other buffer, swapped in while wbuf is written
	flushing  bool
	queued    uint64 // bytes appended since the connection began
	written   uint64 // bytes written
	werr      error  // the first write error, or errEpochDead
	wdeadline int64  // the write deadline last set (unix ns)
	lastWrite int64  // when the last write ended (unix ns)
	pingAt    int64  // when the outstanding PINGREQ was queued, 0 if none
	dead      bool
	deadCh    chan struct{} // closed when dead
	cause     error         // why the connection was dropped by us (kill)
	armed     bool          // ftimer will flush
	ftimer    *time.Timer   // Config.Linger's, made on first use

	slots      []*pub // by packet ID: the publish waiting for its acknowledgement, zombie, or nil
	used       int    // non-nil slots
	nextID     uint16
	fifo       ring // QoS 1/2 publishes in send order, for expiry
	space      chan struct{}
	spaceWait  int
	subID      uint16
	subacks    chan suback
	readerDone chan struct{}
}

// suback is a SUBACK (codes, one per topic) or an UNSUBACK (unsub).
type suback struct {
	id     uint16
	codes  []byte
	reason string // MQTT 5 Reason String, quoted, or ""
	unsub  bool
}

// zombie marks a packet ID whose publish expired (outcome unknown) but whose
// acknowledgement may still come: the ID is not reused until it does or the
// connection ends.
var zombie = &pub{}

var errEpochDead = errors.New("mqtt: connection lost")

func newEpoch(c *Conn, conn net.Conn, ca connack) *epoch {
	cfg := &c.client.cfg
	e := &epoch{
		v5:         c.client.v5,
		window:     maxSlots - 1,
		keepAlive:  int64(cfg.KeepAlive),
		c:          c,
		conn:       conn,
		deadCh:     make(chan struct{}),
		subacks:    make(chan suback, 1),
		nextID:     1,
		readerDone: make(chan struct{}),
		lastWrite:  time.Now().UnixNano(),
	}
	if e.v5 {
		e.maxOut = int(min(ca.maxPacket, 1<<31-1))
		if ca.receiveMax > 0 {
			e.window = min(e.window, int(ca.receiveMax))
		}
		if ca.keepAlive >= 0 {
			e.keepAlive = int64(ca.keepAlive) * int64(time.Second)
		}
	}
	e.cond.L = &e.mu
	e.rd = newReader(conn, c.client.cfg.MaxPacketSize)
	e.rd.beforeRead = e.flushPending
	e.rd.linger = c.client.cfg.Linger
	return e
}

// flushPending writes what is queued (acknowledgements) if nobody is writing:
// the reader calls it before it blocks on the socket.
func (e *epoch) flushPending() {
	e.mu.Lock()
	if len(e.wbuf) > 0 {
		e.flushLocked()
	}
	e.mu.Unlock()
}

// flush is flushPending for the keeper's PINGREQ, on a goroutine of its own.
func (e *epoch) flush() { e.flushPending() }

// flushLocked writes wbuf unless another goroutine is writing (it will write
// what was appended). Called and returns with mu held; mu is released during
// the write.
func (e *epoch) flushLocked() {
	if e.flushing || e.werr != nil {
		return
	}
	e.flushing = true
	timeout := int64(e.c.client.cfg.PublishTimeout)
	for len(e.wbuf) > 0 && e.werr == nil {
		b := e.wbuf
		e.wbuf = e.spare[:0]
		e.spare = nil
		now := time.Now().UnixNano()
		setDL := e.wdeadline-now < timeout/2
		if setDL {
			e.wdeadline = now + timeout
		}
		dl := e.wdeadline
		e.mu.Unlock()
		var err error
		if setDL {
			err = e.conn.SetWriteDeadline(time.Unix(0, dl))
		}
		if err == nil {
			_, err = e.conn.Write(b)
		}
		e.mu.Lock()
		if cap(b) <= keepWriteBuf {
			e.spare = b[:0]
		}
		e.written += uint64(len(b))
		e.lastWrite = time.Now().UnixNano()
		if err != nil {
			e.werr = fmt.Errorf("mqtt: write: %w", err)
			e.written -= uint64(len(b)) // not known to be written
		}
		if e.condWait > 0 {
			e.cond.Broadcast()
		}
	}
	e.flushing = false
	if e.werr != nil && !e.dead {
		// Reading would go on; a connection we cannot write to is lost.
		_ = e.conn.Close()
	}
}

// kill drops the connection with cause (reported as the Disconnected error).
func (e *epoch) kill(cause error) {
	e.mu.Lock()
	if e.cause == nil {
		e.cause = cause
	}
	e.mu.Unlock()
	_ = e.conn.Close()
}

// allocID returns a free packet ID, or 0 when the window is full. Called with mu.
func (e *epoch) allocID() uint16 {
	if e.used >= e.window {
		return 0 // the broker's Receive Maximum
	}
	if e.used*2 >= len(e.slots) && len(e.slots) < maxSlots {
		n := max(firstSlots, 2*len(e.slots))
		s := make([]*pub, n)
		copy(s, e.slots)
		e.slots = s
	}
	n := len(e.slots)
	id := e.nextID
	for range n {
		if id == 0 || int(id) >= n {
			id = 1
		}
		if e.slots[id] == nil {
			e.nextID = id + 1
			return id
		}
		id++
	}
	return 0
}

// slot is the occupant of packet ID id, or nil. Called with mu.
func (e *epoch) slot(id uint16) *pub {
	if int(id) < len(e.slots) {
		return e.slots[id]
	}
	return nil
}

// freeID frees packet ID id and wakes a publisher waiting for room. Called with mu.
func (e *epoch) freeID(id uint16) {
	e.slots[id] = nil
	e.used--
	if e.spaceWait > 0 {
		select {
		case e.space <- struct{}{}:
		default:
		}
	}
}

// complete ends p with err (nil: accepted). Called with mu.
func (e *epoch) complete(p *pub, err error) {
	p.err = err
	p.state = stDone
	select {
	case p.done <- struct{}{}:
	default:
	}
}

// popDone drops finished publishes from the head of the send-order queue. Called with mu.
func (e *epoch) popDone() {
	for e.fifo.n > 0 {
		p := e.fifo.head()
		if p.state != stDone {
			return
		}
		e.fifo.pop()
		p.release()
	}
}

// send queues one PUBLISH of p and writes it unless another goroutine is
// writing. It returns an error only when nothing was sent.
func (e *epoch) send(p *pub, topic string, payload []byte, hold bool) error {
	cfg := &e.c.client.cfg
	qos := cfg.QoS
	if len(topic) > 65535 {
		return fmt.Errorf("mqtt: publish: topic of %d bytes, at most 65535", len(topic))
	}
	n := publishLen(topic, payload, qos, e.v5)
	if n > maxRemaining {
		return fmt.Errorf("mqtt: publish: packet of %d bytes, at most %d", n, maxRemaining)
	}
	if e.maxOut > 0 && 1+varintLen(n)+n > e.maxOut {
		return fmt.Errorf("mqtt: publish: packet of %d bytes, more than the broker's Maximum Packet Size %d: %w", 1+varintLen(n)+n, e.maxOut, bus.ErrRefused)
	}
	e.mu.Lock()
	if e.dead || e.werr != nil {
		e.mu.Unlock()
		return ErrNotConnected
	}
	p.e, p.qos = e, qos
	var id uint16
	if qos > 0 {
		id = e.allocID()
		if id == 0 {
			var err error
			if id, err = e.waitForID(p); err != nil {
				e.mu.Unlock()
				return err
			}
		}
		e.slots[id] = p
		e.used++
		p.id, p.state, p.sentAt = id, stWait, time.Now().UnixNano()
		p.refs.Add(1) // the queue's
		e.fifo.push(p)
	}
	before := len(e.wbuf)
	e.wbuf = appendPublishV(e.wbuf, e.v5, topic, payload, qos, false, false, id)
	e.queued += uint64(len(e.wbuf) - before)
	p.end = e.queued
	if hold && len(e.wbuf) < lingerMax {
		e.mu.Unlock()
		return nil // the caller's Flush writes it
	}
	e.flushSoon()
	e.mu.Unlock()
	return nil
}

// lingerMax is the queue size past which a write never waits for more.
const lingerMax = 16 << 10

// flushSoon writes the queue now, or, with Config.Linger, within Linger (so
// publishes handed over meanwhile leave in the same write). Called with mu.
func (e *epoch) flushSoon() {
	d := e.c.client.cfg.Linger
	if d <= 0 || len(e.wbuf) >= lingerMax {
		e.flushLocked()
		return
	}
	if e.flushing || e.armed {
		return // the writer under way, or the armed timer, takes it
	}
	e.armed = true
	if e.ftimer == nil {
		e.ftimer = time.AfterFunc(d, e.onFlushTimer)
	} else {
		e.ftimer.Reset(d)
	}
}

func (e *epoch) onFlushTimer() {
	e.mu.Lock()
	e.armed = false
	if len(e.wbuf) > 0 {
		e.flushLocked()
	}
	e.mu.Unlock()
}

// waitForID waits, with mu held (released while waiting), until a packet ID
// is free, at most until PublishTimeout after the publish began.
func (e *epoch) waitForID(p *pub) (uint16, error) {
	timeout := e.c.client.cfg.PublishTimeout
	left := timeout - time.Since(p.start)
	if left <= 0 {
		left = time.Nanosecond
	}
	t := time.NewTimer(left)
	defer t.Stop()
	if e.space == nil {
		e.space = make(chan struct{}, 1)
	}
	for {
		e.spaceWait++
		e.mu.Unlock()
		var err error
		select {
		case <-e.space:
		case <-e.deadCh:
			err = ErrNotConnected
		case <-p.ctx.Done():
			err = fmt.Errorf("mqtt: publish: %w", p.ctx.Err())
		case <-t.C:
			err = fmt.Errorf("mqtt: publish not sent: %d publishes in flight and none acknowledged within %v: %w", len(e.slots)-1, timeout, os.ErrDeadlineExceeded)
		}
		e.mu.Lock()
		e.spaceWait--
		if err != nil {
			return 0, err
		}
		if e.dead {
			return 0, ErrNotConnected
		}
		if id := e.allocID(); id != 0 {
			return id, nil
		}
	}
}

// await waits for the outcome of p, sent on e.
func (e *epoch) await(p *pub) error {
	if p.qos == 0 {
		e.mu.Lock()
		for e.written < p.end && e.werr == nil {
			e.condWait++
			e.cond.Wait()
			e.condWait--
		}
		var err error
		if e.written < p.end {
			err = fmt.Errorf("mqtt: publish: %w: %w", bus.ErrUnknownOutcome, e.werr)
		}
		e.mu.Unlock()
		return err
	}
	select {
	case <-p.done:
		return p.err
	case <-p.ctx.Done():
		return fmt.Errorf("mqtt: publish: %w: %w", bus.ErrUnknownOutcome, p.ctx.Err())
	}
}

// onTick is the keeper's: expire publishes past PublishTimeout, send a
// PINGREQ after KeepAlive without a write, drop a connection whose PINGRESP
// is late.
func (e *epoch) onTick(now int64) {
	cl := e.c.client
	cfg := &cl.cfg
	timeout := int64(cfg.PublishTimeout)
	e.mu.Lock()
	if e.dead {
		e.mu.Unlock()
		return
	}
	for e.fifo.n > 0 {
		p := e.fifo.head()
		if p.state != stDone {
			if now-p.sentAt < timeout {
				break
			}
			e.slots[p.id] = zombie // its acknowledgement may still come
			e.complete(p, cl.errTimeout)
		}
		e.fifo.pop()
		p.release()
	}
	kill, ping := false, false
	if ka := e.keepAlive; ka > 0 {
		switch {
		case e.pingAt != 0:
			kill = now-e.pingAt > int64(cfg.ConnectTimeout)
		case now-e.lastWrite >= ka-int64(cl.tick) && !e.flushing:
			e.wbuf = append(e.wbuf, 0xc0, 0) // PINGREQ
			e.pingAt = now
			ping = true
		}
	}
	e.mu.Unlock()
	if kill {
		e.kill(cl.errPingTimeout)
	}
	if ping {
		go e.flush()
	}
}

// fail ends the epoch after its reader stopped: every publish waiting for an
// acknowledgement ends with an unknown outcome, waiters wake.
func (e *epoch) fail() {
	e.mu.Lock()
	e.dead = true
	if e.werr == nil {
		e.werr = errEpochDead
	}
	for e.fifo.n > 0 {
		p := e.fifo.pop()
		if p.state != stDone {
			e.complete(p, e.c.client.errLost)
		}
		p.release()
	}
	clear(e.slots)
	e.used = 0
	close(e.deadCh)
	if e.ftimer != nil {
		e.ftimer.Stop()
	}
	e.cond.Broadcast()
	e.mu.Unlock()
	_ = e.conn.Close()
	e.c.client.keeper.remove(e)
}

// topicString returns b as a string, from a cache of the topics seen (at
// most maxTopicCache; a subscriber to more topics starts it afresh when full).
func (e *epoch) topicString(b []byte) string {
	if t, ok := e.topics[string(b)]; ok { // no allocation for the lookup
		return t
	}
	if e.topics == nil || len(e.topics) >= maxTopicCache {
		e.topics = make(map[string]string, 16)
	}
	s := string(b)
	e.topics[s] = s
	return s
}

const maxTopicCache = 1024

// Publish states.
const (
	stWait = iota + 1 // sent, waiting for PUBACK / PUBREC
	stRec             // QoS 2: PUBREC seen, PUBREL sent, waiting for PUBCOMP
	stDone
)

// pub is one publish: handed to PublishAsync's caller as its wait function.
// pubs are pooled per Client; wait is bound once, so a publish allocates
// nothing in steady state.
type pub struct {
	c      *Conn
	e      *epoch
	ctx    context.Context
	start  time.Time
	early  error // the publish was not sent (set by PublishAsync)
	err    error // the outcome, set by complete
	end    uint64
	sentAt int64
	id     uint16
	qos    byte
	state  uint8
	refs   atomic.Int32 // the waiter's and, at QoS 1/2, the send queue's
	done   chan struct{}
	fn     func() error
}

func (cl *Client) getPub() *pub {
	p := cl.pubs.Get().(*pub)
	p.refs.Store(1)
	return p
}

func newPub() any {
	p := &pub{done: make(chan struct{}, 1)}
	p.fn = p.wait
	return p
}

// Done reports, without blocking, whether p's outcome is known, so that Wait
// returns at once (see Conn.Enqueue).
func (p *pub) Done() bool {
	if p.early != nil || p.e == nil {
		return true
	}
	if p.qos > 0 {
		return len(p.done) > 0
	}
	e := p.e
	e.mu.Lock()
	d := e.written >= p.end || e.werr != nil
	e.mu.Unlock()
	return d
}

// Wait waits for p's outcome, as the function PublishAsync returns does; p
// must not be used after it.
func (p *pub) Wait() error { return p.wait() }

// wait is the function PublishAsync returns.
func (p *pub) wait() error {
	err := p.early
	if err == nil {
		err = p.e.await(p)
	}
	c := p.c
	now := time.Now()
	lat := now.Sub(p.start)
	p.release()
	c.h.HandleEvent(bus.Event{Kind: bus.Published, At: now, Err: err, Latency: lat})
	return err
}

func (p *pub) release() {
	if p.refs.Add(-1) != 0 {
		return
	}
	select {
	case <-p.done:
	default:
	}
	cl := p.c.client
	p.c, p.e, p.ctx, p.early, p.err = nil, nil, nil, nil, nil
	p.end, p.sentAt, p.id, p.qos, p.state = 0, 0, 0, 0, 0
	cl.pubs.Put(p)
}

// ring is a FIFO of publishes.
type ring struct {
	buf  []*pub
	h, n int
}

func (r *ring) push(p *pub) {
	if r.n == len(r.buf) {
		nb := make([]*pub, max(16, 2*len(r.buf)))
		for i := range r.n {
			nb[i] = r.buf[(r.h+i)%len(r.buf)]
		}
		r.buf, r.h = nb, 0
	}
	r.buf[(r.h+r.n)%len(r.buf)] = p
	r.n++
}

func (r *ring) head() *pub { return r.buf[r.h] }

func (r *ring) pop() *pub {
	p := r.buf[r.h]
	r.buf[r.h] = nil
	r.h = (r.h + 1) % len(r.buf)
	r.n--
	if r.n == 0 && len(r.buf) > 1024 {
		r.buf, r.h = nil, 0 // give a burst's queue back
	}
	return p
}
