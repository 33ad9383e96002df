package bustest

import (
	"net"
	"strconv"
	"syscall"
	"testing"
)

// DeadAddr is a loopback address ("127.0.0.1:port") that refuses every
// connection until the test ends. It holds a TCP socket bound to the port but
// never listening: a SYN to it is answered by a reset, and, as the socket is
// bound without SO_REUSEADDR, no other listener (another test's server in a
// parallel package) can take the port meanwhile. A port found free by
// listening and closing could be taken by such a server, and a run meant to
// find its target unreachable would then talk to it.
func DeadAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("DeadAddr: socket: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("DeadAddr: bind: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("DeadAddr: getsockname: %v", err)
	}
	port := sa.(*syscall.SockaddrInet4).Port
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}
