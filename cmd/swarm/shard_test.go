package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/localbus"
	"github.com/eventswarm/eventswarm/internal/report"
)

const testRunID = "0123456789abcdef0123456789abcdef"

// TestDistributedRun runs the distributed contract as three shards (three
// concurrent run calls, as three processes would) sharing one bus, one run ID
// and one start time, then merges their files.
func TestDistributedRun(t *testing.T) {
	lb, err := localbus.Start(localbus.Config{MQTTAddr: localbus.Disabled})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()

	const shards = 3
	dir := t.TempDir()
	startAt := time.Now().Add(time.Second).UTC().Format(time.RFC3339Nano)
	paths := make([]string, shards)
	codes := make([]int, shards)
	outs := make([]string, shards)
	var wg sync.WaitGroup
	for i := range shards {
		paths[i] = filepath.Join(dir, fmt.Sprintf("shard-%d.json", i))
		args := append([]string{"--target", lb.HTTPURL(), "--shard", strconv.Itoa(i), "--shards", strconv.Itoa(shards),
			"--shard-file", paths[i], "--run-id", testRunID, "--start-at", startAt}, fast...)
		args = append(args, "--users", "18")
		wg.Go(func() {
			var stdout, stderr bytes.Buffer
			codes[i] = run(t.Context(), args, &stdout, &stderr, false)
			outs[i] = stdout.String() + stderr.String()
		})
	}
	wg.Wait()
	var want report.ShardFile
	for i := range shards {
		if codes[i] != exitPass {
			t.Fatalf("shard %d: exit %d; want 0\n%s", i, codes[i], outs[i])
		}
		f, err := report.ReadShardFile(paths[i])
		if err != nil {
			t.Fatal(err)
		}
		if f.Shard != i || f.Shards != shards || f.RunID != testRunID || !f.Complete || f.ConfigHash == "" {
			t.Fatalf("shard %d file: shard %d/%d run %q complete %v hash %q", i, f.Shard, f.Shards, f.RunID, f.Complete, f.ConfigHash)
		}
		want.Counts.Add(f.Counts)
		want.LatencyHist, _ = want.LatencyHist.Add(f.LatencyHist)
	}
	if want.Counts.Expected == 0 || want.LatencyHist.Count() == 0 {
		t.Fatalf("shards expected %d messages, %d latencies; want some", want.Counts.Expected, want.LatencyHist.Count())
	}

	jsonPath := filepath.Join(dir, "merged.json")
	junitPath := filepath.Join(dir, "merged.xml")
	var stdout, stderr bytes.Buffer
	args := append([]string{"merge", "--min-coverage", "0", "--within", "0", "--json", jsonPath, "--junit", junitPath}, paths...) // coverage: see fast
	if code := run(t.Context(), args, &stdout, &stderr, false); code != exitPass {
		t.Fatalf("merge: exit %d; want 0\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := readJSON(t, jsonPath)
	counts, _ := out["counts"].(map[string]any)
	lat, _ := out["latency_ms"].(map[string]any)
	if counts["expected"] != float64(want.Counts.Expected) || lat["count"] != float64(want.LatencyHist.Count()) {
		t.Errorf("merged expected %v, latency count %v; want the shards' sums %d, %d",
			counts["expected"], lat["count"], want.Counts.Expected, want.LatencyHist.Count())
	}
	if out["verdict"] != "pass" || out["run_id"] != testRunID || out["shards"] != float64(shards) {
		t.Errorf("merged verdict %v run %v shards %v", out["verdict"], out["run_id"], out["shards"])
	}
	if _, err := os.Stat(junitPath); err != nil {
		t.Errorf("--junit: %v", err)
	}

	// An invalid set: shard 1 missing and shard 2 run with another config.
	other, err := report.ReadShardFile(paths[2])
	if err != nil {
		t.Fatal(err)
	}
	other.ConfigHash = "different"
	otherPath := filepath.Join(dir, "other.json")
	if err := report.WriteJSON(otherPath, other); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		files []string
		want  []string
	}{
		{"missing index", []string{paths[0], paths[2]}, []string{"missing 1 of 3 shards: [1]"}},
		{"missing and mismatched", []string{paths[0], otherPath}, []string{"config hash", "missing 1 of 3 shards: [1]"}},
		{"unreadable", []string{paths[0], filepath.Join(dir, "nope.json")}, []string{"nope.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), append([]string{"merge"}, tt.files...), &stdout, &stderr, false)
			if code != exitUsage {
				t.Fatalf("exit %d; want 2 (stderr %q)", code, stderr.String())
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("stderr has %d lines; want one per problem (%d): %q", len(lines), len(tt.want), stderr.String())
			}
			for i, w := range tt.want {
				if !strings.Contains(lines[i], w) || !strings.HasPrefix(lines[i], "swarm merge: ") {
					t.Errorf("line %d %q; want it to contain %q", i, lines[i], w)
				}
			}
		})
	}
}

func TestMergeBadInput(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "no shard files"},
		{[]string{"--within", "2", "f.json"}, "--within"},
		{[]string{"--nope", "f.json"}, "flag provided but not defined"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), append([]string{"merge"}, tt.args...), &stdout, &stderr, false); code != exitUsage {
			t.Errorf("merge %v: exit %d; want 2", tt.args, code)
		}
		if msg := strings.TrimSpace(stderr.String()); !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
			t.Errorf("merge %v: stderr %q; want one line containing %q", tt.args, msg, tt.want)
		}
	}
}

