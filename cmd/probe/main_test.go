package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/bustest"
)

func runProbe(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code = run(ctx, args, &out, &errb, false)
	return code, out.String(), errb.String()
}

// fast are flags that scale the SLO clock down so a run takes seconds.
var fast = []string{"--barrier-timeout", "2s", "--connect-timeout", "2s", "--duration", "2s", "--warmup", "0", "--rate", "40", "--latency", "1500ms", "--lost-after", "5s", "--grace", "300ms", "--quiet", "--hold", "2s",
	"--within", "0"} // the latency gate off: on a busy machine the on-time share is the machine's

// serveTCP accepts loopback connections until the test ends, each handled by
// serve on its own goroutine (which closes it), and returns the address.
func serveTCP(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return l.Addr().String()
}

// garbageTCP accepts connections and writes bytes that are neither MQTT nor HTTP.
func garbageTCP(t *testing.T) string {
	return serveTCP(t, func(c net.Conn) { c.Write([]byte("\x00\xffthis is not a protocol\r\n\r\n")) })
}

// answerTCP answers every connection's first read with b (a scripted broker).
func answerTCP(t *testing.T, b []byte) string {
	return serveTCP(t, func(c net.Conn) {
		buf := make([]byte, 1024)
		if _, err := c.Read(buf); err == nil {
			c.Write(b)
		}
	})
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--no-such-flag"}, "flag provided but not defined"},
		{"malformed URL", []string{"--target", "http://[::1"}, "not a URL"},
		{"unsupported scheme", []string{"--target", "ftp://127.0.0.1:21"}, "not supported"},
		{"no host", []string{"--target", "mqtt://"}, "no host"},
		{"bad qos", []string{"--qos", "3"}, "--qos"},
		{"bad rate", []string{"--rate", "0"}, "--rate"},
		{"warmup too long", []string{"--duration", "1s", "--warmup", "2s"}, "--warmup"},
		{"bad within", []string{"--within", "1.5"}, "--within"},
		{"tiny payload", []string{"--payload-size", "10"}, "--payload-size"},
		{"faults on real target", []string{"--target", "mqtt://127.0.0.1:1883", "--fault-drop", "0.1"}, "embedded"},
		{"bad source addrs", []string{"--source-addrs", "127.0.0.2-127.0.0.x"}, "--source-addrs"},
		{"stray argument", []string{"extra"}, "unexpected argument"},
		{"mqtt5 scheme with --mqtt-version 3", []string{"--target", "mqtt5://127.0.0.1:1883", "--mqtt-version", "3"}, "--mqtt-version"},
		{"bad --mqtt-version", []string{"--embedded", "mqtt", "--mqtt-version", "4"}, "--mqtt-version"},
		{"--mqtt-version on http", []string{"--target", "http://127.0.0.1:1", "--mqtt-version", "5"}, "--mqtt-version"},
		{"--session-expiry on 3.1.1", []string{"--target", "mqtt://127.0.0.1:1883", "--clean-session=false", "--session-expiry", "1m"}, "--session-expiry"},
		{"--session-expiry with a clean session", []string{"--target", "mqtt5://127.0.0.1:1883", "--session-expiry", "1m"}, "--clean-session=false"},
		{"--share-group on http", []string{"--share-group", "g"}, "--share-group"},
		{"bad --share-group", []string{"--embedded", "mqtt", "--share-group", "a/b"}, "--share-group"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runProbe(t, tt.args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr: %s", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Fatalf("stderr %q does not mention %q", stderr, tt.want)
			}
			if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
				t.Fatalf("stderr looks like a crash: %s", stderr)
			}
		})
	}
}

func TestCouldNotRun(t *testing.T) {
	httpSrv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(httpSrv.Close)
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler()) // its certificate's CA is not given
	t.Cleanup(tlsSrv.Close)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unreachable mqtt", []string{"--target", "mqtt://" + bustest.DeadAddr(t)}, "probe: cannot use"},
		{"unreachable http", []string{"--target", "http://" + bustest.DeadAddr(t)}, "probe: cannot use"},
		{"mqtt port speaks garbage", []string{"--target", "mqtt://" + garbageTCP(t)}, "probe: cannot use"},
		{"http port speaks garbage", []string{"--target", "http://" + garbageTCP(t)}, "probe: cannot use"},
		{"mqtt to an http server", []string{"--target", "mqtt://" + strings.TrimPrefix(httpSrv.URL, "http://")}, "probe: cannot use"},
		{"MQTT 5 CONNACK refusal", []string{"--target", "mqtt5://" + answerTCP(t, []byte{0x20, 3, 0, 0x87, 0})}, "the broker refused the connection: 0x87 not authorized"},
		{"untrusted https certificate", []string{"--target", tlsSrv.URL}, "give --ca-file with the CA that signed the bus's certificate"},
		{"MQTT 3.1.1 CONNACK refusal", []string{"--target", "mqtt://" + answerTCP(t, []byte{0x20, 2, 0, 5})}, "Not Authorised"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jsonPath := filepath.Join(t.TempDir(), "r.json")
			code, _, stderr := runProbe(t, append(tt.args, "--connect-timeout", "2s", "--json", jsonPath)...)
			if code != exitCouldNotRun {
				t.Fatalf("exit %d, want %d; stderr: %s", code, exitCouldNotRun, stderr)
			}
			if !strings.Contains(stderr, tt.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Fatalf("stderr %q: want one clear line containing %q", stderr, tt.want)
			}
			if res := readResult(t, jsonPath); res.Verdict != "inconclusive" {
				t.Fatalf("--json verdict %q, want inconclusive when the probe could not run", res.Verdict)
			}
		})
	}
}

