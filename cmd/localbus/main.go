// Command localbus runs eventswarm's embedded bus on its own: a long-poll
// server speaking Nchan's protocol and an MQTT broker, on loopback by default.
// Use it to measure probe or swarm without the bus in the same process, or to
// hold more sockets than one process may open.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/eventswarm/eventswarm/internal/localbus"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	var cfg localbus.Config
	fs := flag.NewFlagSet("localbus", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8080", "long-poll listen address (- disables)")
	fs.StringVar(&cfg.MQTTAddr, "mqtt", "127.0.0.1:1883", "MQTT listen address (- disables)")
	fs.DurationVar(&cfg.Hold, "hold", 25*time.Second, "long-poll hold before 408")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: localbus [flags]  — runs the embedded bus until SIGINT/SIGTERM")
		fs.SetOutput(stderr)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.Usage()
			return 0
		}
		fmt.Fprintf(stderr, "localbus: %v (run localbus -h for the flags)\n", err)
		return 2
	}
	b, err := localbus.Start(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "localbus: %v\n", err)
		return 4
	}
	defer b.Close()
	if cfg.HTTPAddr != "-" {
		fmt.Fprintf(stderr, "localbus: long-poll on %s (POST /pub/<ch>, GET /sub/<ch1>,<ch2>)\n", b.HTTPURL())
	}
	if cfg.MQTTAddr != "-" {
		fmt.Fprintf(stderr, "localbus: MQTT on mqtt://%s\n", b.MQTTAddr())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return 0
}
