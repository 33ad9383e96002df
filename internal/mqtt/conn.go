package mqtt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/bus"
)

// Conn is one MQTT connection (one client ID) with its own reconnect loop. It
// satisfies bus.Conn. Publish and Subscribe may be called from any goroutine.
//
// The Handler's methods run on paho's and the Conn's goroutines; they must be
// fast and must not call Close on their own Conn.
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

	// mu guards the fields below it, and orders connection-lost callbacks
	// against reconnects and Close.
	mu     sync.Mutex
	closed bool
	bo     *backoff.Backoff

	// smu serialises subscriptions (user calls and resubscribe after a
	// reconnect) and guards topics.
	smu    sync.Mutex
	topics []string // granted topic filters, resubscribed after a reconnect

	// hmu lets Close wait for message handlers in flight; none start after.
	hmu     sync.RWMutex
	hclosed bool
}

// epoch is one TCP connection of a Conn: a fresh paho client per connect.
type epoch struct {
	cl      paho.Client
	lost    bool  // guarded by Conn.mu
	lostErr error // guarded by Conn.mu
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
	if !conn.adopt(ep) {
		conn.cancel()
		conn.mu.Lock()
		lostErr := ep.lostErr
		conn.mu.Unlock()
		ep.cl.Disconnect(0)
		return nil, fmt.Errorf("mqtt: connection lost right after connect: %w (%w)", ErrNotConnected, lostErr)
	}
	context.AfterFunc(conn.ctx, conn.shutdown)
	now := time.Now()
	h.HandleEvent(bus.Event{Kind: bus.Connected, At: now, Latency: now.Sub(start), SessionPresent: sp})
	return conn, nil
}

// connect runs one connect attempt with a fresh paho client.
func (c *Conn) connect() (*epoch, bool, error) {
	ep := &epoch{}
	var abort func() bool
	o := c.client.pahoOptions(c.id, c.dialer, c.ctx, &abort, c.onMessage,
		func(_ paho.Client, err error) { c.onLost(ep, err) })
	ep.cl = paho.NewClient(o)
	tok := ep.cl.Connect()
	// Bounded without a timer of ours: the dial by ConnectTimeout, the TLS and
	// MQTT handshakes by deadlines on the socket, and ctx aborts all three.
	<-tok.Done()
	if abort != nil {
		abort() // written by open before the token completed
	}
	if err := tok.Error(); err != nil {
		if c.ctx.Err() != nil {
			return nil, false, fmt.Errorf("mqtt: connect: %w", c.ctx.Err())
		}
		return nil, false, classifyConnect(err)
	}
	if err := c.ctx.Err(); err != nil {
		ep.cl.Disconnect(quiesce)
		return nil, false, fmt.Errorf("mqtt: connect: %w", err)
	}
	sp := false
	if ct, ok := tok.(*paho.ConnectToken); ok {
		sp = ct.SessionPresent()
	}
	return ep, sp, nil
}

// adopt makes ep the live connection unless it was lost already or the Conn
// is closed. It resets the backoff (a successful connect) under mu, so a
// reconnect loop started by a later loss sees the reset.
func (c *Conn) adopt(ep *epoch) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || ep.lost {
		return false
	}
	c.bo.Reset()
	c.cur.Store(ep)
	return true
}

// onLost is paho's connection-lost callback (its own goroutine). It starts
// the reconnect loop if ep is the live connection.
func (c *Conn) onLost(ep *epoch, err error) {
	if err == nil {
		err = ErrNotConnected
	}
	c.mu.Lock()
	ep.lost, ep.lostErr = true, err
	if c.closed || c.cur.Load() != ep {
		c.mu.Unlock()
		return
	}
	c.cur.Store(nil)
	c.wg.Add(1)
	c.mu.Unlock()
	go c.reconnect(err)
}

