// Package behaviours is what the simulated users of swarm do, and the runner
// that spawns, ramps and stops them.
//
// A Learner takes an ID from the shared pool (idpool), subscribes to its
// control topic (in parallel with everything else), publishes Config.Items
// stamped events to its event topic, one every Config.LearnerInterval, then a
// "finished" event, returns its ID and starts again as a new learner session.
// A Proctor takes Config.LearnersPerProctor IDs, subscribes to all their event
// topics (one multiplexed long-poll, or one MQTT SUBSCRIBE naming them all),
// sends stamped control messages to some of its live learners every
// Config.ControlInterval, and ends when all its learners have finished (or
// after Config.ProctorTimeout), then starts again.
//
// Every message is stamped (verify.Stamp), and the runner verifies its own
// traffic with two verify.Ledgers, one per direction: learner→proctor (events)
// and proctor→learner (control). See registry.go for how expectations follow
// sessions that come and go on reused topics.
//
// Confirmation of a subscription: for MQTT, the SUBACK (Conn.Subscribe
// returned). For long-poll, which has no acknowledgement, a readiness barrier:
// the subscriber publishes verify.MarkerStream markers to one of its topics
// until it receives one (at most Config.MarkerAttempts, each waited for
// Config.MarkerWait); its subscription counts as confirmed when the marker
// arrives. A multiplexed poll names all channels in one request, so one marker
// proves them all. Markers are never expected and the ledger counts them apart.
//
// Errors: every failed connect, subscribe, marker or publish is counted by
// class (stats) and followed by an exponential, jittered, capped backoff
// (package backoff) whose floor is the user's own shortest interval, reset
// after a success; waits end at once when the run stops. Connects include
// the transport's own reconnects (bus.Dialled events): the connect op counts
// every attempt by outcome. A publish that fails is not republished: the next attempt is a new
// seq (a learner retries the same item with a new seq; a proctor drops the
// control message), so the ledger's counts stay exact.
//
// Stopping: Run has two phases. At the end of Config.Duration publishing
// stops (no new request is sent; a publish in flight finishes), then
// subscribers drain for Config.Drain, ending early once every user has
// received everything it waits for; then every connection is closed and the
// ledgers are finished. When Run's ctx ends (SIGINT), everything stops at
// once: open polls are cut, retries cancelled, and the unfinished tail of the
// ledgers is reported pending (inconclusive), not lost.
package behaviours

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/idpool"
	"github.com/eventswarm/eventswarm/internal/stats"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// Operations recorded in stats, in Op order (OpNames[op]).
var OpNames = []string{"connect", "subscribe", "ready", "publish", "control", "poll.200", "poll.408", "poll.error"}

const (
	opConnect   stats.Op = iota // Dial: connect (MQTT CONNACK; long-poll: nothing on the wire yet)
	opSubscribe                 // Conn.Subscribe (MQTT SUBACK; long-poll: the poll started)
	opReady                     // long-poll readiness barrier: from the first marker to its arrival
	opPublish                   // a learner's event or finished publish
	opControl                   // a proctor's control publish
	opPoll200                   // a long-poll cycle that returned a message
	opPoll408                   // a long-poll cycle that timed out empty (408/304): normal
	opPollError                 // a long-poll cycle that failed
)

// Stream names of the two delivery directions, as used in Summary.Streams.
const (
	StreamLearnerToProctor = "learner_to_proctor"
	StreamProctorToLearner = "proctor_to_learner"
)

// ErrRunning: Run was called twice.
var ErrRunning = errors.New("behaviours: Run called twice")

// Phases of a run, in order.
const (
	PhaseIdle  = "idle"
	PhaseRun   = "run"
	PhaseDrain = "drain"
	PhaseDone  = "done"
)

