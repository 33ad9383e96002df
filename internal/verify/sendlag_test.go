package verify

import (
	"strings"
	"testing"
)

// TestSendLagOverloaded pins the rule: more than 1% of paced sends late.
func TestSendLagOverloaded(t *testing.T) {
	for _, c := range []struct {
		sends, late uint64
		want        bool
	}{{0, 0, false}, {100, 0, false}, {100, 1, false}, {100, 2, true}, {1000, 11, true}, {1000, 10, false}, {1, 1, true}} {
		if got := Overloaded(c.sends, c.late); got != c.want {
			t.Errorf("Overloaded(%d sends, %d late) = %v, want %v", c.sends, c.late, got, c.want)
		}
		s := SendLag{Sends: c.sends, LateSends: c.late, MaxSendLagMS: 250}
		if ev := s.Evidence("swarm"); (ev != "") != c.want {
			t.Errorf("%+v: Evidence = %q, want non-empty %v", s, ev, c.want)
		} else if c.want && !strings.Contains(ev, "swarm itself sent") {
			t.Errorf("Evidence = %q: does not say who fell behind", ev)
		}
	}
}

// TestSendLagAdd: shards' lags add, the largest lag is the larger, and two
// shards that each kept up can make an overloaded run together only by their
// summed counts (1 of 100 + 2 of 100 = 3 of 200: overloaded).
func TestSendLagAdd(t *testing.T) {
	a := SendLag{Sends: 100, LateSends: 1, MaxSendLagMS: 120}
	b := SendLag{Sends: 100, LateSends: 2, MaxSendLagMS: 300}
	a.Add(b)
	if a != (SendLag{Sends: 200, LateSends: 3, MaxSendLagMS: 300}) {
		t.Fatalf("sum = %+v", a)
	}
	if !Overloaded(a.Sends, a.LateSends) {
		t.Errorf("3 of 200 late: not overloaded")
	}
}
