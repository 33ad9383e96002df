package wsock

import (
	"testing"

	"github.com/eventswarm/eventswarm/internal/streamsub/streamsubtest"
)

// TestConformance runs the bus.Conn suite against the embedded bus.
func TestConformance(t *testing.T) { streamsubtest.Embedded(t, New) }

// TestNchanConformance runs the suite against a real Nchan (EVENTSWARM_NCHAN).
func TestNchanConformance(t *testing.T) { streamsubtest.Nchan(t, New) }
