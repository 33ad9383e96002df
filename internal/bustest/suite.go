// Package bustest is the conformance suite for bus.Conn, and the test helpers
// the transports' tests share (Recorder, Eventually, Within, Proxy, NewPKI).
//
// Each transport's package calls Run from its own _test.go, against the
// embedded bus (localbus) and, when EVENTSWARM_MOSQUITTO / EVENTSWARM_NCHAN
// are set, against a real Mosquitto or Nchan. The suite asserts only what the
// contract determines: outcomes, events, which messages arrive and how often.
// It never asserts a latency or a rate; every wait is bounded by HangGuard
// (a hang becomes a failure) and every loop by a count.
package bustest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
)

// Transport is what the suite needs to know of a transport and its bus.
type Transport struct {
	// Addr is the bus's host:port.
	Addr string
	// Dialer returns a dialer for the bus at addr (host:port: the bus itself
	// or a Proxy in front of it). Its connections must use a short reconnect
	// backoff (reconnects are tested) and a publish timeout of at least
	// several minutes, so that a pending publish ends only when Close ends it;
	// MQTT must publish at QoS 1 or 2 (a pending publish waits for an ack).
	// Anything it opens is closed by the caller's t.Cleanup.
	Dialer func(t *testing.T, addr string) bus.Dialer
}

// Run runs the whole suite as subtests of t.
func Run(t *testing.T, tr Transport) {
	t.Run("PublishOutcomes", func(t *testing.T) { testPublishOutcomes(t, tr) })
	t.Run("SubscribeConfirmed", func(t *testing.T) { testSubscribeConfirmed(t, tr) })
	t.Run("SecondSubscribeAdds", func(t *testing.T) { testSecondSubscribeAdds(t, tr) })
	t.Run("ReconnectResubscribes", func(t *testing.T) { testReconnectResubscribes(t, tr) })
	t.Run("Unsubscribe", func(t *testing.T) { testUnsubscribe(t, tr) })
	t.Run("CloseCancelsPending", func(t *testing.T) { testCloseCancelsPending(t, tr) })
	t.Run("ClosedConn", func(t *testing.T) { testClosedConn(t, tr) })
}

var topicSeq atomic.Int64

// Topic returns a topic name valid on every transport (letters, digits and
// '-') and unique to this process and moment, so runs against a shared real
// bus do not see each other's messages.
func Topic(name string) string {
	return fmt.Sprintf("bustest-%s-%d-%d", name, time.Now().UnixNano(), topicSeq.Add(1))
}

var idSeq atomic.Int64

