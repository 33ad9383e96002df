// Command localbus runs eventswarm's embedded bus on its own: a long-poll
// server speaking Nchan's protocol and an MQTT broker (also over WebSocket
// with --mqtt-ws), on loopback by default.
// Use it to measure probe or swarm without the bus in the same process, or to
// hold more sockets than one process may open. It runs until SIGINT/SIGTERM
// (a second one exits at once with 130); exit codes as probe's: 2 for a usage
// error, 4 when the bus cannot start.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/eventswarm/eventswarm/cmd/internal/cli"
	"github.com/eventswarm/eventswarm/internal/localbus"
)

func main() {
	cli.IgnoreSIGPIPE()
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, true))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, handleSignals bool) int {
	var cfg localbus.Config
	fs := flag.NewFlagSet("localbus", flag.ContinueOnError)
	fs.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8080", "long-poll listen address (- disables)")
	fs.StringVar(&cfg.MQTTAddr, "mqtt", "127.0.0.1:1883", "MQTT listen address (- disables)")
	fs.StringVar(&cfg.MQTTWSAddr, "mqtt-ws", "-", "MQTT over WebSocket listen address, served at /mqtt (- disables)")
	fs.DurationVar(&cfg.Hold, "hold", 25*time.Second, "long-poll hold before 408")
	err := cli.ParseArgs(fs, "localbus", "Runs the embedded bus (Nchan-protocol long-poll, MQTT, MQTT over WebSocket) until SIGINT/SIGTERM.", args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return cli.ExitPass
	}
	if err == nil && cfg.Hold <= 0 {
		err = cli.Usage(fmt.Errorf("localbus: --hold must be > 0, got %v", cfg.Hold))
	}
	if err != nil {
		cli.PrintErr(stderr, "localbus", err)
		return cli.Code(err)
	}
	b, err := localbus.Start(cfg)
	if err != nil {
		err = cli.CouldNotRun(err)
		cli.PrintErr(stderr, "localbus", err)
		return cli.Code(err)
	}
	defer b.Close()
	if cfg.HTTPAddr != "-" {
		fmt.Fprintf(stderr, "localbus: long-poll on %s (POST /pub/<ch>, GET /sub/<ch1>,<ch2>)\n", b.HTTPURL())
	}
	if cfg.MQTTAddr != "-" {
		fmt.Fprintf(stderr, "localbus: MQTT on mqtt://%s\n", b.MQTTAddr())
	}
	if a := b.MQTTWSAddr(); a != "" {
		fmt.Fprintf(stderr, "localbus: MQTT over WebSocket on mqtt+ws://%s%s\n", a, localbus.WSPath)
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	if handleSignals {
		defer cli.OnSignals(func() {
			fmt.Fprintln(stderr, "localbus: stopping (signal again to exit at once)")
			stop()
		})()
	}
	<-ctx.Done()
	return cli.ExitPass
}
