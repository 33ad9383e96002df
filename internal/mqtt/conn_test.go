package mqtt

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/bus"
)

// serveEcho is a broker that acknowledges every PUBLISH (PUBACK, or PUBREC
// and PUBCOMP at QoS 2) and sends it straight back to its publisher, without
// allocating per packet: the test's allocation counts are the client's.
func serveEcho(c net.Conn) {
	rd := newReader(c, 1<<20)
	out := make([]byte, 0, 64<<10)
	v5 := false
	for {
		hdr, body, err := rd.next()
		if err != nil {
			return
		}
		out = out[:0]
		switch hdr >> 4 {
		case 1: // CONNECT
			if v5 = len(body) > 6 && body[6] == 5; v5 {
				out = append(out, 0x20, 3, 0, 0, 0)
			} else {
				out = append(out, 0x20, 2, 0, 0)
			}
		case typePublish:
			p, err := decodePublish(hdr, body)
			if err != nil {
				return
			}
			switch p.qos {
			case 1:
				out = appendAck(out, typePuback, p.id)
			case 2:
				out = appendAck(out, typePubrec, p.id)
			}
			out = append(out, hdr&^0x08)
			out = appendVarint(out, len(body))
			out = append(out, body...)
		case typePubrel:
			id, _ := decodeAck(hdr, body)
			out = appendAck(out, typePubcomp, id)
		case 12: // PINGREQ
			out = append(out, 0xd0, 0)
		case 14: // DISCONNECT
			return
		}
		if len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return
			}
		}
	}
}

// countHandler counts deliveries and checks their payload size, without allocating.
type countHandler struct {
	msgs, events atomic.Int64
	bad          atomic.Int64
}

func (h *countHandler) HandleMessage(m bus.Message) {
	if len(m.Payload) != 128 || m.Topic != "alloc/t" {
		h.bad.Add(1)
	}
	h.msgs.Add(1)
}
func (h *countHandler) HandleEvent(bus.Event) { h.events.Add(1) }

// TestPublishDeliverAllocs pins the hot path at 0 allocations per message:
// Publish (encode, queue, write, wait for PUBACK/PUBCOMP) and the delivery
// of the same message back (read, decode, handler, PUBACK/PUBREC queued and
// written), at QoS 0, 1 and 2.
func TestPublishDeliverAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	f := startFake(t, serveEcho)
	for _, tc := range []struct {
		qos     byte
		linger  time.Duration
		version int
	}{{0, 0, 3}, {1, 0, 3}, {2, 0, 3}, {0, 100 * time.Microsecond, 3}, {1, 100 * time.Microsecond, 3},
		{0, 0, 5}, {1, 0, 5}, {2, 0, 5}, {1, 100 * time.Microsecond, 5}} {
		qos := tc.qos
		c := newClient(t, Config{URL: "mqtt://" + f.addr(), QoS: qos, QoSSet: true, Linger: tc.linger, Version: tc.version})
		var h countHandler
		conn := dial(t, c, context.Background(), "alloc", &h)
		payload := make([]byte, 128)
		ctx := context.Background()
		var n int64
		allocs := testing.AllocsPerRun(2000, func() {
			if err := conn.Publish(ctx, "alloc/t", payload); err != nil {
				t.Fatal(err)
			}
			n++
			if qos > 0 {
				for h.msgs.Load() < n { // the echo precedes the acknowledgement's completion only sometimes
					runtime.Gosched()
				}
			}
		})
		if allocs != 0 {
			t.Errorf("MQTT %d qos %d linger %v: %v allocs per publish+delivery, want 0", tc.version, qos, tc.linger, allocs)
		}
		if h.bad.Load() != 0 {
			t.Errorf("qos %d: %d deliveries with the wrong topic or payload", qos, h.bad.Load())
		}
		_ = conn.Close()
	}
}

