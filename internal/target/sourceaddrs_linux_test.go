package target

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/bustest"
)

// TestSourceAddrsReachTheServer: with SourceAddrs 127.0.0.2 and 127.0.0.3,
// the embedded bus's end of every connection (read from the kernel's socket
// table) comes from those two addresses, both of them, and none from the
// default 127.0.0.1 — on both transports.
func TestSourceAddrsReachTheServer(t *testing.T) {
	srcs := []string{"127.0.0.2", "127.0.0.3"}
	for _, proto := range []string{HTTP, MQTT} {
		t.Run(proto, func(t *testing.T) {
			tgt, err := Open(Config{Embedded: proto, SourceAddrs: srcs})
			if err != nil {
				t.Fatal(err)
			}
			defer tgt.Close()
			addr := tgt.Embedded().MQTTAddr()
			if proto == HTTP {
				u, _ := url.Parse(tgt.Embedded().HTTPURL())
				addr = u.Host
			}
			_, portText, _ := net.SplitHostPort(addr)
			port, _ := strconv.Atoi(portText)

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := tgt.Check(ctx); err != nil {
				t.Fatal(err)
			}
			const users = 4
			for i := range users {
				c, err := tgt.Dialer().Dial(ctx, fmt.Sprintf("src-%s-%d", proto, i), &bustest.Recorder{})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if err := c.Subscribe(ctx, []string{fmt.Sprintf("src.%d", i)}); err != nil {
					t.Fatal(err)
				}
				if err := c.Publish(ctx, fmt.Sprintf("src.%d", i), []byte("x")); err != nil {
					t.Fatal(err)
				}
			}
			// Long-poll sockets connect in the poll loop: look until both
			// sources are seen (bounded by ctx).
			var peers map[string]int
			for {
				peers = serverPeers(t, port)
				if peers["127.0.0.2"] > 0 && peers["127.0.0.3"] > 0 {
					break
				}
				select {
				case <-ctx.Done():
					t.Fatalf("the bus on port %d sees connections from %v, want from 127.0.0.2 and 127.0.0.3", port, peers)
				case <-time.After(20 * time.Millisecond):
				}
			}
			if peers["127.0.0.1"] > 0 {
				t.Errorf("the bus sees %d connections from 127.0.0.1: a socket was not bound to a source address (%v)", peers["127.0.0.1"], peers)
			}
		})
	}
}

// serverPeers counts, by remote IP, the established TCP connections whose
// local port is port (the server's end), from /proc/net/tcp.
func serverPeers(t *testing.T, port int) map[string]int {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	defer f.Close()
	peers := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "01" { // ESTABLISHED
			continue
		}
		_, lport, ok1 := parseProcAddr(fields[1])
		rip, _, ok2 := parseProcAddr(fields[2])
		if ok1 && ok2 && lport == port {
			peers[rip]++
		}
	}
	return peers
}

// parseProcAddr parses /proc/net/tcp's "0100007F:1F90": the IPv4 address as
// the kernel's host-order print of network-order bytes, then the port in hex.
func parseProcAddr(s string) (ip string, port int, ok bool) {
	a, p, found := strings.Cut(s, ":")
	if !found || len(a) != 8 {
		return "", 0, false
	}
	raw, err := hex.DecodeString(a)
	if err != nil {
		return "", 0, false
	}
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, binary.BigEndian.Uint32(raw))
	pv, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return "", 0, false
	}
	return net.IP(b).String(), int(pv), true
}
