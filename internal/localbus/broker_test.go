package localbus

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	pahopackets "github.com/eclipse/paho.mqtt.golang/packets"
)

func mqttOnly() Config { return Config{HTTPAddr: Disabled} }

func TestMQTTRoundTrip(t *testing.T) {
	b := startBus(t, mqttOnly())
	if b.HTTPURL() != "" {
		t.Fatalf("HTTPURL() = %q with the long-poll server disabled", b.HTTPURL())
	}
	pub, err := mqttConnect(t, b.MQTTAddr(), "pub", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, qos := range []byte{0, 1, 2} {
		t.Run(fmt.Sprintf("qos=%d", qos), func(t *testing.T) {
			got := make(chan paho.Message, 1)
			sub, err := mqttConnect(t, b.MQTTAddr(), fmt.Sprintf("sub-%d", qos), nil)
			if err != nil {
				t.Fatal(err)
			}
			topic := fmt.Sprintf("rt/%d", qos)
			wait(t, sub.Subscribe(topic, qos, func(_ paho.Client, m paho.Message) { got <- m }), "subscribe")
			wait(t, pub.Publish(topic, qos, false, "hello"), "publish")
			var m paho.Message
			eventually(t, "delivery", func() bool {
				select {
				case m = <-got:
					return true
				default:
					return false
				}
			})
			if string(m.Payload()) != "hello" || m.Topic() != topic || m.Qos() != qos || m.Retained() {
				t.Fatalf("got %q on %q qos %d retained %v", m.Payload(), m.Topic(), m.Qos(), m.Retained())
			}
		})
	}
	t.Run("retained", func(t *testing.T) {
		wait(t, pub.Publish("ret/x", 1, true, "kept"), "publish retained")
		// mochi stores the retained message and acknowledges the publish
		// before it forwards it to the subscribers, so a subscription made
		// right after the PUBACK can also receive the live copy (retain flag
		// clear) beside the retained one. The retained copy must arrive; a
		// live copy may come first.
		got := make(chan paho.Message, 4)
		sub, err := mqttConnect(t, b.MQTTAddr(), "late-sub", nil)
		if err != nil {
			t.Fatal(err)
		}
		wait(t, sub.Subscribe("ret/#", 1, func(_ paho.Client, m paho.Message) { got <- m }), "subscribe")
		var seen []string
		eventually(t, "retained delivery", func() bool {
			for {
				select {
				case m := <-got:
					if string(m.Payload()) != "kept" || m.Topic() != "ret/x" {
						t.Fatalf("got %q on %q, want only the retained message", m.Payload(), m.Topic())
					}
					seen = append(seen, fmt.Sprintf("retained=%v", m.Retained()))
					if m.Retained() {
						return true
					}
				default:
					return false
				}
			}
		})
		if len(seen) > 2 {
			t.Fatalf("deliveries %v; want the retained copy and at most one live copy", seen)
		}
	})
	if r := b.Requests(); r.MQTTConnects != 5 || r.MQTTPublishes != 4 {
		t.Fatalf("Requests() = %+v, want 5 connects, 4 publishes", r)
	}
}

func TestMQTTOutage(t *testing.T) {
	b := startBus(t, mqttOnly())
	var lost atomic.Bool
	if _, err := mqttConnect(t, b.MQTTAddr(), "victim", func(error) { lost.Store(true) }); err != nil {
		t.Fatal(err)
	}
	b.SetOutage(503)
	eventually(t, "the connected client to be disconnected", lost.Load)
	before := b.Requests().MQTTConnects
	_, err := mqttConnect(t, b.MQTTAddr(), "refused", nil)
	if !errors.Is(err, pahopackets.ErrorRefusedServerUnavailable) {
		t.Fatalf("connect during outage: %v, want server unavailable", err)
	}
	if got := b.Requests().MQTTConnects; got != before+1 {
		t.Fatalf("MQTTConnects = %d, want %d", got, before+1)
	}
	b.SetOutage(0)
	if _, err := mqttConnect(t, b.MQTTAddr(), "back", nil); err != nil {
		t.Fatalf("connect after outage: %v", err)
	}
}

func TestMQTTCloseDisconnects(t *testing.T) {
	b, err := Start(mqttOnly())
	if err != nil {
		t.Fatal(err)
	}
	var lost atomic.Bool
	if _, err := mqttConnect(t, b.MQTTAddr(), "c", func(error) { lost.Store(true) }); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the client to see the connection closed", lost.Load)
	if _, err := mqttConnect(t, b.MQTTAddr(), "after", nil); err == nil {
		t.Fatal("connect after Close succeeded")
	}
}

// TestMQTTCloseWithSilentConn: a connection that never sends CONNECT does not
// hold Close.
func TestMQTTCloseWithSilentConn(t *testing.T) {
	b, err := Start(mqttOnly())
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", b.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	eventually(t, "the connection to be accepted", func() bool {
		ln := b.broker.Listeners
		l, ok := ln.Get("localbus-tcp")
		if !ok {
			return false
		}
		return l.(*tcpListener).set.len() == 1
	})
	done := make(chan error, 1)
	go func() { done <- b.Close() }()
	eventually(t, "Close to return", func() bool {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Close: %v", err)
			}
			return true
		default:
			return false
		}
	})
}

