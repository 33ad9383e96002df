package sse

import (
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/bustest"
	"github.com/eventswarm/eventswarm/internal/localbus"
	"github.com/eventswarm/eventswarm/internal/longpoll"
)

// conformanceDialer is what bustest.Transport asks for: quick reconnects, and
// a publish timeout far beyond the suite's hang guard.
func conformanceDialer(t *testing.T, addr string) bus.Dialer {
	c, err := New(longpoll.Config{
		URL:            "http://" + addr,
		PublishTimeout: 10 * time.Minute,
		Backoff:        backoff.Config{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond, Multiplier: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.Dialer()
}

// TestConformance runs the bus.Conn suite against the embedded bus.
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

// nchanURL returns the real Nchan to test against, or skips.
func nchanURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("EVENTSWARM_NCHAN")
	if u == "" {
		t.Skip("set EVENTSWARM_NCHAN=http://127.0.0.1:18080 (see .ci/run; `bash .ci/services start`) to run against Nchan")
	}
	return u
}

// TestNchanConformance runs the suite against a real Nchan (EVENTSWARM_NCHAN).
func TestNchanConformance(t *testing.T) {
	u, err := url.Parse(nchanURL(t))
	if err != nil {
		t.Fatal(err)
	}
	bustest.Run(t, bustest.Transport{Addr: u.Host, Dialer: conformanceDialer})
}
