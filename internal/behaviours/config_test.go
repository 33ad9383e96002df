package behaviours

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/verify"
)

func TestParseWeights(t *testing.T) {
	tests := []struct {
		in      string
		want    Weights
		wantErr string
	}{
		{in: "learner=20,proctor=1", want: Weights{20, 1}},
		{in: " proctor = 2 , learner=3 ", want: Weights{3, 2}},
		{in: "learner=1", want: Weights{1, 0}},
		{in: "", wantErr: "empty"},
		{in: "learner", wantErr: "not kind=weight"},
		{in: "learner=x", wantErr: "integer"},
		{in: "learner=-1", wantErr: "integer >= 0"},
		{in: "teacher=1", wantErr: "unknown kind"},
		{in: "learner=1,learner=2", wantErr: "twice"},
		{in: "learner=0,proctor=0", wantErr: "at least one"},
		{in: "learner=99999999999999999999", wantErr: "integer"},
		{in: "learner=2000000", wantErr: "<="},
	}
	for _, tt := range tests {
		got, err := ParseWeights(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseWeights(%q) error = %v; want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseWeights(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestWeightCycle(t *testing.T) {
	tests := []struct {
		w    Weights
		want string // L/P per position
	}{
		// Smooth spread, rotated so that a proctor comes first.
		{Weights{20, 1}, "PLLLLLLLLLLLLLLLLLLLL"},
		{Weights{1, 1}, "PL"},
		{Weights{2, 1}, "PLL"},
		{Weights{0, 3}, "PPP"},
		{Weights{3, 0}, "LLL"},
	}
	for _, tt := range tests {
		var b strings.Builder
		for _, k := range tt.w.cycle() {
			b.WriteByte("LP"[k])
		}
		if got := b.String(); got != tt.want {
			t.Errorf("%v.cycle() = %s; want %s", tt.w, got, tt.want)
		}
	}
	// Every prefix is within one user of the exact share.
	w := Weights{7, 3}
	c := w.cycle()
	var n [numKinds]int
	for i, k := range c {
		n[k]++
		for kk := range numKinds {
			exact := float64(i+1) * float64(w[kk]) / float64(w.total())
			if d := float64(n[kk]) - exact; d > 1 || d < -1 {
				t.Fatalf("after %d users %s has %d, exact share %.2f", i+1, kk, n[kk], exact)
			}
		}
	}
}

func TestParseStages(t *testing.T) {
	got, err := ParseStages("30s:100,2m:1000,30s:0")
	want := []Stage{{30 * time.Second, 100}, {2 * time.Minute, 1000}, {30 * time.Second, 0}}
	if err != nil || len(got) != len(want) {
		t.Fatalf("ParseStages = %v, %v; want %v", got, err, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("stage %d = %v; want %v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"30s", "x:10", "30s:x", "0s:10", "-1s:10", "10s:-1", "10s:0,5s:0", "10s:5,,"} {
		if _, err := ParseStages(bad); err == nil {
			t.Errorf("ParseStages(%q) = nil error; want one", bad)
		}
	}
	if s, err := ParseStages(""); err != nil || s != nil {
		t.Errorf(`ParseStages("") = %v, %v; want nil, nil`, s, err)
	}
}

func TestStagesTarget(t *testing.T) {
	st := []Stage{{10 * time.Second, 100}, {10 * time.Second, 100}, {10 * time.Second, 0}}
	for _, tt := range []struct {
		at   time.Duration
		want int
	}{{0, 0}, {5 * time.Second, 50}, {10 * time.Second, 100}, {15 * time.Second, 100}, {25 * time.Second, 50}, {30 * time.Second, 0}, {time.Hour, 0}} {
		if got := stagesTarget(st, tt.at); got != tt.want {
			t.Errorf("stagesTarget(%v) = %d; want %d", tt.at, got, tt.want)
		}
	}
}

func TestParseRange(t *testing.T) {
	tests := []struct {
		in   string
		want Range
		ok   bool
	}{
		{"1s-3s", Range{time.Second, 3 * time.Second}, true},
		{"250ms", Range{250 * time.Millisecond, 250 * time.Millisecond}, true},
		{" 1s - 2s ", Range{time.Second, 2 * time.Second}, true},
		{"3s-1s", Range{}, false},
		{"0s", Range{}, false},
		{"x", Range{}, false},
		{"1s-x", Range{}, false},
		{"-1s", Range{}, false},
	}
	for _, tt := range tests {
		got, err := ParseRange(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseRange(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	r := Range{time.Second, 2 * time.Second}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		if d := r.pick(rnd); d < r.Min || d > r.Max {
			t.Fatalf("pick = %v, outside %v", d, r)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Users: 10}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr []string
	}{
		{"defaults", func(*Config) {}, nil},
		{"zero users", func(c *Config) { c.Users = 0 }, []string{"--users must be > 0"}},
		{"negative users", func(c *Config) { c.Users = -5 }, []string{"--users must be > 0"}},
		{"negative duration", func(c *Config) { c.Duration = -time.Second }, []string{"--duration must be > 0"}},
		{"negative spawn rate", func(c *Config) { c.SpawnRate = -1 }, []string{"--spawn-rate"}},
		{"bad weights", func(c *Config) { c.Weights = Weights{-1, 1} }, []string{"weight of learner"}},
		{"stages and duration", func(c *Config) { c.Stages = []Stage{{time.Second, 5}}; c.Duration = time.Second }, []string{"not both"}},
		{"users below stages", func(c *Config) { c.Stages = []Stage{{time.Second, 50}} }, []string{"below the stages' peak"}},
		{"stages only", func(c *Config) { c.Users = 0; c.Stages = []Stage{{time.Second, 50}} }, nil},
		{"bad stage", func(c *Config) { c.Stages = []Stage{{0, 5}} }, []string{"stage 1: duration"}},
		{"long-poll 256 learners", func(c *Config) { c.LongPoll = true; c.LearnersPerProctor = 256 }, []string{"255"}},
		{"mqtt 256 learners", func(c *Config) { c.LearnersPerProctor = 256 }, nil},
		{"small payload", func(c *Config) { c.PayloadSize = 100 }, []string{"--payload-size"}},
		{"bad interval", func(c *Config) { c.LearnerInterval = Range{2 * time.Second, time.Second} }, []string{"--learner-interval"}},
		{"negative drain", func(c *Config) { c.Drain = -5 * time.Second }, []string{"--drain"}},
		{"no drain", func(c *Config) { c.Drain = NoDrain }, nil},
		{"bad shard", func(c *Config) { c.Shard, c.Shards = 3, 2 }, []string{"--shard 3 of 2"}},
		{"several at once", func(c *Config) { c.Users = 0; c.Duration = -1; c.Items = -1 }, []string{"--users", "--duration", "--items"}},
	}
	for _, tt := range tests {
		c := ok
		tt.mod(&c)
		err := c.Validate()
		if len(tt.wantErr) == 0 {
			if err != nil {
				t.Errorf("%s: Validate() = %v; want nil", tt.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: Validate() = nil; want errors %q", tt.name, tt.wantErr)
			continue
		}
		for _, w := range tt.wantErr {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: Validate() = %v; want it to contain %q", tt.name, err, w)
			}
		}
	}
}

func TestPayloadKind(t *testing.T) {
	buf := make([]byte, DefaultPayloadSize)
	if err := encodePayload(buf, &verify.Stamp{Seq: 1}, kindFinished, "abc-12.x_y"); err != nil {
		t.Fatal(err)
	}
	kind, id := payloadKind(buf)
	if kind != kindFinished || string(id) != "abc-12.x_y" {
		t.Errorf("payloadKind = %q, %q; want 'F', abc-12.x_y", kind, id)
	}
	for i, c := range buf {
		if c < 0x20 || c > 0x7e {
			t.Fatalf("payload byte %d = %#x is not printable", i, c)
		}
	}
	if k, id := payloadKind(buf[:10]); k != 0 || id != nil {
		t.Errorf("payloadKind(short) = %q, %q", k, id)
	}
}
