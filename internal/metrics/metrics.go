// Package metrics exports a running probe's or swarm's numbers as Prometheus
// metrics (--metrics ADDR). Nothing here counts: at every scrape a
// prometheus.Collector reads the ledgers' own exact counts
// (verify.Ledger.Snapshot, through probe.View and behaviours.Runner) and
// turns them into const metrics, so /metrics says what the final report will
// say, and a counter is the ledger's count at the scrape.
//
// Every series carries run_id and shard; the per-direction series carry
// direction ("probe" for probe, "learner_to_proctor" and
// "proctor_to_learner" for swarm). Label sets are bounded by the program,
// never by users or messages: directions, outcomes, verdicts, phases, kinds,
// operations and error classes are fixed lists.
//
// The delivery-latency histogram has bucket edges at the on-time bound
// (--latency) and at the lost bound (--lost-after), pinned to the ledger's
// exact on-time and on-time+slow counts, and it counts every final expected
// delivery: a lost one is observed in +Inf only. So on time / expected is
// bucket{le=latency} / count, exactly, and it sums across shards and pods.
package metrics

import (
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventswarm/eventswarm/internal/busstats"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// Namespace prefixes every metric this package defines.
const Namespace = "eventswarm"

// Info describes the run: run_id and shard label every series, the rest is
// in eventswarm_run_info and the bound gauges.
type Info struct {
	Command  string // "probe" or "swarm"
	RunID    string
	Shard    int
	Protocol string
	Target   string
	Version  string
	// Latency and LostAfter are the on-time and lost bounds; Within is the
	// on-time target (--within).
	Latency, LostAfter time.Duration
	Within             float64
}

// DefaultBuckets are the latency bucket edges besides the on-time and lost
// bounds, which are always added.
var DefaultBuckets = []time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// Bounds are DefaultBuckets plus the on-time and lost bounds, ascending,
// without repeats.
func Bounds(latency, lostAfter time.Duration) []time.Duration {
	seen := map[time.Duration]bool{}
	var out []time.Duration
	for _, d := range append(append([]time.Duration{}, DefaultBuckets...), latency, lostAfter) {
		if d > 0 && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

// count is one exact count of verify.Counts.
type count struct {
	name, help string
	get        func(c *verify.Counts) uint64
}

// counts are the outcome counters: eventswarm_<name>_total each.
var counts = []count{
	{"expected", "Final expected deliveries (subscriber, message): on time + slow + lost.", func(c *verify.Counts) uint64 { return c.Expected }},
	{"on_time", "Expected deliveries that arrived within the on-time bound.", func(c *verify.Counts) uint64 { return c.OnTime }},
	{"slow", "Expected deliveries that arrived after the on-time bound, within the lost bound.", func(c *verify.Counts) uint64 { return c.Slow }},
	{"lost", "Expected deliveries that did not arrive within the lost bound.", func(c *verify.Counts) uint64 { return c.Lost }},
	{"late", "Lost deliveries that arrived after the lost bound (also counted lost).", func(c *verify.Counts) uint64 { return c.Late }},
	{"duplicates", "Deliveries of a message to a subscriber after its first.", func(c *verify.Counts) uint64 { return c.Duplicates }},
	{"out_of_order", "Expected deliveries that arrived after a later message of their stream (a note, not a failure).", func(c *verify.Counts) uint64 { return c.OutOfOrder }},
	{"corrupt", "Deliveries whose stamp or checksum did not verify (a hard failure).", func(c *verify.Counts) uint64 { return c.Corrupt }},
	{"unexpected", "Deliveries of this run's messages that were never published or whose publish failed (a hard failure).", func(c *verify.Counts) uint64 { return c.Unexpected }},
	{"foreign", "Deliveries of other runs' messages (ignored).", func(c *verify.Counts) uint64 { return c.Foreign }},
	{"recovered", "Deliveries of messages whose publish outcome was unknown.", func(c *verify.Counts) uint64 { return c.Recovered }},
	{"covered", "Measured published messages that some subscriber was expected to receive.", func(c *verify.Counts) uint64 { return c.Covered }},
	{"publish_attempted", "Measured publishes attempted.", func(c *verify.Counts) uint64 { return c.PublishAttempted }},
	{"publish_ok", "Measured publishes the bus acknowledged.", func(c *verify.Counts) uint64 { return c.PublishOK }},
	{"publish_failed", "Measured publishes that failed.", func(c *verify.Counts) uint64 { return c.PublishFailed }},
	{"publish_unknown", "Measured publishes whose outcome is unknown (timed out).", func(c *verify.Counts) uint64 { return c.PublishUnknown }},
}

// windowCounts are the last closed window's counts exported (outcome label).
var windowCounts = []string{"expected", "on_time", "slow", "lost", "late", "duplicates", "corrupt", "unexpected", "publish_attempted", "publish_ok"}

func countNamed(name string) count {
	for _, c := range counts {
		if c.name == name {
			return c
		}
	}
	panic("metrics: no count " + name)
}

// Verdicts are the values of the verdict state sets.
var Verdicts = []verify.Verdict{verify.Pass, verify.Fail, verify.Inconclusive}

// desc is one metric family: its name (with namespace) and Desc.
type desc struct {
	name string
	d    *prometheus.Desc
}

// family builds the Descs of one collector. Every Desc gets run_id and shard
// as constant labels.
type family struct {
	labels prometheus.Labels
	all    []desc
}

func newFamily(i Info) *family {
	return &family{labels: prometheus.Labels{"run_id": i.RunID, "shard": strconv.Itoa(i.Shard)}}
}

func (f *family) add(name, help string, labels ...string) *prometheus.Desc {
	full := Namespace + "_" + name
	d := prometheus.NewDesc(full, help, labels, f.labels)
	f.all = append(f.all, desc{full, d})
	return d
}

// Describe sends every Desc.
func (f *family) describe(ch chan<- *prometheus.Desc) {
	for _, d := range f.all {
		ch <- d.d
	}
}

// Names are the metric family names.
func (f *family) names() []string {
	out := make([]string, len(f.all))
	for i, d := range f.all {
		out[i] = d.name
	}
	return out
}

// delivery are the per-direction delivery metrics both commands export.
type delivery struct {
	info                           Info
	bounds                         []time.Duration
	iLatency, iLost                int
	counters                       []*prometheus.Desc
	pending, latency               *prometheus.Desc
	winVerdict, winIndex, winCount *prometheus.Desc
	windows                        *prometheus.Desc
	bound, within, runInfo         *prometheus.Desc
	busValue                       *prometheus.Desc
	bus                            *busstats.Live
}

func newDelivery(f *family, i Info) *delivery {
	d := &delivery{info: i, bounds: Bounds(i.Latency, i.LostAfter)}
	for k, b := range d.bounds {
		if b == i.Latency {
			d.iLatency = k
		}
		if b == i.LostAfter {
			d.iLost = k
		}
	}
	for _, c := range counts {
		d.counters = append(d.counters, f.add(c.name+"_total", c.help, "direction"))
	}
	d.pending = f.add("pending", "Expected deliveries not final yet (decided lost-after + grace after their intended send time).", "direction")
	d.latency = f.add("delivery_latency_seconds", "Latency of final expected deliveries (first arrival - intended send time). Buckets at the on-time and lost bounds are the exact on-time and on-time+slow counts; a lost delivery is in +Inf only, so _count is the expected count.", "direction")
	d.winVerdict = f.add("window_verdict", "Verdict of the last closed window (1 for its verdict, 0 for the others).", "direction", "verdict")
	d.winIndex = f.add("window_index", "Index of the last closed window (windows are --window long, by intended send time).", "direction")
	d.winCount = f.add("window_messages", "Counts of the last closed window, by outcome.", "direction", "outcome")
	d.windows = f.add("windows_total", "Closed windows, by verdict.", "direction", "verdict")
	d.bound = f.add("latency_bound_seconds", "The delivery bounds: on_time (--latency) and lost (--lost-after).", "bound")
	d.within = f.add("on_time_target_ratio", "The on-time target (--within): the fraction of expected deliveries that must be on time.")
	d.runInfo = f.add("run_info", "The run: command, protocol, target and version.", "command", "protocol", "target", "version")
	d.busValue = f.add("bus_value", "The bus's own numbers at the last --bus-stats sample (Mosquitto $SYS topics, nchan_stub_status fields; at most 64 keys).", "source", "key")
	return d
}

// collectRun sends the metrics that do not depend on a direction.
func (d *delivery) collectRun(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(d.bound, prometheus.GaugeValue, d.info.Latency.Seconds(), "on_time")
	ch <- prometheus.MustNewConstMetric(d.bound, prometheus.GaugeValue, d.info.LostAfter.Seconds(), "lost")
	ch <- prometheus.MustNewConstMetric(d.within, prometheus.GaugeValue, d.info.Within)
	ch <- prometheus.MustNewConstMetric(d.runInfo, prometheus.GaugeValue, 1, d.info.Command, d.info.Protocol, d.info.Target, d.info.Version)
	if source, vals := d.bus.Latest(); len(vals) > 0 {
		keys := make([]string, 0, len(vals))
		for k := range vals {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ch <- prometheus.MustNewConstMetric(d.busValue, prometheus.GaugeValue, vals[k], source, k)
		}
	}
}

// buckets reads a latency histogram (verify.Ledger.LatencyBuckets).
type buckets func(bounds []time.Duration) (cum []uint64, count uint64, sumSeconds float64)

// collect sends direction's delivery metrics from snap (a ledger snapshot)
// and its latency histogram.
func (d *delivery) collect(ch chan<- prometheus.Metric, direction string, snap verify.Result, read buckets) {
	c := &snap.Counts
	for k, m := range counts {
		ch <- prometheus.MustNewConstMetric(d.counters[k], prometheus.CounterValue, float64(m.get(c)), direction)
	}
	ch <- prometheus.MustNewConstMetric(d.pending, prometheus.GaugeValue, float64(c.Pending), direction)
	hist, sum := d.histogram(c, read)
	ch <- prometheus.MustNewConstHistogram(d.latency, c.Expected, sum, hist, direction)

	byVerdict := map[verify.Verdict]uint64{}
	for _, w := range snap.Windows {
		byVerdict[w.Verdict]++
	}
	for _, v := range Verdicts {
		ch <- prometheus.MustNewConstMetric(d.windows, prometheus.CounterValue, float64(byVerdict[v]), direction, string(v))
	}
	if n := len(snap.Windows); n > 0 {
		w := snap.Windows[n-1]
		for _, v := range Verdicts {
			ch <- prometheus.MustNewConstMetric(d.winVerdict, prometheus.GaugeValue, b2f(w.Verdict == v), direction, string(v))
		}
		ch <- prometheus.MustNewConstMetric(d.winIndex, prometheus.GaugeValue, float64(w.Index), direction)
		for _, name := range windowCounts {
			ch <- prometheus.MustNewConstMetric(d.winCount, prometheus.GaugeValue, float64(countNamed(name).get(&w.Counts)), direction, name)
		}
	}
}

// histogram is the cumulative bucket counts: the ledger's exact on-time
// count at the on-time bound and on-time+slow at the lost bound, the HDR
// histogram's counts elsewhere, kept between those exact counts so the
// buckets never decrease.
// The sum is of the delivered latencies (a lost delivery has none).
func (d *delivery) histogram(c *verify.Counts, read buckets) (map[float64]uint64, float64) {
	cum, _, sum := read(d.bounds)
	out := make(map[float64]uint64, len(d.bounds))
	onTime, arrived := c.OnTime, c.OnTime+c.Slow
	for k, b := range d.bounds {
		v := cum[k]
		switch {
		case k == d.iLatency:
			v = onTime
		case k == d.iLost:
			v = arrived
		case k < d.iLatency:
			v = min(v, onTime)
		case k < d.iLost:
			v = min(max(v, onTime), arrived)
		default:
			v = arrived
		}
		out[b.Seconds()] = v
	}
	return out, sum
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
