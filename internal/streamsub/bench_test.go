package streamsub_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/longpoll"
)

type subscribedCounter struct{ n *atomic.Int64 }

func (h subscribedCounter) HandleMessage(bus.Message) {}
func (h subscribedCounter) HandleEvent(e bus.Event) {
	if e.Kind == bus.Subscribed {
		h.n.Add(1)
	}
}

// BenchmarkIdleStreams reports the client-side memory (heap + goroutine
// stacks) of one Conn with an open, idle stream against Nchan
// (EVENTSWARM_NCHAN). STREAM_BENCH_CONNS sets the count (2000).
func BenchmarkIdleStreams(b *testing.B) {
	u := os.Getenv("EVENTSWARM_NCHAN")
	if u == "" {
		b.Skip("set EVENTSWARM_NCHAN to measure against Nchan")
	}
	conns := 2000
	if n, err := strconv.Atoi(os.Getenv("STREAM_BENCH_CONNS")); err == nil && n > 0 {
		conns = n
	}
	run := time.Now().UnixNano()
	for name, newc := range protocols {
		b.Run(fmt.Sprintf("%s/conns=%d", name, conns), func(b *testing.B) {
			for b.Loop() {
				c, err := newc(longpoll.Config{URL: u, PollTimeout: time.Hour})
				if err != nil {
					b.Fatal(err)
				}
				var subscribed atomic.Int64
				beforeH, beforeS := memInUse()
				all := make([]bus.Conn, 0, conns)
				for i := range conns {
					conn, err := c.Dial(context.Background(), fmt.Sprint("u", i), subscribedCounter{&subscribed})
					if err != nil {
						b.Fatal(err)
					}
					if err := conn.Subscribe(context.Background(), []string{fmt.Sprint("idle-", run, "-", i)}); err != nil {
						b.Fatal(err)
					}
					all = append(all, conn)
				}
				for deadline := time.Now().Add(time.Minute); subscribed.Load() < int64(conns); time.Sleep(10 * time.Millisecond) {
					if time.Now().After(deadline) {
						b.Fatalf("%d of %d streams open after a minute", subscribed.Load(), conns)
					}
				}
				afterH, afterS := memInUse()
				b.ReportMetric(float64(afterH-beforeH+afterS-beforeS)/float64(conns), "B/conn")
				b.ReportMetric(float64(afterS-beforeS)/float64(conns), "stackB/conn")
				c.Close()
				runtime.KeepAlive(all)
			}
		})
	}
}

func memInUse() (heap, stack int64) {
	for range 6 {
		runtime.GC() // stacks shrink by half per cycle
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse), int64(ms.StackInuse)
}
