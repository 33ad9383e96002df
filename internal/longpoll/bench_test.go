package longpoll

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
)

// TestMain lets the test binary double as a hold-only server process, so the
// held-poll memory benchmark measures the client alone.
func TestMain(m *testing.M) {
	if os.Getenv("LONGPOLL_HOLD_SERVER") == "1" {
		f := startFakeNchan(time.Hour)
		fmt.Println(f.URL())
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
		f.close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func BenchmarkPublish(b *testing.B) {
	f := newFakeNchan(b, time.Minute)
	f.noStore.Store(true)
	c := newClient(b, Config{URL: f.URL()})
	conn, _ := dial(b, c, "p")
	for _, size := range []int{64, 4096} {
		payload := bytes.Repeat([]byte("x"), size)
		b.Run(fmt.Sprintf("payload=%d/parallel=1", size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				if err := conn.Publish(context.Background(), "bench", payload); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("payload=%d/parallel=%d", size, 8*runtime.GOMAXPROCS(0)), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := conn.Publish(context.Background(), "bench", payload); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// chanHandler signals each delivery.
type chanHandler struct{ got chan struct{} }

func (h chanHandler) HandleMessage(bus.Message) { h.got <- struct{}{} }
func (h chanHandler) HandleEvent(bus.Event)     {}

// BenchmarkDelivery is one publish → poll answer → re-poll cycle.
func BenchmarkDelivery(b *testing.B) {
	f := newFakeNchan(b, time.Minute)
	c := newClient(b, Config{URL: f.URL()})
	h := chanHandler{make(chan struct{}, 1)}
	sub, err := c.Dial(context.Background(), "s", h)
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	pub, _ := dial(b, c, "p")
	subscribed(b, f, sub, "bench")
	payload := bytes.Repeat([]byte("x"), 256)
	b.ReportAllocs()
	for b.Loop() {
		if err := pub.Publish(context.Background(), "bench", payload); err != nil {
			b.Fatal(err)
		}
		<-h.got
	}
}

// countingHandler counts Subscribed events.
type countingHandler struct{ subscribed *atomic.Int64 }

func (h countingHandler) HandleMessage(bus.Message) {}
func (h countingHandler) HandleEvent(e bus.Event) {
	if e.Kind == bus.Subscribed {
		h.subscribed.Add(1)
	}
}

// BenchmarkHeldPolls reports the client-side memory of one Conn holding a poll
// (heap + goroutine stacks), against a server in a child process, or against
// Nchan if EVENTSWARM_NCHAN is set. LONGPOLL_BENCH_CONNS sets the count (2000).
func BenchmarkHeldPolls(b *testing.B) {
	conns := 2000
	if n, err := strconv.Atoi(os.Getenv("LONGPOLL_BENCH_CONNS")); err == nil && n > 0 {
		conns = n
	}
	if u := os.Getenv("EVENTSWARM_NCHAN"); u != "" {
		heldPolls(b, u, conns)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LONGPOLL_HOLD_SERVER=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = stdin.Close(); _ = cmd.Wait() }()
	url, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	heldPolls(b, strings.TrimSpace(url), conns)
}

func heldPolls(b *testing.B, url string, conns int) {
	run := time.Now().UnixNano()
	b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
		for b.Loop() {
			c, err := New(Config{URL: url, PollTimeout: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			var subscribed atomic.Int64
			before := memInUse()
			all := make([]*Conn, 0, conns)
			for i := range conns {
				conn, err := c.Dial(context.Background(), fmt.Sprint("u", i), countingHandler{&subscribed})
				if err != nil {
					b.Fatal(err)
				}
				if err := conn.Subscribe(context.Background(), []string{fmt.Sprint("held-", run, "-", i)}); err != nil {
					b.Fatal(err)
				}
				all = append(all, conn)
			}
			waitUntil(b, "all polls written", func() bool { return subscribed.Load() == int64(conns) })
			after := memInUse()
			b.ReportMetric(float64(after-before)/float64(conns), "B/conn")
			c.Close()
			runtime.KeepAlive(all)
		}
	})
}

func memInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse + ms.StackInuse)
}