// Runner runs the simulated users of one process (one shard).
type Runner struct {
	cfg     Config
	dialer  bus.Dialer
	clock   verify.Clock
	root    context.Context // Run's ctx: it ends when the run is interrupted
	events  *verify.Ledger  // learner → proctor
	control *verify.Ledger  // proctor → learner
	stats   *stats.Stats
	pool    *idpool.Pool
	reg     *registry
	kinds   []Kind // one weight cycle: user g has kinds[(g / Shards) % len]
	users   []*user

	lingerFor int64 // LostAfter + Grace, ns

	active  [numKinds]atomic.Int64
	started [numKinds]atomic.Int64
	phase   atomic.Value // string
	begin   atomic.Int64 // unix ns of Run's start, 0 before

	// Users: the most running at once, and when this shard's target was
	// first reached (ns since Run's start; -1 not yet).
	peak      atomic.Int64
	reachedNS atomic.Int64
	// refused is the first error the bus gave that retrying will not fix
	// (bus.ErrRefused: authorization, a granted QoS below the requested one).
	refused atomic.Pointer[error]

	// connections made (Dial succeeded) and sessions opened.
	connections atomic.Uint64
	sessions    atomic.Uint64

	// The generator's own lag (see noteLag), and a test seam run before
	// every paced send is stamped (nil outside tests).
	sends, lateSends atomic.Uint64
	maxLag           atomic.Int64
	beforeSend       func()

	usersWG sync.WaitGroup
	live    atomic.Int64  // user goroutines not ended yet
	allDone chan struct{} // closed when every user goroutine has ended (after Run's spawning)
	ran     atomic.Bool

	// After an interrupted Run with Config.ReportAtCut: the users leave their
	// connections open (left) instead of closing them, and rest ends the
	// run's contexts, waits for the users and closes what they left (Wait).
	leaving  atomic.Bool
	leftMu   sync.Mutex
	left     []leftConn
	rest     func()
	restOnce sync.Once
}

// leftConn is a connection a user left open, and the cancel of its lifetime.
type leftConn struct {
	conn   bus.Conn
	cancel context.CancelFunc
}

// leave keeps conn open for Wait (or the process exit) instead of closing it,
// when the run is reporting without waiting for its users; it reports whether
// it did.
func (r *Runner) leave(conn bus.Conn, cancel context.CancelFunc) bool {
	if !r.leaving.Load() {
		return false
	}
	r.leftMu.Lock()
	r.left = append(r.left, leftConn{conn, cancel})
	r.leftMu.Unlock()
	return true
}

// Wait blocks until every user goroutine has ended and closed its
// connection: at once after a Run that waited for them all, later after an
// interrupted Run that reported with users still stopping
// (Summary.StillStopping). It returns at once if Run never started users.
func (r *Runner) Wait() {
	if r.rest != nil {
		r.restOnce.Do(r.rest)
		return
	}
	if r.allDone != nil {
		<-r.allDone
	}
}

// noteRefused keeps the first refusal (see Summary.Refused).
func (r *Runner) noteRefused(err error) {
	if errors.Is(err, bus.ErrRefused) {
		r.refused.CompareAndSwap(nil, &err)
	}
}

// TargetUsers is this shard's share of the most users the run asks for
// (--users, or the peak of --stages).
func (r *Runner) TargetUsers() int { return len(r.users) }

// New validates cfg and prepares a run that dials through d. It does no I/O.
func New(cfg Config, d bus.Dialer) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d == nil {
		return nil, errors.New("behaviours: no dialer")
	}
	cfg = cfg.withDefaults()
	if cfg.Run == (verify.RunID{}) {
		cfg.Run = verify.NewRunID()
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
	r := &Runner{cfg: cfg, dialer: d, clock: verify.NewClock(), kinds: cfg.Weights.cycle()}
	r.reachedNS.Store(-1)
	r.lingerFor = int64(cfg.Verify.LostAfter + cfg.Verify.Grace)
	var err error
	if r.events, err = verify.NewLedger(cfg.Run, cfg.Verify); err != nil {
		return nil, err
	}
	if r.control, err = verify.NewLedger(cfg.Run, cfg.Verify); err != nil {
		return nil, err
	}
	r.stats = stats.New(OpNames, cfg.StatsShards)
	// The prefix carries the run ID and the shard, so shards and concurrent
	// runs never share a topic.
	r.pool = idpool.New(cfg.Run.String()[:12] + "-s" + strconv.Itoa(cfg.Shard))
	r.reg = newRegistry(r.clock)
	for g := cfg.Shard; g < cfg.Users; g += cfg.Shards {
		r.users = append(r.users, r.newUser(g))
	}
	r.phase.Store(PhaseIdle)
	return r, nil
}

