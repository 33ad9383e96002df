package behaviours

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// Kind is a kind of simulated user.
type Kind uint8

const (
	// Learner takes an ID, publishes events to its topic and receives control messages.
	Learner Kind = iota
	// Proctor watches a slice of learners and sends them control messages.
	Proctor
	numKinds
)

var kindNames = [numKinds]string{"learner", "proctor"}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "unknown"
}

// Kinds lists every kind, in order.
func Kinds() []Kind { return []Kind{Learner, Proctor} }

// Weights are the relative numbers of users of each kind, indexed by Kind.
type Weights [numKinds]int

// DefaultWeights is learner=20,proctor=1, as in the original load test.
var DefaultWeights = Weights{Learner: 20, Proctor: 1}

// maxWeightTotal bounds the sum of the weights (one cycle of kinds is kept in memory).
const maxWeightTotal = 1 << 20

// ParseWeights parses "learner=20,proctor=1". Kinds left out get weight 0;
// every weight is a non-negative integer and at least one is positive.
func ParseWeights(s string) (Weights, error) {
	var w Weights
	var set [numKinds]bool
	s = strings.TrimSpace(s)
	if s == "" {
		return w, errors.New("behaviours: --weights is empty; use e.g. learner=20,proctor=1")
	}
	for _, part := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return Weights{}, fmt.Errorf("behaviours: --weights %q: %q is not kind=weight", s, part)
		}
		k, ok := kindByName(strings.TrimSpace(name))
		if !ok {
			return Weights{}, fmt.Errorf("behaviours: --weights %q: unknown kind %q (want learner or proctor)", s, name)
		}
		if set[k] {
			return Weights{}, fmt.Errorf("behaviours: --weights %q: %s given twice", s, k)
		}
		n, err := strconv.Atoi(strings.TrimSpace(val))
		if err != nil || n < 0 {
			return Weights{}, fmt.Errorf("behaviours: --weights %q: weight of %s must be an integer >= 0, got %q", s, k, val)
		}
		set[k] = true
		w[k] = n
	}
	if err := w.validate(); err != nil {
		return Weights{}, err
	}
	return w, nil
}

func kindByName(s string) (Kind, bool) {
	for k, n := range kindNames {
		if strings.EqualFold(s, n) {
			return Kind(k), true
		}
	}
	return 0, false
}

func (w Weights) total() int {
	t := 0
	for _, n := range w {
		t += n
	}
	return t
}

func (w Weights) validate() error {
	t := 0
	for k, n := range w {
		if n < 0 {
			return fmt.Errorf("behaviours: weight of %s must be >= 0, got %d", Kind(k), n)
		}
		if n > maxWeightTotal {
			return fmt.Errorf("behaviours: weight of %s must be <= %d, got %d", Kind(k), maxWeightTotal, n)
		}
		t += n
	}
	if t == 0 {
		return errors.New("behaviours: --weights: at least one weight must be > 0")
	}
	if t > maxWeightTotal {
		return fmt.Errorf("behaviours: --weights: the weights add up to %d, more than %d", t, maxWeightTotal)
	}
	return nil
}

// String is the "learner=20,proctor=1" form.
func (w Weights) String() string {
	parts := make([]string, 0, numKinds)
	for k, n := range w {
		parts = append(parts, Kind(k).String()+"="+strconv.Itoa(n))
	}
	return strings.Join(parts, ",")
}

// cycle returns one cycle of kinds, of length w.total(), in which every prefix
// is as close to the weights as integers allow (the most under-represented kind
// goes next; ties go to the first kind). User g has kind cycle[g % len].
func (w Weights) cycle() []Kind {
	t := w.total()
	out := make([]Kind, t)
	var count [numKinds]int
	for p := range t {
		best, bestDef := Kind(0), -1<<62
		for k := range numKinds {
			if w[k] == 0 {
				continue
			}
			// deficit × t: how far kind k is behind its share after p+1 users.
			def := (p+1)*w[k] - t*count[k]
			if def > bestDef {
				best, bestDef = k, def
			}
		}
		out[p] = best
		count[best]++
	}
	// Watchers first: the cycle starts at its first proctor, so the first
	// learners take IDs a proctor already watches (their events are verified
	// from the start, see Gates.MinCoverage).
	for i, k := range out {
		if k == Proctor {
			return append(out[i:], out[:i]...)
		}
	}
	return out
}

