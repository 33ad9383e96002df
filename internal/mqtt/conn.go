package mqtt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/bus"
)

// Conn is one MQTT connection (one client ID) with its own reconnect loop. It
// satisfies bus.Conn. Publish and Subscribe may be called from any goroutine.
//
// The Handler's HandleMessage runs on the Conn's reader goroutine, one
// delivery at a time in wire order; events come from that goroutine and from
// the callers of Publish and Subscribe. The Handler must be fast and must
// not call Close, Publish or Subscribe on its own Conn from HandleMessage.
type Conn struct {
	client *Client
	id     string
	h      bus.Handler
	dialer *net.Dialer     // the source address this Conn always uses
	ctx    context.Context // the connection's lifetime (Dial's ctx, or Close)
	cancel context.CancelFunc
	once   sync.Once // shutdown
	wg     sync.WaitGroup
	cur    atomic.Pointer[epoch] // the live connection, nil while reconnecting or closed

	// mu guards the fields below it.
	mu     sync.Mutex
	closed bool
	bo     *backoff.Backoff

	// smu serialises subscriptions (user calls and resubscribe after a
	// reconnect) and guards topics.
	smu    sync.Mutex
	topics []string // granted topic filters, resubscribed after a reconnect

	// hmu lets shutdown wait for a message handler in flight; none start after.
	hmu     sync.RWMutex
	hclosed bool
}

// Dial connects with client ID id (unique per connection) and returns once
// the broker accepted the connection (bus.Connected is emitted). A failed
// first connect is returned classified (bus.ErrUnreachable, bus.ErrProtocol,
// bus.ErrRefused) and not retried. ctx is the connection's lifetime: when it
// ends the Conn stops as if Close had been called.
func (c *Client) Dial(ctx context.Context, id string, h bus.Handler) (*Conn, error) {
	if id == "" {
		return nil, errors.New("mqtt: dial: empty client ID")
	}
	if h == nil {
		return nil, errors.New("mqtt: dial: nil handler")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mqtt: dial: %w", err)
	}
	n := c.next.Add(1) - 1
	conn := &Conn{
		client: c,
		id:     id,
		h:      h,
		dialer: c.dialers[int(n%uint32(len(c.dialers)))],
		bo:     backoff.New(c.cfg.Backoff, nil),
	}
	conn.ctx, conn.cancel = context.WithCancel(ctx)
	start := time.Now()
	ep, sp, err := conn.connect()
	if err != nil {
		conn.cancel()
		return nil, err
	}
	conn.adopt(ep)
	conn.wg.Add(1)
	go conn.run(ep)
	context.AfterFunc(conn.ctx, conn.shutdown)
	now := time.Now()
	h.HandleEvent(bus.Event{Kind: bus.Connected, At: now, Latency: now.Sub(start), SessionPresent: sp})
	return conn, nil
}

