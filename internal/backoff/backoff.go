// Package backoff computes retry delays: a floor that starts at Initial and
// grows by Multiplier after each failure, capped at Max, and a delay drawn
// uniformly in [floor, 2·floor). A success resets the schedule. Wait sleeps for
// the next delay and returns early when the context ends, so a stopping run
// never waits out a retry.
//
// The floor is what keeps an outage from turning into a herd: no retry comes
// sooner than Initial after a failure, so an error never makes a loop retry
// faster than Initial (give the loop's own interval, see WithFloor), and each
// further failure spaces the attempts out by Multiplier until the cap. The
// jitter above the floor spreads the retries of many loops that failed
// together over a whole floor, so a bus that comes back does not see every
// client at once; a loop at the cap is back within 2·Max of the bus's return.
//
// Schedule, exactly: after the n-th consecutive failure (n = 0, 1, …) the
// delay is in [F(n), 2·F(n)) where F(n) = min(Initial·Multiplier^n, Max).
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
	// Initial is the floor of the first delay: no retry comes sooner (default 1s).
	Initial time.Duration
	// Max caps the floor; every delay is below 2·Max (default 10s).
	Max time.Duration
	// Multiplier grows the floor after each failure (default 3).
	Multiplier float64
}

// Default is a 1s floor, ×3 per failure, capped at 10s: delays in [1s, 2s),
// [3s, 6s), [9s, 18s), then [10s, 20s). At the cap a loop makes one
// attempt per 15s on average, a seventh of the rate of a loop that normally
// acts every 1–3s; at the end of an outage more than 9 in 10 loops at the cap
// are back within 15s, all within 20s.
var Default = Config{Initial: time.Second, Max: 10 * time.Second, Multiplier: 3}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Initial <= 0 {
		errs = append(errs, fmt.Errorf("backoff: initial delay must be > 0, got %v", c.Initial))
	}
	if c.Max < c.Initial {
		errs = append(errs, fmt.Errorf("backoff: max delay %v must be >= initial %v", c.Max, c.Initial))
	}
	if !(c.Multiplier >= 1) { // also rejects NaN
		errs = append(errs, fmt.Errorf("backoff: multiplier must be >= 1, got %v", c.Multiplier))
	}
	return errors.Join(errs...)
}

// WithFloor returns c (Default if zero) scaled so that Initial is at least
// min: when Initial is below min, Initial becomes min and Max grows by the same
// factor, so the schedule keeps its shape (the rate at the cap stays the same
// share of the loop's own rate). A loop that normally acts every interval uses
// WithFloor(interval) so that an error never makes it act faster than before.
func (c Config) WithFloor(min time.Duration) Config {
	if c == (Config{}) {
		c = Default
	}
	if c.Initial <= 0 || c.Initial >= min {
		return c
	}
	k := float64(min) / float64(c.Initial)
	c.Initial = min
	if m := float64(c.Max) * k; m < float64(1<<62) {
		c.Max = time.Duration(m)
	} else {
		c.Max = 1 << 62
	}
	if c.Max < c.Initial {
		c.Max = c.Initial
	}
	return c
}

// Floor is F(n): the least delay after the n-th consecutive failure (n from 0).
func (c Config) Floor(n int) time.Duration {
	f := c.Initial
	for range n {
		next := time.Duration(float64(f) * c.Multiplier)
		if next > c.Max || next < f { // cap, and overflow guard
			return c.Max
		}
		f = next
	}
	return min(f, c.Max)
}

// MaxAttempts is the most attempts one loop following c can start in a span of
// d that begins with a failed attempt, when every attempt fails: the first, then
// one after each delay, each delay at least its floor. It is the upper bound a
// test of an outage of length d may assert, whatever the machine's speed.
func (c Config) MaxAttempts(d time.Duration) int {
	n := 1
	var t time.Duration
	for i := 0; ; i++ {
		t += c.Floor(i)
		if t >= d {
			return n
		}
		n++
	}
}

// Backoff is the retry state of one retrying loop. It is not safe for concurrent
// use; each loop owns its own.
type Backoff struct {
	cfg      Config
	attempts int
	floor    time.Duration
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

// Config is the schedule b follows.
func (b *Backoff) Config() Config { return b.cfg }

// Next returns the next delay, uniform in [floor, 2·floor): the floor starts at
// Initial and grows by Multiplier after each call, capped at Max.
func (b *Backoff) Next() time.Duration {
	if b.floor == 0 {
		b.floor = b.cfg.Initial
	} else {
		next := time.Duration(float64(b.floor) * b.cfg.Multiplier)
		if next > b.cfg.Max || next < b.floor { // cap, and overflow guard
			next = b.cfg.Max
		}
		b.floor = next
	}
	b.attempts++
	if b.floor <= 0 {
		return 0
	}
	return b.floor + time.Duration(b.rnd(int64(b.floor)))
}

// Floor is the floor of the last delay (0 before the first failure).
func (b *Backoff) Floor() time.Duration { return b.floor }

// Attempts is the number of failures since the last Reset.
func (b *Backoff) Attempts() int { return b.attempts }

// Reset goes back to the initial delay; call it after a success.
func (b *Backoff) Reset() { b.floor, b.attempts = 0, 0 }

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
