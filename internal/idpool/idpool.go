// Package idpool is the shared pool of learner session IDs, modelled on the
// original Locust load test of the assessment event bus.
//
// The pool keeps two lists:
//
//   - free IDs: no learner holds them. A new learner takes one; a learner that
//     finds the list empty generates a new ID.
//   - active IDs: a learner holds each of them (the pool guarantees one learner
//     at a time). A new proctor takes a slice of them to watch.
//
// A proctor that finds too few active IDs generates new ones and puts them on
// the free list, for learners to take. A finished learner returns its ID to the
// free list. Learners prefer free IDs some proctor is watching, so a proctor's
// IDs are soon used by real learners; proctors prefer active IDs no other
// proctor watches, so learners are spread over proctors.
//
// Every ID is Prefix + "-" + a decimal counter, and contains only
// [A-Za-z0-9._-], so it can name a topic on both transports (MQTT topics and
// Nchan channels). The prefix carries the run ID and the shard, so the IDs of
// shards never collide.
//
// A Pool is safe for concurrent use. Every operation is O(n) in the number of
// IDs it returns and O(1) otherwise.
package idpool

import (
	"strconv"
	"sync"
)

// list is an unordered set of IDs with O(1) add and remove (swap-remove); each
// entry records its index.
type list struct {
	ids []*entry
}

func (l *list) add(e *entry) {
	e.idx = len(l.ids)
	l.ids = append(l.ids, e)
}

func (l *list) remove(e *entry) {
	last := len(l.ids) - 1
	if e.idx != last {
		m := l.ids[last]
		l.ids[e.idx] = m
		m.idx = e.idx
	}
	l.ids[last] = nil
	l.ids = l.ids[:last]
	e.idx = -1
}

// pop removes and returns the most recently added entry (nil when empty).
func (l *list) pop() *entry {
	if len(l.ids) == 0 {
		return nil
	}
	e := l.ids[len(l.ids)-1]
	l.remove(e)
	return e
}

func (l *list) len() int { return len(l.ids) }

// entry is one ID's state. It lives in exactly one of the pool's four lists.
type entry struct {
	id       string
	held     bool // a learner holds it (active); otherwise it is free
	watchers int  // proctors watching it
	idx      int  // index in its list
}

// Pool is the shared pool of learner IDs.
type Pool struct {
	prefix string

	mu sync.Mutex
	// The four lists partition every ID the pool made: free or active, watched
	// by some proctor or not.
	freeWatched, freeIdle          list
	activeWatched, activeUnwatched list
	ids                            map[string]*entry
	next                           uint64
}

// New returns an empty pool whose IDs start with prefix. Characters outside
// [A-Za-z0-9._-] in prefix are replaced by '_'; an empty prefix becomes "id".
func New(prefix string) *Pool {
	return &Pool{prefix: Sanitize(prefix), ids: make(map[string]*entry)}
}

// Sanitize returns s with every character outside [A-Za-z0-9._-] replaced by
// '_' ("id" when s is empty), so it is safe in a topic or channel name.
func Sanitize(s string) string {
	if s == "" {
		return "id"
	}
	b := []byte(s)
	for i, c := range b {
		if !Safe(c) {
			b[i] = '_'
		}
	}
	return string(b)
}

// Safe reports whether c may appear in an ID: [A-Za-z0-9._-].
func Safe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// Prefix is the (sanitized) prefix of every ID of p.
func (p *Pool) Prefix() string { return p.prefix }

// newEntry makes a fresh ID. p.mu must be held.
func (p *Pool) newEntry() *entry {
	p.next++
	e := &entry{id: p.prefix + "-" + strconv.FormatUint(p.next, 10), idx: -1}
	p.ids[e.id] = e
	return e
}

// listOf is the list e belongs in given its state. p.mu must be held.
func (p *Pool) listOf(e *entry) *list {
	switch {
	case e.held && e.watchers > 0:
		return &p.activeWatched
	case e.held:
		return &p.activeUnwatched
	case e.watchers > 0:
		return &p.freeWatched
	}
	return &p.freeIdle
}

// TakeLearner gives a new learner an ID: a free one (preferring IDs a proctor
// watches), or a new one when none is free. The ID is active until
// ReturnLearner; no other learner gets it meanwhile.
func (p *Pool) TakeLearner() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.freeWatched.pop()
	if e == nil {
		e = p.freeIdle.pop()
	}
	if e == nil {
		e = p.newEntry()
	}
	e.held = true
	p.listOf(e).add(e)
	return e.id
}

// ReturnLearner puts id, held by a finished learner, back on the free list.
// Returning an ID that is unknown or not held does nothing.
func (p *Pool) ReturnLearner(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.ids[id]
	if e == nil || !e.held {
		return
	}
	p.listOf(e).remove(e)
	e.held = false
	p.listOf(e).add(e)
}

// TakeForProctor gives a new proctor n IDs to watch, all distinct: first active
// IDs no other proctor watches, then active IDs others watch too (at most half
// of n, see maxShared), then free IDs no proctor watches yet, and when that is
// still too few, new IDs put on the free list for learners to take. Release
// them with ReleaseProctor. n <= 0 returns nil.
func (p *Pool) TakeForProctor(n int) []string {
	if n <= 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, n)
	// Entries leave the source lists as they are watched, so pop until the
	// source is empty; activeWatched is walked by index, since taking an entry
	// leaves it there.
	for len(out) < n {
		e := p.activeUnwatched.pop()
		if e == nil {
			break
		}
		e.watchers++
		p.listOf(e).add(e)
		out = append(out, e.id)
	}
	// Already-watched active IDs: walk from the end, skipping those just moved
	// there by this call (they are at the end, after the original entries).
	orig := p.activeWatched.len() - len(out)
	shared := 0
	for i := orig - 1; i >= 0 && len(out) < n && shared < maxShared(n); i-- {
		shared++
		e := p.activeWatched.ids[i]
		e.watchers++
		out = append(out, e.id)
	}
	for len(out) < n {
		e := p.freeIdle.pop()
		if e == nil {
			e = p.newEntry()
		}
		e.watchers++
		p.listOf(e).add(e)
		out = append(out, e.id)
	}
	return out
}

// ReleaseProctor says a proctor stopped watching ids. Unknown IDs are ignored.
func (p *Pool) ReleaseProctor(ids []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		e := p.ids[id]
		if e == nil || e.watchers == 0 {
			continue
		}
		p.listOf(e).remove(e)
		e.watchers--
		p.listOf(e).add(e)
	}
}

// maxShared is how many already-watched active IDs a proctor of n takes: at
// most half, so that every proctor also brings IDs nobody watches yet. (Taking
// as many shared IDs as it could once left later proctors with no new IDs at
// all, and the learners that came after them unwatched: their traffic was
// published but never verified.)
func maxShared(n int) int { return n / 2 }

// Sizes returns the lengths of the free and the active lists.
func (p *Pool) Sizes() (free, active int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.freeWatched.len() + p.freeIdle.len(), p.activeWatched.len() + p.activeUnwatched.len()
}