// reconnect waits through backoff and reconnects until it succeeds or the
// Conn stops. Every attempt is reported as a bus.Dialled event (Err nil on
// success), so that reconnects are counted by outcome. It is the only user of c.bo while it runs (apart from adopt).
func (c *Conn) reconnect(cause error) {
	defer c.wg.Done()
	c.h.HandleEvent(bus.Event{Kind: bus.Disconnected, At: time.Now(), Err: cause})
	err := cause
	for {
		c.mu.Lock()
		d := c.bo.Next()
		c.mu.Unlock()
		c.h.HandleEvent(bus.Event{Kind: bus.Retrying, At: time.Now(), Delay: d, Err: err})
		if backoff.Sleep(c.ctx, d) != nil {
			return
		}
		start := time.Now()
		ep, sp, cerr := c.connect()
		if cerr != nil {
			if c.ctx.Err() != nil {
				return
			}
			err = cerr
			now := time.Now()
			c.h.HandleEvent(bus.Event{Kind: bus.Dialled, At: now, Latency: now.Sub(start), Err: cerr})
			continue
		}
		if !c.adopt(ep) {
			c.mu.Lock()
			closed, lostErr := c.closed, ep.lostErr
			c.mu.Unlock()
			if closed {
				ep.cl.Disconnect(quiesce)
				return
			}
			err = fmt.Errorf("mqtt: connection lost right after connect: %w (%w)", ErrNotConnected, lostErr) // keep going
			now := time.Now()
			c.h.HandleEvent(bus.Event{Kind: bus.Dialled, At: now, Latency: now.Sub(start), Err: err})
			continue
		}
		now := time.Now()
		c.h.HandleEvent(bus.Event{Kind: bus.Dialled, At: now, Latency: now.Sub(start)})
		c.h.HandleEvent(bus.Event{Kind: bus.Connected, At: now, Latency: now.Sub(start), SessionPresent: sp})
		c.resubscribe(ep)
		return
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
		if err != nil && c.ctx.Err() == nil && c.cur.Load() == ep && errors.Is(err, os.ErrDeadlineExceeded) {
			// Connected but not subscribed: losses would go unnoticed. Start over.
			ep.cl.Disconnect(0)
			c.onLost(ep, err)
		}
		return // lost meanwhile: the next reconnect resubscribes
	}
	now := time.Now()
	c.h.HandleEvent(bus.Event{Kind: bus.Subscribed, At: now, Latency: now.Sub(start), Granted: granted, Err: err})
}

// shutdown stops the Conn once: no reconnect after it, the live connection is
// disconnected (short quiesce) and message handlers in flight finish.
func (c *Conn) shutdown() {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		ep := c.cur.Swap(nil)
		c.mu.Unlock()
		c.cancel()
		if ep != nil {
			ep.cl.Disconnect(quiesce)
		}
		c.hmu.Lock()
		c.hclosed = true
		c.hmu.Unlock()
	})
}

// Close disconnects at once (a short quiesce to send DISCONNECT), stops the
// reconnect loop and waits for the Conn's goroutines. It always returns nil.
func (c *Conn) Close() error {
	c.cancel()
	c.shutdown()
	c.wg.Wait()
	return nil
}

// ID is the client ID.
func (c *Conn) ID() string { return c.id }

// onMessage is paho's default publish handler: it hands the delivery straight
// to the bus.Handler (paho acknowledges after it returns).
func (c *Conn) onMessage(_ paho.Client, m paho.Message) {
	c.hmu.RLock()
	if !c.hclosed {
		c.h.HandleMessage(bus.Message{Topic: m.Topic(), Payload: m.Payload(), Retained: m.Retained(), Redelivery: m.Duplicate()})
	}
	c.hmu.RUnlock()
}

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
// (it blocks only while the connection's writer cannot take it, at most
// PublishTimeout); wait then waits for the outcome, exactly as Publish
// would return it, and emits bus.Published. Publishes handed over by
// successive calls from one goroutine are written to the socket in call
// order, however many are in flight. wait must be called exactly once;
// payload must not be modified before it returns (nor after an outcome
// wrapping bus.ErrUnknownOutcome: the transport may still hold it).
func (c *Conn) PublishAsync(ctx context.Context, topic string, payload []byte) (wait func() error) {
	start := time.Now()
	tok, err := c.startPublish(ctx, topic, payload)
	return func() error {
		if tok != nil {
			err = c.waitPublish(ctx, tok, start)
		}
		now := time.Now()
		c.h.HandleEvent(bus.Event{Kind: bus.Published, At: now, Err: err, Latency: now.Sub(start)})
		return err
	}
}