// fakeLongPoll speaks just enough of the protocol: publishes are accepted and
// every poll is answered with body(n).
func fakeLongPoll(t *testing.T, body func(n int) (int, string)) string {
	t.Helper()
	var polls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			w.WriteHeader(http.StatusAccepted)
			return
		case http.MethodOptions:
			w.WriteHeader(http.StatusNoContent)
			return
		}
		n := int(polls.Add(1))
		status, b := body(n)
		if status == http.StatusOK {
			w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
			w.Header().Set("Etag", fmt.Sprint(n))
		}
		time.Sleep(20 * time.Millisecond) // a hold, so the client's loop is not a spin
		w.WriteHeader(status)
		w.Write([]byte(b))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestGarbagePayloadsFailHard(t *testing.T) {
	url := fakeLongPoll(t, func(int) (int, string) { return http.StatusOK, strings.Repeat("garbage!", 40) })
	jsonPath := filepath.Join(t.TempDir(), "result.json")
	code, _, stderr := runProbe(t, append([]string{"--target", url, "--json", jsonPath}, fast...)...)
	if code != exitFail {
		t.Fatalf("exit %d, want %d (corrupt payloads are a hard failure); stderr: %s", code, exitFail, stderr)
	}
	res := readResult(t, jsonPath)
	if res.Counts["corrupt"] == 0 {
		t.Fatalf("result counts %v: want corrupt > 0", res.Counts)
	}
}

func TestNothingDeliveredNeverPasses(t *testing.T) {
	url := fakeLongPoll(t, func(int) (int, string) { return http.StatusRequestTimeout, "" })
	jsonPath := filepath.Join(t.TempDir(), "result.json")
	args := append([]string{"--target", url, "--json", jsonPath}, fast...)
	code, _, stderr := runProbe(t, args...)
	if code == exitPass || code == exitUsage {
		t.Fatalf("exit %d with nothing delivered; stderr: %s", code, stderr)
	}
	if res := readResult(t, jsonPath); res.Verdict == "pass" {
		t.Fatalf("verdict %q with nothing delivered", res.Verdict)
	}
}

type result struct {
	Verdict string            `json:"verdict"`
	Counts  map[string]uint64 `json:"counts"`
	Gates   []struct {
		Name string `json:"name"`
		Pass bool   `json:"pass"`
	} `json:"gates"`
	LatencyMS map[string]float64 `json:"latency_ms"`
}

func readResult(t *testing.T, path string) result {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("--json file not written: %v", err)
	}
	var r result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("--json file: %v", err)
	}
	return r
}

func TestEmbeddedPassWritesReports(t *testing.T) {
	for _, proto := range []string{"http", "mqtt"} {
		t.Run("embedded="+proto, func(t *testing.T) {
			dir := t.TempDir()
			jsonPath, junitPath, htmlPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "j.xml"), filepath.Join(dir, "r.html")
			args := append([]string{"--embedded", proto, "--json", jsonPath, "--junit", junitPath, "--html", htmlPath}, fast...)
			code, stdout, stderr := runProbe(t, args...)
			if code != exitPass {
				t.Fatalf("exit %d, want 0; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			if !strings.Contains(stdout, "PASS") {
				t.Fatalf("final table has no PASS:\n%s", stdout)
			}
			res := readResult(t, jsonPath)
			for _, k := range []string{"expected", "on_time", "slow", "lost", "late", "duplicates", "out_of_order", "foreign",
				"unexpected", "corrupt", "recovered", "publish_attempted", "publish_ok", "publish_failed"} {
				if _, ok := res.Counts[k]; !ok {
					t.Errorf("counts has no %q", k)
				}
			}
			for _, k := range []string{"p50", "p95", "p99", "max"} {
				if _, ok := res.LatencyMS[k]; !ok {
					t.Errorf("latency_ms has no %q", k)
				}
			}
			if res.Verdict != "pass" || len(res.Gates) < 4 {
				t.Fatalf("verdict %q, %d gates", res.Verdict, len(res.Gates))
			}
			page, err := os.ReadFile(htmlPath)
			if err != nil || !bytes.Contains(page, []byte("PASS")) {
				t.Fatalf("html report: %v (%d bytes, want a PASS verdict)", err, len(page))
			}
			junit, err := os.ReadFile(junitPath)
			if err != nil || !bytes.Contains(junit, []byte("<testcase")) {
				t.Fatalf("junit file: %v\n%s", err, junit)
			}
		})
	}
}
