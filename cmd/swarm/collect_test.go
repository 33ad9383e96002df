package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/bustest"
	"github.com/eventswarm/eventswarm/internal/localbus"
	"github.com/eventswarm/eventswarm/internal/report"
)

// startCollector runs swarm merge --listen on a loopback listener of its own
// and returns its base URL and a func that waits for its exit code and
// output.
func startCollector(t *testing.T, ctx context.Context, args ...string) (base string, wait func() (int, string, string)) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o, err := parseMergeFlags(append([]string{"--listen", ln.Addr().String()}, args...), io.Discard, io.Discard)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- collect(ctx, o, ln, &stdout, &stderr) }()
	return "http://" + ln.Addr().String(), func() (int, string, string) {
		select {
		case code := <-done:
			return code, stdout.String(), stderr.String()
		case <-time.After(2 * time.Minute):
			t.Fatal("the collector did not end")
			return 0, "", ""
		}
	}
}

// post sends body to url, bounded in time.
func post(t *testing.T, url string, body []byte) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// shardFiles runs a distributed run of n shards against one embedded bus,
// each writing its file to disk (or, with urls, POSTing it there), and
// returns the paths.
func shardFiles(t *testing.T, n int, urls []string, extra ...string) (paths []string, codes []int, outs []string) {
	t.Helper()
	lb, err := localbus.Start(localbus.Config{MQTTAddr: localbus.Disabled})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	dir := t.TempDir()
	startAt := time.Now().Add(time.Second).UTC().Format(time.RFC3339Nano)
	paths, codes, outs = make([]string, n), make([]int, n), make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		paths[i] = filepath.Join(dir, fmt.Sprintf("shard-%d.json", i))
		dest := paths[i]
		if urls != nil {
			dest = urls[i]
		}
		args := append([]string{"--target", lb.HTTPURL(), "--shard", strconv.Itoa(i), "--shards", strconv.Itoa(n),
			"--shard-file", dest, "--run-id", testRunID, "--start-at", startAt}, fast...)
		args = append(append(args, "--users", strconv.Itoa(6*n)), extra...) // 6 a shard, as TestDistributedRun
		wg.Go(func() {
			var stdout, stderr bytes.Buffer
			codes[i] = run(t.Context(), args, &stdout, &stderr, false)
			outs[i] = stdout.String() + stderr.String()
		})
	}
	wg.Wait()
	return paths, codes, outs
}

// TestCollectorMergesAsFileMerge: the same shard files POSTed to the
// collector give byte for byte the merged JSON that swarm merge FILE...
// gives, and the same exit code.
func TestCollectorMergesAsFileMerge(t *testing.T) {
	paths, codes, outs := shardFiles(t, 2, nil)
	for i, c := range codes {
		if c != exitPass {
			t.Fatalf("shard %d: exit %d\n%s", i, c, outs[i])
		}
	}
	dir := t.TempDir()
	fileJSON, listenJSON := filepath.Join(dir, "file.json"), filepath.Join(dir, "listen.json")
	var stdout, stderr bytes.Buffer
	fileCode := run(t.Context(), append([]string{"merge", "--min-coverage", "0", "--json", fileJSON}, paths...), &stdout, &stderr, false)

	base, wait := startCollector(t, t.Context(), "--shards", "2", "--run-id", testRunID, "--min-coverage", "0", "--json", listenJSON)
	for i := len(paths) - 1; i >= 0; i-- { // in any order
		b, err := os.ReadFile(paths[i])
		if err != nil {
			t.Fatal(err)
		}
		if code, msg := post(t, base+"/shards/"+strconv.Itoa(i), b); code != http.StatusOK {
			t.Fatalf("POST shard %d: %d %s", i, code, msg)
		}
	}
	code, out, errOut := wait()
	if code != fileCode || code != exitPass {
		t.Fatalf("collector exit %d, file merge %d; want both 0\n%s\n%s", code, fileCode, out, errOut)
	}
	a, _ := os.ReadFile(fileJSON)
	b, _ := os.ReadFile(listenJSON)
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("the collector's merged JSON differs from the file merge's (%d vs %d bytes)", len(b), len(a))
	}
}