// TestHostileLengths: a broker declaring 256 MB is a protocol error with one
// line, in a CONNACK (Dial fails) and in a PUBLISH (the connection is
// dropped and retried), and nothing near that size is allocated.
func TestHostileLengths(t *testing.T) {
	huge := []byte{0xff, 0xff, 0xff, 0x7f}
	connack := startFake(t, func(c net.Conn) {
		buf := make([]byte, 512)
		if _, err := c.Read(buf); err != nil {
			return
		}
		_, _ = c.Write(append([]byte{0x20}, huge...))
		_, _ = c.Write(make([]byte, 8))
	})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c := newClient(t, Config{URL: "mqtt://" + connack.addr(), ConnectTimeout: 5 * time.Second})
	var rec recorder
	if _, err := c.Dial(context.Background(), "hostile-connack", &rec); !errors.Is(err, bus.ErrProtocol) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Dial: got %v, want one line wrapping bus.ErrProtocol", err)
	}
	if err := c.Check(context.Background()); !errors.Is(err, bus.ErrProtocol) {
		t.Fatalf("Check: got %v, want bus.ErrProtocol", err)
	}

	publish := startFake(t, func(c net.Conn) {
		buf := make([]byte, 512)
		if _, err := c.Read(buf); err != nil {
			return
		}
		_, _ = c.Write([]byte{0x20, 2, 0, 0})
		_, _ = c.Write(append([]byte{0x30}, huge...))
		_, _ = c.Write(make([]byte, 64<<10))
		_, _ = c.Read(buf)
	})
	c = newClient(t, Config{URL: "mqtt://" + publish.addr(), PayloadSize: 1000, Backoff: fastBackoff})
	conn := dial(t, c, context.Background(), "hostile-publish", &rec)
	pollUntil(t, "the disconnect", func() bool { return len(rec.eventsOf(bus.Disconnected)) >= 1 })
	_ = conn.Close()
	runtime.ReadMemStats(&after)
	err := rec.eventsOf(bus.Disconnected)[0].Err
	var tl *PacketTooLargeError
	if !errors.As(err, &tl) || !errors.Is(err, bus.ErrProtocol) || bus.Classify(err) != bus.ClassProtocol || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Disconnected.Err = %v, want one line, a PacketTooLargeError (class protocol)", err)
	}
	if tl.Max != MaxPacketFor(1000) {
		t.Errorf("maximum %d, want MaxPacketFor(1000) = %d", tl.Max, MaxPacketFor(1000))
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
		t.Fatalf("allocated %d bytes meanwhile; the declared 256 MB must never be allocated", grew)
	}
}

// TestKeepAlive: a connection that writes nothing sends PINGREQ from the
// shared timer; one whose broker stops answering PINGREQ is dropped as a
// timeout and reconnected.
func TestKeepAlive(t *testing.T) {
	var pings atomic.Int64
	var answer atomic.Bool
	answer.Store(true)
	f := startFake(t, func(c net.Conn) {
		serveMuteBrokerFunc(&pingGate{Conn: c, answer: &answer}, func(typ byte) {
			if typ == 12 {
				pings.Add(1)
			}
		})
	})
	c := newClient(t, Config{URL: "mqtt://" + f.addr(), KeepAlive: time.Second, ConnectTimeout: 500 * time.Millisecond, Backoff: fastBackoff})
	var rec recorder
	conn := dial(t, c, context.Background(), "keepalive", &rec)
	pollUntil(t, "two PINGREQs", func() bool { return pings.Load() >= 2 })
	if d := rec.eventsOf(bus.Disconnected); len(d) != 0 {
		t.Fatalf("disconnected although PINGRESP came: %v", d[0].Err)
	}
	answer.Store(false)
	pollUntil(t, "the ping timeout", func() bool { return len(rec.eventsOf(bus.Disconnected)) >= 1 })
	if err := rec.eventsOf(bus.Disconnected)[0].Err; bus.Classify(err) != bus.ClassTimeout {
		t.Fatalf("Disconnected.Err = %v, want class timeout", err)
	}
	answer.Store(true)
	pollUntil(t, "the reconnect", func() bool { return len(rec.eventsOf(bus.Connected)) >= 2 })
	_ = conn.Close()
}

