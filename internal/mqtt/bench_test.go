package mqtt

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
)

// TestMosquitto runs a QoS 1 round trip of 200 messages against a real
// Mosquitto and checks for loss and duplicates.
func TestMosquitto(t *testing.T) {
	addr := os.Getenv("EVENTSWARM_MOSQUITTO")
	if addr == "" {
		t.Skip("set EVENTSWARM_MOSQUITTO=host:port (see .ci/run) to run against Mosquitto")
	}
	c := newClient(t, Config{URL: "mqtt://" + addr, QoS: 1})
	if err := c.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	topic := "eventswarm/mqtt-test/" + run
	var subRec, pubRec recorder
	sub := dial(t, c, context.Background(), "es-sub-"+run, &subRec)
	pub := dial(t, c, context.Background(), "es-pub-"+run, &pubRec)
	if err := sub.Subscribe(context.Background(), []string{topic}); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if g := subRec.eventsOf(bus.Subscribed)[0].Granted; len(g) != 1 || g[0] != 1 {
		t.Fatalf("granted %v, want [1]", g)
	}
	const n = 200
	for i := range n {
		if err := pub.Publish(context.Background(), topic, []byte(strconv.Itoa(i))); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
	pollUntil(t, "200 messages", func() bool { return subRec.numMessages() >= n })
	// Anything still in flight would show up now as a duplicate.
	if err := pub.Publish(context.Background(), topic, []byte("end")); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "the end marker", func() bool { return subRec.numMessages() >= n+1 })
	seen := make(map[string]int)
	for _, m := range subRec.messages() {
		seen[string(m.Payload)]++
	}
	for i := range n {
		if k := strconv.Itoa(i); seen[k] != 1 {
			t.Errorf("message %s: %d copies, want 1", k, seen[k])
		}
	}
	if len(seen) != n+1 {
		t.Errorf("got %d distinct messages, want %d", len(seen), n+1)
	}
}

type nopHandler struct{}

func (nopHandler) HandleMessage(bus.Message) {}
func (nopHandler) HandleEvent(bus.Event)     {}

func BenchmarkPublish(b *testing.B) {
	br := startBroker(b, brokerOpts{})
	payload := make([]byte, 128)
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprintf("qos=%d", qos), func(b *testing.B) {
			c := newClient(b, Config{URL: "mqtt://" + br.addr, QoS: qos, QoSSet: true})
			conn := dial(b, c, context.Background(), fmt.Sprintf("bench-%d", qos), nopHandler{})
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := conn.Publish(ctx, "bench/t", payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkConnMemory measures what one idle connection costs the client
// process (heap + goroutine stacks) by dialing many against a minimal broker
// and subtracting the same number of raw sockets that did the handshake by
// hand (so the broker side and the kernel-facing net.Conn cancel out).
func BenchmarkConnMemory(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			for b.Loop() {
				f := startFake(b, serveMuteBroker)
				raw := measure(b, func() func() { return rawConns(b, f.addr(), n) })
				c := newClient(b, Config{URL: "mqtt://" + f.addr()})
				client := measure(b, func() func() { return mqttConns(b, c, n) })
				b.ReportMetric(float64(client-raw)/float64(n), "B/conn")
				b.ReportMetric(float64(client)/float64(n), "B/conn-total")
			}
		})
	}
}

// measure returns the heap+stack growth while open's connections are up.
func measure(b *testing.B, open func() (closeAll func())) int64 {
	b.Helper()
	before := inUse()
	closeAll := open()
	after := inUse()
	closeAll()
	return after - before
}

func inUse() int64 {
	var ms runtime.MemStats
	for range 2 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc + ms.StackInuse)
}

func rawConns(b *testing.B, addr string, n int) func() {
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write([]byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 0}); err != nil {
			b.Fatal(err)
		}
		var ack [4]byte
		if _, err := io.ReadFull(c, ack[:]); err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	return func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}
}

func mqttConns(b *testing.B, c *Client, n int) func() {
	conns := make([]*Conn, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			conn, err := c.Dial(context.Background(), "mem-"+strconv.Itoa(i), nopHandler{})
			if err != nil {
				mu.Lock()
				first = err
				mu.Unlock()
				return
			}
			conns[i] = conn
		})
	}
	wg.Wait()
	if first != nil {
		b.Fatal(first)
	}
	return func() {
		for _, conn := range conns {
			wg.Go(func() { _ = conn.Close() })
		}
		wg.Wait()
	}
}
