package main

import (
	"fmt"
	"strconv"

	"github.com/eventswarm/eventswarm/internal/probe"
)

// procsAutoMax is the message load (publishes plus expected deliveries per
// second) up to which --procs auto runs probe on one scheduler thread. At
// paced rates Go's idle threads spin and poll between ticks (findRunnable and
// netpoll were ~40% of probe's CPU at QoS 1, 10k msg/s); one thread carries
// this load with room to spare on this project's machines (QoS 0 and 1 at
// 10k publishes/s × 1 subscriber: 35–50% less CPU per message), while QoS 1
// at 30k publishes/s fell behind on one.
const procsAutoMax = 20000

// procsAutoMaxQoS0 is the same for MQTT at QoS 0, where a publish waits for
// nothing: one thread carried 130k publishes/s × 1 subscriber against
// Mosquitto on this project's 2-core machines (260k messages/s, verdict pass,
// no late send, p99 16 ms; 4.5 CPU-s per 1M deliveries against 5.2 with Go's
// default), where the broker itself saturates.
const procsAutoMaxQoS0 = 260000

// parseProcs checks --procs: "auto" (-1) or a count >= 0 (0 = Go's default).
func parseProcs(s string) (int, error) {
	if s == "auto" {
		return -1, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("probe: --procs must be auto, 0 (Go's default) or a thread count, got %q", s)
	}
	return n, nil
}

// plannedLoad is cfg's planned messages per second: each publish, plus its
// expected deliveries (one per subscriber, or one per share group).
func plannedLoad(cfg probe.Config) float64 {
	per := cfg.Subscribers
	if cfg.ShareGroup != "" {
		per = 1
	}
	return cfg.Rate * float64(cfg.Streams) * float64(1+per)
}

// chooseProcs says what GOMAXPROCS probe should set (0: leave the runtime's)
// and why, for --procs spec (from parseProcs). env is $GOMAXPROCS (set: the
// user chose, auto leaves it); load is the planned messages per second
// (publishes + expected deliveries); mqttQoS0 is an MQTT target at QoS 0
// (one thread carries more: procsAutoMaxQoS0); embedded is true when the bus runs in
// this process (its broker needs the threads too, so auto leaves them).
func chooseProcs(spec int, env string, load float64, mqttQoS0, embedded bool) (int, string) {
	limit := float64(procsAutoMax)
	if mqttQoS0 {
		limit = procsAutoMaxQoS0
	}
	switch {
	case spec >= 0:
		return spec, ""
	case env != "", embedded:
		return 0, ""
	case load <= limit:
		return 1, fmt.Sprintf("--procs auto: one scheduler thread for %.0f publishes + deliveries per second (--procs 0 for Go's default)", load)
	}
	return 0, ""
}
