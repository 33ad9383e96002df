// Package streamsubtest runs the bus.Conn conformance suite (internal/bustest)
// on a stream subscriber transport (WebSocket, EventSource) against the
// embedded bus and, when EVENTSWARM_NCHAN is set, a real Nchan. It is for
// tests only (it lives outside bustest because localbus's own tests import
// bustest).
package streamsubtest

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
	"github.com/eventswarm/eventswarm/internal/streamsub"
)

// New makes a transport's client (sse.New, wsock.New).
type New func(longpoll.Config) (*streamsub.Client, error)

// dialer is what bustest.Transport asks for: quick reconnects, and a publish
// timeout far beyond the suite's hang guard.
func dialer(newClient New) func(*testing.T, string) bus.Dialer {
	return func(t *testing.T, addr string) bus.Dialer {
		c, err := newClient(longpoll.Config{
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
}

// Embedded runs the suite against the embedded bus.
func Embedded(t *testing.T, newClient New) {
	lb, err := localbus.Start(localbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lb.Close() })
	u, err := url.Parse(lb.HTTPURL())
	if err != nil {
		t.Fatal(err)
	}
	bustest.Run(t, bustest.Transport{Addr: u.Host, Dialer: dialer(newClient)})
}

// Nchan runs the suite against a real Nchan (EVENTSWARM_NCHAN), or skips.
func Nchan(t *testing.T, newClient New) {
	raw := os.Getenv("EVENTSWARM_NCHAN")
	if raw == "" {
		t.Skip("set EVENTSWARM_NCHAN (see .ci/run; `bash .ci/services start`) to run against Nchan")
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	bustest.Run(t, bustest.Transport{Addr: u.Host, Dialer: dialer(newClient)})
}
