package behaviours

import (
	"strings"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/localbus"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// TestOverloadedGeneratorInconclusive: when swarm itself starts every paced
// send late (the test seam holds each one 150ms before it is stamped, as a
// starved process would), the latencies it measures are its own: the run's
// latency failure (on time ≤ 100ms, every delivery ≥ 150ms) is inconclusive,
// not a fail, and the report counts every send as late.
func TestOverloadedGeneratorInconclusive(t *testing.T) {
	for _, proto := range protos {
		t.Run("proto="+proto, func(t *testing.T) {
			b := startBus(t, localbus.Config{})
			cfg := smallConfig(proto)
			cfg.Verify.Latency = 100 * time.Millisecond
			cfg.Verify.Gates.Within = 0.95
			r, err := New(cfg, dialerFor(t, b, proto))
			if err != nil {
				t.Fatal(err)
			}
			r.beforeSend = func() { time.Sleep(150 * time.Millisecond) }
			s, err := r.Run(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			logSummary(t, s)
			c, g := s.Result.Counts, s.Generator
			if c.Expected == 0 {
				t.Fatalf("expected = 0: the run verified nothing")
			}
			// (Sends also counts control messages sent after the measurement
			// stopped, which the ledger does not attempt.)
			if g.Sends < c.PublishAttempted || g.LateSends != g.Sends || g.MaxSendLagMS < 150 {
				t.Errorf("generator %+v; want sends ≥ publish attempts (%d), every one late, max lag ≥ 150ms", g, c.PublishAttempted)
			}
			if c.OnTime != 0 || c.Unexpected+c.Corrupt != 0 {
				t.Errorf("on time %d, unexpected %d, corrupt %d; want 0 (every delivery ≥ 150ms)", c.OnTime, c.Unexpected, c.Corrupt)
			}
			if s.Result.Verdict != verify.Inconclusive || !strings.Contains(s.Result.Reason, "overloaded") {
				t.Errorf("verdict %s (%s); want inconclusive: the generator was overloaded", s.Result.Verdict, s.Result.Reason)
			}
		})
	}
}

type nopHandler struct{}

func (nopHandler) HandleMessage(bus.Message) {}
func (nopHandler) HandleEvent(bus.Event)     {}

// TestSendLagFromReady: a send's lag counts from its intended time or from
// when its user was ready (its previous publish returned), whichever is
// later. A user held up by a slow bus is the bus's backpressure, not swarm's
// lag. The times are set 1s and more apart, so only the rule decides.
func TestSendLagFromReady(t *testing.T) {
	b := startBus(t, localbus.Config{})
	d := dialerFor(t, b, "http")
	r, err := New(smallConfig("http"), d)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := d.Dial(t.Context(), "lag", nopHandler{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	u := r.users[0]
	sr := r.events.Stream(u.pub, 1)
	now := r.clock.Now()
	sec := int64(time.Second)
	for i, c := range []struct {
		intended, readyAt int64
	}{
		{now - sec, now - 2*sec},    // 1s behind its intended time: late
		{now - sec, now + 60*sec},   // behind its intended time, but its user was busy with the bus until later
		{now + 60*sec, now - 2*sec}, // ahead of its time
	} {
		u.readyAt = c.readyAt
		if !r.publish(t.Context(), u, conn, sr, opPublish, "lag.ev", 1, uint64(i+1), c.intended, kindEvent, "lag") {
			t.Fatalf("publish %d failed", i+1)
		}
	}
	g := r.sendLag()
	if g.Sends != 3 || g.LateSends != 1 || g.MaxSendLagMS < 1000 {
		t.Errorf("send lag %+v; want 3 sends, 1 late, max lag ≥ 1000ms", g)
	}
	if u.readyAt < now {
		t.Errorf("readyAt %d after a publish; want the time it returned (≥ %d)", u.readyAt, now)
	}
}
