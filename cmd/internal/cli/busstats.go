package cli

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/busstats"
	"github.com/eventswarm/eventswarm/internal/localbus"
	"github.com/eventswarm/eventswarm/internal/target"
)

// StartBusStats samples tgt's own health (--bus-stats) until the returned
// func is called, which returns the series: Mosquitto's $SYS/# over MQTT
// (the run's credentials and TLS), Nchan's status page over long-poll, the
// embedded bus's counters read in process. It returns a nil series
// when --bus-stats is off, and a series with only an error when the bus
// offers none (a broker without $SYS; a page that is not there).
//
// live, if not nil, holds the latest sample meanwhile (for --metrics).
func (c *Common) StartBusStats(ctx context.Context, tgt *target.Target, clientID string, live *busstats.Live) (stop func() *busstats.Series) {
	if !c.BusStats {
		return func() *busstats.Series { return nil }
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan busstats.Series, 1)
	switch {
	case tgt.Embedded() != nil:
		// In process: read its counters, no subscription needed.
		b := tgt.Embedded()
		go func() {
			done <- busstats.SampleFunc(ctx, busstats.SourceEmbedded, localbus.StatsDroppedKey, b.Stats, c.BusStatsEvery, live)
		}()
	case tgt.Protocol() == target.MQTT:
		go func() { done <- busstats.SampleMQTT(ctx, tgt.Dialer(), clientID, c.BusStatsEvery, live) }()
	default:
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: c.Target.Insecure} //nolint:gosec // an explicit --insecure
		if c.Target.CAFile != "" {
			if pool, err := bus.LoadCAFile(c.Target.CAFile); err == nil {
				tr.TLSClientConfig.RootCAs = pool
			}
		}
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		url := strings.TrimSuffix(c.Target.URL, "/") + "/" + strings.TrimPrefix(c.BusStatsPath, "/")
		go func() { done <- busstats.SampleHTTP(ctx, client, url, c.BusStatsEvery, live) }()
	}
	return func() *busstats.Series {
		cancel()
		s := <-done
		if s.Samples == nil {
			s.Samples = []busstats.Sample{}
		}
		return &s
	}
}
