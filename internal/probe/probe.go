// Package probe is the delivery verifier's engine: it publishes
// sequence-stamped messages on a fixed open-model schedule, subscribes to them
// with a fan-out of subscribers, and feeds every publish and delivery to a
// verify.Ledger, which judges them against the SLOs.
//
// A run goes through these phases:
//  1. connect: one connection per stream publisher and one per subscriber;
//     every subscriber subscribes to every stream's topic (multiplexed). The
//     phase is bounded; a failure is a *ConnectError and the Outcome is
//     inconclusive, ready for the report;
//  2. readiness barrier: marker messages are published on every topic until
//     every subscriber has received one on every topic (long-poll has no
//     SUBACK, so this is how we know a subscription is live; for MQTT it also
//     proves the path). Markers are never expected;
//  3. publish: the n-th message of a stream is due at start + n/rate (open
//     model: a late send keeps its intended time, so latency includes the
//     publisher's own delay — no coordinated omission); the first --warmup is
//     not measured. One sender per stream hands its messages to the
//     connection in sequence order (pipelined on MQTT, one at a time on
//     long-poll), so a delivery out of order is the bus's. A bus that holds
//     publishes back shows as latency and publish availability; only the
//     generator's own lag while the bus was ready makes the probe
//     "overloaded";
//  4. drain: publishing stops, subscribers keep receiving for LostAfter + Grace,
//     then the ledger is finished. An interrupted drain makes the unfinished
//     tail inconclusive, not lost.
package probe

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// Config is a probe run. Zero fields take the documented defaults.
type Config struct {
	Duration    time.Duration // publishing time including warm-up; 0 = until ctx ends
	Warmup      time.Duration // first part of publishing not measured (may be 0)
	Rate        float64       // messages/s per stream (default 10)
	Streams     int           // publishing streams (default 1)
	Subscribers int           // subscribers per stream (fan-out, default 2)
	PayloadSize int           // bytes per message (default 256, at least verify.StampSize)
	TopicPrefix string        // topics are <prefix>.<run id>.<stream> (default "eventswarm.probe")
	// InFlight is how many publishes of a stream may wait for their outcome
	// at once (default 8) on a transport that pipelines them in sequence
	// order (MQTT); on long-poll a stream publishes one at a time, since
	// concurrent requests could reach the bus out of order.
	InFlight int
	// Tick is how long a sender on a batching transport (MQTT) lets
	// messages gather: every message due within a tick leaves in one write
	// per stream, at most Tick after its intended time (the latency counts
	// from the intended time all the same); 0 sends each message at its own
	// time. Long-poll always does.
	Tick time.Duration
	// PublishTimeout bounds one publish (default 5s); past it the outcome is unknown.
	PublishTimeout time.Duration
	// BarrierTimeout bounds the readiness barrier (default 15s).
	BarrierTimeout time.Duration
	// Live is how often OnLive is called (default 5s).
	Live time.Duration
	// Ledger sets thresholds, windows and gates.
	Ledger verify.Config
	// MaxStreams is the most streams a subscriber may multiplex (255 for long-poll).
	MaxStreams int
	// ShareGroup, if set, makes the subscribers one MQTT shared subscription
	// (share group): each subscribes to $share/<ShareGroup>/<topic>, the
	// broker delivers each message to one member, and a message is expected
	// exactly once per group, not per subscriber (see group in run.go).
	ShareGroup string
	// ResubscribeOnConnect: after a reconnect the transport resubscribes and
	// confirms with a Subscribed event (MQTT); otherwise (long-poll) being
	// connected again means being subscribed again, cursor kept.
	ResubscribeOnConnect bool
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	if c.Rate == 0 {
		c.Rate = 10
	}
	if c.Streams == 0 {
		c.Streams = 1
	}
	if c.Subscribers == 0 {
		c.Subscribers = 2
	}
	if c.PayloadSize == 0 {
		c.PayloadSize = 256
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = "eventswarm.probe"
	}
	if c.InFlight == 0 {
		c.InFlight = 8
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = verify.DefaultPublishTimeout
	}
	if c.BarrierTimeout == 0 {
		c.BarrierTimeout = 15 * time.Second
	}
	if c.Live == 0 {
		c.Live = 5 * time.Second
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = 255
	}
	if c.Ledger.Latency == 0 {
		c.Ledger.Latency = verify.DefaultLatency
	}
	if c.Ledger.LostAfter == 0 {
		c.Ledger.LostAfter = verify.DefaultLostAfter
	}
	if c.Ledger.Grace == 0 {
		c.Ledger.Grace = verify.DefaultGrace
	}
	if c.Ledger.Window == 0 {
		c.Ledger.Window = verify.DefaultWindow
	}
	if c.Ledger.Rate == 0 {
		c.Ledger.Rate = c.Rate
	}
	if c.Ledger.Gates == (verify.Gates{}) {
		c.Ledger.Gates = verify.DefaultGates
	}
}

