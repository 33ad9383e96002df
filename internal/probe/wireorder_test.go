package probe_test

import (
	"os"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/bustest"
	"github.com/eventswarm/eventswarm/internal/localbus"
	"github.com/eventswarm/eventswarm/internal/target"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// measured is true for a stamped message that is not a readiness marker.
func measured(payload []byte) bool {
	var st verify.Stamp
	return verify.Decode(payload, &st) == nil && st.Stream != verify.MarkerStream
}

// TestWireOrderKnownAnswer: a fault proxy between the MQTT broker and the
// probe's subscriber swaps adjacent deliveries and follows others with a
// copy carrying the DUP flag. The MQTT transport hands deliveries to the
// verifier in wire order, so its out-of-order and redelivery counts equal
// what the proxy did, exactly.
func TestWireOrderKnownAnswer(t *testing.T) {
	backends := map[string]string{}
	lb, err := localbus.Start(localbus.Config{HTTPAddr: localbus.Disabled})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lb.Close() })
	backends["embedded"] = lb.MQTTAddr()
	if addr := os.Getenv("EVENTSWARM_MOSQUITTO"); addr != "" {
		backends["mosquitto"] = addr
	}
	for name, addr := range backends {
		t.Run(name, func(t *testing.T) {
			p := bustest.NewMQTTFaultProxy(t, addr, 7, 11, measured)
			cfg := fastConfig()
			cfg.Streams, cfg.Subscribers, cfg.Rate = 1, 1, 100
			cfg.Ledger.Latency, cfg.Ledger.LostAfter, cfg.Ledger.Grace = 3*time.Second, 6*time.Second, 3*time.Second
			out, _ := runProbe(t, target.Config{URL: "mqtt://" + p.Addr(), QoS: 1}, cfg)
			c := out.Counts
			t.Logf("proxy: %d swaps, %d copies; counts %+v", p.Swaps(), p.Dups(), c)
			if p.Swaps() == 0 || p.Dups() == 0 {
				t.Fatalf("the proxy swapped %d and copied %d: nothing exercised", p.Swaps(), p.Dups())
			}
			checks := []struct {
				name      string
				got, want uint64
			}{
				{"out_of_order", c.OutOfOrder, uint64(p.Swaps())},
				{"duplicates", c.Duplicates, uint64(p.Dups())},
				{"duplicates_redelivered", c.DupRedelivered, uint64(p.Dups())},
				{"lost", c.Lost, 0},
				{"corrupt", c.Corrupt, 0},
				{"unexpected", c.Unexpected, 0},
			}
			for _, ck := range checks {
				if ck.got != ck.want {
					t.Errorf("%s = %d, want %d", ck.name, ck.got, ck.want)
				}
			}
		})
	}
}