// Config is the runner's configuration with defaults applied.
func (r *Runner) Config() Config { return r.cfg }

// RunID is the run's ID.
func (r *Runner) RunID() verify.RunID { return r.cfg.Run }

// KindOf is the kind of (global) user g. The cycle runs over the shard's own
// users (g / Shards), so every shard has the weighted mix of kinds (a shard's
// proctors watch only its own learners) whatever the cycle length and the
// shard count; with one shard user g has kind cycle[g % len].
func (r *Runner) KindOf(g int) Kind { return r.kinds[(g/r.cfg.Shards)%len(r.kinds)] }

// Summary is the outcome of a run.
type Summary struct {
	Run   verify.RunID
	Start time.Time
	End   time.Time
	// Interrupted: Run's ctx ended before the run's end (no drain).
	Interrupted bool
	// Drained: subscribers received everything they waited for, or drained
	// for at least LostAfter + Grace; otherwise the ledgers' unfinished tail
	// is pending (inconclusive).
	Drained bool
	// StopTook is how long it took, from the moment every remaining user was
	// told to stop (the interruption, or the end of the drain), until every
	// user goroutine had ended and its connection was closed; on an
	// interrupted run with Config.ReportAtCut, until the results were taken.
	StopTook time.Duration
	// StillStopping is how many users were still running when an
	// interrupted run with Config.ReportAtCut reported without them;
	// Runner.Wait ends them. Nothing they do after the cut counts: its
	// messages in flight were pending at the cut either way.
	StillStopping int
	// Result pools both directions: counts added, the verdict from the gates on
	// the pooled counts, and each latency percentile the larger of the two
	// directions' (an upper bound of the pooled percentile). No windows.
	Result verify.Result
	// Streams holds each direction's own result (StreamLearnerToProctor,
	// StreamProctorToLearner), windows included.
	Streams map[string]verify.Result
	// Users started (sessions loop inside a user, so this counts user
	// goroutines), in total and by kind name.
	UsersStarted int
	UsersByKind  map[string]int
	// Ops are the per-operation stats.
	Ops stats.Snapshot
	// PoolFree and PoolActive are the ID pool's sizes at the end.
	PoolFree, PoolActive int
	// Users: this shard's target (its share of --users or of the stages'
	// peak), the most running at once, and how long after the start the
	// target was first reached (-1: never).
	UsersTarget, UsersPeak int
	UsersReachedAfter      time.Duration
	// Connections made (each Dial that succeeded; a transport's own
	// reconnects are in Ops) and sessions opened (each with its connection;
	// one the stop caught while dialling is not counted), by every user.
	Connections, Sessions uint64
	// Refused is the first refusal by the bus that retrying will not fix
	// (wraps bus.ErrRefused), nil if none.
	Refused error
	// Generator is swarm's own lag: its paced sends (events and control
	// messages), those it started more than verify.LateSend behind their
	// schedule, and the largest lag. Over 1% late makes a failing verdict
	// inconclusive: the users' latencies then say more about this process
	// than about the bus.
	Generator verify.SendLag
}

// Progress is a live view of a run, for the console.
type Progress struct {
	Elapsed time.Duration
	// Left is the longest the run may still take (publishing and the
	// drain); -1 before it began.
	Left  time.Duration
	Phase string
	// Active users by kind name, and users started so far.
	Active  map[string]int
	Started int
	// ID pool sizes.
	PoolFree, PoolActive int
	// Users: this shard's target and the most running at once so far.
	UsersTarget, UsersPeak int
	// Result and Streams are live ledger snapshots (Pending: not final yet).
	Result  verify.Result
	Streams map[string]verify.Result
	Ops     stats.Snapshot
}

