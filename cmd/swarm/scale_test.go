//go:build scale

package main

import (
	"bytes"
	"path/filepath"
	"testing"
)

// TestScaleRealBuses runs 2,000 users (weights 20:1) for 20 s against each
// real bus: the ID pool pairs them, control messages reach learners, nothing
// is lost or duplicated. Too slow under -race; .ci/run runs it with -tags scale.
func TestScaleRealBuses(t *testing.T) {
	for name, url := range realTargets(t) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "swarm.json")
			var stdout, stderr bytes.Buffer
			args := []string{"--target", url, "--json", path, "--users", "2000", "--spawn-rate", "400",
				"--duration", "20s", "--weights", "learner=20,proctor=1", "--learners-per-proctor", "20",
				"--learner-interval", "500ms-1500ms", "--control-interval", "1s-2s", "--items", "8",
				"--lost-after", "5s", "--quiet"}
			code := run(t.Context(), args, &stdout, &stderr, false)
			res := readJSON(t, path)
			t.Logf("%s: counts %v latency %v stop_ms %v", name, res["counts"], res["latency_ms"], res["stop_ms"])
			checkClean(t, code, stderr.String(), res)
		})
	}
}
