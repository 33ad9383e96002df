package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eventswarm/eventswarm/cmd/internal/cli"
	"github.com/eventswarm/eventswarm/internal/target"
)

func TestPortRange(t *testing.T) {
	dir := t.TempDir()
	for in, want := range map[string]int{"32768\t60999\n": 28232, "1024 65535": 64512, "": 0, "9 x": 0, "600 500": 0, "1 2 3": 0} {
		p := filepath.Join(dir, "r")
		if err := os.WriteFile(p, []byte(in), 0o644); err != nil {
			t.Fatal(err)
		}
		lo, hi, ok := portRange(p)
		got := 0
		if ok {
			got = hi - lo + 1
		}
		if got != want {
			t.Errorf("portRange(%q) = %d ports, want %d", in, got, want)
		}
	}
	if _, _, ok := portRange(filepath.Join(dir, "missing")); ok {
		t.Error("a missing file gave a range")
	}
}

// TestCapacity: ports are counted per (source, destination) pair, files per
// process; the one line says how many users fit and what to add.
func TestCapacity(t *testing.T) {
	box := capacity{files: 200000, filesWhich: "hard", ports: 28232, portLo: 32768, portHi: 60999, sources: 1,
		dest: "127.0.0.1:18080", destLoopback: true, ipv4: true}

	// 20,000 long-poll users: 24,096 sockets fit one source's 28,232 ports.
	if err := box.check(20000, target.HTTP, false); err != nil {
		t.Errorf("20000 users: %v", err)
	}
	// 40,000: 44,096 sockets need two sources.
	err := box.check(40000, target.HTTP, false)
	if err == nil || cli.Code(err) != cli.ExitUsage {
		t.Fatalf("40000 users on one source: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"44096 sockets to 127.0.0.1:18080", "1 source address × 28232 ports", "at most 24136 users fit", "--source-addrs 127.0.0.2-127.0.0.3"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("more than one line: %q", msg)
	}
	two := box
	two.sources = 2
	if err := two.check(40000, target.HTTP, false); err != nil {
		t.Errorf("40000 users on two sources: %v", err)
	}
	// MQTT: one socket a user, so one source holds 28,232.
	if err := box.check(28232, target.MQTT, false); err != nil {
		t.Errorf("28232 MQTT users: %v", err)
	}
	if err := box.check(28233, target.MQTT, false); err == nil || !strings.Contains(err.Error(), "at most 28232 users fit") {
		t.Errorf("28233 MQTT users: %v", err)
	}

	// This machine's 20,000 files bound a process before its ports do; both
	// shortages are named, in one line.
	small := box
	small.files = 20000
	err = small.check(40000, target.HTTP, false)
	if err == nil {
		t.Fatal("40000 users in 20000 files passed")
	}
	for _, want := range []string{"44224 open files but the limit is 20000 (hard)", "raise `ulimit -n` to 44224 or run shards", "and 44096 sockets", "at most 15776 users fit"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q:\n%s", want, err)
		}
	}
	// A remote target: no loopback addresses to suggest.
	remote := box
	remote.dest, remote.destLoopback = "bus.example:1883", false
	if err := remote.check(60000, target.MQTT, false); err == nil || !strings.Contains(err.Error(), "give 3 source addresses of this machine with --source-addrs (2 more)") {
		t.Errorf("remote: %v", err)
	}
	// Ports unknown (no /proc): only files are checked.
	unknown := box
	unknown.ports = 0
	if err := unknown.check(100000, target.MQTT, false); err != nil {
		t.Errorf("unknown ports: %v", err)
	}
}

func TestDestination(t *testing.T) {
	for url, want := range map[string][3]any{
		"":                        {"the embedded bus (127.0.0.1)", true, true},
		"http://127.0.0.1:18080/": {"127.0.0.1:18080", true, true},
		"mqtt://[::1]:1883":       {"[::1]:1883", true, false},
		"mqtt://bus.example:1883": {"bus.example:1883", false, false},
	} {
		d, l, v4 := destination(target.Config{URL: url})
		if d != want[0] || l != want[1] || v4 != want[2] {
			t.Errorf("destination(%q) = %q %v %v, want %v", url, d, l, v4, want)
		}
	}
}