func TestBothProtocols(t *testing.T) {
	b := startBus(t, Config{Hold: time.Second})
	if b.HTTPURL() == "" || b.MQTTAddr() == "" {
		t.Fatalf("HTTPURL %q MQTTAddr %q, want both", b.HTTPURL(), b.MQTTAddr())
	}
	if st := publish(t, b.HTTPURL(), "x", "y"); st != 202 {
		t.Fatalf("publish = %d", st)
	}
	if _, err := mqttConnect(t, b.MQTTAddr(), "c", nil); err != nil {
		t.Fatal(err)
	}
}

// TestMQTTScale opens LOCALBUS_MQTT_SCALE raw MQTT connections and logs what
// they cost. Skipped unless set (mind the fd limit: two per connection).
func TestMQTTScale(t *testing.T) {
	n := envInt("LOCALBUS_MQTT_SCALE", 0)
	if n == 0 {
		t.Skip("set LOCALBUS_MQTT_SCALE=5000 to open that many MQTT connections")
	}
	b := startBus(t, mqttOnly())
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		c, err := net.Dial("tcp", b.MQTTAddr())
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
		id := fmt.Sprintf("c%06d", i)
		pk := []byte{0x10, byte(10 + 2 + len(id)), 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, byte(len(id))}
		if _, err := c.Write(append(pk, id...)); err != nil {
			t.Fatal(err)
		}
		ack := make([]byte, 4)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
			t.Fatalf("connack %d: %v %x", i, err, ack)
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	t.Logf("%d MQTT connections: %d goroutines, heap in use +%.1f MiB, stacks +%.1f MiB (%.1f KiB/connection, client side included)",
		n, runtime.NumGoroutine(), float64(after.HeapInuse-before.HeapInuse)/(1<<20),
		float64(after.StackInuse-before.StackInuse)/(1<<20),
		float64(after.HeapInuse-before.HeapInuse+after.StackInuse-before.StackInuse)/1024/float64(n))
}

// TestMQTTThroughput publishes 1,000 msg/s for 3 s to 10 QoS 1 subscribers and
// checks none is lost. Skipped in -short runs.
func TestMQTTThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("3 s load test")
	}
	const subs, rate, secs = 10, 1000, 3
	b := startBus(t, mqttOnly())
	var got atomic.Int64
	for i := range subs {
		c, err := mqttConnect(t, b.MQTTAddr(), fmt.Sprintf("tp-sub-%d", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		wait(t, c.Subscribe("tp", 1, func(paho.Client, paho.Message) { got.Add(1) }), "subscribe")
	}
	pub, err := mqttConnect(t, b.MQTTAddr(), "tp-pub", nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	toks := make([]paho.Token, 0, rate*secs)
	for i := range rate * secs {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / rate)); d > 0 {
			time.Sleep(d) // pacing the load, not synchronisation
		}
		toks = append(toks, pub.Publish("tp", 1, false, fmt.Sprintf("m%d", i)))
	}
	for _, tok := range toks {
		wait(t, tok, "publish")
	}
	eventually(t, "every delivery", func() bool { return got.Load() >= subs*rate*secs })
	if n := got.Load(); n != subs*rate*secs {
		t.Fatalf("received %d, want %d", n, subs*rate*secs)
	}
}
