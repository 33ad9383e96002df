// Package exitcodes holds one test: the README's exit-code table, checked
// against the real binaries. It builds probe and swarm, runs one example of
// every class of outcome on the embedded bus or a dead loopback port, and
// checks each exit code and that the README's row for that code names the
// class. Only loopback is ever contacted.
package exitcodes

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/bustest"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "eventswarm-exitcodes-")
	if err != nil {
		panic(err)
	}
	bin = dir
	cmd := exec.Command("go", "build", "-o", dir, "../../probe", "../../swarm", "../../localbus")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		os.Stderr.WriteString("exitcodes: go build failed: " + err.Error() + "\n")
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// readmeRows maps each exit code of the README's table to its row.
func readmeRows(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "### Exit codes (probe, swarm, swarm merge)")
	if !ok {
		t.Fatal(`README has no "### Exit codes (probe, swarm, swarm merge)" section`)
	}
	rows := map[string]string{}
	row := regexp.MustCompile(`^\| (\d+) \|`)
	for _, line := range strings.Split(after, "\n") {
		if strings.HasPrefix(line, "#") {
			break
		}
		if m := row.FindStringSubmatch(line); m != nil {
			rows[m[1]] = line
		}
	}
	return rows
}

type run struct {
	code           int
	stderr, stdout string
}

// exec runs prog with args; interruptAfter > 0 sends SIGINT that long after
// the run printed its start line (the run is then certainly under way).
func execute(t *testing.T, prog string, args []string, interruptAfter time.Duration) run {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, prog), args...)
	var stderr bytes.Buffer
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = pw
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			line := sc.Text()
			stderr.WriteString(line + "\n")
			if !once && strings.Contains(line, prog+": run ") {
				once = true
				close(started)
			}
		}
	}()
	if interruptAfter > 0 {
		select {
		case <-started:
			time.Sleep(interruptAfter)
			_ = cmd.Process.Signal(syscall.SIGINT)
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("%s did not start within 60s", prog)
		}
	}
	timer := time.AfterFunc(3*time.Minute, func() { _ = cmd.Process.Kill() }) // hang guard
	defer timer.Stop()
	err = cmd.Wait()
	<-done
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return run{code, stderr.String(), stdout.String()}
}

