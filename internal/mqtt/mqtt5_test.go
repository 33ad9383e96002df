package mqtt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
)

func TestVersionSelection(t *testing.T) {
	for _, tc := range []struct {
		url     string
		version int
		want    int
		bad     bool
	}{
		{"mqtt://h", 0, Version311, false},
		{"mqtt5://h", 0, Version5, false},
		{"mqtt5s://h", 0, Version5, false},
		{"mqtt5+ws://h/mqtt", 0, Version5, false},
		{"mqtt5+wss://h/mqtt", 0, Version5, false},
		{"mqtt://h", 5, Version5, false},
		{"mqtt5://h", 5, Version5, false},
		{"mqtt5://h", 3, 0, true},
		{"mqtt://h", 4, 0, true},
	} {
		cfg := Config{URL: tc.url, Version: tc.version}
		err := cfg.Validate()
		if tc.bad {
			if err == nil || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s --mqtt-version %d: got %v, want one error line", tc.url, tc.version, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if got := cfg.withDefaults().Version; got != tc.want {
			t.Errorf("%s --mqtt-version %d: version %d, want %d", tc.url, tc.version, got, tc.want)
		}
	}
	ep, err := parseURL("mqtt5s://h")
	if err != nil || !ep.tls || ep.addr != "h:8883" {
		t.Fatalf("mqtt5s: %+v %v", ep, err)
	}
}

// TestRoundTrip5 is TestRoundTrip on MQTT 5 against mochi, with a
// persistent session (session expiry) at QoS 1.
func TestRoundTrip5(t *testing.T) {
	b := startBroker(t, brokerOpts{})
	for _, qos := range []byte{0, 1, 2} {
		t.Run(fmt.Sprintf("qos=%d", qos), func(t *testing.T) {
			ctx := context.Background()
			clean := qos != 1
			c := newClient(t, Config{URL: "mqtt5://" + b.addr, QoS: qos, QoSSet: true, CleanSession: &clean})
			var subRec, pubRec recorder
			sub := dial(t, c, ctx, fmt.Sprintf("sub5-%d", qos), &subRec)
			pub := dial(t, c, ctx, fmt.Sprintf("pub5-%d", qos), &pubRec)
			topic := fmt.Sprintf("rt5/%d", qos)
			if err := sub.Subscribe(ctx, []string{topic}); err != nil {
				t.Fatalf("Subscribe: %v", err)
			}
			const n = 50
			for i := range n {
				if err := pub.Publish(ctx, topic, fmt.Appendf(nil, "m%03d", i)); err != nil {
					t.Fatalf("Publish %d: %v", i, err)
				}
			}
			pollUntil(t, "all messages", func() bool { return subRec.numMessages() >= n })
			for i, m := range subRec.messages() {
				if m.Topic != topic || string(m.Payload) != fmt.Sprintf("m%03d", i) {
					t.Fatalf("message %d: %q on %q", i, m.Payload, m.Topic)
				}
			}
			if cl, ok := b.srv.Clients.Get(fmt.Sprintf("sub5-%d", qos)); !ok || cl.Properties.ProtocolVersion != 5 {
				t.Fatalf("broker sees the client as version %v", cl.Properties.ProtocolVersion)
			} else if want := uint32(0); !clean {
				want = uint32(DefaultSessionExpiry / time.Second)
				if cl.Properties.Props.SessionExpiryInterval != want {
					t.Fatalf("session expiry %d, want %d", cl.Properties.Props.SessionExpiryInterval, want)
				}
			}
		})
	}
}

