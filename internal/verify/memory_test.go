package verify

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Matrix item 11: a long run at a steady rate keeps the ledger's memory flat.
func TestMemoryFlatLongRun(t *testing.T) {
	minutes := 120 // 2 h simulated at 100 msg/s, 3 subscribers
	if testing.Short() || raceEnabled {
		minutes = 20
	}
	const rate = 100
	n := uint64(minutes * 60 * rate)
	l, err := NewLedger(testRun, Config{Rate: rate})
	if err != nil {
		t.Fatal(err)
	}
	p := l.Stream(1, 1)
	subs := []*SubscriberRecorder{l.Subscriber("a"), l.Subscriber("b"), l.Subscriber("c")}
	for _, s := range subs {
		s.Expect(1, 1, 0)
	}
	buf := make([]byte, 256)
	var lost, dups uint64
	var heap, foot []uint64
	for seq := uint64(1); seq <= n; seq++ {
		at := int64(seq) * sec / rate
		p.Attempt(seq, at)
		st := Stamp{Run: testRun, Publisher: 1, Stream: 1, Seq: seq, Intended: at, Sent: at}
		_ = st.Encode(buf)
		p.Result(seq, PublishOK, at+ms1)
		for i, s := range subs {
			if i == 0 && seq%9973 == 0 {
				lost++
				continue
			}
			s.Deliver(buf, false, false, at+20*ms1)
			if i == 1 && seq%4999 == 0 {
				dups++
				s.Deliver(buf, false, false, at+30*ms1)
			}
		}
		if seq%rate == 0 {
			l.Advance(at)
		}
		if seq == n/4 || seq == n/2 || seq == n {
			heap = append(heap, heapInUse())
			foot = append(foot, uint64(l.MemoryFootprint()))
		}
	}
	r := l.Finish(int64(n+1)*sec/rate+20*sec, true)
	want := Counts{Expected: 3 * n, OnTime: 3*n - lost, Lost: lost, LostWhileConnected: lost, Duplicates: dups, DupOther: dups, DupSteady: dups,
		PublishAttempted: n, PublishOK: n}
	if d := diff(r.Counts, want); d != "" {
		t.Errorf("counts: %s", d)
	}
	t.Logf("heap at 1/4, 1/2, end: %v; footprint: %v", heap, foot)
	// Growth allowed: the emitted windows (a few hundred bytes each) and the
	// lost-seq intervals; everything else is flat.
	const slack = 512 << 10
	if heap[2] > heap[0]+slack || heap[1] > heap[0]+slack {
		t.Errorf("heap grew: %v bytes at 1/4, 1/2, end (slack %d)", heap, slack)
	}
	if foot[2] > foot[0]+16<<10 {
		t.Errorf("footprint grew: %v", foot)
	}
}

// Many short-lived streams: closed streams free their state, memory stays flat,
// and duplicates of remembered streams are still caught.
func TestClosedStreamsFreed(t *testing.T) {
	const streams, perStream, keep = 6000, 5, 100
	l, err := NewLedger(testRun, Config{MaxClosedStreams: keep})
	if err != nil {
		t.Fatal(err)
	}
	a, b := l.Subscriber("a"), l.Subscriber("b")
	var foot []int
	now := int64(0)
	for i := uint32(1); i <= streams; i++ {
		p := l.Stream(i, 0)
		a.Expect(i, 0, now)
		b.Expect(i, 0, now)
		for seq := uint64(1); seq <= perStream; seq++ {
			now += 10 * ms1
			p.Attempt(seq, now)
			p.Result(seq, PublishOK, now)
			a.Deliver(payload(testRun, i, 0, seq, now), false, false, now+ms1)
			b.Deliver(payload(testRun, i, 0, seq, now), false, false, now+ms1)
		}
		p.Close(now)
		l.Advance(now)
		if i == streams/2 || i == streams {
			foot = append(foot, l.MemoryFootprint())
		}
	}
	now += 20 * sec
	l.Advance(now)
	live, remembered := l.Streams()
	if live != 0 || remembered != keep {
		t.Fatalf("streams live %d remembered %d, want 0 and %d", live, remembered, keep)
	}
	if foot[1] > foot[0]+foot[0]/10 {
		t.Errorf("footprint grew from %d to %d", foot[0], foot[1])
	}
	tests := []struct {
		name string
		pub  uint32
		want Arrival
	}{
		{"remembered stream: duplicate", streams, Recorded},
		{"forgotten stream: extra", 1, Recorded},
		{"unknown stream: unexpected", streams + 1, Unexpected},
	}
	for _, tt := range tests {
		intended := (int64(tt.pub-1)*perStream + 2) * 10 * ms1
		if got := a.Deliver(payload(testRun, tt.pub, 0, 2, intended), false, false, now); got != tt.want {
			t.Errorf("%s: Deliver = %v, want %v", tt.name, got, tt.want)
		}
	}
	r := l.Finish(now, true)
	want := Counts{Expected: 2 * streams * perStream, OnTime: 2 * streams * perStream, PublishAttempted: streams * perStream, PublishOK: streams * perStream,
		Duplicates: 1, DupOther: 1, DupSteady: 1, Extra: 1, Unexpected: 1}
	if d := diff(r.Counts, want); d != "" {
		t.Errorf("counts: %s", d)
	}
}