func TestStartAt(t *testing.T) {
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	for _, tt := range []struct {
		name, startAt, want string
	}{
		{"past", past, "in the past"},
		{"malformed", "tomorrow", "RFC 3339"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), append([]string{"--start-at", tt.startAt}, fast...), &stdout, &stderr, false)
			if msg := strings.TrimSpace(stderr.String()); code != exitUsage || !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("exit %d, stderr %q; want 2 and one line containing %q", code, msg, tt.want)
			}
		})
	}

	t.Run("shard file needs run id", func(t *testing.T) {
		for _, id := range []string{"", strings.Repeat("0", 32)} { // zero = random per shard
			var stdout, stderr bytes.Buffer
			args := append([]string{"--shards", "2", "--shard-file", filepath.Join(t.TempDir(), "s.json"), "--run-id", id}, fast...)
			if code := run(t.Context(), args, &stdout, &stderr, false); code != exitUsage || !strings.Contains(stderr.String(), "--run-id") {
				t.Errorf("--run-id %q: exit %d, stderr %q; want 2 asking for --run-id", id, code, stderr.String())
			}
		}
	})

	// Stopped while waiting for the start: exit 3, nothing written.
	t.Run("interrupted wait", func(t *testing.T) {
		dir := t.TempDir()
		shardPath, jsonPath := filepath.Join(dir, "s.json"), filepath.Join(dir, "out.json")
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var stdout, stderr bytes.Buffer
		stop := waitForLine(&stderr, "waiting", cancel)
		args := append([]string{"--start-at", time.Now().Add(time.Hour).Format(time.RFC3339),
			"--shard-file", shardPath, "--json", jsonPath}, fast...)
		code := run(ctx, args, &stdout, stop, false)
		if code != exitInconclusive {
			t.Errorf("exit %d; want 3 (stderr %q)", code, stderr.String())
		}
		for _, p := range []string{shardPath, jsonPath} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("%s written after an interrupted wait", filepath.Base(p))
			}
		}
	})
}

// waitForLine returns a writer into buf that calls f once something
// containing s was written (so the test cancels exactly when the shard waits).
func waitForLine(buf *bytes.Buffer, s string, f func()) *triggerWriter {
	return &triggerWriter{buf: buf, s: s, f: f}
}

type triggerWriter struct {
	mu   sync.Mutex
	buf  *bytes.Buffer
	s    string
	f    func()
	done bool
}

func (w *triggerWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if !w.done && strings.Contains(string(p), w.s) {
		w.done = true
		w.f()
	}
	return n, err
}

// TestConfigHashPerShardFlags: the flags a shard may set for itself
// (its index, where its files go, its own source addresses, its exit policy)
// leave the config hash alone; a load flag changes it.
func TestConfigHashPerShardFlags(t *testing.T) {
	hash := func(args ...string) string {
		t.Helper()
		o, err := parseFlags(append([]string{"--run-id", testRunID, "--shards", "2"}, args...), io.Discard, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return o.ConfigHash
	}
	base := hash("--shard", "0")
	same := hash("--shard", "1", "--source-addrs", "127.0.0.2-127.0.0.3", "--verdict-exit=false",
		"--shard-file", "http://127.0.0.1:9/shards/1", "--quiet")
	if base != same {
		t.Errorf("per-shard flags changed the config hash")
	}
	if hash("--shard", "0", "--users", "7") == base {
		t.Errorf("--users did not change the config hash")
	}
}