// TestShardsUploadToCollector: shards started with --shard-file http://…
// deliver their files themselves; the collector merges when the last
// arrives.
func TestShardsUploadToCollector(t *testing.T) {
	const n = 3
	base, wait := startCollector(t, t.Context(), "--shards", strconv.Itoa(n), "--min-coverage", "0", "--json", filepath.Join(t.TempDir(), "m.json"))
	urls := make([]string, n)
	for i := range urls {
		urls[i] = base + "/shards/" + strconv.Itoa(i)
	}
	_, codes, outs := shardFiles(t, n, urls, "--verdict-exit=false") // as in deploy/: the verdict is the collector's
	for i, c := range codes {
		if c != exitPass {
			t.Fatalf("shard %d: exit %d\n%s", i, c, outs[i])
		}
	}
	code, out, errOut := wait()
	if code != exitPass || !strings.Contains(out, "3 shards (3 files)") {
		t.Fatalf("collector: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

// TestCollectorDeadline: at the deadline the collector names every missing
// shard, one line each, and exits 2 (a file merge with files missing does
// the same).
func TestCollectorDeadline(t *testing.T) {
	f := report.ShardFile{RunID: testRunID, Shard: 1, Shards: 3, ConfigHash: "h", Complete: true}
	body := mustJSON(t, f)
	base, wait := startCollector(t, t.Context(), "--shards", "3", "--deadline", "300ms")
	if code, msg := post(t, base+"/", body); code != http.StatusOK {
		t.Fatalf("POST: %d %s", code, msg)
	}
	code, _, errOut := wait()
	if code != exitUsage {
		t.Fatalf("exit %d, want 2\n%s", code, errOut)
	}
	for _, want := range []string{"--deadline 300ms passed with 1 of 3 shard files", "missing shard 0 of 3", "missing shard 2 of 3"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(errOut, "missing shard 1") {
		t.Errorf("shard 1 arrived:\n%s", errOut)
	}
}

// TestCollectorInterrupted: a signal (ctx) ends the wait like the deadline.
func TestCollectorInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	_, wait := startCollector(t, ctx, "--shards", "2")
	cancel()
	code, _, errOut := wait()
	if code != exitUsage || !strings.Contains(errOut, "interrupted with 0 of 2") || !strings.Contains(errOut, "missing shard 1 of 2") {
		t.Fatalf("exit %d:\n%s", code, errOut)
	}
}

// TestCollectorRefuses: what is not a shard file of this run is refused at
// once with a 4xx and one line, and kept out of the merge; the same file
// again is fine; a different file for an index already taken is kept, so the
// merge refuses the set as it would two files.
func TestCollectorRefuses(t *testing.T) {
	base, wait := startCollector(t, t.Context(), "--shards", "2", "--run-id", testRunID)
	good := mustJSON(t, report.ShardFile{RunID: testRunID, Shard: 0, Shards: 2, ConfigHash: "h", Complete: true})
	other := mustJSON(t, report.ShardFile{RunID: testRunID, Shard: 0, Shards: 2, ConfigHash: "other", Complete: true})
	tests := []struct {
		name string
		body []byte
		code int
		want string
	}{
		{"garbage", []byte("{not json"), 400, "not a shard file"},
		{"trailing data", append(bytes.Clone(good), []byte(" {}")...), 400, "data after"},
		{"wrong shard count", mustJSON(t, report.ShardFile{RunID: testRunID, Shard: 0, Shards: 3}), 400, "run of 3 shards"},
		{"index out of range", mustJSON(t, report.ShardFile{RunID: testRunID, Shard: 2, Shards: 2}), 400, "outside 0..1"},
		{"negative index", mustJSON(t, report.ShardFile{RunID: testRunID, Shard: -1, Shards: 2}), 400, "outside 0..1"},
		{"another run", mustJSON(t, report.ShardFile{RunID: "ffffffffffffffffffffffffffffffff", Shard: 0, Shards: 2}), 400, "is of run"},
		{"too large", bytes.Repeat([]byte(" "), maxShardBody+1), 413, "over"},
		{"good", good, 200, "taken (1 of 2)"},
		{"good again", good, 200, "already have this file"},
		{"different for index 0", other, 409, "merge will refuse"},
	}
	for _, tt := range tests {
		code, msg := post(t, base+"/x", tt.body)
		if code != tt.code || !strings.Contains(msg, tt.want) || strings.Count(msg, "\n") > 0 {
			t.Errorf("%s: %d %q, want %d with %q", tt.name, code, msg, tt.code, tt.want)
		}
	}
	// Status for a person.
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	status, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	resp.Body.Close()
	if !strings.Contains(string(status), "have 1 of 2 shard files; missing [1]") {
		t.Errorf("GET: %q", status)
	}
	if code, _ := post(t, base+"/", mustJSON(t, report.ShardFile{RunID: testRunID, Shard: 1, Shards: 2, ConfigHash: "h", Complete: true})); code != 200 {
		t.Fatalf("shard 1: %d", code)
	}
	code, _, errOut := wait()
	if code != exitUsage || !strings.Contains(errOut, "refused a POST") {
		t.Fatalf("exit %d, want 2 (two different files for shard 0)\n%s", code, errOut)
	}
	if !strings.Contains(errOut, "shard") || !strings.Contains(errOut, "config hash") {
		t.Errorf("the merge does not name the conflict:\n%s", errOut)
	}
}

func TestMergeListenFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"merge", "--listen", "127.0.0.1:0"}, "--listen needs --shards N"},
		{[]string{"merge", "--listen", "127.0.0.1:0", "--shards", "2", "a.json"}, "not both"},
		{[]string{"merge", "--listen", "nope", "--shards", "2"}, "want HOST:PORT"},
		{[]string{"merge", "--listen", "127.0.0.1:0", "--shards", "2", "--run-id", "x"}, "--run-id"},
		{[]string{"merge", "--listen", "127.0.0.1:0", "--shards", "2", "--deadline", "0s"}, "--deadline must be > 0"},
		{[]string{"merge", "--shards", "2", "a.json"}, "--shards only applies with --listen"},
		{[]string{"--shard-file", "http:///x"}, "--shard-file"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), tt.args, &stdout, &stderr, false)
		if code != exitUsage || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 with %q", tt.args, code, stderr.String(), tt.want)
		}
	}
	// An address already taken: could not run (4).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"merge", "--listen", ln.Addr().String(), "--shards", "1"}, &stdout, &stderr, false); code != exitCouldNotRun {
		t.Errorf("taken address: exit %d, %s", code, stderr.String())
	}
}