func TestExitCodeTable(t *testing.T) {
	rows := readmeRows(t)
	dir := t.TempDir()
	dead := bustest.DeadAddr(t)
	lb := startLocalbus(t) // a WebSocket listener to refuse bad mqtt+ws targets
	// Bounds far from what the embedded bus does on a loaded machine, so the
	// machine cannot decide a pass or a fail; the faults decide.
	// The latency gate off (--within 0): on a busy machine the on-time share
	// is the machine's; the faults decide pass and fail here.
	probeFast := []string{"--duration", "2s", "--warmup", "0s", "--latency", "2s", "--lost-after", "5s", "--grace", "200ms", "--quiet", "--within", "0"}
	swarmFast := []string{"--users", "12", "--spawn-rate", "100", "--duration", "1500ms", "--weights", "learner=5,proctor=1",
		"--items", "3", "--learner-interval", "20ms-50ms", "--control-interval", "20ms-40ms",
		"--proctor-timeout", "1s", "--latency", "2s", "--lost-after", "5s", "--grace", "200ms", "--quiet", "--min-coverage", "0", "--within", "0"}
	shard := func(name string) string { return filepath.Join(dir, name+".json") }
	runID := "0123456789abcdef0123456789abcdef"
	cat := func(a []string, b ...string) []string { return append(append([]string(nil), a...), b...) }

	cases := []struct {
		name      string
		prog      string
		args      []string
		interrupt time.Duration
		code      int
		class     string // must appear in the README's row for code
	}{
		{"probe pass", "probe", probeFast, 0, 0, "every gate passed"},
		{"probe lost", "probe", cat(probeFast, "--fault-drop", "0.2"), 0, 1, "lost"},
		{"probe corrupt", "probe", cat(probeFast, "--fault-corrupt", "0.2"), 0, 1, "corrupt"},
		{"probe duration without unit", "probe", []string{"--duration", "1"}, 0, 2, "`--duration 1`"},
		{"probe NaN gate", "probe", []string{"--within", "NaN"}, 0, 2, "`--within NaN`"},
		{"probe json in /proc", "probe", []string{"--json", "/proc/nope.json"}, 0, 2, "`--json /proc/x.json`"},
		{"probe html is a directory", "probe", []string{"--html", dir}, 0, 2, "`--html /tmp`"},
		{"probe mqtt url with a path", "probe", []string{"--target", "mqtt://" + dead + "/x"}, 0, 2, "MQTT URL with a path"},
		{"probe missing ca file", "probe", []string{"--target", "mqtts://" + dead, "--ca-file", filepath.Join(dir, "none.pem")}, 0, 2, "missing `--ca-file`"},
		{"probe ambiguous ws url", "probe", []string{"--target", "ws://" + dead + "/mqtt"}, 0, 2, "ambiguous `ws://` target"},
		{"probe mqtt+ws wrong path", "probe", []string{"--target", "mqtt+ws://" + lb.mqttWS + "/nope", "--json", filepath.Join(dir, "probe-ws-path.json")}, 0, 4, "WebSocket upgrade refused"},
		{"probe mqtt+ws subprotocol refused", "probe", []string{"--target", "mqtt+ws://" + strings.TrimPrefix(lb.http, "http://") + "/sub/x", "--json", filepath.Join(dir, "probe-ws-proto.json")}, 0, 4, "WebSocket upgrade refused"},
		{"probe interrupted", "probe", cat(probeFast[2:], "--duration", "60s"), time.Second, 3, "interrupted run"},
		{"probe unreachable", "probe", []string{"--target", "http://" + dead + "/", "--json", filepath.Join(dir, "probe-unreachable.json")}, 0, 4, "target unreachable"},

		{"swarm pass", "swarm", cat(swarmFast, "--shard-file", shard("pass"), "--run-id", runID), 0, 0, "every gate passed"},
		{"swarm lost", "swarm", cat(swarmFast, "--fault-drop", "0.3", "--shard-file", shard("fail"), "--run-id", runID), 0, 1, "lost"},
		{"swarm shards 0", "swarm", []string{"--shards", "0"}, 0, 2, "`--shards 0`"},
		{"swarm html is a directory", "swarm", []string{"--html", dir}, 0, 2, "`--html /tmp`"},
		{"swarm nothing verified", "swarm", cat(swarmFast, "--min-coverage", "0.95", "--weights", "learner=1", "--shard-file", shard("uncovered"), "--run-id", runID), 0, 3, "coverage below `--min-coverage`"},
		{"swarm interrupted", "swarm", cat(swarmFast[6:], "--users", "12", "--spawn-rate", "100", "--duration", "60s", "--shard-file", shard("interrupted"), "--run-id", runID), time.Second, 3, "interrupted run"},
		{"swarm unreachable", "swarm", []string{"--target", "mqtt://" + dead, "--users", "1", "--json", filepath.Join(dir, "swarm-unreachable.json")}, 0, 4, "target unreachable"},

		{"merge pass", "swarm", []string{"merge", "--min-coverage", "0", "--within", "0", shard("pass")}, 0, 0, "every gate passed"},
		{"merge lost", "swarm", []string{"merge", "--min-coverage", "0", "--within", "0", shard("fail")}, 0, 1, "lost"},
		{"merge nothing verified", "swarm", []string{"merge", "--min-coverage", "0.95", shard("uncovered")}, 0, 3, "coverage below `--min-coverage`"},
		{"merge incomplete shard", "swarm", []string{"merge", shard("interrupted")}, 0, 2, "invalid set of shard files"},
		{"merge missing file", "swarm", []string{"merge", shard("none")}, 0, 2, "invalid set of shard files"},
		{"merge json in /proc", "swarm", []string{"merge", "--json", "/proc/nope.json", shard("pass")}, 0, 2, "`--json /proc/x.json`"},
	}
	codes := map[int]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := execute(t, tc.prog, tc.args, tc.interrupt)
			if r.code != tc.code {
				t.Fatalf("%s %s: exit %d, want %d\nstderr:\n%s\nstdout:\n%s", tc.prog, strings.Join(tc.args, " "), r.code, tc.code, r.stderr, r.stdout)
			}
			row, ok := rows[itoa(tc.code)]
			if !ok {
				t.Fatalf("README's exit-code table has no row for %d", tc.code)
			}
			if !strings.Contains(row, tc.class) {
				t.Errorf("README's row for %d does not name %q: %s", tc.code, tc.class, row)
			}
			if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
				t.Errorf("stderr has a panic or stack trace:\n%s", r.stderr)
			}
			if tc.code == 2 || strings.Contains(tc.name, "mqtt+ws") {
				if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); len(lines) != 1 {
					t.Errorf("a usage error should be one line, got %d:\n%s", len(lines), r.stderr)
				}
			}
			// A run that could not happen still leaves its report, never a pass.
			for i, a := range tc.args {
				if a == "--json" && tc.code >= 3 && i+1 < len(tc.args) {
					b, err := os.ReadFile(tc.args[i+1])
					if err != nil || !bytes.Contains(b, []byte(`"inconclusive"`)) {
						t.Errorf("--json %s: %v; want a report with verdict inconclusive", tc.args[i+1], err)
					}
				}
			}
			codes[tc.code] = true
		})
	}
	for _, c := range []int{0, 1, 2, 3, 4} {
		if !codes[c] {
			t.Errorf("no case exercised exit code %d", c)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestClosedStdoutKeepsTheReport: probe … | tee, then Ctrl-C: tee dies
// first, probe's stdout is a closed pipe. probe must not die of SIGPIPE
// (exit 141): it exits 3 (interrupted) and still writes its report files.
func TestClosedStdoutKeepsTheReport(t *testing.T) {
	for _, prog := range []string{"probe", "swarm"} {
		t.Run(prog, func(t *testing.T) {
			dir := t.TempDir()
			jsonPath, htmlPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
			args := []string{"--duration", "60s", "--latency", "1s", "--lost-after", "2s", "--grace", "100ms", "--json", jsonPath, "--html", htmlPath}
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			pr.Close() // the reader (tee) is gone before anything is written
			cmd := exec.Command(filepath.Join(bin, prog), args...)
			cmd.Stdout = pw
			var stderr lockedBuffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pw.Close()
			deadline := time.Now().Add(60 * time.Second)
			for !strings.Contains(stderr.String(), prog+": run ") && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(time.Second)
			_ = cmd.Process.Signal(syscall.SIGINT)
			timer := time.AfterFunc(2*time.Minute, func() { _ = cmd.Process.Kill() })
			defer timer.Stop()
			err = cmd.Wait()
			var ee *exec.ExitError
			code := 0
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			}
			if code != 3 {
				t.Fatalf("exit %d (%v), want 3 (interrupted)\nstderr:\n%s", code, err, stderr.String())
			}
			for _, p := range []string{jsonPath, htmlPath} {
				b, err := os.ReadFile(p)
				if err != nil || !bytes.Contains(b, []byte("inconclusive")) {
					t.Errorf("%s: %v; want a report saying inconclusive", p, err)
				}
			}
		})
	}
}

// lockedBuffer is a bytes.Buffer safe to read while exec writes to it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// processesResult is the part of swarm --processes' JSON the tests read.
type processesResult struct {
	Verdict  string         `json:"verdict"`
	Reason   string         `json:"reason"`
	Counts   map[string]int `json:"counts"`
	Children []struct {
		Shard    int            `json:"shard"`
		Complete bool           `json:"complete"`
		Counts   map[string]int `json:"counts"`
		Error    string         `json:"error"`
	} `json:"children"`
}

func readProcesses(t *testing.T, path string) processesResult {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var o processesResult
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return o
}

// swarm --processes 3 on the embedded bus: the merged counts are the sum of
// the children's; a child killed mid-run makes the run inconclusive (and
// stops the others); SIGINT to the parent stops every child and still
// writes the merged report.
func TestProcesses(t *testing.T) {
	fast := []string{"--processes", "3", "--users", "12", "--spawn-rate", "100", "--weights", "learner=5,proctor=1",
		"--items", "3", "--learner-interval", "20ms-50ms", "--control-interval", "20ms-40ms", "--proctor-timeout", "1s",
		"--latency", "2s", "--lost-after", "5s", "--grace", "200ms", "--quiet", "--min-coverage", "0", "--within", "0"}
	lb := startLocalbus(t)
	// The parent's own embedded bus (no --target), and the embedded bus run
	// as its own process by cmd/localbus, over both protocols.
	targets := map[string][]string{
		"parent's embedded bus": nil,
		"localbus http":         {"--target", lb.http},
		"localbus mqtt":         {"--target", lb.mqtt},
	}
	for name, target := range targets {
		t.Run("merged equals the sum/"+name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "r.json")
			r := execute(t, "swarm", append(append(append([]string{}, fast...), target...), "--duration", "1500ms", "--json", path), 0)
			if r.code != 0 {
				t.Fatalf("exit %d, want 0\n%s", r.code, r.stderr)
			}
			o := readProcesses(t, path)
			if len(o.Children) != 3 {
				t.Fatalf("%d children in the JSON, want 3", len(o.Children))
			}
			for _, k := range []string{"expected", "on_time", "lost", "duplicates", "publish_attempted", "publish_ok", "covered", "extra"} {
				total := 0
				for _, c := range o.Children {
					total += c.Counts[k]
				}
				if total != o.Counts[k] {
					t.Errorf("%s: merged %d, children sum to %d", k, o.Counts[k], total)
				}
			}
			if o.Counts["expected"] == 0 {
				t.Errorf("nothing expected: the run measured nothing")
			}
			if o.Counts["lost"] != 0 || o.Counts["duplicates"] != 0 {
				t.Errorf("lost %d duplicates %d on a bus without faults, want 0", o.Counts["lost"], o.Counts["duplicates"])
			}
		})
	}
	for _, name := range []string{"parent's embedded bus", "localbus mqtt"} {
		t.Run("a dead child is inconclusive/"+name, func(t *testing.T) { killChild(t, append(append([]string{}, fast...), targets[name]...)) })
	}
	t.Run("SIGINT stops every child", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "r.json")
		r := execute(t, "swarm", append(fast, "--duration", "60s", "--json", path), time.Second)
		if r.code != 3 {
			t.Fatalf("exit %d, want 3 (interrupted)\n%s", r.code, r.stderr)
		}
		o := readProcesses(t, path)
		if o.Verdict != "inconclusive" || len(o.Children) != 3 {
			t.Errorf("verdict %s, %d children; want inconclusive and 3", o.Verdict, len(o.Children))
		}
		for _, c := range o.Children {
			if c.Complete {
				t.Errorf("shard %d complete after SIGINT; want interrupted", c.Shard)
			}
		}
	})
}

