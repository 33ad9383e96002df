package streamsub_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/bustest"
	"github.com/eventswarm/eventswarm/internal/localbus"
	"github.com/eventswarm/eventswarm/internal/longpoll"
	"github.com/eventswarm/eventswarm/internal/sse"
	"github.com/eventswarm/eventswarm/internal/streamsub"
	"github.com/eventswarm/eventswarm/internal/wsock"
)

var protocols = map[string]func(longpoll.Config) (*streamsub.Client, error){
	"websocket":   wsock.New,
	"eventsource": sse.New,
}

func client(t *testing.T, newc func(longpoll.Config) (*streamsub.Client, error), addr string, bo backoff.Config) *streamsub.Client {
	t.Helper()
	c, err := newc(longpoll.Config{URL: "http://" + addr, PublishTimeout: time.Minute, Backoff: bo})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// testResume: messages published while a stream is cut arrive exactly once
// after it reconnects, and the reconnect says it resumed (SessionPresent):
// the stream sent back the last id the server gave it.
func testResume(t *testing.T, addr string) {
	for name, newc := range protocols {
		t.Run(name, func(t *testing.T) {
			p := bustest.NewProxy(t, addr)
			// The reconnect waits at least 300ms: the publishes below are
			// (on any but a stalled machine) made while it is disconnected.
			sc := client(t, newc, p.Addr(), backoff.Config{Initial: 300 * time.Millisecond, Max: time.Second, Multiplier: 2})
			pc := client(t, newc, addr, backoff.Config{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond, Multiplier: 2})
			var rec, prec bustest.Recorder
			sub := bustest.Dial(t, sc.Dialer(), "sub", &rec)
			pub := bustest.Dial(t, pc.Dialer(), "pub", &prec)
			// Two channels: one multiplexed stream, whose ids (on Nchan) name a
			// position in each.
			topic, other := bustest.Topic("resume"), bustest.Topic("resume-other")
			if err := sub.Subscribe(context.Background(), []string{topic, other}); err != nil {
				t.Fatal(err)
			}
			bustest.Ready(t, pub, &rec, topic)
			bustest.Ready(t, pub, &rec, other)
			before := rec.NumEvents(bus.Subscribed)
			p.Cut()
			bustest.Eventually(t, "a Disconnected event", func() bool { return rec.NumEvents(bus.Disconnected) > 0 })
			const n = 10
			for i := range n {
				ch := topic
				if i%2 == 1 {
					ch = other
				}
				if err := pub.Publish(context.Background(), ch, fmt.Appendf(nil, "gap %d", i)); err != nil {
					t.Fatal(err)
				}
			}
			for i := range n {
				m := fmt.Sprintf("gap %d", i)
				bustest.Eventually(t, "delivery of "+m, func() bool { return rec.Count(m) > 0 })
			}
			bustest.Ready(t, pub, &rec, topic) // bounds the wait for copies
			for i := range n {
				if c := rec.Count(fmt.Sprintf("gap %d", i)); c != 1 {
					t.Errorf("gap %d arrived %d times, want once", i, c)
				}
			}
			ev := rec.Events(bus.Subscribed)
			if len(ev) <= before {
				t.Fatalf("no Subscribed event after the cut")
			}
			if !ev[before].SessionPresent {
				t.Errorf("the reconnect did not resume from an id (Subscribed.SessionPresent false)")
			}
		})
	}
}

func TestResumeEmbedded(t *testing.T) {
	lb, err := localbus.Start(localbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lb.Close() })
	u, _ := url.Parse(lb.HTTPURL())
	testResume(t, u.Host)
}

func TestResumeNchan(t *testing.T) {
	raw := os.Getenv("EVENTSWARM_NCHAN")
	if raw == "" {
		t.Skip("set EVENTSWARM_NCHAN=http://127.0.0.1:18080 (see .ci/run; `bash .ci/services start`) to run against Nchan")
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	testResume(t, u.Host)
}