// Validate reports every problem at once (call Defaults first).
func (c Config) Validate() error {
	var errs []error
	if c.Duration < 0 {
		errs = append(errs, fmt.Errorf("probe: --duration must be >= 0, got %v", c.Duration))
	}
	if c.Warmup < 0 {
		errs = append(errs, fmt.Errorf("probe: --warmup must be >= 0, got %v", c.Warmup))
	}
	if c.Duration > 0 && c.Warmup >= c.Duration {
		errs = append(errs, fmt.Errorf("probe: --warmup %v leaves nothing to measure in --duration %v", c.Warmup, c.Duration))
	}
	if c.Rate <= 0 || c.Rate > 1e6 {
		errs = append(errs, fmt.Errorf("probe: --rate must be in (0, 1e6] messages/s, got %v", c.Rate))
	}
	if c.Streams < 1 || c.Streams > c.MaxStreams {
		errs = append(errs, fmt.Errorf("probe: --streams must be in [1, %d], got %d", c.MaxStreams, c.Streams))
	}
	if c.Subscribers < 1 || c.Subscribers > 10000 {
		errs = append(errs, fmt.Errorf("probe: --subscribers must be in [1, 10000], got %d", c.Subscribers))
	}
	if c.PayloadSize < verify.StampSize || c.PayloadSize > 1<<20 {
		errs = append(errs, fmt.Errorf("probe: --payload-size must be in [%d, %d] bytes, got %d", verify.StampSize, 1<<20, c.PayloadSize))
	}
	if c.Tick < 0 || c.Tick > 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("probe: --send-tick must be in [0, 100ms], got %v", c.Tick))
	}
	if c.ShareGroup != "" && (strings.ContainsAny(c.ShareGroup, "/+#") || len(c.ShareGroup) > 128) {
		errs = append(errs, fmt.Errorf("probe: --share-group %q: a name of at most 128 bytes without '/', '+' or '#'", c.ShareGroup))
	}
	if c.InFlight < 1 {
		errs = append(errs, fmt.Errorf("probe: in-flight publishes must be >= 1, got %d", c.InFlight))
	}
	if err := c.Ledger.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Health is the probe's own lag: if the probe was overloaded, its numbers say
// more about the probe than about the bus.
type Health struct {
	// LateSends counts publishes the generator itself sent more than 100ms
	// late: after their intended time, or after the bus was ready to take
	// them if that was later. Time spent waiting for the bus (every in-flight
	// publish unacknowledged, the transport not taking more) is the bus's
	// backpressure, not the probe's lag: it shows as latency and publish
	// availability, and in MaxBusWaitMS.
	LateSends uint64 `json:"late_sends"`
	// MaxSendLagMS is the largest lag the generator itself added to a send.
	MaxSendLagMS float64 `json:"max_send_lag_ms"`
	// MaxBusWaitMS is the longest a send waited past its intended time for
	// the bus to take it (a free in-flight slot, the transport's hand-off).
	MaxBusWaitMS float64 `json:"max_bus_wait_ms"`
	// MaxTickerDriftMS is the largest delay between a pacer wake-up and its due time.
	MaxTickerDriftMS float64 `json:"max_ticker_drift_ms"`
	// GCPauseTotalMS is the total stop-the-world GC pause during the run.
	GCPauseTotalMS float64 `json:"gc_pause_total_ms"`
	// Overloaded is set when more than 1% of sends were late sends (then a
	// failed run, or window, is inconclusive instead).
	Overloaded bool `json:"overloaded"`
	// HeapMB samples the Go heap in use (after the readiness barrier, at every
	// live tick): first, max and last sample. Flat over a long run means
	// bounded memory.
	HeapFirstMB float64 `json:"heap_first_mb"`
	HeapMaxMB   float64 `json:"heap_max_mb"`
	HeapLastMB  float64 `json:"heap_last_mb"`
}