// TestProcessesMetrics: with --processes and --metrics each child serves its
// own shard's metrics (port 0: a free port each, announced on stderr), labelled
// with its shard, while the run goes on.
func TestProcessesMetrics(t *testing.T) {
	args := []string{"--processes", "2", "--users", "6", "--spawn-rate", "100", "--weights", "learner=5,proctor=1",
		"--items", "3", "--learner-interval", "20ms-50ms", "--control-interval", "20ms-40ms", "--proctor-timeout", "1s",
		"--quiet", "--min-coverage", "0", "--within", "0", "--duration", "60s", "--metrics", "127.0.0.1:0"}
	sw := startSwarm(t, args...)
	re := regexp.MustCompile(`\[shard (\d)\] swarm: metrics on (http://127\.0\.0\.1:\d+/metrics)`)
	urls := map[string]string{}
	sw.waitStderr(func(s string) bool {
		for _, m := range re.FindAllStringSubmatch(s, -1) {
			urls[m[1]] = m[2]
		}
		return len(urls) >= 2
	})
	if len(urls) != 2 || urls["0"] == urls["1"] {
		_ = sw.cmd.Process.Kill()
		t.Fatalf("want two children announcing their own metrics address, got %v:\n%s", urls, sw.stderr.String())
	}
	for shard, url := range urls {
		want := `shard="` + shard + `"`
		var body string
		for range 100 {
			if b, err := get(url); err == nil && strings.Contains(b, "eventswarm_swarm_users_target") && strings.Contains(b, want) {
				body = b
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if body == "" {
			t.Errorf("shard %s at %s: no swarm metrics labelled %s", shard, url, want)
		}
	}
	_ = sw.cmd.Process.Signal(syscall.SIGINT)
	err := sw.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("exit %v after SIGINT, want 3 (interrupted)\n%s", err, sw.stderr.String())
	}
}

// swarmProc is a swarm process started by startSwarm.
type swarmProc struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer // everything it wrote to stderr so far
}