// connect runs one connect attempt: socket, TLS, CONNECT and CONNACK.
func (c *Conn) connect() (*epoch, bool, error) {
	cl := c.client
	conn, stop, err := cl.open(c.ctx, c.dialer)
	if err != nil {
		return nil, false, err
	}
	fail := func(err error) (*epoch, bool, error) {
		stop()
		_ = conn.Close()
		if c.ctx.Err() != nil {
			return nil, false, fmt.Errorf("mqtt: connect: %w", c.ctx.Err())
		}
		return nil, false, err
	}
	_ = conn.SetDeadline(time.Now().Add(cl.cfg.ConnectTimeout))
	if err := cl.writeConnect(conn, c.id, *cl.cfg.CleanSession); err != nil {
		return fail(fmt.Errorf("mqtt: connect: sending CONNECT to %s: %w", cl.ep.addr, err))
	}
	var (
		sp bool
		rc byte
		ca connack
	)
	if cl.v5 {
		ca, err = readConnack5(conn, cl.cfg.MaxPacketSize)
		if err == nil {
			if err = cl.checkConnack5(ca); err != nil {
				return fail(fmt.Errorf("mqtt: connect %s: %w", cl.ep.addr, err))
			}
		}
		sp = ca.sessionPresent
	} else {
		sp, rc, err = readConnack(conn)
	}
	if err != nil {
		var ce *closedError
		if errors.As(err, &ce) {
			// Closed at once: a broker at its connection limit, or a proxy
			// refusing. A reset, not a protocol error.
			return fail(fmt.Errorf("mqtt: connect %s: the broker closed the connection without a CONNACK: %w", cl.ep.addr, ce.err))
		}
		return fail(fmt.Errorf("mqtt: connect %s: %w", cl.ep.addr, err))
	}
	if rc != packets.Accepted {
		return fail(fmt.Errorf("mqtt: connect refused by %s: %w", cl.ep.addr, classifyReturnCode(rc)))
	}
	if !stop() {
		return fail(fmt.Errorf("mqtt: connect: %w", context.Canceled))
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return fail(fmt.Errorf("mqtt: connect: %w", err))
	}
	e := newEpoch(c, conn, ca)
	cl.keeper.add(e)
	return e, sp, nil
}

// connectPacket is the MQTT 3.1.1 CONNECT of client id.
func (cl *Client) connectPacket(id string, clean bool) *packets.ConnectPacket {
	cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion = "MQTT", 4
	cp.CleanSession = clean
	cp.ClientIdentifier = id
	cp.Keepalive = uint16(cl.cfg.KeepAlive / time.Second)
	if cl.cfg.Username != "" {
		cp.UsernameFlag, cp.Username = true, cl.cfg.Username
		if cl.cfg.Password != "" {
			cp.PasswordFlag, cp.Password = true, []byte(cl.cfg.Password)
		}
	}
	return cp
}

// adopt makes ep the live connection (and resets the backoff: a successful
// connect) unless the Conn is closed.
func (c *Conn) adopt(ep *epoch) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.bo.Reset()
	c.cur.Store(ep)
	return true
}

// run is the Conn's goroutine: it reads the live connection and, when it is
// lost, reconnects through the backoff, until the Conn stops.
func (c *Conn) run(ep *epoch) {
	defer c.wg.Done()
	for ep != nil {
		err := c.read(ep)
		ep.mu.Lock()
		if ep.cause != nil {
			err = ep.cause
		} else if ep.werr != nil {
			err = ep.werr
		}
		ep.mu.Unlock()
		ep.fail()
		c.mu.Lock()
		live := !c.closed && c.cur.Load() == ep
		if live {
			c.cur.Store(nil)
		}
		c.mu.Unlock()
		if !live {
			return
		}
		ep = c.reconnect(err)
	}
}