// Outcome is a finished run.
type Outcome struct {
	verify.Result
	RunID     string    `json:"run_id"`
	Protocol  string    `json:"protocol,omitempty"`
	Target    string    `json:"target,omitempty"`
	StartedAt time.Time `json:"started_at"`
	// MeasureStartMS/MeasureEndMS are the measurement interval on the run's timeline.
	MeasureStartMS int64 `json:"measure_start_ms"`
	MeasureEndMS   int64 `json:"measure_end_ms"`
	Drained        bool  `json:"drained"`
	// Interrupted: a signal ended the run before its --duration (or before
	// measurement began), or cut the drain short. Never a pass.
	Interrupted bool `json:"interrupted"`
	// ShareGroup and GroupSize: the subscribers were one share group of this
	// many members, every message expected once per group.
	ShareGroup string   `json:"share_group,omitempty"`
	GroupSize  int      `json:"group_size,omitempty"`
	Health     Health   `json:"probe_health"`
	Errors     []string `json:"errors,omitempty"`
}

// Hooks receive live output; each may be nil.
type Hooks struct {
	OnLive   func(elapsed time.Duration, snap verify.Result)
	OnWindow func(w verify.Window)
	// OnPhase reports phase changes ("connecting", "barrier", "publishing", "draining").
	OnPhase func(phase string)
	// OnStart, if set, is called once before connecting with a live view of
	// the run (for a scrape-time exporter, internal/metrics). The view stays
	// valid after Run returns: it then shows the final counts.
	OnStart func(v *View)
}

// ErrConnect marks a run that could not connect or subscribe its publishers
// and subscribers (after the target check passed): errors.Is(err, ErrConnect)
// holds for every *ConnectError. The transport's own classification
// (bus.ErrRefused, bus.ErrProtocol, mqtt.ErrQoSDowngraded, …) is wrapped too.
var ErrConnect = errors.New("probe: could not connect")

// ConnectError is a failed connect or subscribe of one of the probe's
// connections, or a connect phase that did not finish in time.
type ConnectError struct {
	Op  string // "connecting publisher 0", "subscribing probe-…-sub-1", "connecting"
	Err error
}

func (e *ConnectError) Error() string { return "probe: " + e.Op + ": " + e.Err.Error() }
func (e *ConnectError) Unwrap() error { return e.Err }

// Is makes every ConnectError match ErrConnect.
func (e *ConnectError) Is(target error) bool { return target == ErrConnect }

// ErrBarrier means subscribers never received the readiness markers.
var ErrBarrier = errors.New("probe: subscribers did not receive the readiness markers")

// Run executes a probe run against dialer. stop ends publishing (the first
// signal); ctx ends everything (an interrupted drain is reported as such).
// Errors before measurement (connect, subscribe, barrier) are returned with an
// Outcome holding what was counted; errors during the run are recorded in
// Outcome.Errors.
func Run(ctx, stop context.Context, cfg Config, run verify.RunID, dialer bus.Dialer, hooks Hooks) (Outcome, error) {
	cfg.Defaults()
	out := Outcome{RunID: run.String(), StartedAt: time.Now()}
	if err := cfg.Validate(); err != nil {
		return couldNotRun(out, err), err
	}
	ledger, err := verify.NewLedger(run, cfg.Ledger)
	if err != nil {
		return couldNotRun(out, err), err
	}
	p := &prober{cfg: cfg, run: run, ledger: ledger, clock: verify.NewClock(), hooks: hooks}
	p.topics = make([]string, cfg.Streams)
	for i := range p.topics {
		p.topics[i] = fmt.Sprintf("%s.%s.%d", cfg.TopicPrefix, run, i)
	}
	if hooks.OnStart != nil {
		hooks.OnStart(&View{p: p})
	}
	res, err := p.execute(ctx, stop, dialer)
	res.RunID, res.StartedAt = out.RunID, out.StartedAt
	if cfg.ShareGroup != "" {
		res.ShareGroup, res.GroupSize = cfg.ShareGroup, cfg.Subscribers
	}
	if err != nil {
		res = couldNotRun(res, err)
	}
	return res, err
}

// couldNotRun makes the outcome of a run that ended with err before it could
// measure usable for a report: inconclusive, with no gates (nothing was
// measured to judge), as the command reports a run that never started. A
// failure the bus already showed, such as corrupt deliveries during the
// readiness barrier, stays a failure with its gates. Lists are never nil.
func couldNotRun(out Outcome, err error) Outcome {
	if out.Verdict != verify.Fail {
		out.Verdict, out.Reason = verify.Inconclusive, "could not run: "+err.Error()
		out.Gates = nil
	}
	if out.Gates == nil {
		out.Gates = []verify.Gate{}
	}
	if out.Windows == nil {
		out.Windows = []verify.Window{}
	}
	return out
}

