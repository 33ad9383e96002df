package report

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eventswarm/eventswarm/internal/verify"
)

// htmlDoc tokenizes page leniently (HTML mode of encoding/xml) and returns
// the text of each element with an id, and the tables' rows as cell texts.
type htmlDoc struct {
	byID map[string]string
	rows map[string][][]string // table id -> rows of cell texts
	text string                // all character data
	tags map[string]int        // element name -> count
}

func parseHTML(t *testing.T, page []byte) htmlDoc {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(page))
	d.Strict = false
	d.AutoClose = xml.HTMLAutoClose
	d.Entity = xml.HTMLEntity
	doc := htmlDoc{byID: map[string]string{}, rows: map[string][][]string{}, tags: map[string]int{}}
	var (
		ids    []string // open elements' ids ("" when none)
		table  string
		row    []string
		inCell bool
		all    strings.Builder
	)
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("page does not parse: %v\n%s", err, page)
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			doc.tags[tk.Name.Local]++
			id := ""
			for _, a := range tk.Attr {
				if a.Name.Local == "id" {
					id = a.Value
				}
			}
			ids = append(ids, id)
			switch tk.Name.Local {
			case "table":
				table = id
			case "tr":
				row = nil
			case "td", "th":
				inCell = true
				row = append(row, "")
			}
		case xml.EndElement:
			if len(ids) > 0 {
				ids = ids[:len(ids)-1]
			}
			switch tk.Name.Local {
			case "td", "th":
				inCell = false
			case "tr":
				doc.rows[table] = append(doc.rows[table], row)
			case "table":
				table = ""
			}
		case xml.CharData:
			s := string(tk)
			all.WriteString(s)
			for _, id := range ids {
				if id != "" {
					doc.byID[id] += s
				}
			}
			if inCell {
				row[len(row)-1] += s
			}
		}
	}
	doc.text = all.String()
	return doc
}