// read frames packets from ep until an error, handing deliveries to the
// handler in wire order and queueing their acknowledgements (written before
// the next blocking read, or with the next publish).
func (c *Conn) read(ep *epoch) error {
	rd := ep.rd
	for {
		hdr, body, err := rd.next()
		if err != nil {
			return readErr(err)
		}
		switch hdr >> 4 {
		case typePublish:
			p, err := decodePublishV(hdr, body, ep.v5)
			if err != nil {
				return err
			}
			c.deliver(bus.Message{Topic: ep.topicString(p.topic), Payload: p.payload, Retained: p.retain, Redelivery: p.dup})
			if p.qos > 0 {
				typ := byte(typePuback)
				if p.qos == 2 {
					typ = typePubrec
				}
				ep.mu.Lock()
				ep.wbuf = appendAck(ep.wbuf, typ, p.id)
				ep.mu.Unlock()
			}
		case typePuback, typePubrec, typePubcomp, typePubrel:
			var (
				id     uint16
				reason byte
				err    error
			)
			if ep.v5 {
				id, reason, err = decodeAck5(hdr, body)
			} else {
				id, err = decodeAck(hdr, body)
			}
			if err != nil {
				return err
			}
			if reason >= 0x80 {
				ep.onAckFailed(hdr>>4, id, reason, ackReasonString(body))
			} else {
				ep.onAck(hdr>>4, id)
			}
		case typeSuback:
			if hdr&0x0f != 0 || len(body) < 3 {
				return fmt.Errorf("%w: SUBACK of %d bytes with flags 0x%x", errMalformed, len(body), hdr&0x0f)
			}
			var sa suback
			if ep.v5 {
				id, codes, reason, err := decodeSuback5(body)
				if err != nil {
					return err
				}
				sa = suback{id: id, codes: append([]byte(nil), codes...), reason: reason}
			} else {
				cp, _ := packets.NewControlPacketWithHeader(packets.FixedHeader{MessageType: packets.Suback, RemainingLength: len(body)})
				pk := cp.(*packets.SubackPacket)
				if err := pk.Unpack(bytes.NewReader(body)); err != nil {
					return fmt.Errorf("%w: SUBACK: %w", errMalformed, err)
				}
				sa = suback{id: pk.MessageID, codes: pk.ReturnCodes}
			}
			select {
			case ep.subacks <- sa:
			default: // nobody waits: a late answer
			}
		case typeDisconnect:
			if !ep.v5 {
				return fmt.Errorf("mqtt: the broker sent an unexpected packet of type %d: %w", hdr>>4, bus.ErrProtocol)
			}
			de, err := decodeDisconnect5(hdr, body)
			if err != nil {
				return err
			}
			return de
		case typeUnsuback:
			if hdr&0x0f != 0 || len(body) < 2 {
				return fmt.Errorf("%w: UNSUBACK of %d bytes with flags 0x%x", errMalformed, len(body), hdr&0x0f)
			}
			select {
			case ep.subacks <- suback{id: uint16(body[0])<<8 | uint16(body[1]), unsub: true}:
			default: // nobody waits: a late answer
			}
		case typePingresp:
			ep.mu.Lock()
			ep.pingAt = 0
			ep.mu.Unlock()
		default:
			return fmt.Errorf("mqtt: the broker sent an unexpected packet of type %d: %w", hdr>>4, bus.ErrProtocol)
		}
	}
}

// readErr says what a read error means; a closed stream is a reset.
func readErr(err error) error {
	switch {
	case errors.Is(err, bus.ErrProtocol):
		return err
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("mqtt: the broker closed the connection: %w: %w", err, syscall.ECONNRESET)
	}
	return fmt.Errorf("mqtt: read: %w", err)
}

// onAck handles PUBACK, PUBREC, PUBREL and PUBCOMP for packet id.
func (e *epoch) onAck(typ byte, id uint16) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch typ {
	case typePubrel: // our QoS 2 delivery: release done
		e.wbuf = appendAck(e.wbuf, typePubcomp, id)
		return
	case typePubrec:
		// Answer with PUBREL whatever the ID (the broker holds the message
		// until it gets one), and advance a publish waiting for it.
		e.wbuf = appendAck(e.wbuf, typePubrel, id)
		if p := e.slot(id); p != nil && p != zombie && p.qos == 2 && p.state == stWait {
			p.state = stRec
		}
		return
	}
	p := e.slot(id)
	switch {
	case p == nil:
		return // not ours (or a duplicate acknowledgement): ignore
	case p == zombie:
		e.freeID(id)
		return
	case typ == typePuback && p.qos == 1, typ == typePubcomp && p.qos == 2:
		e.freeID(id)
		e.complete(p, nil)
		e.popDone()
	}
}

