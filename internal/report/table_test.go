package report

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/stats"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// sampleResult evaluates counts with the default gates, as a ledger would.
func sampleResult(c verify.Counts) verify.Result {
	v, reason, gates := verify.DefaultGates.Evaluate(c)
	return verify.Result{
		Verdict: v, Reason: reason, Counts: c, Gates: gates,
		LatencyMS: verify.Latency{Count: c.OnTime + c.Slow, P50: 3.25, P95: 12.5, P99: 1500, Max: 14999},
		LateMS:    verify.Latency{Count: c.Late, P50: 16000, P95: 17000, P99: 17100, Max: 17200},
		Windows: []verify.Window{
			{Index: 0, StartMS: 0, EndMS: 60000, Verdict: verify.Pass},
			{Index: 1, StartMS: 60000, EndMS: 120000, Verdict: verify.Fail, Reason: "gates failed: lost"},
		},
	}
}

var failing = verify.Counts{
	Expected: 1000, OnTime: 990, Slow: 7, Lost: 3, LostWhileConnected: 1, LostDuringDisconnect: 2,
	Late: 1, PublishAttempted: 500, Covered: 500, PublishOK: 500, Foreign: 4, Retained: 2,
}

var passing = verify.Counts{Expected: 1000, OnTime: 1000, PublishAttempted: 500, Covered: 500, PublishOK: 500}

// rowRe matches a table row whose cells are the given strings, in order.
func rowRe(cells ...string) *regexp.Regexp {
	q := make([]string, len(cells))
	for i, c := range cells {
		q[i] = regexp.QuoteMeta(c)
	}
	return regexp.MustCompile(`(?m)^\|\s*` + strings.Join(q, `\s*\|\s*`) + `\s*\|$`)
}

