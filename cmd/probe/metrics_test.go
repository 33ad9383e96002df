package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/eventswarm/eventswarm/internal/report"
)

func TestMetricsAndWindowLogUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--metrics", ":9464"},
		{"--metrics", "127.0.0.1"},
		{"--window-log", filepath.Join(t.TempDir(), "missing", "w.log")},
	} {
		code, _, stderr := runProbe(t, args...)
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.HasPrefix(stderr, "probe: ") {
			t.Errorf("probe %v: exit %d, stderr %q; want 2 and one line", args, code, stderr)
		}
	}
}

// TestWindowLogAndMetrics: every closed window is one JSON line in
// --window-log, the same windows as the JSON result; --metrics serves.
func TestWindowLogAndMetrics(t *testing.T) {
	dir := t.TempDir()
	logPath, jsonPath := filepath.Join(dir, "windows.log"), filepath.Join(dir, "r.json")
	args := append(append([]string{}, fast...), "--window", "1s", "--window-log", logPath, "--json", jsonPath, "--metrics", "127.0.0.1:0")
	code, _, stderr := runProbe(t, args...)
	if code != 0 {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "probe: metrics on http://127.0.0.1:") {
		t.Errorf("stderr does not say where the metrics are:\n%s", stderr)
	}
	var res struct {
		RunID   string `json:"run_id"`
		Windows []struct {
			Index int `json:"index"`
		} `json:"windows"`
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil || json.Unmarshal(b, &res) != nil {
		t.Fatalf("reading %s: %v", jsonPath, err)
	}
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec report.WindowRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("window log line %q: %v", sc.Text(), err)
		}
		if rec.Event != "window" || rec.RunID != res.RunID || !rec.End.After(rec.Start) || rec.Verdict == "" {
			t.Errorf("window log line %q: want event window, run %s, start < end, a verdict", sc.Text(), res.RunID)
		}
		got = append(got, rec.Index)
	}
	if len(got) == 0 || len(got) != len(res.Windows) {
		t.Fatalf("window log has windows %v; the result has %d", got, len(res.Windows))
	}
	for i, idx := range got {
		if idx != res.Windows[i].Index {
			t.Fatalf("window log has windows %v, the result %+v", got, res.Windows)
		}
	}
}

// TestBusStatsRealBuses: against Mosquitto and Nchan (bash .ci/services
// start) the result JSON has a non-empty bus-stats series.
func TestBusStatsRealBuses(t *testing.T) {
	targets := map[string]string{}
	if a := os.Getenv("EVENTSWARM_MOSQUITTO"); a != "" {
		targets["mosquitto $SYS"] = "mqtt://" + a
	}
	if a := os.Getenv("EVENTSWARM_NCHAN"); a != "" {
		targets["nchan_stub_status"] = a
	}
	if len(targets) == 0 {
		t.Skip("set EVENTSWARM_MOSQUITTO / EVENTSWARM_NCHAN after `bash .ci/services start` to sample the real buses' statistics")
	}
	for source, url := range targets {
		t.Run(source, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "r.json")
			args := append(append([]string{}, fast...), "--target", url, "--bus-stats-interval", "1s", "--json", path)
			if code, _, stderr := runProbe(t, args...); code != 0 {
				t.Fatalf("exit %d; stderr:\n%s", code, stderr)
			}
			var res struct {
				BusStats *struct {
					Source  string `json:"source"`
					Error   string `json:"error"`
					Samples []struct {
						Values map[string]float64 `json:"values"`
					} `json:"samples"`
				} `json:"bus_stats"`
			}
			b, err := os.ReadFile(path)
			if err != nil || json.Unmarshal(b, &res) != nil {
				t.Fatalf("reading %s: %v", path, err)
			}
			bs := res.BusStats
			if bs == nil || bs.Source != source || len(bs.Samples) == 0 || len(bs.Samples[len(bs.Samples)-1].Values) == 0 || bs.Error != "" {
				t.Fatalf("bus_stats %+v: want a non-empty %s series", bs, source)
			}
		})
	}
}

// TestBusStatsEmbedded: against the embedded bus (both protocols) the
// bus-stats series is its own counters, read in process: the last sample's
// injected drops are exactly what the run's injected report says, and the
// broker's own drops are 0 (nothing else lost a message).
func TestBusStatsEmbedded(t *testing.T) {
	for _, proto := range []string{"http", "mqtt"} {
		t.Run(proto, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "r.json")
			args := append(append([]string{}, fast...), "--embedded", proto, "--fault-drop", "0.2", "--fault-seed", "7",
				"--bus-stats-interval", "1s", "--json", path)
			code, _, stderr := runProbe(t, args...)
			var verdict struct{ Reason string }
			if b, err := os.ReadFile(path); err == nil {
				_ = json.Unmarshal(b, &verdict)
			}
			// Drops fail the run, unless the probe itself fell behind (a
			// busy machine's evidence, not the faults'): then inconclusive.
			overloaded := code == 3 && strings.Contains(verdict.Reason, "the generator was overloaded")
			if code != 1 && !overloaded {
				t.Fatalf("exit %d, reason %q (want 1: drops fail the run); stderr:\n%s", code, verdict.Reason, stderr)
			}
			m := regexp.MustCompile(`injected: \{Deliveries:\d+ Dropped:(\d+) `).FindStringSubmatch(stderr)
			if m == nil {
				t.Fatalf("no injected report on stderr:\n%s", stderr)
			}
			injected, _ := strconv.ParseFloat(m[1], 64)
			var res struct {
				BusStats *struct {
					Source  string `json:"source"`
					Error   string `json:"error"`
					Dropped *float64
					Samples []struct {
						Values map[string]float64 `json:"values"`
					} `json:"samples"`
				} `json:"bus_stats"`
			}
			b, err := os.ReadFile(path)
			if err != nil || json.Unmarshal(b, &res) != nil {
				t.Fatalf("reading %s: %v", path, err)
			}
			bs := res.BusStats
			if bs == nil || bs.Source != "embedded bus" || bs.Error != "" || len(bs.Samples) < 2 {
				t.Fatalf("bus_stats %+v: want an embedded-bus series of at least 2 samples", bs)
			}
			last := bs.Samples[len(bs.Samples)-1].Values
			if injected == 0 || last["injected_dropped"] != injected {
				t.Fatalf("last sample injected_dropped %v, the run's injected report %v: want equal and > 0", last["injected_dropped"], injected)
			}
			// The last sample is taken after probe closed its connections, so
			// clients_connected may be 0 there; the broker's own high-water
			// mark says clients were connected during the run.
			if proto == "mqtt" && (bs.Dropped == nil || *bs.Dropped != 0 || last["clients_maximum"] == 0) {
				dropped := "none"
				if bs.Dropped != nil {
					dropped = strconv.FormatFloat(*bs.Dropped, 'f', -1, 64)
				}
				t.Fatalf("mqtt: dropped %s, clients_maximum %v: want the broker's own drops 0 and clients connected", dropped, last["clients_maximum"])
			}
			if proto == "http" && last["http_publishes"] == 0 {
				t.Fatalf("http: http_publishes %v: want > 0", last["http_publishes"])
			}
		})
	}
}
