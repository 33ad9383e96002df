// Package backoff computes retry delays: exponential growth from Initial, capped
// at Max, with full jitter (a uniform draw in [0, cap)), reset after a success.
// Wait sleeps for the next delay and returns early when the context ends, so a
// stopping run never waits out a retry.
//
// Full jitter spreads retries of many clients over the whole interval, so a bus
// that comes back after an outage does not see every client at once.
package backoff

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Config sets the retry schedule. The zero value is not valid; use Default or
// fill every field.
type Config struct {
	// Initial is the upper bound of the first delay (default 100ms).
	Initial time.Duration
	// Max caps the upper bound of every delay (default 10s).
	Max time.Duration
	// Multiplier grows the bound after each failure (default 2).
	Multiplier float64
}

// Default is 100ms initial, ×2, capped at 10s.
var Default = Config{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Initial <= 0 {
		errs = append(errs, fmt.Errorf("backoff: initial delay must be > 0, got %v", c.Initial))
	}
	if c.Max < c.Initial {
		errs = append(errs, fmt.Errorf("backoff: max delay %v must be >= initial %v", c.Max, c.Initial))
	}
	if c.Multiplier < 1 {
		errs = append(errs, fmt.Errorf("backoff: multiplier must be >= 1, got %v", c.Multiplier))
	}
	return errors.Join(errs...)
}

// Backoff is the retry state of one retrying loop. It is not safe for concurrent
// use; each loop owns its own.
type Backoff struct {
	cfg      Config
	attempts int
	bound    time.Duration
	rnd      func(n int64) int64
}

// New returns a Backoff with cfg (Default where cfg is the zero value). rnd draws
// a uniform int64 in [0, n); nil means math/rand/v2. Tests inject rnd.
func New(cfg Config, rnd func(n int64) int64) *Backoff {
	if cfg == (Config{}) {
		cfg = Default
	}
	if rnd == nil {
		rnd = rand.Int64N
	}
	return &Backoff{cfg: cfg, rnd: rnd}
}

// Next returns the next delay: uniform in [0, bound) where bound starts at Initial
// and grows by Multiplier after each call, capped at Max.
func (b *Backoff) Next() time.Duration {
	if b.bound == 0 {
		b.bound = b.cfg.Initial
	} else {
		next := time.Duration(float64(b.bound) * b.cfg.Multiplier)
		if next > b.cfg.Max || next < b.bound { // overflow guard
			next = b.cfg.Max
		}
		b.bound = next
	}
	b.attempts++
	if b.bound <= 0 {
		return 0
	}
	return time.Duration(b.rnd(int64(b.bound)))
}

// Bound is the current upper bound (0 before the first failure).
func (b *Backoff) Bound() time.Duration { return b.bound }

// Attempts is the number of failures since the last Reset.
func (b *Backoff) Attempts() int { return b.attempts }

// Reset goes back to the initial delay; call it after a success.
func (b *Backoff) Reset() { b.bound, b.attempts = 0, 0 }

// Wait sleeps for Next() and returns the delay waited, or ctx.Err() as soon as
// ctx ends.
func (b *Backoff) Wait(ctx context.Context) (time.Duration, error) {
	d := b.Next()
	return d, Sleep(ctx, d)
}

// Sleep waits d or until ctx ends, whichever is first; it returns ctx.Err() if ctx ended.
func Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
