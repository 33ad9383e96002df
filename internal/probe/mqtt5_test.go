package probe_test

import (
	"os"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/localbus"
	"github.com/eventswarm/eventswarm/internal/probe"
	"github.com/eventswarm/eventswarm/internal/target"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// variant is an MQTT flavour of the known-answer tests: the protocol
// version and whether the subscribers are one share group.
type variant struct {
	name       string
	version    int
	shareGroup string
}

var mqttVariants = []variant{
	{"mqtt5", 5, ""},
	{"mqtt5/share-group", 5, "g1"},
	{"mqtt3/share-group", 3, "g1"},
}

// perMessage is how many deliveries one publish is expected: one per
// subscriber, or one per share group.
func perMessage(cfg probe.Config) uint64 {
	if cfg.ShareGroup != "" {
		return 1
	}
	return uint64(cfg.Subscribers)
}

// TestEmbeddedNoFaults5 is TestEmbeddedNoFaults on MQTT 5 and with a share
// group: every publish expected once per subscriber, or once per group.
func TestEmbeddedNoFaults5(t *testing.T) {
	for _, v := range mqttVariants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			cfg := fastConfig()
			cfg.ShareGroup = v.shareGroup
			cfg.Tick = time.Millisecond
			out, _ := runProbe(t, target.Config{Embedded: target.MQTT, MQTTVersion: v.version}, cfg)
			c := out.Counts
			if out.Verdict != verify.Pass || c.Lost != 0 || c.Duplicates != 0 || c.Corrupt != 0 || c.Unexpected != 0 {
				t.Fatalf("verdict %s (%s), counts %+v: want pass, no loss or duplicate", out.Verdict, out.Reason, c)
			}
			if c.PublishOK != c.PublishAttempted || c.PublishOK == 0 || c.Expected != perMessage(cfg)*c.PublishOK {
				t.Fatalf("expected %d for %d publishes ok (of %d), want %d per publish", c.Expected, c.PublishOK, c.PublishAttempted, perMessage(cfg))
			}
			if v.shareGroup != "" && (out.ShareGroup != v.shareGroup || out.GroupSize != cfg.Subscribers || len(out.Subscribers) != 1 || out.Subscribers[0].Name != "$share/"+v.shareGroup) {
				t.Fatalf("share group %q size %d, subscribers %+v", out.ShareGroup, out.GroupSize, out.Subscribers)
			}
		})
	}
}

// TestEmbeddedFaultsKnownAnswer5 is TestEmbeddedFaultsKnownAnswer on MQTT 5
// and with a share group: the embedded broker decides each fault for the one
// member it delivers a message to, so the injected counts are per group.
func TestEmbeddedFaultsKnownAnswer5(t *testing.T) {
	for _, v := range mqttVariants {
		for _, tick := range senders(target.MQTT) {
			t.Run(v.name+"/send-tick="+tick.String(), func(t *testing.T) {
				t.Parallel()
				cfg := fastConfig()
				cfg.Tick = tick
				cfg.ShareGroup = v.shareGroup
				cfg.Ledger.Latency, cfg.Ledger.LostAfter, cfg.Ledger.Grace = 2*time.Second, 6*time.Second, 3*time.Second
				faults := localbus.Faults{
					Seed: 7, Drop: 0.04, Duplicate: 0.05, Delay: 0.08,
					Delays: []time.Duration{4 * time.Second, 7 * time.Second},
					Skip:   verify.IsMarker,
				}
				if v.shareGroup != "" {
					// A group gets each message once, not 3 times: more of them faulted.
					faults.Drop, faults.Duplicate, faults.Delay = 0.08, 0.1, 0.16
				}
				out, tgt := runProbe(t, target.Config{Embedded: target.MQTT, MQTTVersion: v.version, Bus: localbus.Config{Faults: faults}}, cfg)
				inj := tgt.Embedded().Injected()
				c := out.Counts
				t.Logf("injected %+v; counts %+v", inj, c)
				if inj.Dropped == 0 || inj.Duplicated == 0 || inj.Delayed[0] == 0 || inj.Delayed[1] == 0 {
					t.Fatalf("injected %+v: want every fault kind exercised", inj)
				}
				if inj.Deliveries != perMessage(cfg)*c.PublishOK {
					t.Errorf("the broker made %d first deliveries of %d publishes, want %d per publish", inj.Deliveries, c.PublishOK, perMessage(cfg))
				}
				checkInjected(t, inj, c)
				if out.Verdict != verify.Fail {
					t.Errorf("verdict %s, want fail (losses and duplicates were injected)", out.Verdict)
				}
			})
		}
	}
}

// TestEmbeddedCorruptFailsHard5: corrupt deliveries counted exactly on MQTT
// 5 and in a share group.
func TestEmbeddedCorruptFailsHard5(t *testing.T) {
	for _, v := range mqttVariants[:2] {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			cfg := fastConfig()
			cfg.ShareGroup = v.shareGroup
			checkCorrupt(t, target.Config{Embedded: target.MQTT, MQTTVersion: v.version}, cfg, 0.1)
		})
	}
}

// TestMosquittoNoFaults5 runs probe on MQTT 5 against Mosquitto at QoS 0
// and 1, per subscriber and as a share group (on MQTT 5 and 3.1.1).
func TestMosquittoNoFaults5(t *testing.T) {
	addr := os.Getenv("EVENTSWARM_MOSQUITTO")
	if addr == "" {
		t.Skip("set EVENTSWARM_MOSQUITTO (eval \"$(bash .ci/services env)\" after `bash .ci/services start`) to run against Mosquitto")
	}
	for _, v := range mqttVariants {
		for _, qos := range []int{0, 1} {
			t.Run(v.name+"/qos="+string(rune('0'+qos)), func(t *testing.T) {
				cfg := fastConfig()
				cfg.Tick = time.Millisecond
				cfg.ShareGroup = v.shareGroup
				cfg.Ledger.Latency, cfg.Ledger.LostAfter = time.Second, 3*time.Second
				url := "mqtt5://" + addr
				if v.version == 3 {
					url = "mqtt://" + addr
				}
				out, _ := runProbe(t, target.Config{URL: url, QoS: qos}, cfg)
				realBusPasses(t, out)
				if c := out.Counts; c.Expected != perMessage(cfg)*c.PublishOK {
					t.Fatalf("expected %d for %d publishes, want %d per publish", c.Expected, c.PublishOK, perMessage(cfg))
				}
			})
		}
	}
}
