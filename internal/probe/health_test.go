package probe

import (
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/verify"
)

func TestOverloadedWindowIsInconclusive(t *testing.T) {
	p := &prober{cfg: Config{Ledger: verify.Config{Window: time.Second}}}
	sec := int64(time.Second)
	// Window 0: 200 sends on time. Window 1: 200 sends, 3 of them 150ms late.
	for i := range int64(200) {
		p.noteLag(i*sec/200, int64(time.Millisecond))
		lag := int64(time.Millisecond)
		if i < 3 {
			lag = int64(150 * time.Millisecond)
		}
		p.noteLag(sec+i*sec/200, lag)
	}
	tests := []struct {
		name string
		in   verify.Window
		want verify.Verdict
	}{
		{"failed window, probe fine", verify.Window{Index: 0, Verdict: verify.Fail}, verify.Fail},
		{"failed window, probe overloaded", verify.Window{Index: 1, Verdict: verify.Fail}, verify.Inconclusive},
		{"passed window, probe overloaded", verify.Window{Index: 1, Verdict: verify.Pass}, verify.Pass},
		{"window without sends", verify.Window{Index: 7, Verdict: verify.Fail}, verify.Fail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := tt.in
			p.markOverloaded(&w)
			if w.Verdict != tt.want {
				t.Fatalf("verdict %s (%s), want %s", w.Verdict, w.Reason, tt.want)
			}
		})
	}
	// Over the whole run 3 of 400 sends (0.75%) were late: not overloaded.
	if h := p.healthReport(); h.Overloaded || h.LateSends != 3 {
		t.Fatalf("health %+v: want 3 late sends of 400, not overloaded overall", h)
	}
}