// TestUploadRefusedAndVerdictExit: a collector's 4xx fails the shard at once
// (exit 4, even with --verdict-exit=false); with --verdict-exit=false a
// shard whose own verdict fails exits 0 once its file is delivered.
func TestUploadRefusedAndVerdictExit(t *testing.T) {
	// A collector for another run refuses the file.
	ctx, cancel := context.WithCancel(t.Context())
	base, wait := startCollector(t, ctx, "--shards", "1", "--run-id", "ffffffffffffffffffffffffffffffff", "--deadline", "1m")
	var stdout, stderr bytes.Buffer
	args := append([]string{"--shard-file", base + "/shards/0", "--run-id", testRunID, "--verdict-exit=false"}, fast...)
	if code := run(t.Context(), args, &stdout, &stderr, false); code != exitCouldNotRun || !strings.Contains(stderr.String(), "refused the file: 400") {
		t.Errorf("refused upload: exit %d, want 4\n%s", code, stderr.String())
	}
	cancel() // nothing else comes
	if code, _, errOut := wait(); code != exitUsage || !strings.Contains(errOut, "refused a POST: shard 0 is of run") {
		t.Errorf("the refusing collector: exit %d\n%s", code, errOut)
	}

	// Dropped deliveries fail this shard's own verdict (exit 1)...
	dropped := append([]string{"--fault-drop", "0.5", "--fault-seed", "7"}, fast...)
	stdout.Reset()
	stderr.Reset()
	if code := run(t.Context(), dropped, &stdout, &stderr, false); code != exitFail {
		t.Fatalf("dropped run: exit %d, want 1\n%s", code, stderr.String())
	}
	// ...but a shard with --verdict-exit=false that delivered its file exits 0.
	okBase, okWait := startCollector(t, t.Context(), "--shards", "1", "--min-coverage", "0")
	stdout.Reset()
	stderr.Reset()
	if code := run(t.Context(), append([]string{"--shard-file", okBase + "/", "--run-id", testRunID, "--verdict-exit=false"}, dropped...), &stdout, &stderr, false); code != exitPass {
		t.Fatalf("--verdict-exit=false: exit %d, want 0\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "own verdict is fail") {
		t.Errorf("no note of the shard's own verdict:\n%s", stderr.String())
	}
	if code, out, errOut := okWait(); code != exitFail {
		t.Errorf("the collector's verdict: exit %d, want 1 (fail)\n%s\n%s", code, out, errOut)
	}
}

// TestUploadRetriesUntilWindow: a collector that is not there is retried
// within uploadWindow, then the shard fails with exit 4.
func TestUploadRetriesUntilWindow(t *testing.T) {
	old := uploadWindow
	uploadWindow = 700 * time.Millisecond
	defer func() { uploadWindow = old }()
	err := uploadShardFile("http://"+bustest.DeadAddr(t)+"/", report.ShardFile{RunID: testRunID, Shards: 1})
	if err == nil || !strings.Contains(err.Error(), "not delivered after") {
		t.Fatalf("upload to nothing: %v", err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f.json")
	if err := report.WriteJSON(p, v); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzCollectorAccept: any bytes POSTed are answered with a status and one
// line, never a panic, and only a real shard file of this run is taken.
func FuzzCollectorAccept(f *testing.F) {
	f.Add([]byte(`{"run_id":"0123456789abcdef0123456789abcdef","shard":0,"shards":2}`))
	f.Add([]byte(`{"shards":2,"shard":1,"latency_histogram":{"counts":[1,2]}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"shards":2,"shard":1e99}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		c := newCollector(2, "")
		code, msg := c.accept(body)
		if strings.Contains(msg, "\n") {
			t.Fatalf("answer of more than one line: %q", msg)
		}
		if code == http.StatusOK && len(c.parsed) != 1 {
			t.Fatalf("200 but %d files kept", len(c.parsed))
		}
		if code != http.StatusOK && len(c.parsed) != 0 {
			t.Fatalf("%d but a file was kept", code)
		}
	})
}