// onAckFailed handles an MQTT 5 acknowledgement with a failure reason code
// (>= 0x80). PUBACK or PUBREC: the broker did not accept the publish, which
// fails (not an unknown outcome), and the QoS 2 exchange ends there (no
// PUBREL). PUBCOMP: the broker accepted the message at PUBREC but lost
// track of it (0x92 packet identifier not found): the outcome is unknown.
// PUBREL: the broker lost our PUBREC; we complete our side anyway.
func (e *epoch) onAckFailed(typ byte, id uint16, reason byte, said string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if typ == typePubrel {
		e.wbuf = appendAck(e.wbuf, typePubcomp, id)
		return
	}
	p := e.slot(id)
	switch {
	case p == nil:
		return
	case p == zombie:
		e.freeID(id) // the exchange ends here either way
		return
	case typ == typePuback && p.qos == 1, typ == typePubrec && p.qos == 2 && p.state == stWait, typ == typePubcomp && p.qos == 2:
		var err error
		name := map[byte]string{typePuback: "PUBACK", typePubrec: "PUBREC", typePubcomp: "PUBCOMP"}[typ]
		msg := "mqtt: publish refused by the broker: " + name + " " + reasonCode(reason)
		if said != "" {
			msg += " (broker says " + said + ")"
		}
		if typ == typePubcomp {
			err = fmt.Errorf("%s: %w", msg, bus.ErrUnknownOutcome)
		} else {
			err = fmt.Errorf("%s: %w", msg, bus.ErrRefused)
		}
		e.freeID(id)
		e.complete(p, err)
		e.popDone()
	}
}

// deliver hands a delivery to the handler unless the Conn is shutting down.
func (c *Conn) deliver(m bus.Message) {
	c.hmu.RLock()
	if !c.hclosed {
		c.h.HandleMessage(m)
	}
	c.hmu.RUnlock()
}

// reconnect waits through backoff and reconnects until it succeeds or the
// Conn stops (then it returns nil). Every attempt is reported as a
// bus.Dialled event (Err nil on success), so that reconnects are counted by
// outcome.
func (c *Conn) reconnect(cause error) *epoch {
	c.h.HandleEvent(bus.Event{Kind: bus.Disconnected, At: time.Now(), Err: cause})
	err := cause
	for {
		c.mu.Lock()
		d := c.bo.Next()
		c.mu.Unlock()
		c.h.HandleEvent(bus.Event{Kind: bus.Retrying, At: time.Now(), Delay: d, Err: err})
		if backoff.Sleep(c.ctx, d) != nil {
			return nil
		}
		start := time.Now()
		ep, sp, cerr := c.connect()
		if cerr != nil {
			if c.ctx.Err() != nil {
				return nil
			}
			err = cerr
			now := time.Now()
			c.h.HandleEvent(bus.Event{Kind: bus.Dialled, At: now, Latency: now.Sub(start), Err: cerr})
			continue
		}
		if !c.adopt(ep) {
			ep.disconnect(false)
			ep.fail()
			return nil
		}
		now := time.Now()
		c.h.HandleEvent(bus.Event{Kind: bus.Dialled, At: now, Latency: now.Sub(start)})
		c.h.HandleEvent(bus.Event{Kind: bus.Connected, At: now, Latency: now.Sub(start), SessionPresent: sp})
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.resubscribe(ep)
		}()
		return ep
	}
}

// resubscribe subscribes a new connection to every remembered topic. If the
// broker does not answer in time the connection is dropped and retried; a
// refusal or a downgrade is reported in bus.Subscribed.Err.
func (c *Conn) resubscribe(ep *epoch) {
	c.smu.Lock()
	defer c.smu.Unlock()
	if len(c.topics) == 0 {
		return
	}
	start := time.Now()
	granted, err := c.subscribe(c.ctx, ep, c.topics)
	if granted == nil {
		if err != nil && c.ctx.Err() == nil && errors.Is(err, os.ErrDeadlineExceeded) {
			// Connected but not subscribed: losses would go unnoticed. Start over.
			ep.kill(err)
		}
		return // lost meanwhile: the next reconnect resubscribes
	}
	now := time.Now()
	c.h.HandleEvent(bus.Event{Kind: bus.Subscribed, At: now, Latency: now.Sub(start), Granted: granted, Err: err})
}

