package bustest

import (
	"sync"

	"github.com/eventswarm/eventswarm/internal/bus"
)

// Recorder is a bus.Handler that keeps a copy of every message and event.
type Recorder struct {
	mu     sync.Mutex
	msgs   []bus.Message
	events []bus.Event
}

var _ bus.Handler = (*Recorder)(nil)

// HandleMessage keeps a copy of m (the payload is copied).
func (r *Recorder) HandleMessage(m bus.Message) {
	m.Payload = append([]byte(nil), m.Payload...)
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}

// HandleEvent keeps e.
func (r *Recorder) HandleEvent(e bus.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// Messages is every message so far, in arrival order.
func (r *Recorder) Messages() []bus.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bus.Message(nil), r.msgs...)
}

// Payloads is every message's payload as a string, in arrival order.
func (r *Recorder) Payloads() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.msgs))
	for i, m := range r.msgs {
		out[i] = string(m.Payload)
	}
	return out
}

// Count is how many messages had payload p.
func (r *Recorder) Count(p string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if string(m.Payload) == p {
			n++
		}
	}
	return n
}

// Events is every event of kind k, in order.
func (r *Recorder) Events(k bus.EventKind) []bus.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []bus.Event
	for _, e := range r.events {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// All is every event, in order.
func (r *Recorder) All() []bus.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bus.Event(nil), r.events...)
}

// NumEvents is how many events of kind k came.
func (r *Recorder) NumEvents(k bus.EventKind) int { return len(r.Events(k)) }
