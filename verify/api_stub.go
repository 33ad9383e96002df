package verify

// THIS FILE IS THE CONTRACT OTHER PACKAGES CODE AGAINST. The verify helper
// replaces the stub bodies with the real implementation (and may move the code
// into stamp.go / ledger.go), keeping every exported name and signature.

import (
	"errors"
	"time"
)

// RunID identifies one run: 128 random bits.
type RunID [16]byte

// NewRunID returns a random RunID (crypto/rand).
func NewRunID() RunID { panic("unimplemented") }

// String is the 32-char lower-case hex form.
func (r RunID) String() string { panic("unimplemented") }

// ParseRunID parses the 32-char hex form.
func ParseRunID(s string) (RunID, error) { panic("unimplemented") }

// MarkerStream is the stream number of readiness-barrier markers; they are never expected.
const MarkerStream = ^uint32(0)

// StampSize is the encoded size of a stamp in bytes; payloads are at least this long.
const StampSize = 112 // final value chosen by the implementation

var (
	// ErrShort: the payload is shorter than a stamp.
	ErrShort = errors.New("verify: payload shorter than a stamp")
	// ErrMagic: bad magic or version.
	ErrMagic = errors.New("verify: bad magic or version")
	// ErrChecksum: checksum mismatch.
	ErrChecksum = errors.New("verify: bad checksum")
)

// Stamp is the header at the start of every payload. Times are integer
// nanoseconds on the run's monotonic timeline (see Clock).
type Stamp struct {
	Run       RunID
	Publisher uint32
	Stream    uint32
	Seq       uint64 // from 1 per (publisher, stream), never reused
	Intended  int64  // scheduled send time
	Sent      int64  // actual send time
}

// Encode writes s at the start of dst and pads the rest of dst with text-safe
// filler. len(dst) must be >= StampSize. No allocation.
func (s *Stamp) Encode(dst []byte) error { panic("unimplemented") }

// Decode parses the stamp at the start of src into s. No allocation. Errors:
// ErrShort, ErrMagic, ErrChecksum (wrapped or bare; test with errors.Is).
func Decode(src []byte, s *Stamp) error { panic("unimplemented") }

// Clock is the run's monotonic timeline: nanoseconds since Origin.
type Clock struct{ Origin time.Time }

// NewClock starts a timeline at time.Now() (monotonic reading included).
func NewClock() Clock { return Clock{Origin: time.Now()} }

// Now is time.Since(Origin) in ns.
func (c Clock) Now() int64 { return int64(time.Since(c.Origin)) }

// PublishOutcome is what became of one publish.
type PublishOutcome uint8

const (
	PublishOK      PublishOutcome = iota + 1 // acknowledged (see VERIFY.md)
	PublishFailed                            // refused or errored before the bus took it
	PublishUnknown                           // timed out: not expected; if it arrives anyway, recovered
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
	// MaxIntervals caps each lost/late interval set (default 4096).
	MaxIntervals int
	// NearReconnect: a duplicate within this long after a reconnect counts as
	// near-reconnect (default 5s).
	NearReconnect time.Duration
	// Gates are applied by Result.
	Gates Gates
}

// Validate reports every problem at once.
func (c Config) Validate() error { panic("unimplemented") }

// Ledger records publishes and deliveries and classifies every (subscriber,
// message) pair exactly as VERIFY.md says. Safe for concurrent use: each
// StreamRecorder / SubscriberRecorder may be used by its own goroutine.
type Ledger struct{}

// NewLedger returns a ledger for run.
func NewLedger(run RunID, cfg Config) (*Ledger, error) { panic("unimplemented") }

// Run is the ledger's run ID.
func (l *Ledger) Run() RunID { panic("unimplemented") }

// StartMeasurement: messages with intended send time >= at are measured (after warm-up).
func (l *Ledger) StartMeasurement(at int64) { panic("unimplemented") }

// StopMeasurement: messages with intended send time >= at are not measured (publishing stopped).
func (l *Ledger) StopMeasurement(at int64) { panic("unimplemented") }

// Stream registers (or returns the existing) publisher-side recorder of (publisher, stream).
func (l *Ledger) Stream(publisher, stream uint32) *StreamRecorder { panic("unimplemented") }

// Subscriber registers a subscriber; name is for diagnostics and must be unique.
func (l *Ledger) Subscriber(name string) *SubscriberRecorder { panic("unimplemented") }

// Advance finalizes every (subscriber, seq) whose deadline (intended + LostAfter +
// Grace) is <= now and closes windows that are complete. Call it every second or so.
func (l *Ledger) Advance(now int64) { panic("unimplemented") }

// Snapshot is a live view at now: final counts plus Pending for what is not final yet.
func (l *Ledger) Snapshot(now int64) Result { panic("unimplemented") }

// Finish finalizes everything due at now and returns the final result with the
// verdict from Config.Gates. drained=false (the 15 s drain was interrupted) turns
// the unfinished tail into Pending (inconclusive), not lost.
func (l *Ledger) Finish(now int64, drained bool) Result { panic("unimplemented") }

// StreamRecorder is the publisher side of one (publisher, stream).
type StreamRecorder struct{}

// Attempt records that seq (intended send time intended) is about to be sent. Call before sending.
func (p *StreamRecorder) Attempt(seq uint64, intended int64) { panic("unimplemented") }

// Result records the outcome of seq's publish.
func (p *StreamRecorder) Result(seq uint64, outcome PublishOutcome, now int64) {
	panic("unimplemented")
}

// Close says no seq after the last attempted one will be sent; state is freed once final.
func (p *StreamRecorder) Close(now int64) { panic("unimplemented") }

// Arrival is how Deliver classified a delivery on arrival (final outcomes come at finalization).
type Arrival uint8

const (
	Recorded   Arrival = iota + 1 // this run's message for an expected or known stream
	Marker                        // readiness marker (Stream == MarkerStream)
	Foreign                       // another run's message
	Retained                      // RETAIN flag set: ignored
	Corrupt                       // did not decode
	Unexpected                    // this run, but never attempted seq / unknown stream
)

// SubscriberRecorder is one subscriber's side of the ledger.
type SubscriberRecorder struct{}

// Expect says this subscriber's subscription to (publisher, stream) was confirmed
// at confirmedAt: every successfully published, measured seq with intended send
// time >= confirmedAt is expected.
func (s *SubscriberRecorder) Expect(publisher, stream uint32, confirmedAt int64) {
	panic("unimplemented")
}

// Unexpect says the subscriber stopped listening to (publisher, stream) at at:
// seqs with intended send time >= at are no longer expected.
func (s *SubscriberRecorder) Unexpect(publisher, stream uint32, at int64) { panic("unimplemented") }

// Deliver records one delivery of payload at now. No allocation on the hot path.
func (s *SubscriberRecorder) Deliver(payload []byte, retained, redelivery bool, now int64) Arrival {
	panic("unimplemented")
}

// Disconnected records that the subscriber's connection was lost at at.
func (s *SubscriberRecorder) Disconnected(at int64) { panic("unimplemented") }

// Reconnected records the connection back at at, resubscribed at resubscribedAt,
// with the session (MQTT) or cursor (long-poll) kept or not.
func (s *SubscriberRecorder) Reconnected(at, resubscribedAt int64, kept bool) {
	panic("unimplemented")
}