// pingGate drops PINGRESP (0xd0 0x00) writes while answer is false.
type pingGate struct {
	net.Conn
	answer *atomic.Bool
}

func (g *pingGate) Write(p []byte) (int, error) {
	if len(p) == 2 && p[0] == 0xd0 && !g.answer.Load() {
		return 2, nil
	}
	return g.Conn.Write(p)
}

// TestWindowFull: at QoS 1 against a broker that never acknowledges, the
// window of packet IDs fills; a publish past it waits at most PublishTimeout
// and is then not sent (a timeout), and each publish inside the window ends
// unknown.
func TestWindowFull(t *testing.T) {
	f := startFake(t, serveMuteBroker)
	c := newClient(t, Config{URL: "mqtt://" + f.addr(), QoS: 1, PublishTimeout: 300 * time.Millisecond})
	var rec recorder
	conn := dial(t, c, context.Background(), "window", &rec)
	waits := make([]func() error, 0, maxSlots)
	for range maxSlots - 1 {
		waits = append(waits, conn.PublishAsync(context.Background(), "w", []byte("p")))
	}
	err := conn.Publish(context.Background(), "w", []byte("p"))
	if errors.Is(err, bus.ErrUnknownOutcome) || bus.Classify(err) != bus.ClassTimeout {
		t.Fatalf("publish past a full window: got %v, want not sent, class timeout", err)
	}
	for _, w := range waits {
		if err := w(); !errors.Is(err, bus.ErrUnknownOutcome) {
			t.Fatalf("unacknowledged publish: got %v, want ErrUnknownOutcome", err)
		}
	}
}

// TestPersistentSession: with CleanSession false the broker keeps a
// subscriber's session across a reconnect: the Conn reports SessionPresent,
// and the QoS 1 messages published while it was away arrive after it (a
// message whose PUBACK the cut lost may come again first: QoS 1 is at
// least once).
func TestPersistentSession(t *testing.T) {
	b := startBroker(t, brokerOpts{})
	ctx := context.Background()
	c := newClient(t, Config{URL: "mqtt://" + b.addr, QoS: 1, CleanSession: boolPtr(false), Backoff: backoff.Config{Initial: 300 * time.Millisecond, Max: 300 * time.Millisecond, Multiplier: 1}})
	pc := newClient(t, Config{URL: "mqtt://" + b.addr, QoS: 1})
	var rec, pubRec recorder
	sub := dial(t, c, ctx, "session-sub", &rec)
	pub := dial(t, pc, ctx, "session-pub", &pubRec)
	if err := sub.Subscribe(ctx, []string{"s/1"}); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, pub, &rec, "s/1", "before")
	// Close the socket under the Conn, as a network fault would.
	sub.cur.Load().kill(errors.New("test: cut"))
	pollUntil(t, "the disconnect", func() bool { return len(rec.eventsOf(bus.Retrying)) >= 1 })
	if err := pub.Publish(ctx, "s/1", []byte("while away")); err != nil {
		t.Fatal(err)
	}
	// "before" may come again: the socket can die before its PUBACK reached
	// the broker, and QoS 1 then redelivers it. Anything else is wrong.
	away := func() bool {
		for _, m := range rec.messages()[1:] {
			if string(m.Payload) == "while away" {
				return true
			}
		}
		return false
	}
	pollUntil(t, "the queued message", away)
	for i, m := range rec.messages()[1:] {
		if p := string(m.Payload); p != "while away" && p != "before" {
			t.Fatalf("after the reconnect, message %d: got %q", i+1, p)
		}
	}
	cs := rec.eventsOf(bus.Connected)
	if len(cs) != 2 || cs[0].SessionPresent || !cs[1].SessionPresent {
		t.Fatalf("Connected events %+v: want SessionPresent false, then true", cs)
	}
}
