package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventswarm/eventswarm/internal/busstats"
	"github.com/eventswarm/eventswarm/internal/probe"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// ProbeDirection is the direction label of probe's series.
const ProbeDirection = "probe"

// probePhases are the values of eventswarm_phase for probe ("" before connecting: none).
var probePhases = []string{"connecting", "barrier", "publishing", "draining", "done"}

// Probe is the collector of a probe run. Attach the view with Attach (from
// probe.Hooks.OnStart) and the final verdict with Finish.
type Probe struct {
	f *family
	d *delivery

	phase, runVerdict              *prometheus.Desc
	lateSends, lag, drift, busWait *prometheus.Desc
	gc, overloaded, heap           *prometheus.Desc

	mu      sync.Mutex
	view    *probe.View
	verdict verify.Verdict // "" until Finish
}

// NewProbe returns the collector of the probe run described by i.
func NewProbe(i Info) *Probe {
	f := newFamily(i)
	p := &Probe{f: f, d: newDelivery(f, i)}
	p.phase = f.add("phase", "The run's phase (1 for the current one).", "phase")
	p.runVerdict = f.add("run_verdict", "The run's final verdict (1 for it, 0 for the others), once the run has ended.", "verdict")
	p.lateSends = f.add("probe_late_sends_total", "Publishes the probe itself started over 100ms behind schedule while the bus was ready.")
	p.lag = f.add("probe_max_send_lag_seconds", "Largest lag the probe itself added to a send.")
	p.drift = f.add("probe_max_ticker_drift_seconds", "Largest delay between a pacer wake-up and its due time.")
	p.busWait = f.add("probe_max_bus_wait_seconds", "Longest a send waited past its intended time for the bus to take it (backpressure, not overload).")
	p.gc = f.add("probe_gc_pause_seconds_total", "Stop-the-world GC pause since publishing began.")
	p.overloaded = f.add("probe_overloaded", "1 when more than 1% of the probe's sends were late sends (then a failure is inconclusive).")
	p.heap = f.add("probe_heap_bytes", "Go heap in use at the last live tick.")
	return p
}

// Attach sets the running probe to read (probe.Hooks.OnStart).
func (p *Probe) Attach(v *probe.View) {
	p.mu.Lock()
	p.view = v
	p.mu.Unlock()
}

// BusStats returns the holder that --bus-stats fills with its latest sample
// (exported as eventswarm_bus_value). Call before serving.
func (p *Probe) BusStats() *busstats.Live {
	if p.d.bus == nil {
		p.d.bus = &busstats.Live{}
	}
	return p.d.bus
}

// Finish records the run's final verdict (after probe.Run returned).
func (p *Probe) Finish(v verify.Verdict) {
	p.mu.Lock()
	p.verdict = v
	p.mu.Unlock()
}

// Names are the metric family names the collector exports.
func (p *Probe) Names() []string { return p.f.names() }

// Describe implements prometheus.Collector.
func (p *Probe) Describe(ch chan<- *prometheus.Desc) { p.f.describe(ch) }

// Collect implements prometheus.Collector: it reads the ledger's snapshot now.
func (p *Probe) Collect(ch chan<- prometheus.Metric) {
	p.mu.Lock()
	v, verdict := p.view, p.verdict
	p.mu.Unlock()
	p.d.collectRun(ch)
	phase := ""
	if v != nil {
		phase = v.Phase()
		p.d.collect(ch, ProbeDirection, v.Snapshot(), v.LatencyBuckets)
		h := v.Health()
		ch <- prometheus.MustNewConstMetric(p.lateSends, prometheus.CounterValue, float64(h.LateSends))
		ch <- prometheus.MustNewConstMetric(p.lag, prometheus.GaugeValue, h.MaxSendLagMS/1e3)
		ch <- prometheus.MustNewConstMetric(p.drift, prometheus.GaugeValue, h.MaxTickerDriftMS/1e3)
		ch <- prometheus.MustNewConstMetric(p.busWait, prometheus.GaugeValue, h.MaxBusWaitMS/1e3)
		ch <- prometheus.MustNewConstMetric(p.gc, prometheus.CounterValue, max(h.GCPauseTotalMS, 0)/1e3)
		ch <- prometheus.MustNewConstMetric(p.overloaded, prometheus.GaugeValue, b2f(h.Overloaded))
		ch <- prometheus.MustNewConstMetric(p.heap, prometheus.GaugeValue, h.HeapLastMB*(1<<20))
	}
	if verdict != "" {
		phase = "done"
		for _, x := range Verdicts {
			ch <- prometheus.MustNewConstMetric(p.runVerdict, prometheus.GaugeValue, b2f(verdict == x), string(x))
		}
	}
	for _, ph := range probePhases {
		ch <- prometheus.MustNewConstMetric(p.phase, prometheus.GaugeValue, b2f(ph == phase), ph)
	}
}