// Dial opens a Conn with a unique id and closes it at the end of the test.
func Dial(t *testing.T, d bus.Dialer, name string, h bus.Handler) bus.Conn {
	t.Helper()
	id := fmt.Sprintf("bustest-%s-%d-%d", name, time.Now().UnixNano(), idSeq.Add(1))
	c, err := d.Dial(context.Background(), id, h)
	if err != nil {
		t.Fatalf("Dial %s: %v", name, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

var readySeq atomic.Int64

// Ready publishes markers to topic until one reaches rec, so that what is
// published next is published after the subscription took effect at the bus
// (a long-poll Subscribe returns before the server holds the poll). Publish
// errors are retried too (a publisher may be reconnecting). It is bounded by
// a count of attempts; it asserts nothing about how long they take.
func Ready(t *testing.T, pub bus.Conn, rec *Recorder, topic string) {
	t.Helper()
	const attempts = 60
	prefix := fmt.Sprintf("ready %s %d ", topic, readySeq.Add(1))
	arrived := func() bool {
		for _, p := range rec.Payloads() {
			if strings.HasPrefix(p, prefix) {
				return true
			}
		}
		return false
	}
	for i := range attempts {
		err := pub.Publish(context.Background(), topic, []byte(prefix+strconv.Itoa(i)))
		if err == nil && waitFor(arrived, HangGuard/attempts) {
			return
		}
		if err != nil {
			time.Sleep(HangGuard / attempts)
		}
	}
	t.Fatalf("no marker on %s reached the subscriber in %d attempts", topic, attempts)
}

// waitFor polls cond for at most d; it reports whether cond held.
func waitFor(cond func() bool, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// deliver publishes each payload to its topic, in order, and waits until
// every one has reached rec; it then checks each arrived exactly once (a
// trailer published last on the first topic bounds the wait for copies on an
// in-order bus).
func deliver(t *testing.T, pub bus.Conn, rec *Recorder, msgs ...[2]string) {
	t.Helper()
	for _, m := range msgs {
		if err := pub.Publish(context.Background(), m[0], []byte(m[1])); err != nil {
			t.Fatalf("Publish %q to %s: %v", m[1], m[0], err)
		}
	}
	for _, m := range msgs {
		Eventually(t, "delivery of "+m[1], func() bool { return rec.Count(m[1]) > 0 })
	}
	for _, m := range msgs {
		if n := rec.Count(m[1]); n != 1 {
			t.Errorf("%q arrived %d times, want once", m[1], n)
		}
	}
}

func testPublishOutcomes(t *testing.T, tr Transport) {
	d := tr.Dialer(t, tr.Addr)
	var rec Recorder
	pub := Dial(t, d, "pub", &rec)
	topic := Topic("outcomes")

	// Accepted by the bus, with no subscriber: nil, and one Published event without Err.
	if err := pub.Publish(context.Background(), topic, []byte("nobody listens")); err != nil {
		t.Fatalf("Publish with no subscriber: %v, want nil", err)
	}
	if ev := rec.Events(bus.Published); len(ev) != 1 || ev[0].Err != nil {
		t.Fatalf("Published events after one accepted publish: %+v, want one with Err nil", ev)
	}

	// A context that has ended: an error, and nothing is left running.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := pub.Publish(ctx, topic, []byte("cancelled")); err == nil {
		t.Fatal("Publish with an ended context: nil, want an error")
	}

	// A bus that never answers: the caller's deadline ends the publish with an
	// unknown outcome (the request was sent, no answer came).
	p := NewProxy(t, tr.Addr)
	var srec Recorder
	stalled := Dial(t, tr.Dialer(t, p.Addr()), "stalled", &srec)
	if err := stalled.Publish(context.Background(), topic, []byte("through the proxy")); err != nil {
		t.Fatalf("Publish through the proxy: %v", err)
	}
	p.Blackhole()
	before := p.Swallowed()
	ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var err error
	Within(t, "Publish to a silent bus with a deadline", func() { err = stalled.Publish(ctx, topic, []byte("into the void")) })
	switch {
	case err == nil:
		t.Fatal("Publish to a silent bus: nil, want an error")
	case errors.Is(err, bus.ErrUnknownOutcome):
	case waitFor(func() bool { return p.Swallowed() > before }, time.Second):
		// Some of it was sent: the bus may have it, so the outcome is unknown.
		t.Fatalf("Publish sent to a silent bus: %v, want an error wrapping bus.ErrUnknownOutcome", err)
	}
}

func testSubscribeConfirmed(t *testing.T, tr Transport) {
	d := tr.Dialer(t, tr.Addr)
	var rec, prec Recorder
	sub := Dial(t, d, "sub", &rec)
	pub := Dial(t, d, "pub", &prec)
	topic := Topic("confirm")
	if err := sub.Subscribe(context.Background(), []string{topic}); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	Eventually(t, "a Subscribed event", func() bool { return rec.NumEvents(bus.Subscribed) > 0 })
	if e := rec.Events(bus.Subscribed)[0]; e.Err != nil {
		t.Fatalf("Subscribed event: Err %v, want nil", e.Err)
	}
	Ready(t, pub, &rec, topic)
	const n = 20
	msgs := make([][2]string, n)
	for i := range msgs {
		msgs[i] = [2]string{topic, fmt.Sprintf("m%02d", i)}
	}
	deliver(t, pub, &rec, msgs...)
	for _, m := range rec.Messages() {
		if m.Topic != "" && m.Topic != topic {
			t.Errorf("message %q on topic %q, want %q (or empty)", m.Payload, m.Topic, topic)
		}
	}
	if bad := nonEmptyErrs(rec.Events(bus.Subscribed)); bad != "" {
		t.Errorf("Subscribed events with errors: %s", bad)
	}
}

// testSecondSubscribeAdds checks bus.Conn's rule: a second Subscribe adds its
// topics; those of the first keep delivering. Subscribing again to a topic
// already subscribed delivers no duplicates.
func testSecondSubscribeAdds(t *testing.T, tr Transport) {
	d := tr.Dialer(t, tr.Addr)
	var rec, prec Recorder
	sub := Dial(t, d, "sub", &rec)
	pub := Dial(t, d, "pub", &prec)
	a, b := Topic("first"), Topic("second")
	if err := sub.Subscribe(context.Background(), []string{a}); err != nil {
		t.Fatal(err)
	}
	Ready(t, pub, &rec, a)
	if err := sub.Subscribe(context.Background(), []string{b}); err != nil {
		t.Fatalf("second Subscribe: %v", err)
	}
	Ready(t, pub, &rec, b)
	deliver(t, pub, &rec, [2]string{a, "a after the second Subscribe"}, [2]string{b, "b after the second Subscribe"})

	if err := sub.Subscribe(context.Background(), []string{a, b}); err != nil {
		t.Fatalf("Subscribe to topics already subscribed: %v", err)
	}
	Ready(t, pub, &rec, a)
	Ready(t, pub, &rec, b)
	deliver(t, pub, &rec, [2]string{a, "a once"}, [2]string{b, "b once"}, [2]string{a, "a trailer"})
}

// testReconnectResubscribes cuts the subscriber's connections: the transport
// reports Disconnected, reconnects by itself and resubscribes to the topics of
// every Subscribe call.
func testReconnectResubscribes(t *testing.T, tr Transport) {
	p := NewProxy(t, tr.Addr)
	var rec, prec Recorder
	sub := Dial(t, tr.Dialer(t, p.Addr()), "sub", &rec)
	pub := Dial(t, tr.Dialer(t, tr.Addr), "pub", &prec)
	a, b := Topic("re-a"), Topic("re-b")
	for _, topic := range []string{a, b} {
		if err := sub.Subscribe(context.Background(), []string{topic}); err != nil {
			t.Fatal(err)
		}
		Ready(t, pub, &rec, topic)
	}
	for round := 1; round <= 2; round++ {
		before := rec.NumEvents(bus.Disconnected)
		p.Cut()
		Eventually(t, "a Disconnected event", func() bool { return rec.NumEvents(bus.Disconnected) > before })
		if e := rec.Events(bus.Disconnected)[before]; e.Err == nil {
			t.Errorf("Disconnected event without Err")
		}
		Ready(t, pub, &rec, a)
		Ready(t, pub, &rec, b)
		deliver(t, pub, &rec, [2]string{a, fmt.Sprintf("a after cut %d", round)}, [2]string{b, fmt.Sprintf("b after cut %d", round)})
	}
	if n := rec.NumEvents(bus.Connected); n < 1 {
		t.Errorf("no Connected event")
	}
}

// testUnsubscribe checks bus.Unsubscriber on transports that have it: once
// Unsubscribe returns, nothing published later to its topics arrives (the
// later message on a topic still subscribed, published after it by the same
// publisher, bounds the wait), the other topics keep delivering, a new
// Subscribe brings a topic back, and a reconnect does not resubscribe to a
// topic given up.
func testUnsubscribe(t *testing.T, tr Transport) {
	p := NewProxy(t, tr.Addr)
	var rec, prec Recorder
	sub := Dial(t, tr.Dialer(t, p.Addr()), "sub", &rec)
	us, ok := sub.(bus.Unsubscriber)
	if !ok {
		t.Skip("this transport has no Unsubscribe (swarm opens a connection per session on it)")
	}
	pub := Dial(t, tr.Dialer(t, tr.Addr), "pub", &prec)
	a, b := Topic("unsub-a"), Topic("unsub-b")
	if err := sub.Subscribe(context.Background(), []string{a, b}); err != nil {
		t.Fatal(err)
	}
	Ready(t, pub, &rec, a)
	Ready(t, pub, &rec, b)
	// gone publishes m to gone, then after to a topic still subscribed, and
	// checks that only after arrives.
	gone := func(gone, m, still, after string) {
		t.Helper()
		for _, x := range [][2]string{{gone, m}, {still, after}} {
			if err := pub.Publish(context.Background(), x[0], []byte(x[1])); err != nil {
				t.Fatalf("Publish %q: %v", x[1], err)
			}
		}
		Eventually(t, "delivery of "+after, func() bool { return rec.Count(after) > 0 })
		if n := rec.Count(m); n != 0 {
			t.Errorf("%q, published to %s after its Unsubscribe, arrived %d times", m, gone, n)
		}
	}
	if err := us.Unsubscribe(context.Background(), []string{a}); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	gone(a, "a after Unsubscribe", b, "b after Unsubscribe")
	if err := us.Unsubscribe(context.Background(), []string{a}); err != nil {
		t.Fatalf("Unsubscribe from a topic no longer subscribed: %v", err)
	}

	if err := sub.Subscribe(context.Background(), []string{a}); err != nil {
		t.Fatalf("Subscribe again: %v", err)
	}
	Ready(t, pub, &rec, a)
	deliver(t, pub, &rec, [2]string{a, "a subscribed again"}, [2]string{b, "b still"})

	if err := us.Unsubscribe(context.Background(), []string{b}); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	before := rec.NumEvents(bus.Disconnected)
	p.Cut()
	Eventually(t, "a Disconnected event", func() bool { return rec.NumEvents(bus.Disconnected) > before })
	Ready(t, pub, &rec, a)
	gone(b, "b after a reconnect", a, "a after a reconnect")
}

// testCloseCancelsPending: with the bus silent, a publish waiting for its
// answer and a subscription in progress both end when Close is called (not
// when their timeouts pass, which the Transport sets far beyond HangGuard).
func testCloseCancelsPending(t *testing.T, tr Transport) {
	p := NewProxy(t, tr.Addr)
	d := tr.Dialer(t, p.Addr())
	var rec Recorder
	conn := Dial(t, d, "pending", &rec)
	topic := Topic("pending")
	if err := conn.Publish(context.Background(), topic, []byte("warm up")); err != nil {
		t.Fatalf("Publish through the proxy: %v", err)
	}
	p.Blackhole()
	pubDone := make(chan error, 1)
	go func() { pubDone <- conn.Publish(context.Background(), topic, []byte("pending")) }()
	Eventually(t, "the pending publish to reach the proxy", func() bool { return p.Swallowed() > 0 })
	sent := p.Swallowed()
	subDone := make(chan error, 1)
	go func() { subDone <- conn.Subscribe(context.Background(), []string{topic}) }()

	Within(t, "Close with a pending publish and subscribe", func() { _ = conn.Close() })
	select {
	case err := <-pubDone:
		if err == nil {
			t.Errorf("pending Publish returned nil after Close, want an error")
		}
	case <-time.After(HangGuard):
		t.Fatalf("pending Publish did not return after Close")
	}
	select {
	case <-subDone: // an error, or nil if the transport had only started it (long-poll)
	case <-time.After(HangGuard):
		t.Fatalf("pending Subscribe did not return after Close (swallowed %d bytes)", sent)
	}
}

// testClosedConn: after Close, Publish and Subscribe fail and Close again is harmless.
func testClosedConn(t *testing.T, tr Transport) {
	var rec Recorder
	conn := Dial(t, tr.Dialer(t, tr.Addr), "closed", &rec)
	if err := conn.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	topic := Topic("closed")
	if err := conn.Publish(context.Background(), topic, []byte("late")); err == nil {
		t.Error("Publish after Close: nil, want an error")
	}
	if err := conn.Subscribe(context.Background(), []string{topic}); err == nil {
		t.Error("Subscribe after Close: nil, want an error")
	}
	Within(t, "a second Close", func() { _ = conn.Close() })
}

func nonEmptyErrs(es []bus.Event) string {
	var s []string
	for _, e := range es {
		if e.Err != nil {
			s = append(s, e.Err.Error())
		}
	}
	return strings.Join(s, "; ")
}
