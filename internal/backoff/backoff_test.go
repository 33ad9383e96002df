package backoff

import (
	"context"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"
)

// maxRand returns the largest possible draw, so tests see the top of the range (minus 1ns).
func maxRand(n int64) int64 { return n - 1 }

// minRand returns the smallest draw, so tests see the floor itself.
func minRand(int64) int64 { return 0 }

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

// TestScheduleExact: the n-th delay is in [F(n), 2·F(n)), F(n) = min(Initial·M^n, Max).
func TestScheduleExact(t *testing.T) {
	cfg := Config{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2}
	floors := ms(100, 200, 400, 800, 1000, 1000)
	tops := ms(200, 400, 800, 1600, 2000, 2000)
	lo, hi := New(cfg, minRand), New(cfg, maxRand)
	for i, f := range floors {
		if got := lo.Next(); got != f {
			t.Fatalf("delay %d (least draw) = %v, want the floor %v", i, got, f)
		}
		if got := hi.Next(); got != tops[i]-1 {
			t.Fatalf("delay %d (largest draw) = %v, want %v", i, got, tops[i]-1)
		}
		if got := cfg.Floor(i); got != f {
			t.Fatalf("Floor(%d) = %v, want %v", i, got, f)
		}
		if got := lo.Floor(); got != f {
			t.Fatalf("Backoff.Floor after %d = %v, want %v", i, got, f)
		}
	}
	if got := lo.Attempts(); got != len(floors) {
		t.Fatalf("Attempts() = %d, want %d", got, len(floors))
	}
	lo.Reset()
	if got := lo.Next(); got != 100*time.Millisecond {
		t.Fatalf("after Reset delay = %v, want 100ms", got)
	}
}

// TestDefaultSchedule pins the default: [1s,2s), [3s,6s), [9s,18s), then [10s,20s) forever.
func TestDefaultSchedule(t *testing.T) {
	lo, hi := New(Config{}, minRand), New(Config{}, maxRand)
	floors := []time.Duration{time.Second, 3 * time.Second, 9 * time.Second, 10 * time.Second, 10 * time.Second}
	for i, f := range floors {
		tops := 2 * f
		if a, b := lo.Next(), hi.Next(); a != f || b != tops-1 {
			t.Fatalf("default delay %d in [%v, %v], want [%v, %v)", i, a, b, f, tops)
		}
	}
}

func TestJitterSpreadAboveFloor(t *testing.T) {
	b := New(Config{Initial: time.Second, Max: time.Second, Multiplier: 2}, nil)
	var lo, hi int
	for range 10000 {
		d := b.Next()
		if d < time.Second || d >= 2*time.Second {
			t.Fatalf("delay %v outside [1s, 2s)", d)
		}
		if d < 1250*time.Millisecond {
			lo++
		}
		if d > 1750*time.Millisecond {
			hi++
		}
	}
	// Uniform: each quarter holds ~2500 of 10000 draws.
	if lo < 2000 || hi < 2000 {
		t.Fatalf("draws not spread over [1s,2s): %d below 1.25s, %d above 1.75s", lo, hi)
	}
}

func TestWithFloor(t *testing.T) {
	c := Config{Initial: 100 * time.Millisecond, Max: 700 * time.Millisecond, Multiplier: 3}
	if got := c.WithFloor(50 * time.Millisecond); got != c {
		t.Fatalf("WithFloor below Initial changed the schedule: %+v", got)
	}
	got := c.WithFloor(time.Second)
	if want := (Config{Initial: time.Second, Max: 7 * time.Second, Multiplier: 3}); got != want {
		t.Fatalf("WithFloor(1s) = %+v, want %+v (scaled)", got, want)
	}
	if got := (Config{}).WithFloor(2 * time.Second); got.Initial != 2*time.Second || got.Max != 20*time.Second {
		t.Fatalf("zero.WithFloor(2s) = %+v, want Default scaled to 2s/20s", got)
	}
}

