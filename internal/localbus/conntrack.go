package localbus

import (
	"net"
	"sync"
	"sync/atomic"
)

// trackingListener records the connections it accepts so that Close can end
// the ones fasthttp's graceful shutdown would wait for in vain. fasthttp, like
// net/http, counts a connection that has not yet sent a request as idle only
// after it is 5 s old, so one spare connection a client dialled and never used
// (net/http's Transport keeps the loser of a dial race) holds Shutdown for
// that long. Such a connection carries no request: Close may end it at once.
type trackingListener struct {
	net.Listener
	closeOnce sync.Once
	closeErr  error

	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

func newTrackingListener(ln net.Listener) *trackingListener {
	return &trackingListener{Listener: ln, conns: map[*trackedConn]struct{}{}}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	return tc, nil
}

// Close closes the listener once; later calls (fasthttp's Shutdown closes it
// too) return the first result.
func (l *trackingListener) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.Listener.Close() })
	return l.closeErr
}

// closeConns closes the open connections that have not yet sent a byte, or
// all of them when all is set, and returns how many it closed.
func (l *trackingListener) closeConns(all bool) int {
	l.mu.Lock()
	var victims []*trackedConn
	for c := range l.conns {
		if all || !c.used.Load() {
			victims = append(victims, c)
		}
	}
	l.mu.Unlock()
	for _, c := range victims {
		_ = c.Close()
	}
	return len(victims)
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	used atomic.Bool
	once sync.Once
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.used.Load() {
		c.used.Store(true)
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