// disconnect sends DISCONNECT (best effort) and closes the socket; with
// abort it sends nothing and resets the TCP connection instead (no FIN
// exchange, no TIME_WAIT: the cheapest end for both sides).
func (e *epoch) disconnect(abort bool) {
	if abort {
		nc := e.conn
		if w, ok := nc.(interface{ NetConn() net.Conn }); ok { // TLS
			nc = w.NetConn()
		}
		if tc, ok := nc.(interface{ SetLinger(int) error }); ok {
			_ = tc.SetLinger(0)
		}
		_ = e.conn.Close()
		return
	}
	e.mu.Lock()
	if !e.dead && e.werr == nil {
		e.wbuf = append(e.wbuf, 0xe0, 0)
		e.flushLocked()
	}
	e.mu.Unlock()
	_ = e.conn.Close()
}

// shutdown stops the Conn once: no reconnect after it, the live connection is
// disconnected (DISCONNECT, then close) and a message handler in flight
// finishes.
func (c *Conn) shutdown() { c.stop(false) }

// stop is shutdown, aborting the live connection (see epoch.disconnect) if
// abort.
func (c *Conn) stop(abort bool) {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		ep := c.cur.Swap(nil)
		c.mu.Unlock()
		c.cancel()
		if ep != nil {
			ep.disconnect(abort)
		}
		c.hmu.Lock()
		c.hclosed = true
		c.hmu.Unlock()
	})
}

// Close disconnects at once (sending DISCONNECT), stops the reconnect loop
// and waits for the Conn's goroutines. It always returns nil.
func (c *Conn) Close() error { return c.end(false) }

// Abort is Close without DISCONNECT, resetting the TCP connection (see
// bus.Aborter). It always returns nil.
func (c *Conn) Abort() error { return c.end(true) }

// end is Close or Abort: stop first (a cancel first would start the
// context's own polite shutdown), then wait for the goroutines.
func (c *Conn) end(abort bool) error {
	c.stop(abort)
	c.cancel()
	c.wg.Wait()
	return nil
}

// ID is the client ID.
func (c *Conn) ID() string { return c.id }

// Publish sends payload to topic with retain off at the Client's QoS and
// returns nil only once the broker acknowledged it (QoS 1: PUBACK, QoS 2:
// PUBCOMP) or, at QoS 0, once it was written to the socket. It emits
// bus.Published with the latency.
//
// Errors: ErrNotConnected (nothing sent, e.g. while reconnecting);
// bus.ErrUnknownOutcome when the publish was handed over but no answer came
// within PublishTimeout, ctx ended first, or the connection was lost before
// the acknowledgement (it may still arrive at subscribers); anything else
// means it was not sent.
func (c *Conn) Publish(ctx context.Context, topic string, payload []byte) error {
	return c.PublishAsync(ctx, topic, payload)()
}

// PublishAsync is Publish in two steps, for a caller that pipelines: it hands
// the publish to the connection and returns once it is queued for the socket
// (it blocks only while the connection's window of unacknowledged publishes
// is full, at most PublishTimeout, or while it writes the queue itself); wait
// then waits for the outcome, exactly as Publish would return it, and emits
// bus.Published. Publishes handed over by successive calls from one
// goroutine are written to the socket in call order, however many are in
// flight. wait must be called exactly once; payload must not be modified
// before PublishAsync returns (it is copied into the write queue). In steady
// state neither allocates.
func (c *Conn) PublishAsync(ctx context.Context, topic string, payload []byte) (wait func() error) {
	return c.enqueue(ctx, topic, payload, false).fn
}

