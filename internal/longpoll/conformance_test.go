package longpoll

import (
	"net/url"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/bustest"
	"github.com/eventswarm/eventswarm/internal/localbus"
)

// conformanceDialer is what bustest.Transport asks for: quick reconnects, and
// a publish timeout far beyond the suite's hang guard.
func conformanceDialer(t *testing.T, addr string) bus.Dialer {
	return newClient(t, Config{
		URL:            "http://" + addr,
		PublishTimeout: 10 * time.Minute,
		Backoff:        backoff.Config{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond, Multiplier: 2},
	}).Dialer()
}

// TestConformance runs the bus.Conn suite against the embedded bus's Nchan
// protocol.
func TestConformance(t *testing.T) {
	lb, err := localbus.Start(localbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lb.Close() })
	u, err := url.Parse(lb.HTTPURL())
	if err != nil {
		t.Fatal(err)
	}
	bustest.Run(t, bustest.Transport{Addr: u.Host, Dialer: conformanceDialer})
}

// TestNchanConformance runs the suite against a real Nchan (EVENTSWARM_NCHAN).
func TestNchanConformance(t *testing.T) {
	u, err := url.Parse(nchanURL(t))
	if err != nil {
		t.Fatal(err)
	}
	bustest.Run(t, bustest.Transport{Addr: u.Host, Dialer: conformanceDialer})
}