// TestRefusals5: a CONNACK refusal and a SUBACK refusal are one line naming
// the reason code, classified as on MQTT 3.1.1.
func TestRefusals5(t *testing.T) {
	b := startBroker(t, brokerOpts{user: "u", pass: "p", denySub: "denied/"})
	c := newClient(t, Config{URL: "mqtt5://" + b.addr, Username: "u", Password: "nope"})
	for name, err := range map[string]error{"check": c.Check(context.Background()), "dial": func() error {
		_, err := c.Dial(context.Background(), "refused5", &recorder{})
		return err
	}()} {
		if !errors.Is(err, bus.ErrRefused) || !strings.Contains(err.Error(), "the broker refused the connection: 0x86 bad user name or password") ||
			strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %q, want one line with 0x86 wrapping ErrRefused", name, err)
		}
	}
	ok := newClient(t, Config{URL: "mqtt5://" + b.addr, Username: "u", Password: "p", QoS: 1})
	var rec recorder
	conn := dial(t, ok, context.Background(), "suback5", &rec)
	err := conn.Subscribe(context.Background(), []string{"ok/1", "denied/1"})
	if !errors.Is(err, bus.ErrRefused) || errors.Is(err, ErrQoSDowngraded) || strings.Contains(err.Error(), "\n") ||
		!strings.Contains(err.Error(), `subscription refused by the broker: "denied/1": 0x87 not authorized`) {
		t.Fatalf("SUBACK refusal: got %q", err)
	}
	if subs := rec.eventsOf(bus.Subscribed); len(subs) != 1 || !slices.Equal(subs[0].Granted, []byte{1, 0x87}) {
		t.Fatalf("Subscribed: %+v", subs)
	}
	conn.smu.Lock()
	kept := slices.Clone(conn.topics)
	conn.smu.Unlock()
	if !slices.Equal(kept, []string{"ok/1"}) {
		t.Fatalf("remembered %q, want only the granted one", kept)
	}
	// A broker whose Maximum QoS is below ours: a configuration error at connect.
	zero := byte(0)
	low := startBroker(t, brokerOpts{maxQoS: &zero})
	_, err = newClient(t, Config{URL: "mqtt5://" + low.addr, QoS: 1}).Dial(context.Background(), "maxqos", &recorder{})
	if !errors.Is(err, ErrQoSDowngraded) {
		t.Fatalf("Maximum QoS 0: got %v, want ErrQoSDowngraded", err)
	}
	// An MQTT 3.1.1-only broker answering an MQTT 5 CONNECT.
	v3 := startFake(t, func(c net.Conn) {
		buf := make([]byte, 512)
		if _, err := c.Read(buf); err == nil {
			_, _ = c.Write([]byte{0x20, 2, 0, 1})
		}
	})
	err = newClient(t, Config{URL: "mqtt5://" + v3.addr()}).Check(context.Background())
	if !errors.Is(err, bus.ErrProtocol) || !strings.Contains(err.Error(), "does not speak MQTT 5") {
		t.Fatalf("3.1.1 broker: %v", err)
	}
}

// serve5 is a scripted MQTT 5 broker: CONNACK with props, then onPacket for
// every packet after CONNECT (typ, body) returning bytes to write.
func serve5(connack []byte, onPacket func(typ byte, body []byte) []byte) func(net.Conn) {
	return func(c net.Conn) {
		rd := newReader(c, 1<<20)
		for {
			hdr, body, err := rd.next()
			if err != nil {
				return
			}
			var out []byte
			switch hdr >> 4 {
			case typeConnect:
				out = connack
			case 12:
				out = []byte{0xd0, 0}
			case typeDisconnect:
				return
			default:
				out = onPacket(hdr>>4, body)
			}
			if len(out) > 0 {
				if _, err := c.Write(out); err != nil {
					return
				}
			}
		}
	}
}

// TestAckReasons5: a PUBACK with a failure reason fails the publish (not an
// unknown outcome); PUBREC with one ends the QoS 2 exchange without PUBREL.
func TestAckReasons5(t *testing.T) {
	sawPubrel := make(chan struct{}, 10)
	f := startFake(t, serve5([]byte{0x20, 3, 0, 0, 0}, func(typ byte, body []byte) []byte {
		switch typ {
		case typePublish:
			qos := byte(1)
			if len(body) > 0 && body[len(body)-1] == '2' {
				qos = 2
			}
			p, _ := decodePublishV(0x30|qos<<1, body, true)
			ack := []byte{typePuback << 4, 3, byte(p.id >> 8), byte(p.id), 0x87}
			if qos == 2 {
				ack[0] = typePubrec << 4
				ack[4] = 0x97
			}
			return ack
		case typePubrel:
			sawPubrel <- struct{}{}
		}
		return nil
	}))
	for _, qos := range []byte{1, 2} {
		c := newClient(t, Config{URL: "mqtt5://" + f.addr(), QoS: qos, QoSSet: true, PublishTimeout: 5 * time.Second})
		conn := dial(t, c, context.Background(), fmt.Sprintf("ack5-%d", qos), &recorder{})
		err := conn.Publish(context.Background(), "t", []byte{'x', '0' + qos})
		want := "PUBACK 0x87 not authorized"
		if qos == 2 {
			want = "PUBREC 0x97 quota exceeded"
		}
		if err == nil || errors.Is(err, bus.ErrUnknownOutcome) || !errors.Is(err, bus.ErrRefused) || !strings.Contains(err.Error(), want) {
			t.Fatalf("qos %d: got %v, want a failed publish saying %q", qos, err, want)
		}
		// The packet ID is free again: the next publish gets an answer too.
		if err := conn.Publish(context.Background(), "t", []byte{'y', '0' + qos}); err == nil || errors.Is(err, bus.ErrUnknownOutcome) {
			t.Fatalf("qos %d, second publish: %v", qos, err)
		}
	}
	select {
	case <-sawPubrel:
		t.Fatal("PUBREL sent after a failed PUBREC")
	case <-time.After(50 * time.Millisecond):
	}
}