type prober struct {
	cfg    Config
	run    verify.RunID
	ledger *verify.Ledger
	clock  verify.Clock
	hooks  Hooks
	topics []string

	subs []*subscriber
	pubs []bus.Conn

	interrupted bool // see Outcome.Interrupted; set before finish
	published   bool // publishing began

	health    healthCounters
	curPhase  atomic.Value // string: the last phase reported
	errMu     sync.Mutex
	errs      []string
	errCounts map[string]int
}

type healthCounters struct {
	winMu   sync.Mutex
	windows map[int64]*windowSends // by window index of the intended send time

	heapMu                       sync.Mutex
	heapFirst, heapMax, heapLast float64
	lateSends                    atomic.Uint64
	maxLag                       atomic.Int64
	maxDrift                     atomic.Int64
	maxBusWait                   atomic.Int64
	sends                        atomic.Uint64
	gcAtStart                    atomic.Uint64 // math.Float64bits of gcPauseSeconds at the start
}

func (p *prober) phase(s string) {
	p.curPhase.Store(s)
	if p.hooks.OnPhase != nil {
		p.hooks.OnPhase(s)
	}
}

// noteError keeps a few examples of each distinct error for the report.
func (p *prober) noteError(where string, err error) {
	msg := where + ": " + err.Error()
	p.errMu.Lock()
	defer p.errMu.Unlock()
	if p.errCounts == nil {
		p.errCounts = map[string]int{}
	}
	p.errCounts[msg]++
	if p.errCounts[msg] == 1 && len(p.errs) < 20 {
		p.errs = append(p.errs, msg)
	}
}

func (p *prober) execute(ctx, stop context.Context, dialer bus.Dialer) (Outcome, error) {
	var out Outcome
	connCtx, cancelConns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelConns()
	defer p.closeAll()

	// A signal (stop) at any moment ends the run: while connecting and at the
	// barrier too, not only while publishing.
	p.phase("connecting")
	if err := p.connect(stop, connCtx, dialer); err != nil {
		p.interrupted = stop.Err() != nil
		return p.finish(out, false), err
	}
	p.phase("barrier")
	if err := p.barrier(stop); err != nil {
		p.interrupted = stop.Err() != nil
		return p.finish(out, false), err
	}

	// Publishing.
	start := p.clock.Now()
	measureStart := start + int64(p.cfg.Warmup)
	p.ledger.StartMeasurement(measureStart)
	out.MeasureStartMS = measureStart / 1e6
	p.health.gcAtStart.Store(math.Float64bits(gcPauseSeconds()))
	pubCtx, stopPub := context.WithCancel(stop)
	defer stopPub()
	if p.cfg.Duration > 0 {
		var stopAtDeadline context.CancelFunc
		pubCtx, stopAtDeadline = context.WithDeadline(pubCtx, p.clock.Origin.Add(time.Duration(start)+p.cfg.Duration))
		defer stopAtDeadline()
	}
	p.phase("publishing")
	p.published = true

	var pubWG sync.WaitGroup
	var endMu sync.Mutex
	end := int64(0) // intended time of the first unsent message: measurement end
	batched := p.cfg.Tick > 0
	for _, c := range p.pubs {
		if _, ok := c.(bus.Batcher); !ok {
			batched = false
		}
	}
	if batched {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			e := p.publishBatched(pubCtx, start)
			endMu.Lock()
			end = max(end, e)
			endMu.Unlock()
		}()
	}
	for i := range p.pubs {
		if batched {
			break
		}
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			e := p.publishStream(pubCtx, i, start)
			endMu.Lock()
			if e > end {
				end = e
			}
			endMu.Unlock()
		}()
	}
	liveDone := make(chan struct{})
	var liveWG sync.WaitGroup
	liveWG.Add(1)
	go func() { defer liveWG.Done(); p.liveLoop(liveDone, start) }()

	<-pubCtx.Done()
	// With --duration 0 the first signal is the planned end; otherwise a
	// signal before the deadline interrupted the run.
	p.interrupted = p.cfg.Duration > 0 && !errors.Is(pubCtx.Err(), context.DeadlineExceeded)
	pubWG.Wait()
	stopAt := p.clock.Now()
	if end == 0 || end > stopAt {
		end = stopAt
	}
	p.ledger.StopMeasurement(end)
	out.MeasureEndMS = end / 1e6

	// Drain: subscribers keep receiving for LostAfter + Grace after the last intended send.
	p.phase("draining")
	drainUntil := p.clock.Origin.Add(time.Duration(end) + p.cfg.Ledger.LostAfter + p.cfg.Ledger.Grace)
	drained := true
	t := time.NewTimer(time.Until(drainUntil))
	select {
	case <-t.C:
	case <-ctx.Done():
		drained = false
	}
	t.Stop()
	close(liveDone)
	liveWG.Wait()
	res := p.finish(out, drained)
	return res, nil
}

