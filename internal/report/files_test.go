package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/eventswarm/eventswarm/internal/verify"
)

func noWindows(r verify.Result) verify.Result {
	r.Windows = nil
	return r
}

func TestWriteJSONRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "result.json")
	r := sampleResult(failing)
	if err := WriteJSON(path, r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back verify.Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, r)
	}
	// The stable field names of result.go are what is on disk.
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"verdict", "reason", "counts", "latency_ms", "late_ms", "gates", "windows"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("no top-level key %q in %s", k, b)
		}
	}
	counts, _ := raw["counts"].(map[string]any)
	for _, k := range []string{"expected", "on_time", "lost", "lost_while_connected", "lost_during_disconnect",
		"duplicates_redelivered", "publish_attempted", "publish_ok", "pending"} {
		if _, ok := counts[k]; !ok {
			t.Errorf("no counts key %q", k)
		}
	}
	if !bytes.Contains(b, []byte("\n  \"counts\": {")) {
		t.Errorf("not indented:\n%s", b)
	}
}

func TestWriteJSONAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.json")
	if err := WriteJSON(path, map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(path, map[string]int{"a": 2}); err != nil {
		t.Fatal(err)
	}
	// A value that cannot be encoded fails before anything is written.
	if err := WriteJSON(path, map[string]any{"c": make(chan int)}); err == nil {
		t.Error("WriteJSON(chan) = nil error")
	}
	// A directory that does not exist fails without leaving anything.
	if err := WriteJSON(filepath.Join(dir, "nope", "x.json"), 1); err == nil {
		t.Error("WriteJSON into a missing directory = nil error")
	}
	// Renaming over a directory fails after the temp file was written: it must be removed.
	if err := os.Mkdir(filepath.Join(dir, "isdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(filepath.Join(dir, "isdir"), 1); err == nil {
		t.Error("WriteJSON over a directory = nil error")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !reflect.DeepEqual(names, []string{"isdir", "out.json"}) {
		t.Errorf("directory holds %v, want [isdir out.json] (no temp files)", names)
	}
	b, _ := os.ReadFile(path)
	if string(b) != "{\n  \"a\": 2\n}\n" {
		t.Errorf("out.json = %q, want the second write", b)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v, %v; want 0644", fi.Mode(), err)
	}
}

func TestWriteStdout(t *testing.T) {
	var buf bytes.Buffer
	old := stdout
	stdout = &buf
	t.Cleanup(func() { stdout = old })
	if err := WriteJSON("-", []int{1}); err != nil {
		t.Fatal(err)
	}
	if err := WriteJUnit("-", "probe", sampleResult(passing)); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "[\n  1\n]\n<?xml") {
		t.Errorf("stdout = %q", buf.String())
	}
}

// Parsed JUnit, read back with encoding/xml the way a CI reporter would.
type parsedSuites struct {
	XMLName xml.Name `xml:"testsuites"`
	Suites  []struct {
		Name     string `xml:"name,attr"`
		Tests    int    `xml:"tests,attr"`
		Failures int    `xml:"failures,attr"`
		Errors   int    `xml:"errors,attr"`
		Time     string `xml:"time,attr"`
		Cases    []struct {
			ClassName string `xml:"classname,attr"`
			Name      string `xml:"name,attr"`
			Failure   *struct {
				Message string `xml:"message,attr"`
			} `xml:"failure"`
			Error *struct {
				Message string `xml:"message,attr"`
			} `xml:"error"`
			Skipped *struct{} `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func TestWriteJUnit(t *testing.T) {
	tests := []struct {
		name       string
		r          verify.Result
		failed     map[string]string // gate → failure message
		errMessage string            // verdict testcase error, "" if none
		time       string
	}{
		{"fail", sampleResult(failing), map[string]string{"lost": "observed 3, want <= 0"}, "", "120.000"},
		{"pass", sampleResult(passing), nil, "", "120.000"},
		{"inconclusive", noWindows(sampleResult(verify.Counts{})), map[string]string{
			"latency":              "observed 0.00%, want >= 95.00%",
			"publish_availability": "observed 0.00%, want >= 99.90%",
			"coverage":             "observed 0.00%, want >= 95.00%",
		}, "inconclusive: no message was published", "0.000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "junit.xml")
			r := tt.r
			if err := WriteJUnit(path, "probe <&\"> suite", r); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var doc parsedSuites
			if err := xml.Unmarshal(b, &doc); err != nil {
				t.Fatalf("junit does not parse: %v\n%s", err, b)
			}
			if len(doc.Suites) != 1 {
				t.Fatalf("%d testsuites, want 1", len(doc.Suites))
			}
			s := doc.Suites[0]
			wantTests := len(r.Gates)
			if tt.errMessage != "" {
				wantTests++
			}
			if s.Name != "probe <&\"> suite" || s.Tests != wantTests || len(s.Cases) != wantTests ||
				s.Failures != len(tt.failed) || s.Time != tt.time {
				t.Errorf("suite %q tests=%d cases=%d failures=%d time=%s, want tests=%d failures=%d time=%s\n%s",
					s.Name, s.Tests, len(s.Cases), s.Failures, s.Time, wantTests, len(tt.failed), tt.time, b)
			}
			for i, g := range r.Gates {
				c := s.Cases[i]
				if c.Name != g.Name || c.ClassName != s.Name {
					t.Errorf("case %d = %s/%s, want %s/%s", i, c.ClassName, c.Name, s.Name, g.Name)
				}
				want, fail := tt.failed[g.Name]
				switch {
				case fail && (c.Failure == nil || c.Failure.Message != want):
					t.Errorf("gate %s failure = %+v, want message %q", g.Name, c.Failure, want)
				case !fail && c.Failure != nil:
					t.Errorf("gate %s has failure %q, want none", g.Name, c.Failure.Message)
				}
			}
			if tt.errMessage != "" {
				last := s.Cases[len(s.Cases)-1]
				if last.Name != "verdict" || last.Error == nil || last.Error.Message != tt.errMessage || s.Errors != 1 {
					t.Errorf("verdict case = %+v (errors=%d), want error %q", last, s.Errors, tt.errMessage)
				}
			} else if s.Errors != 0 {
				t.Errorf("errors = %d, want 0", s.Errors)
			}
		})
	}
}