// Progress returns a live view. Safe to call at any time from any goroutine.
func (r *Runner) Progress() Progress {
	now := r.clock.Now()
	p := Progress{Phase: r.phase.Load().(string), Active: map[string]int{}, Ops: r.stats.Snapshot()}
	p.Left = -1
	if b := r.begin.Load(); b != 0 {
		p.Elapsed = time.Since(time.Unix(0, b))
		p.Left = max(r.cfg.Duration+max(r.cfg.Drain, 0)-p.Elapsed, 0)
	}
	for _, k := range Kinds() {
		p.Active[k.String()] = int(r.active[k].Load())
		p.Started += int(r.started[k].Load())
	}
	p.PoolFree, p.PoolActive = r.pool.Sizes()
	p.UsersTarget, p.UsersPeak = len(r.users), int(r.peak.Load())
	ev, ct := r.events.Snapshot(now), r.control.Snapshot(now)
	p.Streams = map[string]verify.Result{StreamLearnerToProctor: ev, StreamProctorToLearner: ct}
	p.Result = combine(r.cfg.Verify.Gates, verify.Evidence{}, ev, ct)
	return p
}

// directionNames name combine's results in order (events, then control).
var directionNames = []string{StreamLearnerToProctor, StreamProctorToLearner}

// combine pools the results of both directions; see Summary.Result.
func combine(g verify.Gates, evidence verify.Evidence, rs ...verify.Result) verify.Result {
	var out verify.Result
	for _, r := range rs {
		out.Counts.Add(r.Counts)
		out.LatencyMS = maxLatency(out.LatencyMS, r.LatencyMS)
		out.LateMS = maxLatency(out.LateMS, r.LateMS)
	}
	out.Verdict, out.Reason, out.Gates = g.Judge(out.Counts, evidence)
	// Each direction is judged on its own too (e.g. its own coverage): the
	// pooled verdict is the worst of them (fail, then inconclusive, then pass).
	// A direction that published nothing has nothing to judge (a short run's
	// proctors may send no control message): it does not decide the run.
	for i, r := range rs {
		if r.Counts.PublishAttempted > 0 && r.Verdict.Worse(out.Verdict) {
			out.Verdict, out.Reason = r.Verdict, directionNames[i]+": "+r.Reason
		}
	}
	return out
}

func maxLatency(a, b verify.Latency) verify.Latency {
	return verify.Latency{Count: a.Count + b.Count, P50: max(a.P50, b.P50), P95: max(a.P95, b.P95),
		P99: max(a.P99, b.P99), Max: max(a.Max, b.Max)}
}

// interrupted reports whether the run was told to stop at once (Run's ctx
// ended), not at its end.
func (r *Runner) interrupted() bool { return r.root.Err() != nil }

