package localbus

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

func testFaults(seed uint64) Faults {
	return Faults{
		Seed: seed, Drop: 0.1, Duplicate: 0.1, Delay: 0.1, Corrupt: 0.1,
		Delays: []time.Duration{30 * time.Millisecond, 120 * time.Millisecond},
		Skip:   func(p []byte) bool { return bytes.HasPrefix(p, []byte("marker")) },
	}
}

func TestDecide(t *testing.T) {
	f := testFaults(42)
	g := f
	g.Seed = 43
	counts := map[Fault]int{}
	same, differ := 0, 0
	const n = 20000
	for i := range n {
		p := []byte(fmt.Sprintf("payload-%d", i))
		a, ai := f.Decide("sub", p)
		b, bi := f.Decide("sub", p)
		if a != b || ai != bi {
			t.Fatalf("Decide not deterministic for %q: %v/%d vs %v/%d", p, a, ai, b, bi)
		}
		if c, _ := g.Decide("sub", p); c == a {
			same++
		} else {
			differ++
		}
		counts[a]++
		if a == Delay && (ai < 0 || ai >= len(f.Delays)) {
			t.Fatalf("delay index %d out of range", ai)
		}
	}
	for _, k := range []Fault{Drop, Duplicate, Delay, Corrupt} {
		if got := counts[k]; got < n/10*8/10 || got > n/10*12/10 {
			t.Errorf("%v decided %d times out of %d, want about 10%%", k, got, n)
		}
	}
	if differ < n/5 {
		t.Errorf("another seed changed only %d of %d decisions", differ, n)
	}
	var zero Faults
	if zero.Enabled() {
		t.Fatal("zero Faults enabled")
	}
	if ft, _ := zero.Decide("s", []byte("x")); ft != NoFault {
		t.Fatalf("zero Faults decided %v", ft)
	}
	// Subscribers are decided independently.
	diffSubs := 0
	for i := range 1000 {
		p := []byte(fmt.Sprintf("p%d", i))
		a, _ := f.Decide("s1", p)
		b, _ := f.Decide("s2", p)
		if a != b {
			diffSubs++
		}
	}
	if diffSubs == 0 {
		t.Fatal("two subscribers always got the same decision")
	}
}

func TestCorrupt(t *testing.T) {
	if corrupt(nil, 1) != nil {
		t.Fatal("corrupt(nil) != nil")
	}
	for _, p := range []string{"a", "~", "hello world", "~~~~"} {
		for h := range uint64(8) {
			c := corrupt([]byte(p), h)
			if len(c) != len(p) {
				t.Fatalf("len changed")
			}
			diff := 0
			for i := range c {
				if c[i] != p[i] {
					diff++
				}
			}
			if diff != 1 {
				t.Fatalf("corrupt(%q,%d) = %q: %d bytes differ, want 1", p, h, c, diff)
			}
		}
	}
}

// expectation is what a subscriber should receive under faults.
type expectation struct {
	exact   map[string]int // payload → copies received intact
	corrupt int            // corrupted copies
	total   int
	inj     Injected
}

func predict(f Faults, sub string, payloads []string) expectation {
	e := expectation{exact: map[string]int{}, inj: Injected{Delayed: make([]uint64, len(f.Delays))}}
	for _, p := range payloads {
		if f.Skip != nil && f.Skip([]byte(p)) {
			e.exact[p]++
			continue
		}
		fault, di := f.Decide(sub, []byte(p))
		e.inj.Deliveries++
		switch fault {
		case NoFault:
			e.exact[p]++
		case Drop:
			e.inj.Dropped++
		case Duplicate:
			e.exact[p] += 2
			e.inj.Duplicated++
		case Delay:
			e.exact[p]++
			e.inj.Delayed[di]++
		case Corrupt:
			e.corrupt++
			e.inj.Corrupted++
		}
	}
	for _, n := range e.exact {
		e.total += n
	}
	e.total += e.corrupt
	return e
}

func addInjected(a, b Injected) Injected {
	out := Injected{
		Deliveries: a.Deliveries + b.Deliveries, Dropped: a.Dropped + b.Dropped,
		Duplicated: a.Duplicated + b.Duplicated, Corrupted: a.Corrupted + b.Corrupted,
	}
	for i := range a.Delayed {
		out.Delayed = append(out.Delayed, a.Delayed[i]+b.Delayed[i])
	}
	return out
}

