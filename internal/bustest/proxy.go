package bustest

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy is a TCP proxy on 127.0.0.1 in front of a bus, for faults the suite
// needs on any transport: Cut drops every connection through it (the client
// reconnects through the proxy, which keeps accepting), Blackhole stops
// forwarding in both directions (the bus never answers).
type Proxy struct {
	ln        net.Listener
	target    string
	blackhole atomic.Bool
	swallowed atomic.Int64 // bytes from clients dropped while blackholed
	wg        sync.WaitGroup
	mu        sync.Mutex
	conns     map[net.Conn]struct{}
	closed    bool
}

// NewProxy listens on 127.0.0.1 and forwards to target (host:port); it is
// closed at the end of the test.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every connection through the proxy, both sides.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

// Blackhole makes the proxy swallow what clients send and forward nothing
// back, on open and new connections, from now on.
func (p *Proxy) Blackhole() { p.blackhole.Store(true) }

// Swallowed is how many bytes from clients the blackhole has dropped.
func (p *Proxy) Swallowed() int64 { return p.swallowed.Load() }

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	defer p.untrack(c)
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(s) {
		return
	}
	defer p.untrack(s)
	done := make(chan struct{}, 2)
	go func() { p.pipe(s, c, true); done <- struct{}{} }()
	go func() { p.pipe(c, s, false); done <- struct{}{} }()
	<-done // one side ended: close both (deferred), which ends the other
	_ = c.Close()
	_ = s.Close()
	<-done
}

// pipe copies src to dst until either fails; while blackholed it drops the
// bytes instead (counting those from clients).
func (p *Proxy) pipe(dst io.Writer, src io.Reader, fromClient bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if p.blackhole.Load() {
				if fromClient {
					p.swallowed.Add(int64(n))
				}
			} else if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Proxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.Cut()
	p.wg.Wait()
}