func (d htmlDoc) hasRow(table string, cells ...string) bool {
	for _, r := range d.rows[table] {
		if len(r) < len(cells) {
			continue
		}
		ok := true
		for i, c := range cells {
			if strings.TrimSpace(r[i]) != c {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func renderHTML(t *testing.T, title string, r verify.Result) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := HTML(&buf, title, r); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestHTMLFailing(t *testing.T) {
	r := sampleResult(failing)
	r.Windows[0].Counts = verify.Counts{Expected: 600, OnTime: 597}
	r.Windows[0].Latency = verify.Latency{Count: 597, P99: 15.2}
	r.Windows[1].Counts = verify.Counts{Expected: 400, OnTime: 393, Lost: 3}
	r.Windows[1].Latency = verify.Latency{Count: 397, P99: 1500}
	page := renderHTML(t, "probe mqtt://broker", r)
	d := parseHTML(t, page)

	if got := strings.TrimSpace(d.byID["verdict"]); got != "FAIL" {
		t.Errorf("verdict badge %q, want FAIL", got)
	}
	if got := strings.TrimSpace(d.byID["reason"]); got != "gates failed: lost" {
		t.Errorf("reason %q", got)
	}
	for _, g := range [][]string{
		{"latency", ">= 95.00%", "99.00%", "PASS"},
		{"lost", "<= 0", "3", "FAIL"},
		{"duplicates", "<= 0", "0", "PASS"},
		{"publish_availability", ">= 99.90%", "100.00%", "PASS"},
		{"hard_failures", "<= 0", "0", "PASS"},
	} {
		if !d.hasRow("gates", g...) {
			t.Errorf("no gate row %q in %q", g, d.rows["gates"])
		}
	}
	for _, c := range [][]string{
		{"expected", "1000", ""},
		{"on time", "990", "99.00%"},
		{"lost during disconnect", "2", "0.20%"},
		{"foreign (other runs)", "4", ""},
		{"publish ok", "500", "100.00%"},
	} {
		if !d.hasRow("counts", c...) {
			t.Errorf("no counts row %q", c)
		}
	}
	for _, l := range [][]string{
		{"delivered", "997", "3.25", "12.50", "1500.0", "14999"},
		{"late", "1", "16000", "17000", "17100", "17200"},
	} {
		if !d.hasRow("latency", l...) {
			t.Errorf("no latency row %q in %q", l, d.rows["latency"])
		}
	}
	for _, w := range [][]string{
		{"0", "0s – 1m", "600", "99.50%", "0", "0", "15.20", "PASS"},
		{"1", "1m – 2m", "400", "98.25%", "3", "0", "1500.0", "FAIL", "gates failed: lost"},
	} {
		if !d.hasRow("windows", w...) {
			t.Errorf("no windows row %q in %q", w, d.rows["windows"])
		}
	}
	// Charts over the windows: on time (a bar a window), latency (p50, p95,
	// p99 lines), rates (two lines) and lost/duplicates (one bar: window 1's
	// 3 lost).
	if d.tags["svg"] != 4 || d.tags["rect"] != 3 || d.tags["polyline"] != 5 {
		t.Errorf("charts: svg %d rect %d polyline %d, want 4, 3, 5", d.tags["svg"], d.tags["rect"], d.tags["polyline"])
	}
	// Self-contained: no script, no external assets.
	for _, bad := range []string{"script", "link", "img", "iframe"} {
		if d.tags[bad] > 0 {
			t.Errorf("page has <%s>", bad)
		}
	}
	if bytes.Contains(page, []byte("http://")) && !bytes.Contains(page, []byte(`xmlns="http://www.w3.org/2000/svg"`)) {
		t.Errorf("page references an external URL")
	}
}

// Every row label of the console counts table is in the page's counts table.
func TestHTMLCountsMatchTable(t *testing.T) {
	r := sampleResult(failing)
	var con bytes.Buffer
	if err := Table(&con, r); err != nil {
		t.Fatal(err)
	}
	d := parseHTML(t, renderHTML(t, "x", r))
	rows := d.rows["counts"][1:] // skip the header
	for _, row := range rows {
		if !rowRe(row...).Match(con.Bytes()) {
			t.Errorf("HTML counts row %q is not a console row", row)
		}
	}
	if n := strings.Count(con.String(), "\n|"); n < len(rows) {
		t.Errorf("console has fewer rows (%d) than the HTML counts (%d)", n, len(rows))
	}
}

func TestHTMLEscapesHostileInput(t *testing.T) {
	const evil = `<script>alert(1)</script>`
	r := sampleResult(failing)
	r.Verdict = verify.Verdict(`fail"><script>alert(2)</script>`)
	r.Reason = evil
	r.Gates = append(r.Gates, verify.Gate{Name: evil, Comparison: "<=", Pass: true})
	r.Windows[1].Reason = evil
	title := `</title>` + evil
	page := renderHTML(t, title, r)
	if bytes.Contains(bytes.ToLower(page), []byte("<script")) {
		t.Fatalf("unescaped <script in page:\n%s", page)
	}
	d := parseHTML(t, page)
	if d.tags["script"] != 0 {
		t.Errorf("page has a <script> element")
	}
	// An unknown verdict is shown as inconclusive, never as its raw string.
	if got := strings.TrimSpace(d.byID["verdict"]); got != "INCONCLUSIVE" {
		t.Errorf("verdict %q", got)
	}
	// The text survives, escaped.
	if got := strings.TrimSpace(d.byID["reason"]); got != evil {
		t.Errorf("reason %q, want %q", got, evil)
	}
	if !d.hasRow("gates", evil, "<= 0", "0", "PASS") {
		t.Errorf("hostile gate name not shown as text: %q", d.rows["gates"])
	}
}

func TestHTMLZero(t *testing.T) {
	for name, r := range map[string]verify.Result{
		"empty": {},
		"zero windows": {Verdict: verify.Inconclusive, Reason: "no message was published",
			Windows: []verify.Window{{Index: 0, EndMS: 1000}, {Index: 1, StartMS: 1000, EndMS: 2000}}},
	} {
		t.Run(name, func(t *testing.T) {
			page := renderHTML(t, name, r)
			if bytes.Contains(page, []byte("NaN")) || bytes.Contains(page, []byte("Inf")) {
				t.Errorf("NaN/Inf in page:\n%s", page)
			}
			d := parseHTML(t, page)
			if got := strings.TrimSpace(d.byID["verdict"]); got != "INCONCLUSIVE" {
				t.Errorf("verdict %q", got)
			}
			if !d.hasRow("counts", "on time", "0", "-") || !d.hasRow("latency", "delivered", "0", "-", "-", "-", "-") {
				t.Errorf("zero rows: %q %q", d.rows["counts"], d.rows["latency"])
			}
			if len(r.Windows) == 0 {
				if d.tags["svg"] != 0 || len(d.rows["windows"]) != 0 {
					t.Errorf("windows section without windows")
				}
				return
			}
			// The four window charts; no latency lines (nothing delivered).
			if d.tags["svg"] != 4 || d.tags["polyline"] != 2 || !strings.Contains(d.text, "no deliveries in any window") {
				t.Errorf("charts: svg %d polyline %d", d.tags["svg"], d.tags["polyline"])
			}
			if !d.hasRow("windows", "1", "1s – 2s", "0", "-", "0", "0", "-", "INCONCLUSIVE") {
				t.Errorf("windows rows %q", d.rows["windows"])
			}
		})
	}
}

func TestWriteHTMLAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "report.html")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := sampleResult(passing)
	if err := WriteHTML(path, "run", r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, renderHTML(t, "run", r)) {
		t.Errorf("file differs from HTML()")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("files left in dir: %q", names)
	}
	// A failed write leaves neither the file nor a temp file.
	missing := filepath.Join(dir, "nodir", "report.html")
	if err := WriteHTML(missing, "run", r); err == nil {
		t.Errorf("write into a missing dir: no error")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("failed write left files: %d entries", len(ents))
	}
}

func TestWriteHTMLStdout(t *testing.T) {
	var buf bytes.Buffer
	old := stdout
	stdout = &buf
	defer func() { stdout = old }()
	if err := WriteHTML("-", "run", sampleResult(passing)); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(parseHTML(t, buf.Bytes()).byID["verdict"]); got != "PASS" {
		t.Errorf("verdict %q", got)
	}
}

// TestOnTimeChartPartialWindow: a last window the end of publishing cut
// short (4 expected against a median of 100) with one slow message is a
// 75% bar; it is drawn as partial and said so, the full windows are not.
func TestOnTimeChartPartialWindow(t *testing.T) {
	w := func(i int, expected, onTime uint64) verify.Window {
		v := verify.Pass
		if onTime < expected {
			v = verify.Fail
		}
		return verify.Window{Index: i, StartMS: int64(i) * 10000, EndMS: int64(i+1) * 10000, Verdict: v,
			Counts: verify.Counts{Expected: expected, OnTime: onTime}}
	}
	c := onTimeChart("t", []verify.Window{w(0, 100, 100), w(1, 120, 119), w(2, 90, 90), w(3, 4, 3)}, chartBounds{Within: 0.95})
	if len(c.Rects) != 4 {
		t.Fatalf("%d bars, want 4", len(c.Rects))
	}
	for i, r := range c.Rects {
		partial := strings.Contains(r.Class, "partial")
		if partial != (i == 3) {
			t.Errorf("bar %d class %q: partial %v, want %v", i, r.Class, partial, i == 3)
		}
		if partial != strings.Contains(r.Tip, "partial window") {
			t.Errorf("bar %d tip %q does not match its class %q", i, r.Tip, r.Class)
		}
	}
	if l := c.Legend[len(c.Legend)-1]; l.Class != "bar partial" {
		t.Errorf("legend %+v: want a partial entry last", c.Legend)
	}
	// Two windows: no median to judge by, nothing is partial.
	c = onTimeChart("t", []verify.Window{w(0, 100, 100), w(1, 4, 3)}, chartBounds{})
	for i, r := range c.Rects {
		if strings.Contains(r.Class, "partial") {
			t.Errorf("of two windows, bar %d is partial: %q", i, r.Class)
		}
	}
}