func TestMaxAttempts(t *testing.T) {
	c := Default
	// Attempts at >= 0, 1, 4, 13, 23, 33 s.
	for _, tt := range []struct {
		d    time.Duration
		want int
	}{{time.Millisecond, 1}, {time.Second, 1}, {1001 * time.Millisecond, 2}, {4 * time.Second, 2},
		{5 * time.Second, 3}, {13 * time.Second, 3}, {14 * time.Second, 4}, {34 * time.Second, 6}} {
		if got := c.MaxAttempts(tt.d); got != tt.want {
			t.Errorf("MaxAttempts(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
}

// TestOutageRateFalls simulates, on a virtual clock, a population of loops
// that each act every 1–3s (uniform) and back off with Default from their
// first failed attempt; the bus fails for 60s. Per-second attempt counts:
// the first second of the outage is no busier than the busiest second of
// normal operation; from 10s into the outage the rate averages at most 0.2x
// the baseline (and no 5s window is above 0.25x: the loops that failed
// together still come in waves), and in the last 20s, at the cap, at most
// 0.15x. After the outage 9 in 10 loops are back within 15s, all within
// 2·Max. Each loop draws from its own seeded generator, so the result is
// exact; nothing here depends on the machine.
func TestOutageRateFalls(t *testing.T) {
	const (
		loops   = 20000
		onset   = 30 * time.Second
		outage  = 60 * time.Second
		end     = onset + outage
		horizon = end + 25*time.Second
	)
	bins := make([]int, int(horizon/time.Second)+1)
	var backLate, backTooLate int
	for i := range loops {
		rnd := rand.New(rand.NewPCG(7, uint64(i)))
		b := New(Default, rnd.Int64N)
		interval := func() time.Duration { return time.Second + time.Duration(rnd.Int64N(int64(2*time.Second))) }
		at := interval()
		prev := time.Duration(-1)
		for at < horizon {
			bins[at/time.Second]++
			if prev >= 0 && at-prev < time.Second {
				t.Fatalf("loop %d acted %v after its last attempt, faster than its 1s interval", i, at-prev)
			}
			prev = at
			if at >= onset && at < end {
				at += b.Next()
				continue
			}
			if b.Attempts() > 0 { // first success after the outage
				if at-end > 15*time.Second {
					backLate++
				}
				if at-end >= 2*Default.Max {
					backTooLate++
				}
			}
			b.Reset()
			at += interval()
		}
	}
	var sum, peak int
	for s := 10; s < 30; s++ {
		sum += bins[s]
		peak = max(peak, bins[s])
	}
	baseline := float64(sum) / 20
	t.Logf("baseline %.0f/s (peak %d); outage seconds: %v", baseline, peak, bins[30:90])
	if first := bins[30]; first > peak {
		t.Errorf("first second of the outage: %d attempts, above the busiest normal second (%d)", first, peak)
	}
	rate := func(from, to int) float64 { // outage seconds [from, to)
		var n int
		for _, c := range bins[30+from : 30+to] {
			n += c
		}
		return float64(n) / float64(to-from)
	}
	if r := rate(10, 60); r > 0.2*baseline {
		t.Errorf("outage seconds 10-60: %.0f attempts/s, want <= 0.2 x baseline %.0f", r, baseline)
	}
	for s := 10; s < 60; s += 5 {
		if r := rate(s, s+5); r > 0.25*baseline {
			t.Errorf("outage seconds %d-%d: %.0f attempts/s, want <= 0.25 x baseline %.0f", s, s+5, r, baseline)
		}
	}
	if r := rate(40, 60); r > 0.15*baseline {
		t.Errorf("outage seconds 40-60 (at the cap): %.0f attempts/s, want <= 0.15 x baseline %.0f", r, baseline)
	}
	if backLate > loops/10 || backTooLate > 0 {
		t.Errorf("after the outage %d of %d loops came back later than 15s, %d later than 2·Max", backLate, loops, backTooLate)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"default", Default, true},
		{"zero initial", Config{Max: time.Second, Multiplier: 2}, false},
		{"max below initial", Config{Initial: time.Second, Max: time.Millisecond, Multiplier: 2}, false},
		{"multiplier below 1", Config{Initial: time.Millisecond, Max: time.Second, Multiplier: 0.5}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestWaitStopsOnCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(Config{Initial: time.Hour, Max: time.Hour, Multiplier: 2}, maxRand)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() { _, err := b.Wait(ctx); done <- err }()
		time.Sleep(time.Second)
		cancel()
		err := <-done
		if err != context.Canceled {
			t.Fatalf("Wait() = %v, want context.Canceled", err)
		}
		if el := time.Since(start); el != time.Second {
			t.Fatalf("Wait returned after %v, want 1s (at cancel)", el)
		}
	})
}

func TestWaitSleepsDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(Config{Initial: 3 * time.Second, Max: time.Hour, Multiplier: 2}, maxRand)
		start := time.Now()
		d, err := b.Wait(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el != d || d != 6*time.Second-1 {
			t.Fatalf("waited %v, delay %v, want both 6s-1ns (3s floor + 3s jitter)", el, d)
		}
	})
}
