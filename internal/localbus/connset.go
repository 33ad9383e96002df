package localbus

import (
	"net"
	"sync"
)

// connSet is what a listener of the broker owns: the connections it accepted
// and the goroutines serving them, so that Close can close every connection
// (no client, not even one that never sent CONNECT, can hold the broker's
// Close) and wait for every goroutine. The zero value is ready to use.
type connSet struct {
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// enter starts one goroutine of the listener (its accept or serve loop). It
// reports false, starting nothing, once the set is shut.
func (s *connSet) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// leave ends a goroutine started by enter.
func (s *connSet) leave() { s.wg.Done() }

// add registers c and the goroutine that will serve it. Once the set is shut
// it closes c instead and reports false.
func (s *connSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

// remove closes c, forgets it and ends its goroutine (registered by add).
func (s *connSet) remove(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// shut marks the set closed: no goroutine or connection is added after it.
// It reports false if the set was already shut.
func (s *connSet) shut() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.closed = true
	return true
}

// closeAll closes every remaining connection and waits for the goroutines.
func (s *connSet) closeAll() {
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// len is the number of open connections.
func (s *connSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
