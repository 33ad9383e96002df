package metrics

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry returns a registry with c and the Go runtime and process
// collectors (go_*, process_*: GC, heap, goroutines, CPU, open files).
func Registry(c prometheus.Collector) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	for _, x := range []prometheus.Collector{c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(x); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// CheckAddr checks a --metrics address: host:port with an explicit host.
// An empty host (":9464") would listen on every interface without saying
// so; a non-loopback host is allowed because the user named it (in a pod,
// 0.0.0.0:9464 so Prometheus can scrape it).
func CheckAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return fmt.Errorf("--metrics %q: want host:port, e.g. 127.0.0.1:9464 (this machine only) or 0.0.0.0:9464 (every interface, e.g. in a pod)", addr)
	}
	if host == "" {
		return fmt.Errorf("--metrics %q: give the host explicitly: 127.0.0.1%s (this machine only) or 0.0.0.0%s (every interface, e.g. in a pod)", addr, addr, addr)
	}
	return nil
}

// Server serves /metrics (and /healthz, 200 while the process serves) until Close.
type Server struct {
	srv  *http.Server
	l    net.Listener
	done chan struct{}
}

// Serve listens on addr and serves reg's metrics.
func Serve(addr string, reg *prometheus.Registry) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, Timeout: 10 * time.Second}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, l: l, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener failed: the run goes on without metrics
		}
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.l.Addr().String() }

// Close stops the server.
func (s *Server) Close() {
	s.srv.Close()
	<-s.done
}
