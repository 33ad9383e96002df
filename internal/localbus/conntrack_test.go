package localbus

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestTrackingListenerClosesOnlyUnused: closeConns(false) ends the accepted
// connections that never sent a byte and leaves the others; closeConns(true)
// ends the rest.
func TestTrackingListenerClosesOnlyUnused(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newTrackingListener(raw)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	spare, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer spare.Close()
	busy, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if _, err := busy.Write([]byte("GET")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both accepted, one used", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		used := 0
		for c := range l.conns {
			if c.used.Load() {
				used++
			}
		}
		return len(l.conns) == 2 && used == 1
	})
	if n := l.closeConns(false); n != 1 {
		t.Fatalf("closeConns(false) closed %d, want 1 (the spare)", n)
	}
	if !closedByPeer(t, spare) {
		t.Fatal("the spare connection is still open")
	}
	if openConns(l) != 1 {
		t.Fatalf("%d connections open after closing the spare, want 1", openConns(l))
	}
	if n := l.closeConns(true); n != 1 {
		t.Fatalf("closeConns(true) closed %d, want 1 (the busy one)", n)
	}
	if !closedByPeer(t, busy) {
		t.Fatal("the busy connection is still open")
	}
	if err := l.Close(); err != nil || l.Close() != nil {
		t.Fatalf("Close twice = %v: want nil both times", err)
	}
}

// TestCloseWithSpareConnection: a client connection that never sent a request
// (what net/http keeps after a dial race) does not make Close fail or wait out
// its grace; Close ends it.
func TestCloseWithSpareConnection(t *testing.T) {
	b, err := Start(httpOnly(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	spare, err := net.Dial("tcp", b.httpLn.Addr().String())
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	defer spare.Close()
	eventually(t, "spare accepted", func() bool { return openConns(b.httpLn) == 1 })
	if err := b.Close(); err != nil {
		t.Fatalf("Close with a spare connection: %v", err)
	}
	if !closedByPeer(t, spare) {
		t.Fatal("Close left the spare connection open")
	}
}

// closedByPeer reports whether c reads EOF or a reset (the server closed it);
// the deadline is a hang guard only.
func closedByPeer(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

// openConns reports how many connections l accepted that are not yet closed.
func openConns(l *trackingListener) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}