// A closed subscriber is freed once final; its counts stay in the totals.
func TestSubscriberClose(t *testing.T) {
	x := newScen(t, Config{}, 2)
	for seq := uint64(1); seq <= 20; seq++ {
		at := int64(seq) * sec
		x.publish(seq, at, PublishOK)
		x.deliver(1, seq, at+ms1)
		if seq <= 10 {
			x.deliver(0, seq, at+ms1)
		}
		if seq == 10 {
			x.subs[0].Close(at + 500*ms1)
		}
		x.l.Advance(at)
	}
	x.l.Advance(40 * sec)
	if got := x.deliver(0, 3, 40*sec); got != Recorded {
		t.Fatalf("Deliver after release = %v", got)
	}
	r := x.l.Finish(60*sec, true)
	if len(r.Subscribers) != 1 || r.Subscribers[0].Name != "s1" {
		t.Fatalf("subscribers = %+v, want only s1", r.Subscribers)
	}
	x.check(r, plus(pub(20, 0, 0), Counts{Expected: 30, OnTime: 30, Extra: 1}), Pass)
}

// Every recorder method is safe for concurrent use; counts stay exact.
func TestConcurrent(t *testing.T) {
	const pubs, subsN, n = 8, 4, 2000
	l, err := NewLedger(testRun, Config{Rate: 1000})
	if err != nil {
		t.Fatal(err)
	}
	subs := make([]*SubscriberRecorder, subsN)
	for i := range subs {
		subs[i] = l.Subscriber(fmt.Sprintf("s%d", i))
	}
	var progress [pubs]atomic.Int64
	var dups atomic.Uint64
	var wg sync.WaitGroup
	for i := 0; i < pubs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := l.Stream(uint32(i), 7)
			for _, s := range subs {
				s.Expect(uint32(i), 7, 0) // from the publisher's goroutine, as swarm does
			}
			buf := make([]byte, StampSize)
			for seq := uint64(1); seq <= n; seq++ {
				at := int64(seq) * ms1
				p.Attempt(seq, at)
				st := Stamp{Run: testRun, Publisher: uint32(i), Stream: 7, Seq: seq, Intended: at, Sent: at}
				_ = st.Encode(buf)
				for k, s := range subs {
					s.Deliver(buf, false, false, at+ms1)
					if (int(seq)+k+i)%97 == 0 {
						s.Deliver(buf, false, true, at+2*ms1)
						dups.Add(1)
					}
				}
				p.Result(seq, PublishOK, at)
				progress[i].Store(int64(seq))
			}
		}()
	}
	done := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { // finalizes only what every publisher has fully delivered
		defer bg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			min := int64(n)
			for i := range progress {
				min = minInt(min, progress[i].Load())
			}
			now := min*ms1 + int64(16*time.Second)
			l.Advance(now)
			_ = l.Snapshot(now)
			_ = l.MemoryFootprint()
		}
	}()
	wg.Wait()
	close(done)
	bg.Wait()
	r := l.Finish(int64(n)*ms1+int64(time.Minute), true)
	total := uint64(pubs * subsN * n)
	want := Counts{Expected: total, OnTime: total, PublishAttempted: pubs * n, PublishOK: pubs * n,
		Duplicates: dups.Load(), DupRedelivered: dups.Load(), DupSteady: dups.Load()}
	if d := diff(r.Counts, want); d != "" {
		t.Errorf("counts: %s", d)
	}
}

func minInt(a, b int64) int64 {
	if a < b {
		return a
	}
	return b
}

func TestDeliverNoAlloc(t *testing.T) {
	x := newScen(t, Config{}, 1)
	const n = 1000
	bufs := make([][]byte, n)
	for seq := uint64(1); seq <= n; seq++ {
		x.publish(seq, int64(seq)*ms1, PublishOK)
		bufs[seq-1] = payload(testRun, 1, 1, seq, int64(seq)*ms1)
	}
	x.deliver(0, 1, 0) // first arrival makes the subscriber's ring
	i := 0
	allocs := testing.AllocsPerRun(n-10, func() {
		i++
		x.subs[0].Deliver(bufs[i], false, false, int64(i)*ms1+ms1)
		x.subs[0].Deliver(bufs[i], false, false, int64(i)*ms1+ms1) // duplicate
	})
	if allocs != 0 {
		t.Fatalf("Deliver allocates %v times per run, want 0", allocs)
	}
}

// BenchmarkDeliver measures the subscriber's record path: Deliver plus an
// Advance every simulated 100 ms. Publishing (Attempt/Result/Encode) is done
// outside the timer.
func BenchmarkDeliver(b *testing.B) {
	for _, streams := range []int{1, 16} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			const rate = 1000 // per stream
			l, err := NewLedger(testRun, Config{Rate: rate})
			if err != nil {
				b.Fatal(err)
			}
			sub := l.Subscriber("s")
			ps := make([]*StreamRecorder, streams)
			for i := range ps {
				ps[i] = l.Stream(1, uint32(i))
				sub.Expect(1, uint32(i), 0)
			}
			const chunk = 4096
			bufs := make([][]byte, chunk)
			for i := range bufs {
				bufs[i] = make([]byte, 256)
			}
			times := make([]int64, chunk)
			every := rate * streams / 10
			b.ReportAllocs()
			b.ResetTimer()
			for k := 0; k < b.N; k++ {
				j := k % chunk
				if j == 0 {
					b.StopTimer()
					for c := 0; c < chunk; c++ {
						m := k + c
						st := Stamp{Run: testRun, Publisher: 1, Stream: uint32(m % streams), Seq: uint64(m/streams + 1)}
						st.Intended = int64(st.Seq) * sec / rate
						st.Sent = st.Intended
						_ = st.Encode(bufs[c])
						times[c] = st.Intended + ms1
						ps[st.Stream].Attempt(st.Seq, st.Intended)
						ps[st.Stream].Result(st.Seq, PublishOK, st.Intended)
					}
					b.StartTimer()
				}
				sub.Deliver(bufs[j], false, false, times[j])
				if k%every == 0 {
					l.Advance(times[j])
				}
			}
		})
	}
}
