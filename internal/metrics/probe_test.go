package metrics_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/eventswarm/eventswarm/internal/bustest"
	"github.com/eventswarm/eventswarm/internal/localbus"
	"github.com/eventswarm/eventswarm/internal/metrics"
	"github.com/eventswarm/eventswarm/internal/probe"
	"github.com/eventswarm/eventswarm/internal/target"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// scrape GETs /metrics once (bounded by a 10 s timeout) and parses it.
func scrape(t *testing.T, addr string) (map[string]*dto.MetricFamily, []byte) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %d, %v", resp.StatusCode, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse scrape: %v\n%s", err, body)
	}
	return fams, body
}

// value is the value of the series of family name whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s in the scrape", name)
	}
	for _, m := range f.Metric {
		match := 0
		for _, l := range m.Label {
			if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
				match++
			}
		}
		if match != len(want) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, want)
	return 0
}

// histogram is the series of the latency histogram of direction.
func histogram(t *testing.T, fams map[string]*dto.MetricFamily, direction string) *dto.Histogram {
	t.Helper()
	for _, m := range fams["eventswarm_delivery_latency_seconds"].GetMetric() {
		for _, l := range m.Label {
			if l.GetName() == "direction" && l.GetValue() == direction {
				return m.Histogram
			}
		}
	}
	t.Fatalf("no latency histogram for %s", direction)
	return nil
}

func bucketAt(t *testing.T, h *dto.Histogram, le time.Duration) uint64 {
	t.Helper()
	for _, b := range h.Bucket {
		if b.GetUpperBound() == le.Seconds() {
			return b.GetCumulativeCount()
		}
	}
	t.Fatalf("no bucket le=%v", le)
	return 0
}