// Stage is one step of a ramping profile: over Duration, move linearly from
// the previous stage's target (0 at the start) to Target users.
type Stage struct {
	Duration time.Duration
	Target   int
}

// ParseStages parses "30s:100,2m:1000,30s:0" (k6's stages).
func ParseStages(s string) ([]Stage, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []Stage
	for _, part := range strings.Split(s, ",") {
		d, n, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return nil, fmt.Errorf("behaviours: --stages %q: %q is not duration:users", s, part)
		}
		dur, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil {
			return nil, fmt.Errorf("behaviours: --stages %q: bad duration %q", s, d)
		}
		target, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil {
			return nil, fmt.Errorf("behaviours: --stages %q: bad user count %q", s, n)
		}
		out = append(out, Stage{Duration: dur, Target: target})
	}
	if err := validateStages(out); err != nil {
		return nil, err
	}
	return out, nil
}

func validateStages(stages []Stage) error {
	var errs []error
	peak := 0
	for i, st := range stages {
		if st.Duration <= 0 {
			errs = append(errs, fmt.Errorf("behaviours: stage %d: duration must be > 0, got %v", i+1, st.Duration))
		}
		if st.Target < 0 {
			errs = append(errs, fmt.Errorf("behaviours: stage %d: users must be >= 0, got %d", i+1, st.Target))
		}
		peak = max(peak, st.Target)
	}
	if len(stages) > 0 && peak == 0 {
		errs = append(errs, errors.New("behaviours: --stages never go above 0 users"))
	}
	return errors.Join(errs...)
}

// stagesTotal is the sum of the stage durations.
func stagesTotal(stages []Stage) time.Duration {
	var t time.Duration
	for _, st := range stages {
		t += st.Duration
	}
	return t
}

// stagesTarget is the number of users the stages want at elapsed.
func stagesTarget(stages []Stage, elapsed time.Duration) int {
	from := 0
	for _, st := range stages {
		if elapsed < st.Duration {
			frac := float64(elapsed) / float64(st.Duration)
			return from + int(float64(st.Target-from)*frac)
		}
		elapsed -= st.Duration
		from = st.Target
	}
	return from
}

// Range is a duration drawn uniformly from [Min, Max] for each use.
type Range struct{ Min, Max time.Duration }

// ParseRange parses "1s-3s" or a single duration "2s" (Min = Max).
func ParseRange(s string) (Range, error) {
	s = strings.TrimSpace(s)
	lo, hi, isRange := strings.Cut(s, "-")
	min, err := time.ParseDuration(strings.TrimSpace(lo))
	if err != nil {
		return Range{}, fmt.Errorf("behaviours: interval %q: want a duration or a range like 1s-3s", s)
	}
	max := min
	if isRange {
		if max, err = time.ParseDuration(strings.TrimSpace(hi)); err != nil {
			return Range{}, fmt.Errorf("behaviours: interval %q: want a duration or a range like 1s-3s", s)
		}
	}
	r := Range{min, max}
	if err := r.validate("interval"); err != nil {
		return Range{}, err
	}
	return r, nil
}

func (r Range) validate(name string) error {
	switch {
	case r.Min <= 0:
		return fmt.Errorf("behaviours: %s %v must be > 0", name, r)
	case r.Max < r.Min:
		return fmt.Errorf("behaviours: %s %v: max is below min", name, r)
	}
	return nil
}

// String is the "1s-3s" form.
func (r Range) String() string {
	if r.Min == r.Max {
		return r.Min.String()
	}
	return r.Min.String() + "-" + r.Max.String()
}

