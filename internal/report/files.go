package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/eventswarm/eventswarm/internal/verify"
)

// stdout is where "-" writes go; tests replace it.
var stdout io.Writer = os.Stdout

// WriteJSON writes v as indented JSON to path, atomically: it writes a temp
// file in the same directory, syncs it and renames it over path, so a crash
// never leaves half a file (and readers see the old or the new file). The
// file mode is 0644. path "-" means stdout.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("report: json: %w", err)
	}
	return writeFile(path, append(b, '\n'))
}

// writeFile writes b to path atomically ("-": stdout).
func writeFile(path string, b []byte) (err error) {
	if path == "-" {
		if _, err := stdout.Write(b); err != nil {
			return fmt.Errorf("report: write stdout: %w", err)
		}
		return nil
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(b); err != nil {
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	return nil
}

// JUnit XML, the shape Jenkins (junit plugin) and the GitHub test reporters
// read: <testsuites><testsuite><properties/><testcase>…</testsuite></testsuites>.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	ClassName string        `xml:"classname,attr"`
	Name      string        `xml:"name,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes r as JUnit XML to path (atomically, like WriteJSON; "-"
// is stdout): one <testsuite name=suite> with one <testcase classname=suite
// name=gate> per gate, a <failure message="observed X, want >= T"> on each
// failed gate, and the main counts as <properties>.
//
// An inconclusive verdict adds a testcase "verdict" with
// <error message="inconclusive: reason">: CI must never read "no data" as a
// pass, and an error (not <skipped>) fails the build in Jenkins and in the
// GitHub reporters. The suite's time is the span of r's windows (0 without
// windows).
func WriteJUnit(path, suite string, r verify.Result) error {
	b, err := JUnit(suite, r)
	if err != nil {
		return err
	}
	return writeFile(path, b)
}

// JUnit returns the XML document WriteJUnit writes.
func JUnit(suite string, r verify.Result) ([]byte, error) {
	secs := 0.0
	if n := len(r.Windows); n > 0 {
		secs = float64(r.Windows[n-1].EndMS-r.Windows[0].StartMS) / 1000
	}
	tm := strconv.FormatFloat(secs, 'f', 3, 64)
	s := junitSuite{Name: suite, Time: tm}
	for _, g := range r.Gates {
		c := junitCase{ClassName: suite, Name: g.Name, Time: "0"}
		th, obs := gateValues(g)
		if !g.Pass {
			msg := "observed " + obs + ", want " + g.Comparison + " " + th
			c.Failure = &junitProblem{Message: msg, Type: "slo", Text: msg + "\n" + VerdictLine(r)}
			s.Failures++
		}
		s.Cases = append(s.Cases, c)
	}
	if r.Verdict == verify.Inconclusive || r.Verdict == "" {
		msg := "inconclusive: " + r.Reason
		s.Cases = append(s.Cases, junitCase{ClassName: suite, Name: "verdict", Time: "0",
			Error: &junitProblem{Message: msg, Type: "inconclusive", Text: msg}})
		s.Errors++
	}
	s.Tests = len(s.Cases)
	c := r.Counts
	for _, p := range []struct {
		k string
		v uint64
	}{
		{"expected", c.Expected}, {"on_time", c.OnTime}, {"slow", c.Slow}, {"lost", c.Lost},
		{"late", c.Late}, {"duplicates", c.Duplicates}, {"out_of_order", c.OutOfOrder},
		{"unexpected", c.Unexpected}, {"corrupt", c.Corrupt}, {"pending", c.Pending},
		{"publish_attempted", c.PublishAttempted}, {"publish_ok", c.PublishOK},
	} {
		s.Properties = append(s.Properties, junitProperty{Name: p.k, Value: u(p.v)})
	}
	s.Properties = append(s.Properties, junitProperty{Name: "verdict", Value: string(r.Verdict)})
	doc := junitSuites{Name: suite, Tests: s.Tests, Failures: s.Failures, Errors: s.Errors, Time: tm, Suites: []junitSuite{s}}

	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("report: junit: %w", err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}
