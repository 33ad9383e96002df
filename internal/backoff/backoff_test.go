package backoff

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// maxRand returns the largest possible draw, so tests see the bound itself (minus 1ns).
func maxRand(n int64) int64 { return n - 1 }

func TestNextGrowsAndCaps(t *testing.T) {
	b := New(Config{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2}, maxRand)
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		got := b.Next() + 1
		if got != w*time.Millisecond {
			t.Fatalf("delay %d = %v, want %v", i, got, w*time.Millisecond)
		}
	}
	if got := b.Attempts(); got != len(want) {
		t.Fatalf("Attempts() = %d, want %d", got, len(want))
	}
	b.Reset()
	if got := b.Next() + 1; got != 100*time.Millisecond {
		t.Fatalf("after Reset delay = %v, want 100ms", got)
	}
}

func TestFullJitterSpread(t *testing.T) {
	b := New(Config{Initial: time.Second, Max: time.Second, Multiplier: 2}, nil)
	var lo, hi int
	for range 10000 {
		d := b.Next()
		if d < 0 || d >= time.Second {
			t.Fatalf("delay %v outside [0, 1s)", d)
		}
		if d < 250*time.Millisecond {
			lo++
		}
		if d > 750*time.Millisecond {
			hi++
		}
	}
	// Uniform: each quarter holds ~2500 of 10000 draws.
	if lo < 2000 || hi < 2000 {
		t.Fatalf("draws not spread over [0,1s): %d below 250ms, %d above 750ms", lo, hi)
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
		if el := time.Since(start); el != d || d != 3*time.Second-1 {
			t.Fatalf("waited %v, delay %v, want both 3s-1ns", el, d)
		}
	})
}
