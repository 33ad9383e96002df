package behaviours

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/localbus"
	"github.com/eventswarm/eventswarm/internal/longpoll"
	"github.com/eventswarm/eventswarm/internal/mqtt"
	"github.com/eventswarm/eventswarm/internal/verify"
)

var testBackoff = backoff.Config{Initial: 10 * time.Millisecond, Max: 200 * time.Millisecond, Multiplier: 2}

// startBus starts an embedded bus on loopback, closed when the test ends.
func startBus(t testing.TB, cfg localbus.Config) *localbus.Bus {
	t.Helper()
	b, err := localbus.Start(cfg)
	if err != nil {
		t.Fatalf("localbus.Start: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// dialerFor returns a Dialer of the real transport for proto ("http" or "mqtt").
func dialerFor(t testing.TB, b *localbus.Bus, proto string) bus.Dialer {
	return dialerWith(t, b, proto, testBackoff)
}

// dialerWith is dialerFor with the transport's own retry schedule (polls, reconnects).
func dialerWith(t testing.TB, b *localbus.Bus, proto string, bo backoff.Config) bus.Dialer {
	t.Helper()
	switch proto {
	case "mqtt":
		c, err := mqtt.New(mqtt.Config{URL: "mqtt://" + b.MQTTAddr(), Backoff: bo,
			PublishTimeout: 2 * time.Second, ConnectTimeout: 2 * time.Second})
		if err != nil {
			t.Fatalf("mqtt.New: %v", err)
		}
		t.Cleanup(c.Close)
		return bus.DialFunc(func(ctx context.Context, id string, h bus.Handler) (bus.Conn, error) {
			conn, err := c.Dial(ctx, id, h)
			if err != nil {
				return nil, err
			}
			return conn, nil
		})
	default:
		c, err := longpoll.New(longpoll.Config{URL: b.HTTPURL(), Backoff: bo, PublishTimeout: 2 * time.Second})
		if err != nil {
			t.Fatalf("longpoll.New: %v", err)
		}
		t.Cleanup(c.Close)
		return c.Dialer()
	}
}

// smallConfig is a scaled-down run: short intervals and thresholds so a test
// takes seconds. Latency bounds are generous: tests assert counts, not speed.
// smallGates are the default gates without the coverage gate: these short
// runs verify 40-98% of their messages, as machine load decides (a learner's
// first events may precede its proctor's confirmed subscription).
var smallGates = func() verify.Gates { g := verify.DefaultGates; g.MinCoverage, g.Within = 0, 0; return g }()

func smallConfig(proto string) Config {
	return Config{
		Users:              12,
		SpawnRate:          100,
		Duration:           1500 * time.Millisecond,
		Weights:            Weights{Learner: 5, Proctor: 1},
		Items:              4,
		LearnerInterval:    Range{20 * time.Millisecond, 50 * time.Millisecond},
		ControlInterval:    Range{20 * time.Millisecond, 40 * time.Millisecond},
		ControlFanout:      2,
		LearnersPerProctor: 5,
		ProctorTimeout:     time.Second,
		MarkerWait:         100 * time.Millisecond,
		MarkerAttempts:     30,
		LongPoll:           proto == "http",
		Backoff:            testBackoff,
		Verify:             verify.Config{Latency: 1500 * time.Millisecond, LostAfter: 5 * time.Second, Grace: 200 * time.Millisecond, Gates: smallGates},
		Seed:               1,
	}
}

func run(t *testing.T, ctx context.Context, cfg Config, d bus.Dialer) Summary {
	t.Helper()
	r, err := New(cfg, d)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s, err := r.Run(ctx)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return s
}

var protos = []string{"http", "mqtt"}

// TestNoFaults: learners and proctors paired by the pool on both transports;
// events reach proctors, control messages reach learners, nothing is lost or
// duplicated, and the run ends drained with a pass.
func TestNoFaults(t *testing.T) {
	for _, proto := range protos {
		t.Run("proto="+proto, func(t *testing.T) {
			b := startBus(t, localbus.Config{})
			s := run(t, t.Context(), smallConfig(proto), dialerFor(t, b, proto))
			logSummary(t, s)
			for name, res := range s.Streams {
				c := res.Counts
				if c.Expected == 0 {
					t.Errorf("%s: expected = 0; want deliveries", name)
				}
				if c.Lost != 0 || c.Duplicates != 0 || c.Unexpected != 0 || c.Corrupt != 0 {
					t.Errorf("%s: lost %d dup %d unexpected %d corrupt %d; want 0", name, c.Lost, c.Duplicates, c.Unexpected, c.Corrupt)
				}
				if c.Pending != 0 {
					t.Errorf("%s: pending = %d after a drained run", name, c.Pending)
				}
			}
			if !s.Drained || s.Interrupted {
				t.Errorf("drained=%v interrupted=%v; want true, false", s.Drained, s.Interrupted)
			}
			if s.UsersByKind["learner"] != 10 || s.UsersByKind["proctor"] != 2 {
				t.Errorf("users by kind = %v; want learner=10 proctor=2", s.UsersByKind)
			}
			if s.PoolActive != 0 {
				t.Errorf("pool active = %d after the run; want 0 (every learner returned its ID)", s.PoolActive)
			}
			for _, op := range []string{"connect", "subscribe", "publish", "control"} {
				if o, _ := s.Ops.Op(op); o.Count == 0 {
					t.Errorf("op %s count = 0", op)
				}
			}
		})
	}
}

func logSummary(t *testing.T, s Summary) {
	t.Helper()
	for name, res := range s.Streams {
		t.Logf("%s: verdict %s %s counts %+v", name, res.Verdict, res.Reason, res.Counts)
	}
	for _, o := range s.Ops.Ops {
		t.Logf("op %s count %d failures %d %v", o.Name, o.Count, o.Failures, o.FailuresByClass)
	}
	t.Logf("generator %+v", s.Generator)
}

// TestFaultsCountedExactly injects drops, duplicates and short delays on the
// embedded bus and checks that the run's ledgers count exactly the injected
// faults that hit expected deliveries: the bus decides each fault by a pure
// function of (subscriber connection, payload) (localbus.Faults.Decide), and
// the runner reports every (connection, message) pair it expects through a
// test seam, so the test predicts the counts independently of the ledger.
func TestFaultsCountedExactly(t *testing.T) {
	isMarker := func(p []byte) bool {
		var st verify.Stamp
		return verify.Decode(p, &st) == nil && st.Stream == verify.MarkerStream
	}
	for _, proto := range protos {
		t.Run("proto="+proto, func(t *testing.T) {
			// Probabilities high enough that a short run on a loaded machine
			// (as few as ~40 expected deliveries) still sees a drop and a
			// duplicate hit an expected delivery (0.85^40 < 0.2%); at 5%
			// about 1 run in 40 saw none and could not check anything.
			faults := localbus.Faults{Seed: 7, Drop: 0.1, Duplicate: 0.15, Delay: 0.05,
				Delays: []time.Duration{30 * time.Millisecond}, Skip: isMarker}
			b := startBus(t, localbus.Config{Faults: faults})
			cfg := smallConfig(proto)
			cfg.MinLinger = 300 * time.Millisecond // see duplicates that come just after the original
			cfg.Verify.LostAfter = time.Second
			cfg.Verify.Latency = time.Second
			r, err := New(cfg, dialerFor(t, b, proto))
			if err != nil {
				t.Fatal(err)
			}
			type pair struct {
				conn string
				k    msgKey
			}
			type exp struct {
				intended int64
				payload  []byte
			}
			var mu sync.Mutex
			expected := map[pair]exp{}
			r.reg.onExpect = func(conn string, k msgKey, intended int64, payload []byte) {
				mu.Lock()
				expected[pair{conn, k}] = exp{intended, bytes.Clone(payload)}
				mu.Unlock()
			}
			r.reg.onClose = func(conn string, at int64) {
				mu.Lock()
				for p, e := range expected {
					if p.conn == conn && e.intended >= at {
						delete(expected, p)
					}
				}
				mu.Unlock()
			}
			r.reg.onUnexpect = func(conn string, k msgKey) {
				mu.Lock()
				delete(expected, pair{conn, k})
				mu.Unlock()
			}
			s, err := r.Run(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			logSummary(t, s)
			var wantLost, wantDup uint64
			mu.Lock()
			for p, e := range expected {
				switch f, _ := faults.Decide(p.conn, e.payload); f {
				case localbus.Drop:
					wantLost++
				case localbus.Duplicate:
					wantDup++
				}
			}
			n := uint64(len(expected))
			mu.Unlock()
			c := s.Result.Counts
			inj := b.Injected()
			t.Logf("injected %+v; predicted on expected deliveries: lost %d dup %d of %d", inj, wantLost, wantDup, n)
			if c.Expected != n {
				t.Errorf("expected = %d; the runner expected %d deliveries", c.Expected, n)
			}
			if c.Lost != wantLost || c.Duplicates != wantDup {
				t.Errorf("lost %d dup %d; want the injected lost %d dup %d", c.Lost, c.Duplicates, wantLost, wantDup)
			}
			if wantLost == 0 || wantDup == 0 {
				t.Errorf("no drop or duplicate hit an expected delivery; the test exercised nothing")
			}
			if inj.Dropped < wantLost || inj.Duplicated < wantDup {
				t.Errorf("bus injected %d drops, %d duplicates; fewer than predicted %d, %d", inj.Dropped, inj.Duplicated, wantLost, wantDup)
			}
			if c.Corrupt != 0 || c.Unexpected != 0 || c.Late != 0 {
				t.Errorf("corrupt %d unexpected %d late %d; want 0", c.Corrupt, c.Unexpected, c.Late)
			}
		})
	}
}

// eventually polls cond until it holds; the 30s bound is a hang guard, not a
// timing assertion.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func totalRequests(b *localbus.Bus) uint64 {
	q := b.Requests()
	return q.HTTPPublishes + q.HTTPPolls + q.MQTTConnects + q.MQTTPublishes
}

// TestCleanStop: with many users running, cancelling Run's context stops
// every user at once: Run returns, the summary is written (interrupted, not
// drained), and the bus sees no request after Run returned.
func TestCleanStop(t *testing.T) {
	users := 500
	if testing.Short() {
		users = 100
	}
	for _, proto := range protos {
		t.Run("proto="+proto, func(t *testing.T) {
			b := startBus(t, localbus.Config{})
			cfg := smallConfig(proto)
			cfg.Users = users
			cfg.SpawnRate = 5000
			cfg.Duration = time.Hour
			cfg.LearnerInterval = Range{100 * time.Millisecond, 300 * time.Millisecond}
			cfg.LearnersPerProctor = 10
			r, err := New(cfg, dialerFor(t, b, proto))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan Summary, 1)
			go func() {
				s, err := r.Run(ctx)
				if err != nil {
					t.Error(err)
				}
				done <- s
			}()
			eventually(t, "every user running and publishing", func() bool {
				p := r.Progress()
				pub, _ := p.Ops.Op("publish")
				return p.Active["learner"]+p.Active["proctor"] == users && pub.Count > uint64(users)
			})
			t0 := time.Now()
			cancel()
			var s Summary
			select {
			case s = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return within 30s of the stop")
			}
			t.Logf("stop of %d users took %v", users, time.Since(t0))
			after := totalRequests(b)
			if !s.Interrupted || s.Drained {
				t.Errorf("interrupted=%v drained=%v; want true, false", s.Interrupted, s.Drained)
			}
			if s.Result.Counts.PublishAttempted == 0 || s.UsersStarted != users {
				t.Errorf("summary after stop: %d publishes, %d users; want a full report", s.Result.Counts.PublishAttempted, s.UsersStarted)
			}
			if p := r.Progress(); p.Active["learner"]+p.Active["proctor"] != 0 {
				t.Errorf("active users after Run returned: %v", p.Active)
			}
			// Nothing may reach the bus after Run returned.
			time.Sleep(300 * time.Millisecond)
			if later := totalRequests(b); later != after {
				t.Errorf("bus saw %d requests after Run returned", later-after)
			}
		})
	}
}

// TestBackoffDuringOutage: while the bus answers 503 to everything, the
// swarm's request rate falls (backoff, not a thundering herd); when the bus
// comes back, the swarm publishes again.
func TestBackoffDuringOutage(t *testing.T) {
	b := startBus(t, localbus.Config{})
	cfg := smallConfig("http")
	cfg.Users = 40
	cfg.Duration = time.Hour
	cfg.Backoff = backoff.Config{Initial: 10 * time.Millisecond, Max: time.Second, Multiplier: 2}
	r, err := New(cfg, dialerWith(t, b, "http", cfg.Backoff))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := r.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	defer func() { cancel(); <-done }()
	published := func() uint64 {
		o, _ := r.Progress().Ops.Op("publish")
		return o.Count - o.Failures
	}
	eventually(t, "users publishing", func() bool { return published() > 100 })

	b.SetOutage(503)
	// An upper bound that follows from the schedule, not from the machine's
	// speed (a slow machine only makes fewer requests): each of a user's
	// request loops (at most 4: publish, poll, control, readiness markers,
	// each started afresh by a new session at most once more here) starts at
	// most MaxAttempts(span)+1 requests in the span; a loop without backoff
	// makes tens of thousands a second.
	const span = 3 * time.Second
	before503 := totalRequests(b)
	time.Sleep(span)
	during := totalRequests(b) - before503
	perLoop := uint64(cfg.Backoff.MaxAttempts(span) + 1)
	bound := uint64(cfg.Users) * 4 * 2 * perLoop
	t.Logf("requests during a %v outage: %d (bound %d = %d users x 4 loops x 2 sessions x %d)", span, during, bound, cfg.Users, perLoop)
	if during > bound {
		t.Errorf("%d requests during a %v outage; the backoff schedule allows at most %d", during, span, bound)
	}
	o, _ := r.Progress().Ops.Op("publish")
	if o.FailuresByClass["5xx"] == 0 {
		t.Errorf("no publish failure counted as 5xx during the outage: %v", o.FailuresByClass)
	}

	b.SetOutage(0)
	before := published()
	eventually(t, "publishing again after the outage", func() bool { return published() > before+100 })
}

// TestConnectionKept: on MQTT a user keeps its connection across its
// sessions (one connection per user, the sessions re-subscribe on it) and
// nothing of an ended session reaches the next; with ReconnectPerSession, and
// on long-poll (no Unsubscribe), every session has its own connection.
func TestConnectionKept(t *testing.T) {
	for _, tc := range []struct {
		proto      string
		perSession bool
	}{{"mqtt", false}, {"mqtt", true}, {"http", false}} {
		t.Run(fmt.Sprintf("proto=%s/per-session=%v", tc.proto, tc.perSession), func(t *testing.T) {
			b := startBus(t, localbus.Config{})
			cfg := smallConfig(tc.proto)
			cfg.ReconnectPerSession = tc.perSession
			s := run(t, t.Context(), cfg, dialerFor(t, b, tc.proto))
			logSummary(t, s)
			t.Logf("users %d, sessions %d, connections %d", s.UsersStarted, s.Sessions, s.Connections)
			for name, res := range s.Streams {
				c := res.Counts
				if c.Expected == 0 || c.Lost != 0 || c.Duplicates != 0 || c.Unexpected != 0 || c.Corrupt != 0 || c.Pending != 0 {
					t.Errorf("%s: expected %d lost %d dup %d unexpected %d corrupt %d pending %d; want deliveries and no faults",
						name, c.Expected, c.Lost, c.Duplicates, c.Unexpected, c.Corrupt, c.Pending)
				}
			}
			if s.Sessions <= uint64(s.UsersStarted) {
				t.Fatalf("%d sessions for %d users: the run is too short to show a second session", s.Sessions, s.UsersStarted)
			}
			want, what := s.Sessions, "one per session"
			if tc.proto == "mqtt" && !tc.perSession {
				want, what = uint64(s.UsersStarted), "one per user"
			}
			if s.Connections != want {
				t.Errorf("connections = %d; want %d (%s)", s.Connections, want, what)
			}
			if o, _ := s.Ops.Op("connect"); o.Count != want || o.Failures != 0 {
				t.Errorf("connect op: %d, %d failures; want %d, 0", o.Count, o.Failures, want)
			}
		})
	}
}

// heldClose is a Conn whose Close waits until release is closed (a user
// whose socket teardown is slow: many thousands of them on a saturated
// machine), and counts its calls.
type heldClose struct {
	bus.Conn
	release <-chan struct{}
	closes  *atomic.Int64
}

func (c *heldClose) Close() error {
	c.closes.Add(1)
	<-c.release
	return c.Conn.Close()
}

// TestReportAtCut: an interrupted run with ReportAtCut returns with its
// results while every connection's Close is still held (without it, Run
// would wait for them), never a pass; Wait blocks until the users have ended
// and every connection made was closed exactly once. Without ReportAtCut
// (every other test), Run waits for the users.
func TestReportAtCut(t *testing.T) {
	for _, proto := range protos {
		t.Run("proto="+proto, func(t *testing.T) { testReportAtCut(t, proto) })
	}
}

func testReportAtCut(t *testing.T, proto string) {
	b := startBus(t, localbus.Config{})
	inner := dialerFor(t, b, proto)
	release := make(chan struct{})
	var once sync.Once
	letGo := func() { once.Do(func() { close(release) }) }
	t.Cleanup(letGo)
	var closes atomic.Int64
	d := bus.DialFunc(func(ctx context.Context, id string, h bus.Handler) (bus.Conn, error) {
		c, err := inner.Dial(ctx, id, h)
		if err != nil {
			return nil, err
		}
		return &heldClose{Conn: c, release: release, closes: &closes}, nil
	})
	cfg := smallConfig(proto)
	cfg.Duration = time.Minute // the interruption ends it
	cfg.ReportAtCut = true
	r, err := New(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		for r.connections.Load() == 0 && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	s, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Interrupted || s.StillStopping < 0 || s.StillStopping > s.UsersStarted {
		t.Fatalf("interrupted %v, still running %d of %d started; want an interrupted run", s.Interrupted, s.StillStopping, s.UsersStarted)
	}
	if s.Result.Verdict == verify.Pass {
		t.Fatalf("verdict %s; an interrupted run never passes", s.Result.Verdict)
	}
	waited := make(chan struct{})
	go func() {
		r.Wait()
		close(waited)
	}()
	select {
	case <-waited:
		t.Fatal("Wait returned while connections were still closing")
	case <-time.After(100 * time.Millisecond):
	}
	letGo()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatal("Wait did not return after the closes were let go")
	}
	// (a dial the stop aborted is closed too, and not counted as made)
	if c, made := closes.Load(), int64(r.connections.Load()); c < made {
		t.Fatalf("%d closes for %d connections made; want every connection closed", c, made)
	}
}
