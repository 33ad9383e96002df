package probe_test

import (
	"os"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/localbus"
	"github.com/eventswarm/eventswarm/internal/target"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// streamVias are the streaming subscriber protocols of http targets.
var streamVias = []string{target.WebSocket, target.EventSource}

// TestEmbeddedStreamFaultsKnownAnswer is TestEmbeddedFaultsKnownAnswer on the
// WebSocket and EventSource subscribers: the embedded bus drops, duplicates
// and delays (beyond the on-time bound, beyond lost-after) a fraction of
// stream deliveries and the probe reports exactly what it injected. The
// bus's 2s hold ends every stream every 2s, so the streams also reconnect
// (resuming from Last-Event-ID) throughout: a resume that lost or repeated a
// message would show as a count off the injected one.
func TestEmbeddedStreamFaultsKnownAnswer(t *testing.T) {
	for _, via := range streamVias {
		t.Run("via="+via, func(t *testing.T) {
			t.Parallel()
			cfg := fastConfig()
			cfg.Ledger.Latency, cfg.Ledger.LostAfter, cfg.Ledger.Grace = 2*time.Second, 6*time.Second, 3*time.Second
			faults := localbus.Faults{
				Seed: 11, Drop: 0.04, Duplicate: 0.05, Delay: 0.08,
				Delays: []time.Duration{4 * time.Second, 7 * time.Second},
				Skip:   verify.IsMarker,
			}
			out, tgt := runProbe(t, target.Config{SubscribeVia: via, Bus: localbus.Config{Hold: 2 * time.Second, Faults: faults}}, cfg)
			inj := tgt.Embedded().Injected()
			c := out.Counts
			t.Logf("injected %+v; counts %+v", inj, c)
			if inj.Dropped == 0 || inj.Duplicated == 0 || inj.Delayed[0] == 0 || inj.Delayed[1] == 0 {
				t.Fatalf("injected %+v: want every fault kind exercised", inj)
			}
			checkInjected(t, inj, c)
			if out.Verdict != verify.Fail {
				t.Errorf("verdict %s, want fail (losses and duplicates were injected)", out.Verdict)
			}
		})
	}
}

func TestEmbeddedStreamCorruptFailsHard(t *testing.T) {
	for _, via := range streamVias {
		t.Run("via="+via, func(t *testing.T) {
			t.Parallel()
			checkCorrupt(t, target.Config{SubscribeVia: via, Bus: localbus.Config{Hold: 2 * time.Second}}, fastConfig(), 0.05)
		})
	}
}

func TestEmbeddedStreamNoFaults(t *testing.T) {
	for _, via := range streamVias {
		t.Run("via="+via, func(t *testing.T) {
			t.Parallel()
			out, _ := runProbe(t, target.Config{SubscribeVia: via, Bus: localbus.Config{Hold: 2 * time.Second}}, fastConfig())
			realBusPasses(t, out)
		})
	}
}

// TestNchanStreamNoFaults: no-fault runs against Nchan on each streaming
// subscriber protocol (EVENTSWARM_NCHAN).
func TestNchanStreamNoFaults(t *testing.T) {
	url := os.Getenv("EVENTSWARM_NCHAN")
	if url == "" {
		t.Skip("set EVENTSWARM_NCHAN=http://127.0.0.1:18080 after `bash .ci/services start` to run against Nchan")
	}
	for _, via := range streamVias {
		t.Run("via="+via, func(t *testing.T) {
			cfg := fastConfig()
			cfg.Ledger.Latency, cfg.Ledger.LostAfter = time.Second, 3*time.Second
			out, _ := runProbe(t, target.Config{URL: url, SubscribeVia: via}, cfg)
			realBusPasses(t, out)
		})
	}
}
