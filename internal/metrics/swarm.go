package metrics

import (
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventswarm/eventswarm/internal/behaviours"
	"github.com/eventswarm/eventswarm/internal/busstats"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// swarmPhases are the values of eventswarm_phase for swarm.
var swarmPhases = []string{behaviours.PhaseIdle, behaviours.PhaseRun, behaviours.PhaseDrain, behaviours.PhaseDone}

// Directions are swarm's direction labels.
var Directions = []string{behaviours.StreamLearnerToProctor, behaviours.StreamProctorToLearner}

// Swarm is the collector of a swarm run (one shard): both directions'
// delivery metrics, the users and the operations, read from
// behaviours.Runner.Progress at each scrape.
type Swarm struct {
	f *family
	d *delivery

	phase, runVerdict            *prometheus.Desc
	users, started, target, peak *prometheus.Desc
	ops, failures, pool          *prometheus.Desc

	mu      sync.Mutex
	r       *behaviours.Runner
	verdict verify.Verdict
}

// NewSwarm returns the collector of the swarm run described by i.
func NewSwarm(i Info) *Swarm {
	f := newFamily(i)
	s := &Swarm{f: f, d: newDelivery(f, i)}
	s.phase = f.add("phase", "The run's phase (1 for the current one).", "phase")
	s.runVerdict = f.add("run_verdict", "The run's final verdict (1 for it, 0 for the others), once the run has ended.", "verdict")
	s.users = f.add("swarm_users", "Users running now, by kind.", "kind")
	s.started = f.add("swarm_users_started_total", "Users started (sessions loop inside a user).")
	s.target = f.add("swarm_users_target", "This shard's target number of users.")
	s.peak = f.add("swarm_users_peak", "Most users running at once so far.")
	s.ops = f.add("swarm_operations_total", "Operations (connect, subscribe, ready, publish, control, poll.*), by outcome.", "op", "outcome")
	s.failures = f.add("swarm_operation_failures_total", "Failed operations by error class (timeout, refused, reset, 4xx, 5xx, protocol, other).", "op", "class")
	s.pool = f.add("swarm_id_pool", "Learner IDs in the shared pool, by list.", "list")
	return s
}

// Attach sets the runner to read.
func (s *Swarm) Attach(r *behaviours.Runner) {
	s.mu.Lock()
	s.r = r
	s.mu.Unlock()
}

// BusStats returns the holder that --bus-stats fills with its latest sample
// (exported as eventswarm_bus_value). Call before serving.
func (s *Swarm) BusStats() *busstats.Live {
	if s.d.bus == nil {
		s.d.bus = &busstats.Live{}
	}
	return s.d.bus
}

// Finish records the run's final verdict.
func (s *Swarm) Finish(v verify.Verdict) {
	s.mu.Lock()
	s.verdict = v
	s.mu.Unlock()
}

// Names are the metric family names the collector exports.
func (s *Swarm) Names() []string { return s.f.names() }

// Describe implements prometheus.Collector.
func (s *Swarm) Describe(ch chan<- *prometheus.Desc) { s.f.describe(ch) }

// Collect implements prometheus.Collector.
func (s *Swarm) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	r, verdict := s.r, s.verdict
	s.mu.Unlock()
	s.d.collectRun(ch)
	phase := ""
	if r != nil {
		p := r.Progress()
		phase = p.Phase
		for _, dir := range Directions {
			read := func(b []time.Duration) ([]uint64, uint64, float64) {
				cum, n, sum, _ := r.LatencyBuckets(dir, b)
				return cum, n, sum
			}
			s.d.collect(ch, dir, p.Streams[dir], read)
		}
		for _, k := range behaviours.Kinds() {
			ch <- prometheus.MustNewConstMetric(s.users, prometheus.GaugeValue, float64(p.Active[k.String()]), k.String())
		}
		ch <- prometheus.MustNewConstMetric(s.started, prometheus.CounterValue, float64(p.Started))
		ch <- prometheus.MustNewConstMetric(s.target, prometheus.GaugeValue, float64(p.UsersTarget))
		ch <- prometheus.MustNewConstMetric(s.peak, prometheus.GaugeValue, float64(p.UsersPeak))
		for _, op := range p.Ops.Ops {
			ch <- prometheus.MustNewConstMetric(s.ops, prometheus.CounterValue, float64(op.Count-op.Failures), op.Name, "ok")
			ch <- prometheus.MustNewConstMetric(s.ops, prometheus.CounterValue, float64(op.Failures), op.Name, "failed")
			classes := make([]string, 0, len(op.FailuresByClass))
			for c := range op.FailuresByClass {
				classes = append(classes, c)
			}
			sort.Strings(classes)
			for _, c := range classes {
				ch <- prometheus.MustNewConstMetric(s.failures, prometheus.CounterValue, float64(op.FailuresByClass[c]), op.Name, c)
			}
		}
		ch <- prometheus.MustNewConstMetric(s.pool, prometheus.GaugeValue, float64(p.PoolFree), "free")
		ch <- prometheus.MustNewConstMetric(s.pool, prometheus.GaugeValue, float64(p.PoolActive), "active")
	}
	if verdict != "" {
		phase = behaviours.PhaseDone
		for _, x := range Verdicts {
			ch <- prometheus.MustNewConstMetric(s.runVerdict, prometheus.GaugeValue, b2f(verdict == x), string(x))
		}
	}
	for _, ph := range swarmPhases {
		ch <- prometheus.MustNewConstMetric(s.phase, prometheus.GaugeValue, b2f(ph == phase), ph)
	}
}