// pick draws a duration in [Min, Max].
func (r Range) pick(rnd *rand.Rand) time.Duration {
	if r.Max <= r.Min {
		return r.Min
	}
	return r.Min + time.Duration(rnd.Int64N(int64(r.Max-r.Min)+1))
}

// NoDrain as Config.Drain skips the drain: the run is finished as soon as
// publishing stops (messages still in flight are then pending, not lost).
const NoDrain time.Duration = -1

// MaxTopicsLongPoll is the most channels one Nchan multiplexed subscription may name.
const MaxTopicsLongPoll = 255

// MaxIDLen bounds the length of a learner ID (the pool prefix is shortened to fit).
const MaxIDLen = 64

// MaxPayloadSize bounds a message (each user holds one buffer of this size).
const MaxPayloadSize = 1 << 20

// MinPayloadSize is the smallest payload: the stamp, the kind byte and a learner ID.
const MinPayloadSize = verify.StampSize + 1 + MaxIDLen

// Config is everything a run needs. The zero value of each field means the
// documented default, except Users (or Stages), which must be given.
type Config struct {
	// Users is the number of simulated users (all shards together). With
	// Stages it defaults to the stages' peak and may not be below it.
	Users int
	// SpawnRate is how many users start per second until Users run (default 10).
	// Ignored with Stages.
	SpawnRate float64
	// Duration of the publishing phase (default 1m). Must be 0 with Stages,
	// whose durations add up to it.
	Duration time.Duration
	// Stages, if set, ramp the number of users like k6's ramping executor.
	Stages []Stage
	// Weights of the kinds (default DefaultWeights). User g's kind is fixed by
	// g and the weights, so every shard agrees on it.
	Weights Weights
	// Items is the number of events a learner session publishes before its
	// "finished" event (default 10).
	Items int
	// LearnerInterval is the time between a learner's events (default 1s-3s).
	LearnerInterval Range
	// ControlInterval is the time between a proctor's control rounds (default 5s-10s).
	ControlInterval Range
	// ControlFanout is how many of its live learners a proctor sends a control
	// message in each round (default 1).
	ControlFanout int
	// LearnersPerProctor is how many learner IDs a proctor watches (default:
	// AutoLearnersPerProctor of the weights, so that every learner is watched;
	// at most MaxTopicsLongPoll on long-poll).
	LearnersPerProctor int
	// ProctorTimeout ends a proctor session whose learners have not all
	// finished (default 5m).
	ProctorTimeout time.Duration
	// PayloadSize of every message in bytes (default 256, at least MinPayloadSize).
	PayloadSize int
	// Drain is how long subscribers keep receiving after publishing stops; the
	// drain ends early once every user has received all it waits for. 0 means
	// the default, Verify.LostAfter + Verify.Grace; NoDrain means none.
	Drain time.Duration
	// ReconnectPerSession opens a new connection for every session (the
	// behaviour of earlier versions). By default a user keeps its connection across
	// its sessions on transports that can unsubscribe (MQTT): a new session
	// subscribes on it and the ended one unsubscribes. Long-poll, WebSocket
	// and EventSource subscriptions name their channels in the request, so
	// they always open a new poll or stream per session.
	ReconnectPerSession bool
	// MinLinger keeps a subscriber's connection open at least this long after
	// it stops listening (default 0), so that duplicates arriving just after
	// the original are still seen and counted.
	MinLinger time.Duration
	// ReportAtCut makes an interrupted Run take the ledgers' results at the
	// cut and return at once: publishing stops, and the users end without
	// closing their connections (Summary.StillStopping counts those still
	// running); Runner.Wait ends them and closes what they left, or the
	// process exit does. Off, Run returns once every user has stopped.
	ReportAtCut bool
	// LongPoll says the transport is long-poll (Nchan's protocol): a
	// subscription has no acknowledgement, so readiness is proven by markers,
	// and a proctor's subscription names at most MaxTopicsLongPoll channels.
	LongPoll bool
	// MarkerWait is the longest a long-poll subscriber waits for one
	// readiness marker before publishing another (default 1s; the first wait
	// is 50ms, doubling up to MarkerWait); MarkerAttempts bounds the markers
	// per session (default 10).
	MarkerWait     time.Duration
	MarkerAttempts int
	// Backoff is the retry schedule for every error (default backoff.Default).
	// Each user scales it so that its floor is at least the shortest interval
	// of its kind (LearnerInterval.Min, ControlInterval.Min; see
	// backoff.Config.WithFloor): an error never makes a user retry faster than
	// it acts when all is well.
	Backoff backoff.Config
	// Verify holds the delivery thresholds and SLO gates (verify's defaults).
	Verify verify.Config
	// Run identifies the run (default: random). Every shard of a run uses the same.
	Run verify.RunID
	// Shard and Shards: this process runs users g with g mod Shards == Shard
	// (default 0 of 1).
	Shard, Shards int
	// Seed makes the users' random choices repeatable (default: random).
	Seed uint64
	// StatsShards is the number of stats shards (default GOMAXPROCS*4).
	StatsShards int
}

