package mqtt

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/bustest"
)

// TestPublishAsyncInOrder: publishes handed over by PublishAsync from one
// goroutine, many in flight at once, reach a subscriber in call order, and
// its handler sees them in that order (one handler goroutine per connection).
// Each outcome is what Publish would have returned, with one Published event
// per publish.
func TestPublishAsyncInOrder(t *testing.T) {
	b := startBroker(t, brokerOpts{})
	for _, tc := range []struct {
		qos    byte
		linger time.Duration
	}{{0, 0}, {1, 0}, {2, 0}, {0, time.Millisecond}, {1, time.Millisecond}, {2, time.Millisecond}} {
		qos := tc.qos
		t.Run(fmt.Sprintf("qos=%d/linger=%v", qos, tc.linger), func(t *testing.T) {
			ctx := context.Background()
			c := newClient(t, Config{URL: "mqtt://" + b.addr, QoS: qos, QoSSet: true, Linger: tc.linger})
			var subRec, pubRec recorder
			sub := dial(t, c, ctx, fmt.Sprintf("order-sub-%d-%v", qos, tc.linger), &subRec)
			pub := dial(t, c, ctx, fmt.Sprintf("order-pub-%d-%v", qos, tc.linger), &pubRec)
			topic := fmt.Sprintf("order/%d/%v", qos, tc.linger)
			if err := sub.Subscribe(ctx, []string{topic}); err != nil {
				t.Fatalf("Subscribe: %v", err)
			}
			const n, inFlight = 2000, 32
			waits := make(chan func() error, inFlight)
			errs := make(chan error, 1)
			go func() {
				var first error
				for w := range waits {
					if err := w(); err != nil && first == nil {
						first = err
					}
				}
				errs <- first
			}()
			for i := range n {
				waits <- pub.PublishAsync(ctx, topic, binary.BigEndian.AppendUint32(nil, uint32(i)))
			}
			close(waits)
			if err := <-errs; err != nil {
				t.Fatalf("publish: %v", err)
			}
			pollUntil(t, "all messages", func() bool { return subRec.numMessages() >= n })
			for i, m := range subRec.messages() {
				if got := binary.BigEndian.Uint32(m.Payload); got != uint32(i) {
					t.Fatalf("delivery %d carries publish %d: out of order", i, got)
				}
			}
			if got := len(pubRec.eventsOf(bus.Published)); got != n {
				t.Fatalf("Published events: got %d, want %d", got, n)
			}
		})
	}
}

// TestWireOrderThroughFaultProxy: deliveries reach the handler in the order
// the broker's packets arrived, so the adjacent swaps and DUP-flagged copies
// a fault proxy makes are seen exactly: as many late arrivals as swaps, as
// many deliveries flagged Redelivery as copies, nothing else.
func TestWireOrderThroughFaultProxy(t *testing.T) {
	b := startBroker(t, brokerOpts{})
	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprintf("qos=%d", qos), func(t *testing.T) {
			p := bustest.NewMQTTFaultProxy(t, b.addr, 7, 11, nil)
			ctx := context.Background()
			subc := newClient(t, Config{URL: "mqtt://" + p.Addr(), QoS: qos, QoSSet: true})
			pubc := newClient(t, Config{URL: "mqtt://" + b.addr, QoS: qos, QoSSet: true})
			var subRec, pubRec recorder
			sub := dial(t, subc, ctx, fmt.Sprintf("wire-sub-%d", qos), &subRec)
			pub := dial(t, pubc, ctx, fmt.Sprintf("wire-pub-%d", qos), &pubRec)
			topic := fmt.Sprintf("wire/%d", qos)
			if err := sub.Subscribe(ctx, []string{topic}); err != nil {
				t.Fatal(err)
			}
			const n = 700
			for i := range n {
				if err := pub.Publish(ctx, topic, binary.BigEndian.AppendUint32(nil, uint32(i))); err != nil {
					t.Fatal(err)
				}
			}
			// The last held packet, if any, is written alone after a second.
			pollUntil(t, "every delivery", func() bool { return int64(subRec.numMessages()) >= n+p.Dups() })
			seen := map[uint32]bool{}
			var late, redelivered, copies int64
			maxSeen := int64(-1)
			for _, m := range subRec.messages() {
				s := binary.BigEndian.Uint32(m.Payload)
				if m.Redelivery {
					redelivered++
				}
				if seen[s] {
					copies++
					continue
				}
				seen[s] = true
				if int64(s) < maxSeen {
					late++
				} else {
					maxSeen = int64(s)
				}
			}
			if p.Swaps() == 0 || p.Dups() == 0 {
				t.Fatalf("the proxy swapped %d and copied %d: nothing exercised", p.Swaps(), p.Dups())
			}
			if late != p.Swaps() || redelivered != p.Dups() || copies != p.Dups() || len(seen) != n {
				t.Fatalf("late %d, redelivered %d, copies %d, distinct %d; the proxy swapped %d and copied %d of %d",
					late, redelivered, copies, len(seen), p.Swaps(), p.Dups(), n)
			}
		})
	}
}