// Enqueue is PublishAsync for a caller that batches: the publish is queued
// but not written (unless 16 KiB are already queued) until Flush, so that
// every publish due at one moment leaves in one write. Its outcome is polled
// with Done and taken with Wait, exactly once. It never waits for a packet ID
// when the caller keeps fewer publishes in flight than the broker's window.
// ctx bounds only the wait for a packet ID and the wait for the outcome; the
// outcome is unknown after PublishTimeout whatever ctx says. In steady state
// it allocates nothing.
func (c *Conn) Enqueue(ctx context.Context, topic string, payload []byte) bus.Pending {
	return c.enqueue(ctx, topic, payload, true)
}

// Flush writes what Enqueue queued (unless another goroutine is writing it).
func (c *Conn) Flush() {
	if ep := c.cur.Load(); ep != nil {
		ep.flushPending()
	}
}

func (c *Conn) enqueue(ctx context.Context, topic string, payload []byte, hold bool) *pub {
	p := c.client.getPub()
	p.c, p.ctx, p.start = c, ctx, time.Now()
	if err := ctx.Err(); err != nil {
		p.early = fmt.Errorf("mqtt: publish: %w", err)
		return p
	}
	ep := c.cur.Load()
	if ep == nil {
		p.early = ErrNotConnected
		return p
	}
	p.early = ep.send(p, topic, payload, hold)
	return p
}