// Run runs the users until Config.Duration has passed (then drains) or ctx
// ends (then stops at once), and returns the summary. It can be called once.
// Every goroutine it starts has ended when it returns, and every connection
// is closed.
func (r *Runner) Run(ctx context.Context) (Summary, error) {
	if r.ran.Swap(true) {
		return Summary{}, ErrRunning
	}
	cfg := r.cfg
	r.root = ctx
	start := time.Now()
	r.begin.Store(start.UnixNano())
	startNS := r.clock.Now()
	r.events.StartMeasurement(startNS)
	r.control.StartMeasurement(startNS)
	r.phase.Store(PhaseRun)

	// The users' contexts end when Run says so, not by ctx directly: with
	// ReportAtCut, an interrupted Run first takes the ledgers' results at
	// the cut (ending many thousands of users' contexts and sockets takes
	// the CPU for a second or more).
	base := context.WithoutCancel(ctx)
	pubCtx, stopPub := context.WithCancel(base)
	subCtx, stopSub := context.WithCancel(base)
	keep := false // an early report leaves the users to Wait (see early below)
	defer func() {
		if !keep {
			stopPub()
			stopSub()
		}
	}()

	// The ledgers finalize what is due every second.
	advCtx, stopAdv := context.WithCancel(context.Background())
	var advWG sync.WaitGroup
	advWG.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-advCtx.Done():
				return
			case <-t.C:
				now := r.clock.Now()
				r.events.Advance(now)
				r.control.Advance(now)
			}
		}
	})

	groups, stopGroups := newCtxGroups(pubCtx, subCtx, min(len(r.users), maxCtxGroups))
	defer func() {
		if !keep {
			stopGroups()
		}
	}()
	spawnDone := make(chan struct{})
	go func() {
		defer close(spawnDone)
		r.spawn(pubCtx, groups, start)
	}()

	deadline := time.NewTimer(cfg.Duration)
	var cut time.Time // when users were told to stop at once
	select {
	case <-deadline.C:
	case <-ctx.Done():
		cut = time.Now()
	}
	deadline.Stop()
	var ev, ct verify.Result
	finish := func(drained bool) {
		stopAdv()
		advWG.Wait()
		now := r.clock.Now()
		ev = r.events.Finish(now, drained)
		ct = r.control.Finish(now, drained)
	}
	allDone := make(chan struct{})
	r.allDone = allDone
	interrupted := ctx.Err() != nil
	drained := false
	// early: an interrupted real process (ReportAtCut) takes the ledgers'
	// results at the cut (what arrives after it was pending at the cut
	// either way) and reports at once: publishing stops, the users end
	// without closing their connections (waking thousands of users to tear
	// down their sockets took the report's CPU for a second or more), and
	// the process exit closes them; Wait does it in-process.
	early := interrupted && cfg.ReportAtCut
	leaveUsers := func(waitUsers func()) {
		keep = true
		r.leaving.Store(true)
		go stopPub() // nothing new is sent
		r.rest = func() {
			stopPub()
			stopSub()
			stopGroups()
			waitUsers()
			r.leftMu.Lock()
			left := r.left
			r.left = nil
			r.leftMu.Unlock()
			for _, l := range left {
				_ = l.conn.Close()
				l.cancel()
			}
		}
	}
	if early {
		stopNS := r.clock.Now()
		r.events.StopMeasurement(stopNS)
		r.control.StopMeasurement(stopNS)
		finish(false)
		leaveUsers(func() {
			<-spawnDone // no user starts after this
			r.usersWG.Wait()
			close(allDone)
		})
	} else {
		// Phase 2: publishing stops, subscribers drain.
		stopPub()
		stopNS := r.clock.Now()
		r.events.StopMeasurement(stopNS)
		r.control.StopMeasurement(stopNS)
		<-spawnDone // no user starts after this
		go func() {
			r.usersWG.Wait()
			close(allDone)
		}()
	}

	if !interrupted {
		r.phase.Store(PhaseDrain)
		if cfg.Drain == NoDrain {
			select {
			case <-allDone:
				drained = true
			default:
			}
		} else {
			t := time.NewTimer(cfg.Drain)
			select {
			case <-allDone:
				drained = true
			case <-t.C:
				drained = int64(cfg.Drain) >= r.lingerFor
			case <-ctx.Done():
				interrupted = true
				cut = time.Now()
			}
			t.Stop()
		}
	}
	if cut.IsZero() {
		cut = time.Now()
	}
	if interrupted && cfg.ReportAtCut && !early {
		// Interrupted while draining: the same, for the subscribers.
		early = true
		finish(false)
		leaveUsers(func() { <-allDone })
	}
	still := 0
	if early {
		still = int(r.live.Load())
	} else {
		stopSub()
		<-allDone
	}
	stopTook := time.Since(cut)
	if !early {
		finish(drained)
	}
	var evidence verify.Evidence
	if interrupted {
		evidence.Incomplete = "the run was interrupted before its end"
	}
	lag := r.sendLag()
	evidence.Overloaded = lag.Evidence("swarm")
	for _, res := range []*verify.Result{&ev, &ct} {
		res.Verdict, res.Reason, res.Gates = cfg.Verify.Gates.Judge(res.Counts, evidence)
	}
	r.phase.Store(PhaseDone)
	s := Summary{
		Run: cfg.Run, Start: start, End: time.Now(), Interrupted: interrupted, Drained: drained, StopTook: stopTook, StillStopping: still,
		Result:      combine(cfg.Verify.Gates, evidence, ev, ct),
		Streams:     map[string]verify.Result{StreamLearnerToProctor: ev, StreamProctorToLearner: ct},
		UsersByKind: map[string]int{},
		Ops:         r.stats.Snapshot(),
	}
	for _, k := range Kinds() {
		n := int(r.started[k].Load())
		s.UsersByKind[k.String()] = n
		s.UsersStarted += n
	}
	s.PoolFree, s.PoolActive = r.pool.Sizes()
	s.UsersTarget, s.UsersPeak = len(r.users), int(r.peak.Load())
	s.UsersReachedAfter = time.Duration(r.reachedNS.Load())
	s.Connections, s.Sessions = r.connections.Load(), r.sessions.Load()
	s.Generator = lag
	if e := r.refused.Load(); e != nil {
		s.Refused = *e
	}
	return s, nil
}

