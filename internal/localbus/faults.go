package localbus

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// Faults configures deterministic fault injection. A fault is decided per
// delivery, that is per (subscriber, message): the decision is a pure function
// of Seed, the subscriber's identity (long-poll: the X-Eventswarm-Subscriber
// header, else the remote address; MQTT: the client ID) and the message's
// payload, so it does not depend on scheduling and the same seed gives the same
// decisions run after run. The zero value injects nothing.
type Faults struct {
	Seed uint64
	// Drop, Duplicate, Delay and Corrupt are the fractions of deliveries that are
	// dropped (never delivered to that subscriber), duplicated (delivered twice),
	// delayed (delivered Delays[i] later) and corrupted (one byte altered). Each
	// is in [0,1] and their sum is at most 1.
	Drop, Duplicate, Delay, Corrupt float64
	// Delays is the delay applied to a delayed delivery, chosen per delivery by
	// the same hash (Delays[h % len(Delays)]). Required if Delay > 0.
	Delays []time.Duration
	// Skip, if non-nil and true for a payload, exempts the delivery from faults
	// and from the Injected counts (e.g. readiness markers).
	Skip func(payload []byte) bool
}

// Fault is the outcome of a fault decision for one delivery.
type Fault uint8

const (
	// NoFault: the delivery is made normally.
	NoFault Fault = iota
	// Drop: the subscriber never gets the message.
	Drop
	// Duplicate: the subscriber gets the message twice.
	Duplicate
	// Delay: the subscriber gets the message later.
	Delay
	// Corrupt: the subscriber gets a copy with one byte altered.
	Corrupt
)

func (f Fault) String() string {
	switch f {
	case NoFault:
		return "none"
	case Drop:
		return "drop"
	case Duplicate:
		return "duplicate"
	case Delay:
		return "delay"
	case Corrupt:
		return "corrupt"
	}
	return "unknown"
}

// Enabled reports whether any fault fraction is non-zero. Only then does the
// bus keep per-subscriber state and count Injected.
func (f Faults) Enabled() bool {
	return f.Drop > 0 || f.Duplicate > 0 || f.Delay > 0 || f.Corrupt > 0
}

func (f Faults) validate() error {
	var errs []error
	fr := []struct {
		name string
		v    float64
	}{{"Drop", f.Drop}, {"Duplicate", f.Duplicate}, {"Delay", f.Delay}, {"Corrupt", f.Corrupt}}
	sum := 0.0
	for _, x := range fr {
		if math.IsNaN(x.v) || x.v < 0 || x.v > 1 {
			errs = append(errs, fmt.Errorf("localbus: Faults.%s = %v, want a fraction in [0,1]", x.name, x.v))
			continue
		}
		sum += x.v
	}
	if sum > 1+1e-9 {
		errs = append(errs, fmt.Errorf("localbus: fault fractions sum to %v, want at most 1", sum))
	}
	if f.Delay > 0 && len(f.Delays) == 0 {
		errs = append(errs, errors.New("localbus: Faults.Delays is required when Faults.Delay > 0"))
	}
	for i, d := range f.Delays {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("localbus: Faults.Delays[%d] = %v, want > 0", i, d))
		}
	}
	return errors.Join(errs...)
}

// Decide returns the fault for delivering payload to subscriber and, for
// Delay, the index into Delays. It ignores Skip. It is what the bus uses, exposed
// so tests can predict the bus's decisions.
func (f Faults) Decide(subscriber string, payload []byte) (Fault, int) {
	fault, h := f.decide(hashString(subscriber), hashBytes(payload))
	idx := 0
	if fault == Delay && len(f.Delays) > 0 {
		idx = int(h % uint64(len(f.Delays)))
	}
	return fault, idx
}

// decide is Decide on precomputed hashes. h is a second hash for choosing the
// delay or the corrupted byte.
func (f *Faults) decide(subHash, payloadHash uint64) (Fault, uint64) {
	x := mix64(f.Seed ^ mix64(subHash^0x9e3779b97f4a7c15) ^ mix64(payloadHash+0x632be59bd9b4e019))
	u := float64(x>>11) / (1 << 53)
	h := mix64(x ^ 0xbf58476d1ce4e5b9)
	switch {
	case u < f.Drop:
		return Drop, h
	case u < f.Drop+f.Duplicate:
		return Duplicate, h
	case u < f.Drop+f.Duplicate+f.Delay && len(f.Delays) > 0:
		return Delay, h
	case u < f.Drop+f.Duplicate+f.Delay+f.Corrupt:
		return Corrupt, h
	}
	return NoFault, h
}

// corrupt returns a copy of p with the byte at h%len(p) replaced by a printable
// byte different from it (the result stays text-safe). It returns nil for an
// empty payload, which cannot be corrupted.
func corrupt(p []byte, h uint64) []byte {
	if len(p) == 0 {
		return nil
	}
	out := make([]byte, len(p))
	copy(out, p)
	i := h % uint64(len(p))
	if out[i] == '~' {
		out[i] = '#'
	} else {
		out[i] = '~'
	}
	return out
}

// mix64 is the splitmix64 finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func hashBytes(p []byte) uint64 {
	h := uint64(fnvOffset)
	for _, c := range p {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

func hashString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// Injected counts the faults the bus injected, over both protocols.
//
// Deliveries counts fault decisions: one per (subscriber, message) the bus was
// about to deliver, whatever the decision (Skip-ped payloads excluded). It is
// only counted while faults are enabled (Faults.Enabled). A fault is counted when
// it is decided, so a delayed delivery whose subscriber never polls again (or
// whose MQTT connection closed before the delay passed) still counts as delayed,
// and a duplicate whose long-poll subscriber never polls again still counts as
// duplicated.
type Injected struct {
	Deliveries, Dropped, Duplicated, Corrupted uint64
	Delayed                                    []uint64 // per Faults.Delays index
}

type injectedCounters struct {
	deliveries, dropped, duplicated, corrupted atomic.Uint64
	delayed                                    []atomic.Uint64
}

func (c *injectedCounters) count(f Fault, delayIdx int) {
	c.deliveries.Add(1)
	switch f {
	case Drop:
		c.dropped.Add(1)
	case Duplicate:
		c.duplicated.Add(1)
	case Delay:
		c.delayed[delayIdx].Add(1)
	case Corrupt:
		c.corrupted.Add(1)
	}
}

func (c *injectedCounters) snapshot() Injected {
	in := Injected{
		Deliveries: c.deliveries.Load(),
		Dropped:    c.dropped.Load(),
		Duplicated: c.duplicated.Load(),
		Corrupted:  c.corrupted.Load(),
		Delayed:    make([]uint64, len(c.delayed)),
	}
	for i := range c.delayed {
		in.Delayed[i] = c.delayed[i].Load()
	}
	return in
}
