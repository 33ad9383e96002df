package mqtt

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/eventswarm/eventswarm/internal/bus"
)

// TestPublishAsyncInOrder: publishes handed over by PublishAsync from one
// goroutine, many in flight at once, reach a subscriber in call order, and
// its handler sees them in that order (one handler goroutine per connection).
// Each outcome is what Publish would have returned, with one Published event
// per publish.
func TestPublishAsyncInOrder(t *testing.T) {
	b := startBroker(t, brokerOpts{})
	for _, qos := range []byte{0, 1, 2} {
		t.Run(fmt.Sprintf("qos=%d", qos), func(t *testing.T) {
			ctx := context.Background()
			c := newClient(t, Config{URL: "mqtt://" + b.addr, QoS: qos, QoSSet: true})
			var subRec, pubRec recorder
			sub := dial(t, c, ctx, fmt.Sprintf("order-sub-%d", qos), &subRec)
			pub := dial(t, c, ctx, fmt.Sprintf("order-pub-%d", qos), &pubRec)
			topic := fmt.Sprintf("order/%d", qos)
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