// spawnTick is how often the spawner adjusts the number of users.
const spawnTick = 20 * time.Millisecond

// target is the number of users (all shards) wanted elapsed into the run.
func (r *Runner) target(elapsed time.Duration) int {
	if len(r.cfg.Stages) > 0 {
		return min(r.cfg.Users, stagesTarget(r.cfg.Stages, elapsed))
	}
	n := int(r.cfg.SpawnRate*elapsed.Seconds()) + 1
	return min(r.cfg.Users, n)
}

// local is how many of the first n users (all shards) are this shard's.
func (r *Runner) local(n int) int {
	if n <= r.cfg.Shard {
		return 0
	}
	return (n - r.cfg.Shard + r.cfg.Shards - 1) / r.cfg.Shards
}

// spawn starts and stops users to follow the target until pubCtx ends, each
// user under its group of contexts (children of pubCtx and subCtx).
func (r *Runner) spawn(pubCtx context.Context, groups []ctxGroup, start time.Time) {
	t := time.NewTicker(spawnTick)
	defer t.Stop()
	running := 0 // users started and not ramped down
	for {
		want := r.local(r.target(time.Since(start)))
		// Ramp up: the lowest users not running whose previous run has ended.
		for i := 0; i < len(r.users) && running < want; i++ {
			u := r.users[i]
			if u.running || !u.ended() {
				continue
			}
			g := groups[i%len(groups)]
			r.startUser(g.pub, g.sub, u)
			running++
		}
		if int64(running) > r.peak.Load() {
			r.peak.Store(int64(running))
		}
		if running >= len(r.users) && r.reachedNS.Load() < 0 {
			r.reachedNS.Store(int64(time.Since(start)))
		}
		// Ramp down: the highest running users stop publishing and leave.
		for i := len(r.users) - 1; i >= 0 && running > want; i-- {
			if u := r.users[i]; u.running {
				u.running = false
				u.stop()
				running--
			}
		}
		if len(r.cfg.Stages) == 0 && running == len(r.users) {
			return // fully spawned; nothing more to do
		}
		select {
		case <-pubCtx.Done():
			return
		case <-t.C:
		}
	}
}

// A ctxGroup is the parent of some users' contexts: a child of the run's
// pubCtx and one of its subCtx. Ending a context (its cancel func) takes its
// parent's lock; with every user's contexts children of one parent, thousands
// of users stopping at once queued on that one lock (a goroutine dump 1.2 s
// after SIGINT to 16,700 MQTT users: 7,300 of them waiting on it).
type ctxGroup struct{ pub, sub context.Context }

