// Package busstats samples the bus's own health during a run (--bus-stats):
// Mosquitto's $SYS/# topics over MQTT and Nchan's nchan_stub_status page
// over HTTP, every few seconds, into a time series for the result JSON, the
// metrics and the HTML report. What the bus sends is bounded: a $SYS
// payload is read only if short and numeric, at most MaxKeys distinct keys
// are kept, a status page is read up to MaxPage bytes.
package busstats

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limits on what the bus may make the sampler keep.
const (
	MaxKeys    = 64       // distinct keys (topics, status fields)
	MaxValue   = 64       // bytes of one value
	MaxPage    = 16 << 10 // bytes of a status page read
	MaxSamples = 2000     // samples kept; past it every other is dropped
)

// Sample is the bus's numbers at one moment.
type Sample struct {
	// AtMS is milliseconds since the sampler started.
	AtMS   int64              `json:"at_ms"`
	Values map[string]float64 `json:"values"`
}

// Series is a run's bus-stats time series.
type Series struct {
	// Source says where the numbers came from: "mosquitto $SYS",
	// "nchan_stub_status", or "" when the bus offered none.
	Source  string   `json:"source"`
	Samples []Sample `json:"samples"`
	// Error says why there are no (or no more) samples, if so.
	Error string `json:"error,omitempty"`
	// Dropped is the bus's own count of dropped messages over the run, when
	// it reports one (Mosquitto: $SYS/broker/publish/messages/dropped, last
	// sample minus first); nil when it does not.
	Dropped *float64 `json:"dropped,omitempty"`
}

// DroppedKey is Mosquitto's count of messages it dropped.
const DroppedKey = "$SYS/broker/publish/messages/dropped"

// Live holds the latest sample while a sampler runs, for a scrape-time
// reader (internal/metrics). Safe for concurrent use; the zero value is empty.
type Live struct {
	mu     sync.Mutex
	source string
	values map[string]float64
}

// Latest is the source and a copy of the latest sample's values (nil before the first).
func (l *Live) Latest() (source string, values map[string]float64) {
	if l == nil {
		return "", nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.values == nil {
		return l.source, nil
	}
	out := make(map[string]float64, len(l.values))
	for k, v := range l.values {
		out[k] = v
	}
	return l.source, out
}

func (l *Live) set(source string, v map[string]float64) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.source, l.values = source, v
	l.mu.Unlock()
}

// recorder keeps the latest value of each key and the samples.
type recorder struct {
	live    *Live
	source  string
	mu      sync.Mutex
	start   time.Time
	latest  map[string]float64
	samples []Sample
	every   time.Duration
	err     string
	// dropped is the key of the bus's own count of dropped messages.
	dropped string
}

func newRecorder(source string, every time.Duration, live *Live) *recorder {
	return &recorder{source: source, live: live, start: time.Now(), latest: map[string]float64{}, every: every, dropped: DroppedKey}
}

// set records key's value; beyond MaxKeys new keys are ignored.
func (r *recorder) set(key string, v float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.latest[key]; !ok && len(r.latest) >= MaxKeys {
		return
	}
	r.latest[key] = v
}

// sample appends the latest values as a sample (none if nothing is known yet).
func (r *recorder) sample(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.latest) == 0 {
		return
	}
	vals := make(map[string]float64, len(r.latest))
	for k, v := range r.latest {
		vals[k] = v
	}
	r.samples = append(r.samples, Sample{AtMS: now.Sub(r.start).Milliseconds(), Values: vals})
	r.live.set(r.source, vals) // vals is not changed after this
	if len(r.samples) >= MaxSamples {
		kept := r.samples[:0]
		for i := 1; i < len(r.samples); i += 2 {
			kept = append(kept, r.samples[i])
		}
		r.samples = kept
	}
}

func (r *recorder) fail(err string) {
	r.mu.Lock()
	if r.err == "" {
		r.err = err
	}
	r.mu.Unlock()
}

func (r *recorder) series(source string) Series {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Series{Source: source, Samples: append([]Sample{}, r.samples...), Error: r.err}
	if n := len(s.Samples); n > 0 {
		// Mosquitto publishes a $SYS value when it changes: a count first
		// seen later started from 0.
		first := s.Samples[0].Values[r.dropped]
		if last, ok := s.Samples[n-1].Values[r.dropped]; ok {
			d := last - first
			s.Dropped = &d
		}
	}
	return s
}

// DroppedCount is the messages the bus says it dropped over the run (0 when
// it does not say, or s is nil).
func (s *Series) DroppedCount() uint64 {
	if s == nil || s.Dropped == nil || *s.Dropped <= 0 {
		return 0
	}
	return uint64(*s.Dropped)
}

// Latest is the last sample's values (nil when there is none).
func (s Series) Latest() map[string]float64 {
	if len(s.Samples) == 0 {
		return nil
	}
	return s.Samples[len(s.Samples)-1].Values
}

// ParseSYS reads a $SYS payload or a status value: a number, optionally
// with a K, M or G suffix (×1024ⁿ: Nchan's "12K" of shared memory) and
// followed by a unit word ("1234 seconds"); anything else (versions,
// timestamps) is not a number and ok is false.
func ParseSYS(payload []byte) (v float64, ok bool) {
	if len(payload) == 0 || len(payload) > MaxValue {
		return 0, false
	}
	s := strings.TrimSpace(string(payload))
	if i := strings.IndexByte(s, ' '); i > 0 {
		s = s[:i]
	}
	mult := 1.0
	if n := len(s); n > 1 {
		switch s[n-1] {
		case 'K', 'k':
			mult, s = 1<<10, s[:n-1]
		case 'M':
			mult, s = 1<<20, s[:n-1]
		case 'G':
			mult, s = 1<<30, s[:n-1]
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v != v || v > 1e300 || v < -1e300 {
		return 0, false
	}
	return v * mult, true
}

// ParseStubStatus reads Nchan's nchan_stub_status page: lines of
// "name: number". Unknown or non-numeric lines are skipped; at most MaxKeys
// fields and MaxPage bytes are read.
func ParseStubStatus(page []byte) map[string]float64 {
	if len(page) > MaxPage {
		page = page[:MaxPage]
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(page))
	sc.Buffer(make([]byte, 0, 256), MaxPage)
	for sc.Scan() && len(out) < MaxKeys {
		name, val, ok := strings.Cut(sc.Text(), ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || len(name) > MaxValue {
			continue
		}
		if v, ok := ParseSYS([]byte(strings.TrimSpace(val))); ok {
			out[name] = v
		}
	}
	return out
}