// TestServerDisconnect5: a DISCONNECT from the broker ends the connection
// with one line naming the reason, then the Conn reconnects.
func TestServerDisconnect5(t *testing.T) {
	var connects atomic.Int32
	f := startFake(t, func(c net.Conn) {
		first := connects.Add(1) == 1
		serve5([]byte{0x20, 3, 0, 0, 0}, func(typ byte, body []byte) []byte {
			if typ == typeSubscribe && first {
				return []byte{0xe0, 7, 0x8b, 5, 0x1f, 0, 2, 'b', 'y'} // server shutting down, "by"
			}
			if typ == typeSubscribe {
				return []byte{0x90, 4, body[0], body[1], 0, 1}
			}
			return nil
		})(c)
	})
	c := newClient(t, Config{URL: "mqtt5://" + f.addr(), QoS: 1, Backoff: fastBackoff, PublishTimeout: time.Second})
	var rec recorder
	conn := dial(t, c, context.Background(), "disc5", &rec)
	_ = conn.Subscribe(context.Background(), []string{"t"})
	pollUntil(t, "a disconnect", func() bool { return len(rec.eventsOf(bus.Disconnected)) > 0 })
	err := rec.eventsOf(bus.Disconnected)[0].Err
	var de *DisconnectError
	if !errors.As(err, &de) || de.Reason != 0x8b || err.Error() != `mqtt: the broker disconnected: 0x8b server shutting down (broker says "by")` {
		t.Fatalf("Disconnected.Err = %v", err)
	}
	if bus.Classify(err) == bus.ClassProtocol {
		t.Fatalf("a server shutting down is not a protocol error: %v", bus.Classify(err))
	}
	pollUntil(t, "reconnected", func() bool { return len(rec.eventsOf(bus.Connected)) >= 2 })
}

// TestReceiveMaximum5: the broker's Receive Maximum caps our publishes in
// flight; its Maximum Packet Size refuses a larger publish without sending it.
func TestReceiveMaximum5(t *testing.T) {
	got := make(chan int, 100)
	// CONNACK: Receive Maximum 2, Maximum Packet Size 100; never acknowledges.
	f := startFake(t, serve5([]byte{0x20, 11, 0, 0, 8, 0x21, 0, 2, 0x27, 0, 0, 0, 100}, func(typ byte, body []byte) []byte {
		if typ == typePublish {
			got <- len(body)
		}
		return nil
	}))
	c := newClient(t, Config{URL: "mqtt5://" + f.addr(), QoS: 1, PublishTimeout: 300 * time.Millisecond})
	conn := dial(t, c, context.Background(), "rm5", &recorder{})
	var waits []func() error
	for range 3 {
		waits = append(waits, conn.PublishAsync(context.Background(), "t", []byte("x")))
	}
	for range 2 {
		<-got
	}
	for i, w := range waits {
		err := w()
		if i < 2 && !errors.Is(err, bus.ErrUnknownOutcome) {
			t.Fatalf("publish %d: %v, want an unknown outcome (sent, never acknowledged)", i, err)
		}
		if i == 2 && (err == nil || errors.Is(err, bus.ErrUnknownOutcome)) {
			t.Fatalf("publish 3 beyond the Receive Maximum: %v, want not sent", err)
		}
	}
	select {
	case <-got:
		t.Fatal("a third publish was sent beyond the broker's Receive Maximum")
	default:
	}
	if err := conn.Publish(context.Background(), "t", make([]byte, 200)); err == nil || !strings.Contains(err.Error(), "Maximum Packet Size 100") {
		t.Fatalf("oversized publish: %v", err)
	}
}