// maxCtxGroups bounds the groups: about users/256 users share a parent.
const maxCtxGroups = 256

// newCtxGroups makes n (at least 1) groups under pubCtx and subCtx, and a
// func that ends them.
func newCtxGroups(pubCtx, subCtx context.Context, n int) ([]ctxGroup, func()) {
	n = max(n, 1)
	groups := make([]ctxGroup, n)
	stops := make([]context.CancelFunc, 0, 2*n)
	for i := range groups {
		pub, stopPub := context.WithCancel(pubCtx)
		sub, stopSub := context.WithCancel(subCtx)
		groups[i] = ctxGroup{pub, sub}
		stops = append(stops, stopPub, stopSub)
	}
	return groups, func() {
		for _, stop := range stops {
			stop()
		}
	}
}

// startUser starts u's goroutine. Called by the spawner only.
func (r *Runner) startUser(pubCtx, subCtx context.Context, u *user) {
	uctx, cancel := context.WithCancel(pubCtx)
	u.running, u.stop, u.exited = true, cancel, make(chan struct{})
	r.usersWG.Add(1)
	r.live.Add(1)
	go func() {
		defer r.usersWG.Done()
		defer r.live.Add(-1)
		defer close(u.exited)
		defer cancel()
		r.runUser(uctx, subCtx, u)
	}()
}

// runUser loops sessions of u's kind until pubCtx ends.
func (r *Runner) runUser(pubCtx, subCtx context.Context, u *user) {
	r.started[u.kind].Add(1)
	r.active[u.kind].Add(1)
	defer r.active[u.kind].Add(-1)
	defer func() {
		if u.link != nil {
			u.link.close()
		}
	}()
	for pubCtx.Err() == nil {
		var did bool
		switch u.kind {
		case Learner:
			did = r.learnerSession(pubCtx, subCtx, u)
		case Proctor:
			did = r.proctorSession(pubCtx, subCtx, u)
		}
		if !did {
			// The session could not start (it already backed off on each
			// error); never spin.
			if _, err := u.bo.Wait(pubCtx); err != nil {
				return
			}
		}
	}
}

// user is one simulated user. Its fields are used by its own goroutine only,
// except running/stop/exited (the spawner's).
type user struct {
	g     int
	pub   uint32
	kind  Kind
	rnd   *rand.Rand
	bo    *backoff.Backoff
	shard *stats.Shard
	buf   []byte // payload buffer, reused after a publish with a known outcome

	sessions uint32 // sessions started (a learner's session is its stream)
	streams  uint32 // a proctor's control streams
	conns    uint64 // connections dialled
	link     *link  // the connection kept across sessions, if any
	markers  uint64 // readiness markers sent
	readyAt  int64  // when its last publish call returned (clock ns)

	running bool
	stop    context.CancelFunc
	exited  chan struct{}
}

func (r *Runner) newUser(g int) *user {
	rnd := rand.New(rand.NewPCG(r.cfg.Seed, uint64(g)))
	kind := r.KindOf(g)
	return &user{
		g: g, pub: uint32(g), kind: kind, rnd: rnd,
		bo:    backoff.New(r.userBackoff(kind), rnd.Int64N),
		shard: r.stats.Shard(g),
		buf:   make([]byte, r.cfg.PayloadSize),
	}
}

// userBackoff is the retry schedule of a user of kind k: Config.Backoff scaled
// so that its floor is at least the kind's shortest interval. An error never
// makes a user act faster than it does when all is well, and the schedule
// keeps its shape (the rate at the cap stays the same share of the user's own).
func (r *Runner) userBackoff(k Kind) backoff.Config {
	iv := r.cfg.LearnerInterval
	if k == Proctor {
		iv = r.cfg.ControlInterval
	}
	return r.cfg.Backoff.WithFloor(iv.Min)
}

// ended reports whether u's last goroutine (if any) has returned.
func (u *user) ended() bool {
	if u.exited == nil {
		return true
	}
	select {
	case <-u.exited:
		return true
	default:
		return false
	}
}
