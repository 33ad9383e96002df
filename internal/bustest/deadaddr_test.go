package bustest

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

func TestDeadAddr(t *testing.T) {
	addr := DeadAddr(t)
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("dial %s succeeded; want connection refused", addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: %v; want connection refused", addr, err)
	}
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatalf("listen on %s succeeded; the port must stay taken until the test ends", addr)
	}
}