// TestScrapeDuringFaultyRun scrapes /metrics during a real probe run on the
// embedded bus with faults injected, and after the run finds exactly the
// injected counts in the counters, and the on-time count in the latency
// histogram's bucket at the on-time bound. With promtool on PATH it checks
// the scrape with `promtool check metrics`; EVENTSWARM_SCRAPE_OUT=FILE writes
// the scrape to FILE (.ci/run checks it with promtool).
func TestScrapeDuringFaultyRun(t *testing.T) {
	// Bounds far from every injected delay and from what a loaded machine
	// adds (the faults decide the split): on time ≤ 2s < 4s delay (slow) ≤
	// 6s lost-after < 7s delay (lost and late) < 9s drain end.
	cfg := probe.Config{
		Duration: 3 * time.Second, Rate: 50, Streams: 2, Subscribers: 3, PayloadSize: 200, Live: time.Hour,
		Ledger: verify.Config{Latency: 2 * time.Second, LostAfter: 6 * time.Second, Grace: 3 * time.Second, Window: time.Second},
	}
	faults := localbus.Faults{Seed: 7, Drop: 0.04, Duplicate: 0.05, Delay: 0.08,
		Delays: []time.Duration{4 * time.Second, 7 * time.Second}, Skip: verify.IsMarker}
	tgt, err := target.Open(target.Config{Embedded: target.HTTP, Bus: localbus.Config{Hold: 2 * time.Second, Faults: faults}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tgt.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := tgt.Check(ctx); err != nil {
		t.Fatal(err)
	}
	run := verify.NewRunID()
	col := metrics.NewProbe(metrics.Info{Command: "probe", RunID: run.String(), Protocol: tgt.Protocol(), Target: tgt.Describe(),
		Version: "test", Latency: cfg.Ledger.Latency, LostAfter: cfg.Ledger.LostAfter, Within: 0.95})
	reg, err := metrics.Registry(col)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := metrics.Serve("127.0.0.1:0", reg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	publishing := make(chan struct{})
	hooks := probe.Hooks{
		OnStart: col.Attach,
		OnPhase: func(ph string) {
			if ph == "publishing" {
				close(publishing)
			}
		},
	}
	type result struct {
		out probe.Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := probe.Run(ctx, ctx, cfg, run, tgt.Dialer(), hooks)
		done <- result{out, err}
	}()
	select {
	case <-publishing:
	case r := <-done:
		t.Fatalf("probe ended before publishing: %v", r.err)
	case <-ctx.Done():
		t.Fatal("probe never began publishing")
	}
	// During the run: the endpoint answers, labelled, in the publishing phase.
	fams, _ := scrape(t, srv.Addr())
	labels := map[string]string{"run_id": run.String(), "shard": "0"}
	if got := value(t, fams, "eventswarm_phase", map[string]string{"phase": "publishing"}); got != 1 {
		t.Errorf("phase publishing = %v during the run, want 1", got)
	}
	if got := value(t, fams, "eventswarm_expected_total", labels); got < 0 {
		t.Errorf("expected_total %v", got)
	}

	r := <-done
	if r.err != nil {
		t.Fatalf("probe.Run: %v", r.err)
	}
	col.Finish(r.out.Verdict)
	inj := tgt.Embedded().Injected()
	if inj.Dropped == 0 || inj.Duplicated == 0 || inj.Delayed[0] == 0 || inj.Delayed[1] == 0 {
		t.Fatalf("injected %+v: want every fault kind exercised", inj)
	}
	fams, body := scrape(t, srv.Addr())
	dir := map[string]string{"direction": metrics.ProbeDirection, "run_id": run.String(), "shard": "0"}
	c := r.out.Counts
	// The faults decide what they can (a loaded machine may make an
	// undelayed delivery slow); the metrics must equal the run's counts.
	bustest.CheckFaultCounts(t, bustest.Injected{Deliveries: inj.Deliveries, Dropped: inj.Dropped, Duplicated: inj.Duplicated, Slow: inj.Delayed[0], Late: inj.Delayed[1]}, c)
	for _, ck := range []struct {
		name string
		want uint64
	}{
		{"expected", c.Expected},
		{"lost", c.Lost},
		{"late", c.Late},
		{"slow", c.Slow},
		{"duplicates", c.Duplicates},
		{"on_time", c.OnTime},
		{"corrupt", c.Corrupt},
		{"unexpected", c.Unexpected},
		{"publish_attempted", c.PublishAttempted},
		{"publish_ok", c.PublishOK},
		{"covered", c.Covered},
	} {
		if got := value(t, fams, "eventswarm_"+ck.name+"_total", dir); got != float64(ck.want) {
			t.Errorf("eventswarm_%s_total = %v, want %d", ck.name, got, ck.want)
		}
	}
	h := histogram(t, fams, metrics.ProbeDirection)
	if h.GetSampleCount() != c.Expected {
		t.Errorf("latency histogram count %d, want %d expected", h.GetSampleCount(), c.Expected)
	}
	if got := bucketAt(t, h, cfg.Ledger.Latency); got != c.OnTime {
		t.Errorf("bucket le=%v = %d, want %d on time", cfg.Ledger.Latency, got, c.OnTime)
	}
	if got := bucketAt(t, h, cfg.Ledger.LostAfter); got != c.OnTime+c.Slow {
		t.Errorf("bucket le=%v = %d, want %d on time + slow", cfg.Ledger.LostAfter, got, c.OnTime+c.Slow)
	}
	if got := value(t, fams, "eventswarm_run_verdict", map[string]string{"verdict": "fail"}); got != 1 {
		t.Errorf("run_verdict{fail} = %v, want 1 (losses were injected)", got)
	}
	if got := value(t, fams, "eventswarm_windows_total", map[string]string{"verdict": "fail"}); got < 1 {
		t.Errorf("windows_total{fail} = %v, want >= 1", got)
	}
	t.Logf("injected %+v", inj)
	checkPromtool(t, body)
}

func checkPromtool(t *testing.T, body []byte) {
	t.Helper()
	if out := os.Getenv("EVENTSWARM_SCRAPE_OUT"); out != "" {
		if err := os.WriteFile(out, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not on PATH (Debian: apt-get install prometheus): scrape not linted")
		return
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Logf("promtool: %s", s)
	}
}
