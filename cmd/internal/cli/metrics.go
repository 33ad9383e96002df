package cli

import (
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventswarm/eventswarm/internal/metrics"
)

// ServeMetrics serves col (with the Go and process collectors) on
// --metrics until the returned func is called; it does nothing when
// --metrics was not given. A listen failure is a usage error (the address
// is taken or not this machine's).
func (c *Common) ServeMetrics(prog string, col prometheus.Collector, stderr io.Writer) (stop func(), err error) {
	if c.Metrics == "" {
		return func() {}, nil
	}
	reg, err := metrics.Registry(col)
	if err != nil {
		return nil, fmt.Errorf("%s: --metrics: %w", prog, err)
	}
	srv, err := metrics.Serve(c.Metrics, reg)
	if err != nil {
		return nil, Usage(fmt.Errorf("%s: %w", prog, err))
	}
	fmt.Fprintf(stderr, "%s: metrics on http://%s/metrics\n", prog, srv.Addr())
	return srv.Close, nil
}