func (p *prober) finish(out Outcome, drained bool) Outcome {
	now := p.clock.Now()
	out.Result = p.ledger.Finish(now, drained)
	for i := range out.Windows {
		p.markOverloaded(&out.Windows[i])
	}
	out.Drained = drained
	out.Interrupted = p.interrupted || (p.published && !drained)
	out.Health = p.healthReport()
	p.errMu.Lock()
	for _, e := range p.errs {
		if n := p.errCounts[e]; n > 1 {
			e = fmt.Sprintf("%s (×%d)", e, n)
		}
		out.Errors = append(out.Errors, e)
	}
	p.errMu.Unlock()
	var ev verify.Evidence
	switch {
	case p.interrupted:
		ev.Incomplete = "the run was interrupted before its end"
	case !drained && p.published:
		ev.Incomplete = "the drain was cut short"
	}
	if h := out.Health; h.Overloaded {
		ev.Overloaded = fmt.Sprintf("the probe itself sent %d of its messages late", h.LateSends)
	}
	out.Verdict, out.Reason, out.Gates = p.cfg.Ledger.Gates.Judge(out.Counts, ev)
	return out
}

func (p *prober) healthReport() Health {
	h := Health{
		LateSends:        p.health.lateSends.Load(),
		MaxSendLagMS:     float64(p.health.maxLag.Load()) / 1e6,
		MaxTickerDriftMS: float64(p.health.maxDrift.Load()) / 1e6,
		MaxBusWaitMS:     float64(p.health.maxBusWait.Load()) / 1e6,
		GCPauseTotalMS:   (gcPauseSeconds() - math.Float64frombits(p.health.gcAtStart.Load())) * 1e3,
	}
	p.health.heapMu.Lock()
	h.HeapFirstMB, h.HeapMaxMB, h.HeapLastMB = p.health.heapFirst, p.health.heapMax, p.health.heapLast
	p.health.heapMu.Unlock()
	if verify.Overloaded(p.health.sends.Load(), h.LateSends) {
		h.Overloaded = true
	}
	return h
}

func (p *prober) closeAll() {
	var wg sync.WaitGroup
	for _, c := range p.pubs {
		if c != nil { // nil: never connected
			wg.Add(1)
			go func() { defer wg.Done(); c.Close() }()
		}
	}
	for _, s := range p.subs {
		if s.conn != nil {
			wg.Add(1)
			go func() { defer wg.Done(); s.conn.Close() }()
		}
	}
	wg.Wait()
}

func (p *prober) liveLoop(done <-chan struct{}, start int64) {
	adv := time.NewTicker(250 * time.Millisecond)
	defer adv.Stop()
	next := time.Now().Add(p.cfg.Live)
	emitted := 0
	for {
		select {
		case <-done:
			return
		case <-adv.C:
		}
		now := p.clock.Now()
		p.ledger.Advance(now)
		if p.hooks.OnWindow != nil {
			// Closed windows only: a live snapshot walks every seq not final
			// yet (LostAfter × the rate), too costly four times a second.
			for _, w := range p.ledger.ClosedWindows(emitted) {
				emitted++
				p.markOverloaded(&w)
				p.hooks.OnWindow(w)
			}
		}
		if !time.Now().Before(next) {
			next = next.Add(p.cfg.Live)
			p.sampleHeap()
			if p.hooks.OnLive != nil {
				p.hooks.OnLive(time.Duration(now-start), p.ledger.Snapshot(now))
			}
		}
	}
}

func (p *prober) sampleHeap() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mb := float64(ms.HeapInuse) / (1 << 20)
	h := &p.health
	h.heapMu.Lock()
	defer h.heapMu.Unlock()
	if h.heapFirst == 0 {
		h.heapFirst = mb
	}
	h.heapMax = max(h.heapMax, mb)
	h.heapLast = mb
}

func gcPauseSeconds() float64 {
	s := []metrics.Sample{{Name: "/sched/pauses/total/gc:seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return 0
	}
	h := s[0].Value.Float64Histogram()
	var total float64
	for i, c := range h.Counts {
		if c == 0 {
			continue
		}
		lo, hi := h.Buckets[i], h.Buckets[i+1]
		mid := lo
		if hi > lo && hi < 1e9 {
			mid = (lo + hi) / 2
		}
		total += float64(c) * mid
	}
	return total
}
