package target

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/longpoll"
)

func TestProtocolAndValidate(t *testing.T) {
	tests := []struct {
		cfg      Config
		protocol string
		errText  string
	}{
		{Config{}, HTTP, ""},
		{Config{Embedded: MQTT}, MQTT, ""},
		{Config{Embedded: "amqp"}, "amqp", "--embedded"},
		{Config{URL: "mqtt://127.0.0.1:1883"}, MQTT, ""},
		{Config{URL: "mqtts://broker:8883"}, MQTT, ""},
		{Config{URL: "http://127.0.0.1:8080/prefix"}, HTTP, ""},
		{Config{URL: "https://nchan"}, HTTP, ""},
		{Config{URL: "ftp://host"}, "", "not supported"},
		{Config{URL: "mqtt://"}, MQTT, "no host"},
		{Config{URL: "http://[::1"}, "", "not a URL"},
		{Config{URL: "mqtt://h:1883", QoS: 3}, MQTT, "--qos"},
		{Config{Embedded: MQTTWS}, MQTT, ""},
		{Config{URL: "mqtt+ws://h:8080/mqtt"}, MQTT, ""},
		{Config{URL: "mqtt+wss://h/mqtt"}, MQTT, ""},
		{Config{URL: "ws://h/mqtt"}, "", "ambiguous"},
		{Config{URL: "mqtt+ws://h/mqtt", Headers: []longpoll.Header{{Name: "X-A", Value: "b"}}}, MQTT, ""},
		{Config{URL: "mqtt://h", Headers: []longpoll.Header{{Name: "X-A", Value: "b"}}}, MQTT, "--header"},
	}
	for _, tt := range tests {
		t.Run(tt.cfg.URL+tt.cfg.Embedded, func(t *testing.T) {
			if got := tt.cfg.Protocol(); got != tt.protocol {
				t.Errorf("Protocol() = %q, want %q", got, tt.protocol)
			}
			err := tt.cfg.Validate()
			if (err == nil) != (tt.errText == "") || (err != nil && !strings.Contains(err.Error(), tt.errText)) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.errText)
			}
		})
	}
}

func TestDescribeRedactsPassword(t *testing.T) {
	tgt, err := Open(Config{URL: "mqtt://user:secret@127.0.0.1:1883"})
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	if d := tgt.Describe(); strings.Contains(d, "secret") {
		t.Fatalf("Describe() = %q leaks the password", d)
	}
}

func TestCheckUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for _, url := range []string{"mqtt://" + addr, "http://" + addr} {
		tgt, err := Open(Config{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = tgt.Check(ctx)
		cancel()
		tgt.Close()
		if !errors.Is(err, bus.ErrUnreachable) {
			t.Errorf("Check(%s) = %v, want bus.ErrUnreachable", url, err)
		}
	}
}

func TestEmbeddedRoundTrip(t *testing.T) {
	for _, proto := range []string{HTTP, MQTT} {
		t.Run(proto, func(t *testing.T) {
			tgt, err := Open(Config{Embedded: proto})
			if err != nil {
				t.Fatal(err)
			}
			defer tgt.Close()
			if tgt.Embedded() == nil || tgt.Protocol() != proto {
				t.Fatalf("Embedded() = %v, Protocol() = %q", tgt.Embedded(), tgt.Protocol())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tgt.Check(ctx); err != nil {
				t.Fatalf("Check: %v", err)
			}
			got := make(chan string, 10)
			sub, err := tgt.Dialer().Dial(ctx, "sub-1", handler(func(m bus.Message) { got <- string(m.Payload) }))
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			if err := sub.Subscribe(ctx, []string{"t1"}); err != nil {
				t.Fatal(err)
			}
			pub, err := tgt.Dialer().Dial(ctx, "pub-1", handler(func(bus.Message) {}))
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			// Long-poll has no SUBACK: publish until the first poll is in place.
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				if err := pub.Publish(ctx, "t1", []byte("hello")); err != nil {
					t.Fatal(err)
				}
				select {
				case m := <-got:
					if m != "hello" {
						t.Fatalf("got %q, want hello", m)
					}
					return
				case <-tick.C:
				case <-ctx.Done():
					t.Fatal("no message delivered")
				}
			}
		})
	}
}

type handler func(bus.Message)

func (h handler) HandleMessage(m bus.Message) { h(m) }
func (h handler) HandleEvent(bus.Event)       {}

// TestEmbeddedMQTTWS: --embedded mqtt+ws dials the embedded broker over WebSocket.
func TestEmbeddedMQTTWS(t *testing.T) {
	tgt, err := Open(Config{Embedded: MQTTWS})
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	if !strings.HasPrefix(tgt.URL(), "mqtt+ws://127.0.0.1:") || !strings.HasSuffix(tgt.URL(), "/mqtt") || tgt.Protocol() != MQTT {
		t.Fatalf("URL %q protocol %q, want mqtt+ws://127.0.0.1:port/mqtt and mqtt", tgt.URL(), tgt.Protocol())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tgt.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
}
