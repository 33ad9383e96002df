package metrics_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/busstats"
	"github.com/eventswarm/eventswarm/internal/metrics"
	"github.com/eventswarm/eventswarm/internal/target"
)

// TestBusValuesScraped: Mosquitto's $SYS numbers, sampled by --bus-stats,
// are on /metrics as eventswarm_bus_value while the sampler runs.
func TestBusValuesScraped(t *testing.T) {
	addr := os.Getenv("EVENTSWARM_MOSQUITTO")
	if addr == "" {
		t.Skip("set EVENTSWARM_MOSQUITTO after `bash .ci/services start` to scrape Mosquitto's $SYS numbers")
	}
	tgt, err := target.Open(target.Config{URL: "mqtt://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	col := metrics.NewProbe(metrics.Info{Command: "probe", RunID: "r", Latency: time.Second, LostAfter: 3 * time.Second})
	live := col.BusStats()
	reg, err := metrics.Registry(col)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := metrics.Serve("127.0.0.1:0", reg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s := busstats.SampleMQTT(ctx, tgt.Dialer(), "eventswarm-metrics-test-sys", 500*time.Millisecond, live)
	if len(s.Samples) == 0 {
		t.Fatalf("no samples: %+v", s)
	}
	fams, body := scrape(t, srv.Addr())
	// Every value of the last sample, exactly.
	for k, v := range s.Latest() {
		if got := value(t, fams, "eventswarm_bus_value", map[string]string{"source": busstats.SourceMosquitto, "key": k}); got != v {
			t.Errorf("eventswarm_bus_value{key=%q} = %v, want %v", k, got, v)
		}
	}
	checkPromtool(t, body)
}
