//go:build scale

package probe_test

import (
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/localbus"
	"github.com/eventswarm/eventswarm/internal/probe"
	"github.com/eventswarm/eventswarm/internal/target"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// TestScaleProbeRate runs the probe at 1,000 msg/s × 10 subscribers against
// the embedded bus on both transports: every delivery on time, none lost or
// duplicated, the probe not overloaded. Too slow under -race.
func TestScaleProbeRate(t *testing.T) {
	for _, proto := range []string{target.HTTP, target.MQTT} {
		t.Run("protocol="+proto, func(t *testing.T) {
			cfg := probe.Config{Duration: 10 * time.Second, Rate: 1000, Streams: 1, Subscribers: 10, Live: time.Hour,
				Ledger: verify.Config{LostAfter: 3 * time.Second}}
			out, _ := runProbe(t, target.Config{Embedded: proto, Bus: localbus.Config{Hold: 5 * time.Second}}, cfg)
			c := out.Counts
			t.Logf("counts %+v latency %+v health %+v", c, out.LatencyMS, out.Health)
			if out.Verdict != verify.Pass || c.Lost != 0 || c.Duplicates != 0 || c.Expected < 90000 {
				t.Fatalf("verdict %s (%s), counts %+v: want pass, >= 90000 expected, none lost or duplicated", out.Verdict, out.Reason, c)
			}
		})
	}
}