// Defaults.
const (
	DefaultSpawnRate      = 10
	DefaultDuration       = time.Minute
	DefaultItems          = 10
	DefaultControlFanout  = 1
	DefaultProctorTimeout = 5 * time.Minute
	DefaultPayloadSize    = 256
	DefaultMarkerWait     = time.Second
	DefaultMarkerAttempts = 10
)

// Default intervals.
var (
	DefaultLearnerInterval = Range{time.Second, 3 * time.Second}
	DefaultControlInterval = Range{5 * time.Second, 10 * time.Second}
)

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	if len(c.Stages) > 0 && c.Users == 0 {
		for _, st := range c.Stages {
			c.Users = max(c.Users, st.Target)
		}
	}
	if c.SpawnRate == 0 {
		c.SpawnRate = DefaultSpawnRate
	}
	if c.Duration == 0 {
		if len(c.Stages) > 0 {
			c.Duration = stagesTotal(c.Stages)
		} else {
			c.Duration = DefaultDuration
		}
	}
	if c.Weights == (Weights{}) {
		c.Weights = DefaultWeights
	}
	if c.Items == 0 {
		c.Items = DefaultItems
	}
	if c.LearnerInterval == (Range{}) {
		c.LearnerInterval = DefaultLearnerInterval
	}
	if c.ControlInterval == (Range{}) {
		c.ControlInterval = DefaultControlInterval
	}
	if c.ControlFanout == 0 {
		c.ControlFanout = DefaultControlFanout
	}
	if c.LearnersPerProctor == 0 {
		c.LearnersPerProctor = AutoLearnersPerProctor(c.Weights)
	}
	if c.ProctorTimeout == 0 {
		c.ProctorTimeout = DefaultProctorTimeout
	}
	if c.PayloadSize == 0 {
		c.PayloadSize = DefaultPayloadSize
	}
	if c.MarkerWait == 0 {
		c.MarkerWait = DefaultMarkerWait
	}
	if c.MarkerAttempts == 0 {
		c.MarkerAttempts = DefaultMarkerAttempts
	}
	if c.Backoff == (backoff.Config{}) {
		c.Backoff = backoff.Default
	}
	if c.Verify.Latency == 0 {
		c.Verify.Latency = verify.DefaultLatency
	}
	if c.Verify.LostAfter == 0 {
		c.Verify.LostAfter = verify.DefaultLostAfter
	}
	if c.Verify.Grace == 0 {
		c.Verify.Grace = verify.DefaultGrace
	}
	if c.Verify.Gates == (verify.Gates{}) {
		c.Verify.Gates = verify.DefaultGates
	}
	if c.Verify.Rate == 0 {
		// Messages per second of one stream, at the fastest interval.
		fastest := min(c.LearnerInterval.Min, c.ControlInterval.Min)
		if fastest > 0 {
			c.Verify.Rate = max(1, float64(time.Second)/float64(fastest))
		}
	}
	if c.Drain == 0 {
		c.Drain = c.Verify.LostAfter + c.Verify.Grace
	}
	if c.Shards == 0 {
		c.Shards = 1
	}
	return c
}

