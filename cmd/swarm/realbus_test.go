package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// realTargets are the buses .ci/run starts (bash .ci/services start).
func realTargets(t *testing.T) map[string]string {
	t.Helper()
	targets := map[string]string{}
	if addr := os.Getenv("EVENTSWARM_MOSQUITTO"); addr != "" {
		targets["mosquitto"] = "mqtt://" + addr
	}
	if url := os.Getenv("EVENTSWARM_NCHAN"); url != "" {
		targets["nchan"] = url
	}
	if len(targets) == 0 {
		t.Skip("set EVENTSWARM_MOSQUITTO=127.0.0.1:18830 and EVENTSWARM_NCHAN=http://127.0.0.1:18080 after `bash .ci/services start` to run against Mosquitto and Nchan")
	}
	return targets
}

// checkClean asserts a run against a bus with no faults: pass, both
// directions carried traffic, nothing lost or duplicated, IDs paired.
func checkClean(t *testing.T, code int, stderr string, res map[string]any) {
	t.Helper()
	if code != exitPass {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
	}
	counts := res["counts"].(map[string]any)
	if counts["lost"].(float64) != 0 || counts["duplicates"].(float64) != 0 || counts["expected"].(float64) == 0 {
		t.Fatalf("counts %v: want expected > 0, no lost, no duplicates", counts)
	}
	streams := res["streams"].(map[string]any)
	for _, dir := range []string{"learner_to_proctor", "proctor_to_learner"} {
		c := streams[dir].(map[string]any)["counts"].(map[string]any)
		// Every expected message arrived once; how many within 2 s is the
		// machine's load (the run's latency gate passed, exit 0, above).
		if c["expected"].(float64) == 0 || c["lost"].(float64) != 0 || c["duplicates"].(float64) != 0 {
			t.Errorf("%s counts %v: want every expected message delivered once", dir, c)
		}
	}
}

func TestRealBuses(t *testing.T) {
	for name, url := range realTargets(t) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "swarm.json")
			var stdout, stderr bytes.Buffer
			args := append([]string{"--target", url, "--json", path}, fast...)
			code := run(t.Context(), args, &stdout, &stderr, false)
			checkClean(t, code, stderr.String(), readJSON(t, path))
		})
	}
}