func TestTable(t *testing.T) {
	tests := []struct {
		name    string
		r       verify.Result
		rows    [][]string
		absent  []string // rows left out (breakdowns that are 0)
		verdict string
	}{
		{
			name: "fail",
			r:    sampleResult(failing),
			rows: [][]string{
				{"expected", "1000", ""},
				{"on time", "990", "99.00%"},
				{"lost", "3", "0.30%"},
				{"lost while connected", "1", "0.10%"},
				{"lost during disconnect", "2", "0.20%"},
				{"foreign (other runs)", "4", ""},
				{"publish ok", "500", "100.00%"},
				{"delivered", "997", "3.25", "12.50", "1500.0", "14999"},
				{"late", "1", "16000", "17000", "17100", "17200"},
				{"latency", ">= 95.00%", "99.00%", "PASS"},
				{"lost", "<= 0", "3", "FAIL"},
				{"duplicates", "<= 0", "0", "PASS"},
				{"publish_availability", ">= 99.90%", "100.00%", "PASS"},
				{"hard_failures", "<= 0", "0", "PASS"},
			},
			verdict: "verdict: FAIL (gates failed: lost)",
		},
		{
			name:    "pass",
			r:       sampleResult(passing),
			absent:  []string{"duplicates steady", "lost while connected", "pending", "foreign (other runs)", "retained (ignored)"},
			rows:    [][]string{{"on time", "1000", "100.00%"}, {"lost", "<= 0", "0", "PASS"}},
			verdict: "verdict: PASS",
		},
		{
			name:    "no data",
			r:       sampleResult(verify.Counts{}),
			rows:    [][]string{{"on time", "0", "-"}, {"latency", ">= 95.00%", "0.00%", "FAIL"}},
			verdict: "verdict: INCONCLUSIVE (no message was published)",
		},
		{
			name: "close to threshold",
			r:    sampleResult(verify.Counts{Expected: 100000, OnTime: 100000, PublishAttempted: 100000, Covered: 100000, PublishOK: 99899}),
			rows: [][]string{{"publish_availability", ">= 99.9000%", "99.8990%", "FAIL"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Table(&buf, tt.r); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			for _, name := range tt.absent {
				if regexp.MustCompile(`(?m)^\|\s*` + regexp.QuoteMeta(name) + `\s*\|`).MatchString(out) {
					t.Errorf("row %q (0) shown in\n%s", name, out)
				}
			}
			for _, row := range tt.rows {
				if !rowRe(row...).MatchString(out) {
					t.Errorf("no row %q in\n%s", row, out)
				}
			}
			lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
			if tt.verdict != "" && lines[len(lines)-1] != tt.verdict {
				t.Errorf("last line = %q, want %q", lines[len(lines)-1], tt.verdict)
			}
			if !strings.Contains(out, "windows: 2 (1 pass, 1 fail, 0 inconclusive)") {
				t.Errorf("no windows summary in\n%s", out)
			}
		})
	}
}

func TestLiveAndWindowLines(t *testing.T) {
	r := sampleResult(failing)
	r.Counts.Pending = 42
	// Before anything is final, the line already shows what has arrived.
	var l Live
	early := verify.Result{Counts: verify.Counts{PublishAttempted: 50, PublishOK: 50, Covered: 50, Pending: 100,
		PendingArrived: 80, PendingOnTime: 60}}
	got := l.Line(5*time.Second, "publishing", 55*time.Second, early)
	want := "[5s publishing, 55s left] sent 50/50 (10.0/s) received 80 (16.0/s) on-time so far 75.00% | " +
		"final: expected 0 on-time - lost 0 dups 0 pending 100 p99 - coverage 100.00%"
	if got != want {
		t.Errorf("first line = %q, want %q", got, want)
	}
	// Rates are over the interval; received counts final and provisional arrivals.
	got = l.Line(65*time.Second+300*time.Millisecond, "", -1, r)
	want = "[1m5s] sent 500/500 (7.5/s) received 997 (15.2/s) on-time so far 99.30% | " +
		"final: expected 1000 on-time 99.00% lost 3 dups 0 pending 42 p99 1500.0ms coverage 100.00%"
	if got != want {
		t.Errorf("second line = %q, want %q", got, want)
	}
	var empty Live
	if got := empty.Line(0, "", -1, verify.Result{}); !strings.Contains(got, "(-) received 0 (-) on-time so far - ") {
		t.Errorf("empty line = %q", got)
	}
	w := verify.Window{Index: 3, StartMS: 180000, EndMS: 240000, Verdict: verify.Fail, Reason: "gates failed: lost",
		Counts: verify.Counts{Expected: 600, OnTime: 597, Lost: 3}, Latency: verify.Latency{Count: 597, P99: 15.2}}
	got = WindowLine(w)
	want = "window 3 [3m0s..4m0s] FAIL expected 600 on-time 99.50% lost 3 dups 0 p99 15.20ms (gates failed: lost)"
	if got != want {
		t.Errorf("WindowLine = %q, want %q", got, want)
	}
}

func TestOpsTable(t *testing.T) {
	s := stats.New([]string{"connect", "publish", "poll.408"}, 2)
	sh := s.Shard(0)
	for range 90 {
		sh.Record(1, 5*time.Millisecond, bus.ClassNone)
	}
	for range 6 {
		sh.Record(1, time.Second, bus.ClassTimeout)
	}
	for range 4 {
		sh.Record(1, time.Second, bus.Class5xx)
	}
	sh.Record(0, time.Millisecond, bus.ClassRefused)
	snap := s.SnapshotAt(s.Start().Add(10 * time.Second))
	var buf bytes.Buffer
	if err := OpsTable(&buf, snap); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, row := range [][]string{
		{"publish", "100", "10", "10.00%", "10.0", "5.00", "5.00", "5.00", "5.00", "timeout:6 5xx:4"},
		{"connect", "1", "1", "100.00%", "0.1", "-", "-", "-", "-", "refused:1"},
		{"poll.408", "0", "0", "-", "0.0", "-", "-", "-", "-", ""},
		{"total", "101", "11", "10.89%", "10.1", "", "", "", "", ""},
	} {
		if !rowRe(row...).MatchString(out) {
			t.Errorf("no row %q in\n%s", row, out)
		}
	}
}

func TestUsersLine(t *testing.T) {
	got := UsersLine(map[string]int{"proctor": 100, "learner": 900}, map[string]int{"free": 20, "active": 900})
	want := "users 1000 (learner=900 proctor=100) ids active=900 free=20"
	if got != want {
		t.Errorf("UsersLine = %q, want %q", got, want)
	}
	if got := UsersLine(nil, nil); got != "users 0 ()" {
		t.Errorf("UsersLine(nil) = %q", got)
	}
}