// AutoLearnersPerProctor is the default number of learner IDs a proctor
// watches: twice the learners there are per proctor (so that every learner
// can take a watched ID while proctor sessions come and go: a run verifies
// all its traffic, see verify.Gates.MinCoverage), between 1 and
// MaxTopicsLongPoll.
func AutoLearnersPerProctor(w Weights) int {
	if w[Proctor] <= 0 {
		return 1
	}
	n := (2*w[Learner] + w[Proctor] - 1) / w[Proctor]
	return min(max(n, 1), MaxTopicsLongPoll)
}

// Validate reports every problem with c at once (after applying defaults).
func (c Config) Validate() error {
	d := c.withDefaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("behaviours: "+format, args...)) }
	if len(c.Stages) == 0 && c.Users <= 0 {
		add("--users must be > 0, got %d", c.Users)
	}
	if len(c.Stages) > 0 && c.Users < 0 {
		add("--users must be > 0, got %d", c.Users)
	}
	if len(c.Stages) > 0 {
		if err := validateStages(c.Stages); err != nil {
			errs = append(errs, err)
		}
		peak := 0
		for _, st := range c.Stages {
			peak = max(peak, st.Target)
		}
		if c.Users > 0 && c.Users < peak {
			add("--users %d is below the stages' peak of %d", c.Users, peak)
		}
		if c.Duration != 0 {
			add("give --duration or --stages, not both")
		}
	}
	if c.SpawnRate < 0 {
		add("--spawn-rate must be > 0 users/s, got %v", c.SpawnRate)
	}
	if c.Duration < 0 {
		add("--duration must be > 0, got %v", c.Duration)
	}
	if err := d.Weights.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Items < 0 {
		add("--items must be >= 1, got %d", c.Items)
	}
	if err := d.LearnerInterval.validate("--learner-interval"); err != nil {
		errs = append(errs, err)
	}
	if err := d.ControlInterval.validate("--control-interval"); err != nil {
		errs = append(errs, err)
	}
	if c.ControlFanout < 0 {
		add("--control-fanout must be >= 1, got %d", c.ControlFanout)
	}
	switch {
	case c.LearnersPerProctor < 0:
		add("--learners-per-proctor must be >= 1, got %d", c.LearnersPerProctor)
	case c.LongPoll && d.LearnersPerProctor > MaxTopicsLongPoll:
		add("--learners-per-proctor %d is above %d, the most channels one long-poll subscription may name", d.LearnersPerProctor, MaxTopicsLongPoll)
	}
	if c.ProctorTimeout < 0 {
		add("--proctor-timeout must be > 0, got %v", c.ProctorTimeout)
	}
	if d.PayloadSize < MinPayloadSize || d.PayloadSize > MaxPayloadSize {
		add("--payload-size must be in [%d, %d] bytes, got %d", MinPayloadSize, MaxPayloadSize, c.PayloadSize)
	}
	if c.Drain < 0 && c.Drain != NoDrain {
		add("--drain must be >= 0, got %v", c.Drain)
	}
	if c.MinLinger < 0 {
		add("min linger must be >= 0, got %v", c.MinLinger)
	}
	if c.MarkerWait < 0 || c.MarkerAttempts < 0 {
		add("marker wait and attempts must be > 0, got %v and %d", c.MarkerWait, c.MarkerAttempts)
	}
	if err := d.Backoff.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := d.Verify.Validate(); err != nil {
		errs = append(errs, err)
	}
	if d.Shards < 1 || c.Shard < 0 || c.Shard >= d.Shards {
		add("--shard %d of %d: want 0 <= shard < shards", c.Shard, d.Shards)
	}
	if c.StatsShards < 0 {
		add("stats shards must be >= 0, got %d", c.StatsShards)
	}
	return errors.Join(errs...)
}
