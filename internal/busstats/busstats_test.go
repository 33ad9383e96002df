package busstats_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/busstats"
	"github.com/eventswarm/eventswarm/internal/target"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]float64{"42": 42, "1.5": 1.5, "1234 seconds": 1234, "12K": 12 << 10, " 7 ": 7, "3M": 3 << 20} {
		if v, ok := busstats.ParseSYS([]byte(in)); !ok || v != want {
			t.Errorf("ParseSYS(%q) = %v, %v; want %v", in, v, ok, want)
		}
	}
	for _, in := range []string{"", "mosquitto version 2.0.18", "NaN", "1e999", "1.3.6", strings.Repeat("9", 100)} {
		if v, ok := busstats.ParseSYS([]byte(in)); ok {
			t.Errorf("ParseSYS(%q) = %v, want not a number", in, v)
		}
	}
	got := busstats.ParseStubStatus([]byte("total published messages: 5\nshared memory used: 12K\nnchan version: 1.3.6\ngarbage\n: 3\n"))
	if len(got) != 2 || got["total published messages"] != 5 || got["shared memory used"] != 12<<10 {
		t.Errorf("ParseStubStatus = %v", got)
	}
	var many strings.Builder
	for i := 0; i < 1000; i++ {
		many.WriteString("k" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + ": 1\n")
	}
	if n := len(busstats.ParseStubStatus([]byte(many.String()))); n > busstats.MaxKeys {
		t.Errorf("%d keys kept, want at most %d", n, busstats.MaxKeys)
	}
}

func FuzzParseStubStatus(f *testing.F) {
	f.Add([]byte("total published messages: 5\nshared memory used: 12K\n"))
	f.Add([]byte("a: 1e308\nb: -0\nc: 0x10\n"))
	f.Fuzz(func(t *testing.T, page []byte) {
		m := busstats.ParseStubStatus(page)
		if len(m) > busstats.MaxKeys {
			t.Fatalf("%d keys", len(m))
		}
		for k, v := range m {
			if v != v || len(k) > busstats.MaxValue {
				t.Fatalf("%q: %v", k, v)
			}
		}
		_, _ = busstats.ParseSYS(page)
	})
}

// Real buses (bash .ci/services start; eval "$(bash .ci/services env)").

func TestMosquittoSYS(t *testing.T) {
	addr := os.Getenv("EVENTSWARM_MOSQUITTO")
	if addr == "" {
		t.Skip("set EVENTSWARM_MOSQUITTO after `bash .ci/services start` to sample Mosquitto's $SYS")
	}
	tgt, err := target.Open(target.Config{URL: "mqtt://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var live busstats.Live
	s := busstats.SampleMQTT(ctx, tgt.Dialer(), "eventswarm-busstats-test", 500*time.Millisecond, &live)
	if src, v := live.Latest(); src != busstats.SourceMosquitto || len(v) == 0 {
		t.Errorf("live: %q %v, want the latest sample", src, v)
	}
	if s.Error != "" || len(s.Samples) == 0 || s.Source != busstats.SourceMosquitto {
		t.Fatalf("series %+v: want samples", s)
	}
	// Mosquitto publishes $SYS every sys_interval (10 s) and when a value
	// changes: which topics a 3 s sample holds varies; some must be there.
	n := 0
	for k := range s.Latest() {
		if strings.HasPrefix(k, "$SYS/broker/") {
			n++
		}
	}
	if n == 0 {
		t.Errorf("no $SYS/broker/ value in %v", s.Latest())
	}
	if s.DroppedCount() != 0 {
		t.Errorf("dropped %v, want none", *s.Dropped)
	}
}

func TestNchanStubStatus(t *testing.T) {
	base := os.Getenv("EVENTSWARM_NCHAN")
	if base == "" {
		t.Skip("set EVENTSWARM_NCHAN after `bash .ci/services start` to sample nchan_stub_status")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c := &http.Client{Timeout: 5 * time.Second}
	s := busstats.SampleHTTP(ctx, c, strings.TrimSuffix(base, "/")+"/nchan_stub_status", 300*time.Millisecond, nil)
	if s.Error != "" || len(s.Samples) < 2 || s.Source != busstats.SourceNchan {
		t.Fatalf("series %+v: want samples", s)
	}
	if _, ok := s.Latest()["total published messages"]; !ok {
		t.Errorf("no 'total published messages' in %v", s.Latest())
	}
	// A location that is not there: one clear error, no samples.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	s = busstats.SampleHTTP(ctx2, c, strings.TrimSuffix(base, "/")+"/no_such_status", time.Second, nil)
	if len(s.Samples) != 0 || !strings.Contains(s.Error, "404") {
		t.Errorf("missing page: %+v, want a 404 error", s)
	}
}