// startPublish hands one publish to paho (in call order: paho queues it to
// its writer before it returns).
func (c *Conn) startPublish(ctx context.Context, topic string, payload []byte) (paho.Token, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mqtt: publish: %w", err)
	}
	ep := c.cur.Load()
	if ep == nil {
		return nil, ErrNotConnected
	}
	return ep.cl.Publish(topic, c.client.cfg.QoS, false, payload), nil
}

func (c *Conn) waitPublish(ctx context.Context, tok paho.Token, start time.Time) error {
	select {
	case <-tok.Done():
		return publishErr(tok.Error())
	default:
	}
	left := c.client.cfg.PublishTimeout - time.Since(start)
	if left <= 0 {
		left = time.Nanosecond
	}
	t := time.NewTimer(left)
	defer t.Stop()
	select {
	case <-tok.Done():
		return publishErr(tok.Error())
	case <-ctx.Done():
		return fmt.Errorf("mqtt: publish: %w: %w", bus.ErrUnknownOutcome, ctx.Err())
	case <-t.C:
		return fmt.Errorf("mqtt: publish: no acknowledgement within %v: %w", c.client.cfg.PublishTimeout, bus.ErrUnknownOutcome)
	}
}

// publishErr maps a completed paho publish token's error.
func publishErr(err error) error {
	if err == nil {
		return nil
	}
	switch s := err.Error(); {
	case errors.Is(err, paho.ErrNotConnected):
		return ErrNotConnected
	case strings.Contains(s, "connection lost before"):
		// Sent, maybe received: only the acknowledgement is missing.
		return fmt.Errorf("mqtt: publish: %w: %w", bus.ErrUnknownOutcome, err)
	case strings.Contains(s, "broken by timeout"):
		// paho could not hand it to the writer in time: never sent.
		return fmt.Errorf("mqtt: publish not sent: %w: %w", err, os.ErrDeadlineExceeded)
	}
	return fmt.Errorf("mqtt: publish: %w", err)
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
		if granted[i] != 0x80 && !contains(c.topics, t) {
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
// QoS per topic, in order, and err reports refusals and downgrades.
func (c *Conn) subscribe(ctx context.Context, ep *epoch, topics []string) (granted []byte, err error) {
	qos := c.client.cfg.QoS
	filters := make(map[string]byte, len(topics))
	for _, t := range topics {
		filters[t] = qos
	}
	tok := ep.cl.SubscribeMultiple(filters, nil)
	t := time.NewTimer(c.client.cfg.PublishTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return nil, fmt.Errorf("mqtt: subscribe: %w", ctx.Err())
	case <-t.C:
		return nil, fmt.Errorf("mqtt: subscribe: no SUBACK within %v: %w", c.client.cfg.PublishTimeout, os.ErrDeadlineExceeded)
	}
	if err := tok.Error(); err != nil {
		if errors.Is(err, paho.ErrNotConnected) || strings.Contains(err.Error(), "connection lost") {
			return nil, fmt.Errorf("mqtt: subscribe: %w (%w)", ErrNotConnected, err)
		}
		return nil, fmt.Errorf("mqtt: subscribe: %w", err)
	}
	st, ok := tok.(*paho.SubscribeToken)
	if !ok {
		return nil, fmt.Errorf("mqtt: subscribe: unexpected token %T", tok)
	}
	res := st.Result()
	granted = make([]byte, len(topics))
	var refused, downgraded []string
	for i, topic := range topics {
		g, ok := res[topic]
		if !ok {
			g = 0x80
		}
		granted[i] = g
		switch {
		case g == 0x80 || g > 2:
			refused = append(refused, topic)
		case g < qos:
			downgraded = append(downgraded, fmt.Sprintf("%s: granted %d, requested %d", topic, g, qos))
		}
	}
	var errs []error
	if len(refused) > 0 {
		errs = append(errs, fmt.Errorf("mqtt: subscription refused by the broker (not authorized?) for %q: %w", refused, bus.ErrRefused))
	}
	if len(downgraded) > 0 {
		errs = append(errs, fmt.Errorf("%w (%s)", ErrQoSDowngraded, strings.Join(downgraded, "; ")))
	}
	return granted, errors.Join(errs...)
}