// Subscribe subscribes to topics in one SUBSCRIBE packet at the Client's QoS
// and waits for the SUBACK (at most PublishTimeout). It emits bus.Subscribed
// with the granted QoS per topic, in order. A topic refused by the broker
// (0x80) makes the error wrap bus.ErrRefused; a granted QoS below the
// requested one makes it wrap ErrQoSDowngraded. Granted topics are
// remembered and subscribed again after every reconnect.
func (c *Conn) Subscribe(ctx context.Context, topics []string) error {
	if len(topics) == 0 {
		return errors.New("mqtt: subscribe: no topics")
	}
	c.smu.Lock()
	defer c.smu.Unlock()
	ep := c.cur.Load()
	if ep == nil {
		return ErrNotConnected
	}
	start := time.Now()
	granted, err := c.subscribe(ctx, ep, topics)
	if granted == nil {
		return err
	}
	now := time.Now()
	c.h.HandleEvent(bus.Event{Kind: bus.Subscribed, At: now, Latency: now.Sub(start), Granted: granted, Err: err})
	for i, t := range topics {
		if granted[i] <= 2 && !contains(c.topics, t) {
			c.topics = append(c.topics, t)
		}
	}
	return err
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// subscribe sends one SUBSCRIBE on ep and checks the SUBACK. granted is nil
// when no SUBACK was read (the error says why); otherwise it holds the granted
// QoS per topic, in order, and err reports refusals and downgrades. Called
// with smu held.
func (c *Conn) subscribe(ctx context.Context, ep *epoch, topics []string) (granted []byte, err error) {
	qos := c.client.cfg.QoS
	sa, err := c.request(ctx, ep, false, func(id uint16) ([]byte, error) {
		var b bytes.Buffer
		if ep.v5 {
			for _, t := range topics {
				if len(t) > 65535 {
					return nil, fmt.Errorf("mqtt: subscribe: topic filter of %d bytes, at most 65535", len(t))
				}
			}
			b.Write(appendSubscribe5(nil, id, topics, qos))
		} else {
			sp := packets.NewControlPacket(packets.Subscribe).(*packets.SubscribePacket)
			sp.MessageID = id
			sp.Topics = topics
			sp.Qoss = bytes.Repeat([]byte{qos}, len(topics))
			if err := sp.Write(&b); err != nil {
				return nil, fmt.Errorf("mqtt: subscribe: %w", err)
			}
		}
		if b.Len() > maxRemaining {
			return nil, fmt.Errorf("mqtt: subscribe: SUBSCRIBE of %d bytes is too large", b.Len())
		}
		if ep.maxOut > 0 && b.Len() > ep.maxOut {
			return nil, fmt.Errorf("mqtt: subscribe: SUBSCRIBE of %d bytes, more than the broker's Maximum Packet Size %d: %w", b.Len(), ep.maxOut, bus.ErrRefused)
		}
		return b.Bytes(), nil
	})
	if err != nil {
		return nil, err
	}
	if len(sa.codes) != len(topics) {
		ep.kill(fmt.Errorf("mqtt: SUBACK with %d return codes for %d topics: %w", len(sa.codes), len(topics), bus.ErrProtocol))
		return nil, fmt.Errorf("mqtt: subscribe: SUBACK with %d return codes for %d topics: %w", len(sa.codes), len(topics), bus.ErrProtocol)
	}
	granted = sa.codes
	var refused, downgraded, reasons []string
	for i, topic := range topics {
		g := granted[i]
		switch {
		case g == 0x80 || g > 2:
			refused = append(refused, topic)
			reasons = append(reasons, fmt.Sprintf("%q: %s", topic, reasonCode(g)))
		case g < qos:
			downgraded = append(downgraded, fmt.Sprintf("%s: granted %d, requested %d", topic, g, qos))
		}
	}
	var errs []error
	switch {
	case len(refused) > 0 && ep.v5:
		said := ""
		if sa.reason != "" {
			said = " (broker says " + sa.reason + ")"
		}
		errs = append(errs, fmt.Errorf("mqtt: subscription refused by the broker: %s%s: %w", strings.Join(reasons, ", "), said, bus.ErrRefused))
	case len(refused) > 0:
		errs = append(errs, fmt.Errorf("mqtt: subscription refused by the broker (not authorized?) for %q: %w", refused, bus.ErrRefused))
	}
	if len(downgraded) > 0 {
		errs = append(errs, fmt.Errorf("%w (%s)", ErrQoSDowngraded, strings.Join(downgraded, "; ")))
	}
	return granted, errors.Join(errs...)
}

// request takes the next SUBSCRIBE/UNSUBSCRIBE packet id on ep, sends the
// packet encode builds with it (an encode error is returned as it is) and
// waits, at most PublishTimeout, for the SUBACK (unsub false) or the UNSUBACK
// (unsub true) with that id. A SUBACK wait takes any acknowledgement with the
// id; an UNSUBACK wait only an UNSUBACK. Called with smu held.
func (c *Conn) request(ctx context.Context, ep *epoch, unsub bool, encode func(id uint16) ([]byte, error)) (suback, error) {
	op, ack := "subscribe", "SUBACK"
	if unsub {
		op, ack = "unsubscribe", "UNSUBACK"
	}
	ep.mu.Lock()
	ep.subID++
	id := subscribeIDBase + ep.subID%0xff
	ep.mu.Unlock()
	b, err := encode(id)
	if err != nil {
		return suback{}, err
	}
	ep.mu.Lock()
	if ep.dead || ep.werr != nil {
		ep.mu.Unlock()
		return suback{}, ErrNotConnected
	}
	ep.wbuf = append(ep.wbuf, b...)
	ep.flushLocked()
	ep.mu.Unlock()

	t := time.NewTimer(c.client.cfg.PublishTimeout)
	defer t.Stop()
	for {
		select {
		case sa := <-ep.subacks:
			if sa.id == id && (sa.unsub || !unsub) {
				return sa, nil
			}
		case <-ep.deadCh:
			return suback{}, fmt.Errorf("mqtt: %s: %w (connection lost)", op, ErrNotConnected)
		case <-ctx.Done():
			return suback{}, fmt.Errorf("mqtt: %s: %w", op, ctx.Err())
		case <-t.C:
			return suback{}, fmt.Errorf("mqtt: %s: no %s within %v: %w", op, ack, c.client.cfg.PublishTimeout, os.ErrDeadlineExceeded)
		}
	}
}