// startSwarm starts swarm with args, its stdout discarded and its stderr kept,
// and kills it if it still runs 2 minutes later (until the test ends).
func startSwarm(t *testing.T, args ...string) *swarmProc {
	t.Helper()
	p := &swarmProc{cmd: exec.Command(filepath.Join(bin, "swarm"), args...), stderr: &lockedBuffer{}}
	p.cmd.Stderr, p.cmd.Stdout = p.stderr, &bytes.Buffer{}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(2*time.Minute, func() { _ = p.cmd.Process.Kill() })
	t.Cleanup(func() { timer.Stop() })
	return p
}

// waitStderr calls done with the stderr so far, every 50ms for at most 60
// seconds, until it returns true; it reports whether it did.
func (p *swarmProc) waitStderr(done func(stderr string) bool) bool {
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if done(p.stderr.String()) {
			return true
		}
	}
	return false
}

// get fetches url (a loopback metrics endpoint) with a short timeout.
func get(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if resp.StatusCode != 200 {
		return "", errors.New(resp.Status)
	}
	return string(b), err
}

// localbus is cmd/localbus running as its own process on free loopback ports.
type localbus struct{ http, mqtt, mqttWS string }

// startLocalbus starts cmd/localbus on free ports and stops it (by PID) when
// the test ends.
func startLocalbus(t *testing.T) localbus {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "localbus"), "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--mqtt-ws", "127.0.0.1:0")
	var stderr lockedBuffer
	cmd.Stderr, cmd.Stdout = &stderr, &bytes.Buffer{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	httpRe := regexp.MustCompile(`long-poll on (http://\S+)`)
	mqttRe := regexp.MustCompile(`MQTT on (mqtt://\S+)`)
	wsRe := regexp.MustCompile(`MQTT over WebSocket on mqtt\+ws://(\S+)/mqtt`)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		s := stderr.String()
		h, m, w := httpRe.FindStringSubmatch(s), mqttRe.FindStringSubmatch(s), wsRe.FindStringSubmatch(s)
		if h != nil && m != nil && w != nil {
			return localbus{http: h[1], mqtt: m[1], mqttWS: w[1]}
		}
	}
	t.Fatalf("localbus did not announce its addresses:\n%s", stderr.String())
	return localbus{}
}