// received collects one subscriber's deliveries.
type received struct {
	mu      sync.Mutex
	counts  map[string]int
	valid   map[string]bool
	corrupt int
	total   int
}

func newReceived(valid map[string]bool) *received {
	return &received{counts: map[string]int{}, valid: valid}
}

func (r *received) add(p string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total++
	if r.valid[p] {
		r.counts[p]++
	} else {
		r.corrupt++
	}
}

func (r *received) check(t *testing.T, sub string, e expectation) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.corrupt != e.corrupt {
		t.Errorf("%s: %d corrupt copies, want %d", sub, r.corrupt, e.corrupt)
	}
	for p := range r.valid {
		if r.counts[p] != e.exact[p] {
			t.Errorf("%s: %q received %d times, want %d", sub, p, r.counts[p], e.exact[p])
		}
	}
}

// waitReceived waits until sub has received as many copies as predicted, then
// checks them one by one.
func waitReceived(t *testing.T, sub string, r *received, e expectation, b *Bus) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for r.n() < e.total {
		if time.Now().After(deadline) {
			r.check(t, sub, e)
			t.Fatalf("%s: received %d copies, want %d; injected %+v", sub, r.n(), e.total, b.Injected())
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.check(t, sub, e)
}

func (r *received) n() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// faultPayloads are 500 messages with a marker every 100: a corrupted copy
// ('~' or '#' somewhere) never equals a valid payload.
func faultPayloads() ([]string, map[string]bool) {
	var ps []string
	valid := map[string]bool{}
	for i := range 500 {
		if i%100 == 50 {
			m := fmt.Sprintf("marker-%d", i)
			ps, valid[m] = append(ps, m), true
		}
		p := fmt.Sprintf("msg-%04d-%016x", i, mix64(uint64(i)))
		ps, valid[p] = append(ps, p), true
	}
	return ps, valid
}

func TestHTTPFaults(t *testing.T) {
	f := testFaults(7)
	b := startBus(t, Config{MQTTAddr: Disabled, Hold: 300 * time.Millisecond, Faults: f})
	base := b.HTTPURL()
	payloads, valid := faultPayloads()
	subs := []string{"sub-1", "sub-2"}
	recv := map[string]*received{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	started := make(chan struct{}, len(subs))
	for _, sub := range subs {
		r := newReceived(valid)
		recv[sub] = r
		wg.Add(1)
		go func() {
			defer wg.Done()
			var id ids
			first := true
			for ctx.Err() == nil {
				res := poll(ctx, base, "f", sub, id)
				if res.status == http.StatusOK {
					if first {
						if res.body != "marker-start" {
							t.Errorf("%s: first message %q, want marker-start", sub, res.body)
						}
						first = false
						started <- struct{}{}
					} else {
						r.add(res.body)
					}
				}
				id = res.next(id)
			}
		}()
	}
	eventually(t, "subscribers waiting", func() bool { return activeSubscribers(base, "f") == len(subs) })
	publish(t, base, "f", "marker-start")
	for range subs {
		<-started
	}
	for _, p := range payloads {
		publish(t, base, "f", p)
	}
	want := Injected{Delayed: make([]uint64, len(f.Delays))}
	for _, sub := range subs {
		e := predict(f, sub, payloads)
		waitReceived(t, sub, recv[sub], e, b)
		want = addInjected(want, e.inj)
	}
	if got := b.Injected(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Injected() = %+v, want %+v", got, want)
	}
	if want.Dropped == 0 || want.Duplicated == 0 || want.Corrupted == 0 || want.Delayed[0] == 0 || want.Delayed[1] == 0 {
		t.Fatalf("not every fault kind was exercised: %+v", want)
	}
}

// TestHTTPFaultsRepoll: a subscriber that re-polls from an old id (a lost
// response) is not decided, counted or queued twice.
func TestHTTPFaultsRepoll(t *testing.T) {
	f := Faults{Seed: 1, Duplicate: 1}
	b := startBus(t, Config{MQTTAddr: Disabled, Hold: 50 * time.Millisecond, Faults: f})
	base := b.HTTPURL()
	publish(t, base, "ch", "x")
	first := poll(context.Background(), base, "ch", "s", ids{etag: "0"})
	again := poll(context.Background(), base, "ch", "s", ids{etag: "0"}) // "lost" the first answer
	dup := poll(context.Background(), base, "ch", "s", again.next(ids{}))
	none := poll(context.Background(), base, "ch", "s", dup.next(ids{}))
	if first.body != "x" || again.body != "x" || dup.body != "x" || none.status != http.StatusRequestTimeout {
		t.Fatalf("polls = %q %q %q %d, want x x x 408", first.body, again.body, dup.body, none.status)
	}
	// The queued copy comes first and carries the poll's own id; the re-poll
	// then gets the original again without queueing another copy.
	if again.etag != "0" || dup.etag != first.etag {
		t.Fatalf("ids %q %q %q, want %q 0 %q", first.etag, again.etag, dup.etag, first.etag, first.etag)
	}
	if got := b.Injected(); got.Deliveries != 1 || got.Duplicated != 1 {
		t.Fatalf("Injected() = %+v, want 1 delivery, 1 duplicated", got)
	}
}

func TestMQTTFaults(t *testing.T) {
	for _, qos := range []byte{0, 1, 2} {
		t.Run(fmt.Sprintf("qos=%d", qos), func(t *testing.T) {
			f := testFaults(11 + uint64(qos))
			b := startBus(t, Config{HTTPAddr: Disabled, Faults: f})
			payloads, valid := faultPayloads()
			subs := []string{"fsub-1", "fsub-2"}
			recv := map[string]*received{}
			for _, sub := range subs {
				r := newReceived(valid)
				recv[sub] = r
				c, err := mqttConnect(t, b.MQTTAddr(), sub, nil)
				if err != nil {
					t.Fatal(err)
				}
				wait(t, c.Subscribe("f/t", qos, func(_ paho.Client, m paho.Message) { r.add(string(m.Payload())) }), "subscribe")
			}
			pub, err := mqttConnect(t, b.MQTTAddr(), "fpub", nil)
			if err != nil {
				t.Fatal(err)
			}
			toks := make([]paho.Token, 0, len(payloads))
			for _, p := range payloads {
				toks = append(toks, pub.Publish("f/t", qos, false, p))
			}
			for _, tok := range toks {
				wait(t, tok, "publish")
			}
			want := Injected{Delayed: make([]uint64, len(f.Delays))}
			for _, sub := range subs {
				e := predict(f, sub, payloads)
				waitReceived(t, sub, recv[sub], e, b)
				want = addInjected(want, e.inj)
				if qos > 0 {
					eventually(t, sub+"'s inflight store to drain", func() bool {
						cl, ok := b.broker.Clients.Get(sub)
						return ok && cl.State.Inflight.Len() == 0
					})
				}
			}
			if got := b.Injected(); !reflect.DeepEqual(got, want) {
				t.Fatalf("Injected() = %+v, want %+v", got, want)
			}
			if want.Dropped == 0 || want.Duplicated == 0 || want.Corrupted == 0 || want.Delayed[0] == 0 || want.Delayed[1] == 0 {
				t.Fatalf("not every fault kind was exercised: %+v", want)
			}
			if got := b.Requests().MQTTPublishes; got != uint64(len(payloads)) {
				t.Fatalf("MQTTPublishes = %d, want %d", got, len(payloads))
			}
		})
	}
}

// TestMQTTDelayCancelledByClose: Close does not wait for delays to pass.
func TestMQTTDelayCancelledByClose(t *testing.T) {
	f := Faults{Seed: 1, Delay: 1, Delays: []time.Duration{time.Hour}}
	b, err := Start(Config{HTTPAddr: Disabled, Faults: f})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c, err := mqttConnect(t, b.MQTTAddr(), "late", nil)
	if err != nil {
		t.Fatal(err)
	}
	wait(t, c.Subscribe("d", 1, func(paho.Client, paho.Message) {}), "subscribe")
	wait(t, c.Publish("d", 1, false, "x"), "publish")
	eventually(t, "the delay to be decided", func() bool { return b.Injected().Delayed[0] == 1 })
	done := make(chan struct{})
	go func() { b.Close(); close(done) }()
	eventually(t, "Close to return", func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
}

func TestFaultsDisabledCountNothing(t *testing.T) {
	b := startBus(t, httpOnly(50*time.Millisecond))
	publish(t, b.HTTPURL(), "ch", "x")
	poll(context.Background(), b.HTTPURL(), "ch", "s", ids{etag: "0"})
	if got := b.Injected(); got.Deliveries != 0 || len(got.Delayed) != 0 {
		t.Fatalf("Injected() = %+v without faults", got)
	}
	if !strings.Contains(fmt.Sprint(Delay), "delay") {
		t.Fatal(Delay.String())
	}
}
