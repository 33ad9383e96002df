package verify

import (
	"errors"
	"fmt"
	"time"
)

// PublishOutcome is what became of one publish.
type PublishOutcome uint8

const (
	PublishOK      PublishOutcome = iota + 1 // acknowledged (see VERIFY.md)
	PublishFailed                            // refused or errored before the bus took it
	PublishUnknown                           // timed out: not expected; if it arrives anyway, recovered
)

// Arrival is how Deliver classified a delivery on arrival (final outcomes come at finalization).
type Arrival uint8

const (
	Recorded    Arrival = iota + 1 // this run's message for an expected or known stream
	Marker                         // readiness marker (Stream == MarkerStream)
	Foreign                        // another run's message
	Retained                       // RETAIN flag set: ignored
	Corrupt                        // did not decode
	Unexpected                     // this run, but never attempted seq / unknown stream
	AfterFinish                    // came after Ledger.Finish took the result: not recorded
)

// String names the arrival class.
func (a Arrival) String() string {
	switch a {
	case Recorded:
		return "recorded"
	case Marker:
		return "marker"
	case Foreign:
		return "foreign"
	case Retained:
		return "retained"
	case Corrupt:
		return "corrupt"
	case Unexpected:
		return "unexpected"
	case AfterFinish:
		return "after finish"
	}
	return fmt.Sprintf("arrival(%d)", uint8(a))
}

// Defaults of Config, and of the delivery semantics everywhere (defined once:
// every command's flags and every transport's zero value use these).
const (
	DefaultPublishTimeout   = 5 * time.Second
	DefaultLatency          = 2 * time.Second
	DefaultLostAfter        = 15 * time.Second
	DefaultGrace            = time.Second
	DefaultWindow           = 60 * time.Second
	DefaultRate             = 10.0
	DefaultMaxIntervals     = 4096
	DefaultNearReconnect    = 5 * time.Second
	DefaultMaxClosedStreams = 4096
)

// Config sets the ledger's thresholds and memory. Zero fields take the defaults.
type Config struct {
	Latency   time.Duration // on-time bound, inclusive (default 2s)
	LostAfter time.Duration // arrival later than this is lost (+late) (default 15s)
	Grace     time.Duration // finalization slack after LostAfter (default 1s)
	Window    time.Duration // window length, by intended send time (default 60s)
	// Rate is the expected messages/s per stream; it sizes the ring bitmaps
	// (they grow if a stream goes faster). Default 10.
	Rate float64
	// MaxIntervals caps each lost/late interval set and each subscriber's list
	// of connection epochs (default 4096). Beyond the cap the oldest entries
	// are forgotten (see the package documentation).
	MaxIntervals int
	// NearReconnect: a duplicate within this long after a reconnect counts as
	// near-reconnect (default 5s).
	NearReconnect time.Duration
	// MaxClosedStreams is how many closed, fully final streams are remembered
	// (so that a duplicate of theirs is still a duplicate) before the oldest is
	// forgotten; deliveries of forgotten streams count as Extra (default 4096).
	MaxClosedStreams int
	// Gates are applied by Result. The zero Gates means DefaultGates.
	Gates Gates
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.Latency == 0 {
		c.Latency = DefaultLatency
	}
	if c.LostAfter == 0 {
		c.LostAfter = DefaultLostAfter
	}
	if c.Grace == 0 {
		c.Grace = DefaultGrace
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.MaxIntervals == 0 {
		c.MaxIntervals = DefaultMaxIntervals
	}
	if c.NearReconnect == 0 {
		c.NearReconnect = DefaultNearReconnect
	}
	if c.MaxClosedStreams == 0 {
		c.MaxClosedStreams = DefaultMaxClosedStreams
	}
	if c.Gates == (Gates{}) {
		c.Gates = DefaultGates
	}
	return c
}

// Validate reports every problem at once. Zero fields are valid (defaults).
func (c Config) Validate() error {
	var errs []error
	neg := func(name string, d time.Duration) {
		if d < 0 {
			errs = append(errs, fmt.Errorf("verify: %s must not be negative, got %v", name, d))
		}
	}
	neg("latency", c.Latency)
	neg("lost-after", c.LostAfter)
	neg("grace", c.Grace)
	neg("window", c.Window)
	neg("near-reconnect", c.NearReconnect)
	d := c.withDefaults()
	if d.Latency > d.LostAfter && c.Latency >= 0 && c.LostAfter >= 0 {
		errs = append(errs, fmt.Errorf("verify: latency bound %v must not exceed lost-after %v", d.Latency, d.LostAfter))
	}
	if c.Rate < 0 || c.Rate != c.Rate {
		errs = append(errs, fmt.Errorf("verify: rate must be positive, got %v", c.Rate))
	}
	if c.MaxIntervals < 0 {
		errs = append(errs, fmt.Errorf("verify: max intervals must not be negative, got %d", c.MaxIntervals))
	}
	if c.MaxClosedStreams < 0 {
		errs = append(errs, fmt.Errorf("verify: max closed streams must not be negative, got %d", c.MaxClosedStreams))
	}
	if err := d.Gates.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