// killChild runs swarm --processes 3 with args, SIGKILLs shard 1 once it
// runs, and wants the merged run inconclusive, naming the dead shard.
func killChild(t *testing.T, args []string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "r.json")
	sw := startSwarm(t, append(args, "--duration", "60s", "--json", path)...)
	pidRe := regexp.MustCompile(`shard 1/3 pid (\d+)`)
	var pid int
	sw.waitStderr(func(s string) bool {
		if m := pidRe.FindStringSubmatch(s); m != nil && strings.Contains(s, "[shard 1] swarm: run ") {
			pid, _ = strconv.Atoi(m[1])
			return true
		}
		return false
	})
	if pid == 0 {
		_ = sw.cmd.Process.Kill()
		t.Fatalf("shard 1 did not start:\n%s", sw.stderr.String())
	}
	time.Sleep(time.Second)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := sw.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("exit %v, want 3 (a child died)\n%s", err, sw.stderr.String())
	}
	o := readProcesses(t, path)
	if o.Verdict != "inconclusive" || !strings.Contains(o.Reason, "shard 1") || !strings.Contains(o.Reason, "died") {
		t.Errorf("verdict %s (%s), want inconclusive naming the dead shard 1", o.Verdict, o.Reason)
	}
}

// TestHelp: -help of every command exits 0 and prints every flag's usage
// without a panic (the flag package calls String on a zero flag.Value to
// decide whether to print a default).
func TestHelp(t *testing.T) {
	for _, c := range []struct {
		prog string
		args []string
		flag string // a flag the help must describe
	}{
		{"probe", []string{"--help"}, "-mqtt-linger"},
		{"swarm", []string{"--help"}, "-spawn-rate"},
		{"swarm", []string{"merge", "--help"}, "-min-coverage"},
		{"localbus", []string{"--help"}, "-mqtt"},
	} {
		r := execute(t, c.prog, c.args, 0)
		out := r.stdout + r.stderr
		if r.code != 0 || strings.Contains(out, "panic") || !strings.Contains(out, c.flag) {
			t.Errorf("%s %s: exit %d, want 0, usage naming %s and no panic:\n%s", c.prog, strings.Join(c.args, " "), r.code, c.flag, out)
		}
	}
}
