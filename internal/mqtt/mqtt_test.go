package mqtt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/bustest"
	mpackets "github.com/mochi-mqtt/server/v2/packets"
)

func dial(t testing.TB, c *Client, ctx context.Context, id string, h bus.Handler) *Conn {
	t.Helper()
	conn, err := c.Dial(ctx, id, h)
	if err != nil {
		t.Fatalf("Dial %s: %v", id, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestRoundTrip(t *testing.T) {
	b := startBroker(t, brokerOpts{})
	for _, qos := range []byte{0, 1, 2} {
		t.Run(fmt.Sprintf("qos=%d", qos), func(t *testing.T) {
			ctx := context.Background()
			c := newClient(t, Config{URL: "mqtt://" + b.addr, QoS: qos, QoSSet: true})
			var subRec, pubRec recorder
			sub := dial(t, c, ctx, fmt.Sprintf("sub-%d", qos), &subRec)
			pub := dial(t, c, ctx, fmt.Sprintf("pub-%d", qos), &pubRec)
			topic := fmt.Sprintf("rt/%d", qos)
			if err := sub.Subscribe(ctx, []string{topic}); err != nil {
				t.Fatalf("Subscribe: %v", err)
			}
			if got := subRec.eventsOf(bus.Subscribed); len(got) != 1 || !slices.Equal(got[0].Granted, []byte{qos}) || got[0].Err != nil {
				t.Fatalf("Subscribed events: got %+v, want one with Granted [%d]", got, qos)
			}
			const n = 50
			for i := range n {
				if err := pub.Publish(ctx, topic, fmt.Appendf(nil, "m%03d", i)); err != nil {
					t.Fatalf("Publish %d: %v", i, err)
				}
			}
			pollUntil(t, "all messages", func() bool { return subRec.numMessages() >= n })
			got := map[string]int{}
			for _, m := range subRec.messages() {
				if m.Topic != topic || m.Retained {
					t.Errorf("message %+v: want topic %q, not retained", m, topic)
				}
				got[string(m.Payload)]++
			}
			for i := range n {
				if k := fmt.Sprintf("m%03d", i); got[k] != 1 {
					t.Errorf("message %s: got %d copies, want 1", k, got[k])
				}
			}
			pubs := pubRec.eventsOf(bus.Published)
			if len(pubs) != n {
				t.Fatalf("Published events: got %d, want %d", len(pubs), n)
			}
			for _, e := range pubs {
				if e.Err != nil || e.Latency <= 0 {
					t.Fatalf("Published event %+v: want Err nil and a latency", e)
				}
			}
			if ks := pubRec.kinds(); !slices.Equal(ks, []bus.EventKind{bus.Connected}) {
				t.Fatalf("publisher events: got %v, want [connected]", ks)
			}
		})
	}
}

func TestSubscribeGrants(t *testing.T) {
	zero := byte(0)
	tests := []struct {
		name        string
		opts        brokerOpts
		topics      []string
		wantGranted []byte
		wantRefused bool
		wantDown    bool
		wantKept    []string
	}{
		{name: "all granted", topics: []string{"a/1", "a/+"}, wantGranted: []byte{1, 1}, wantKept: []string{"a/1", "a/+"}},
		{name: "downgraded", opts: brokerOpts{maxQoS: &zero}, topics: []string{"a/1"}, wantGranted: []byte{0}, wantRefused: true, wantDown: true, wantKept: []string{"a/1"}},
		{name: "refused", opts: brokerOpts{denySub: "denied/"}, topics: []string{"ok/1", "denied/1"}, wantGranted: []byte{1, 0x80}, wantRefused: true, wantKept: []string{"ok/1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBroker(t, tt.opts)
			c := newClient(t, Config{URL: "mqtt://" + b.addr, QoS: 1})
			var rec recorder
			conn := dial(t, c, context.Background(), "grants", &rec)
			err := conn.Subscribe(context.Background(), tt.topics)
			if got := errors.Is(err, bus.ErrRefused); got != tt.wantRefused {
				t.Errorf("errors.Is(%v, ErrRefused) = %v, want %v", err, got, tt.wantRefused)
			}
			if got := errors.Is(err, ErrQoSDowngraded); got != tt.wantDown {
				t.Errorf("errors.Is(%v, ErrQoSDowngraded) = %v, want %v", err, got, tt.wantDown)
			}
			subs := rec.eventsOf(bus.Subscribed)
			if len(subs) != 1 || !slices.Equal(subs[0].Granted, tt.wantGranted) {
				t.Fatalf("Subscribed events: got %+v, want Granted %v", subs, tt.wantGranted)
			}
			if (subs[0].Err != nil) != (err != nil) {
				t.Errorf("Subscribed.Err = %v, want it to match the returned %v", subs[0].Err, err)
			}
			conn.smu.Lock()
			kept := slices.Clone(conn.topics)
			conn.smu.Unlock()
			if !slices.Equal(kept, tt.wantKept) {
				t.Errorf("remembered topics: got %q, want %q", kept, tt.wantKept)
			}
		})
	}
}

// afterConnect returns the event kinds after the first Connected, Subscribed pair.
func afterSetup(t *testing.T, ks []bus.EventKind) []bus.EventKind {
	t.Helper()
	if len(ks) < 2 || ks[0] != bus.Connected || ks[1] != bus.Subscribed {
		t.Fatalf("events: got %v, want [connected subscribed …]", ks)
	}
	return ks[2:]
}

// checkOutage checks the events of one outage: disconnected, retrying (one or
// more), connected, subscribed.
func checkOutage(t *testing.T, ks []bus.EventKind) {
	t.Helper()
	// Each attempt: Retrying before it, Dialled after it.
	ok := len(ks) >= 5 && ks[0] == bus.Disconnected && ks[len(ks)-2] == bus.Connected && ks[len(ks)-1] == bus.Subscribed &&
		(len(ks)-3)%2 == 0
	for i, k := range ks[1 : len(ks)-2] {
		want := bus.Retrying
		if i%2 == 1 {
			want = bus.Dialled
		}
		ok = ok && k == want
	}
	if !ok {
		t.Fatalf("outage events: got %v, want [disconnected (retrying dialled)… connected subscribed]", ks)
	}
}

func roundTrip(t *testing.T, pub *Conn, rec *recorder, topic, payload string) {
	t.Helper()
	before := rec.numMessages()
	if err := pub.Publish(context.Background(), topic, []byte(payload)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	pollUntil(t, "delivery of "+payload, func() bool { return rec.numMessages() > before })
	if m := rec.messages()[before]; string(m.Payload) != payload {
		t.Fatalf("got %q, want %q", m.Payload, payload)
	}
}

func TestReconnectAfterKick(t *testing.T) {
	b := startBroker(t, brokerOpts{})
	c := newClient(t, Config{URL: "mqtt://" + b.addr, Backoff: fastBackoff})
	ctx := context.Background()
	var subRec, pubRec recorder
	sub := dial(t, c, ctx, "kick-sub", &subRec)
	pub := dial(t, c, ctx, "kick-pub", &pubRec)
	if err := sub.Subscribe(ctx, []string{"k/1", "k/2"}); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, pub, &subRec, "k/1", "before")

	for round := 1; round <= 2; round++ {
		b.kick(t, "kick-sub")
		pollUntil(t, "resubscribed", func() bool { return len(subRec.eventsOf(bus.Subscribed)) == round+1 })
		roundTrip(t, pub, &subRec, "k/2", fmt.Sprintf("after-%d", round))
	}
	ks := afterSetup(t, subRec.kinds())
	i := slices.Index(ks, bus.Subscribed)
	checkOutage(t, ks[:i+1])
	checkOutage(t, ks[i+1:])
	last := subRec.eventsOf(bus.Subscribed)[2]
	if !slices.Equal(last.Granted, []byte{1, 1}) || last.Err != nil {
		t.Fatalf("resubscribe: got %+v, want Granted [1 1]", last)
	}
	if d := subRec.eventsOf(bus.Disconnected)[0]; d.Err == nil {
		t.Fatal("Disconnected event without Err")
	}
}

func TestReconnectBrokerRestart(t *testing.T) {
	b := startBroker(t, brokerOpts{})
	addr := b.addr
	c := newClient(t, Config{URL: "mqtt://" + addr, Backoff: fastBackoff})
	ctx := context.Background()
	var subRec, pubRec recorder
	sub := dial(t, c, ctx, "restart-sub", &subRec)
	if err := sub.Subscribe(ctx, []string{"r/1"}); err != nil {
		t.Fatal(err)
	}
	b.close()
	pollUntil(t, "several failed attempts", func() bool { return len(subRec.eventsOf(bus.Retrying)) >= 3 })
	// The failed attempts are refused connects, reported on Retrying.
	if r := subRec.eventsOf(bus.Retrying)[2]; !errors.Is(r.Err, bus.ErrUnreachable) {
		t.Errorf("Retrying.Err = %v, want it to wrap bus.ErrUnreachable", r.Err)
	}
	startBroker(t, brokerOpts{addr: addr})
	pollUntil(t, "resubscribed", func() bool { return len(subRec.eventsOf(bus.Subscribed)) == 2 })
	// Every reconnect attempt is reported on Dialled: the refused ones with the
	// class, the last one (the success) without an error.
	ds := subRec.eventsOf(bus.Dialled)
	for _, d := range ds[:len(ds)-1] {
		if bus.Classify(d.Err) != bus.ClassRefused {
			t.Errorf("failed reconnect Dialled.Err = %v, want class refused", d.Err)
		}
	}
	if len(ds) < 3 || ds[len(ds)-1].Err != nil {
		t.Errorf("Dialled events %+v: want >= 2 refused attempts, then a success", ds)
	}
	checkOutage(t, afterSetup(t, subRec.kinds()))
	pub := dial(t, c, ctx, "restart-pub", &pubRec)
	roundTrip(t, pub, &subRec, "r/1", "after restart")
}

func TestCloseDuringBackoff(t *testing.T) {
	b := startBroker(t, brokerOpts{})
	base := runtime.NumGoroutine()
	c := newClient(t, Config{URL: "mqtt://" + b.addr, Backoff: backoff.Config{Initial: time.Hour, Max: time.Hour, Multiplier: 1}})
	var rec recorder
	conn, err := c.Dial(context.Background(), "backoff", &rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Subscribe(context.Background(), []string{"x"}); err != nil {
		t.Fatal(err)
	}
	// Make the hour-long wait certain: rnd is math/rand, so the first delay could be tiny.
	conn.mu.Lock()
	conn.bo = backoff.New(backoff.Config{Initial: time.Hour, Max: time.Hour, Multiplier: 1}, func(n int64) int64 { return n - 1 })
	conn.mu.Unlock()
	b.kick(t, "backoff")
	pollUntil(t, "retrying", func() bool { return len(rec.eventsOf(bus.Retrying)) == 1 })
	if err := conn.Publish(context.Background(), "x", []byte("p")); !errors.Is(err, ErrNotConnected) || bus.Classify(err) != bus.ClassReset {
		t.Fatalf("Publish while reconnecting: got %v (class %v), want ErrNotConnected (reset)", err, bus.Classify(err))
	}
	if err := conn.Subscribe(context.Background(), []string{"y"}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Subscribe while reconnecting: got %v, want ErrNotConnected", err)
	}
	done := make(chan struct{})
	go func() { _ = conn.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // a hang guard, not a timing assertion: the wait is an hour
		t.Fatal("Close did not return during the backoff wait")
	}
	if ks := rec.kinds(); !slices.Equal(ks, []bus.EventKind{bus.Connected, bus.Subscribed, bus.Disconnected, bus.Retrying}) {
		t.Fatalf("events: got %v", ks)
	}
	waitGoroutines(t, base)
}

func TestContextCancelStops(t *testing.T) {
	b := startBroker(t, brokerOpts{})
	base := runtime.NumGoroutine()
	c := newClient(t, Config{URL: "mqtt://" + b.addr, Backoff: fastBackoff})
	ctx, cancel := context.WithCancel(context.Background())
	var rec, pubRec recorder
	conn, err := c.Dial(ctx, "cancel", &rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Subscribe(ctx, []string{"c/1"}); err != nil {
		t.Fatal(err)
	}
	pub := dial(t, c, context.Background(), "cancel-pub", &pubRec)
	roundTrip(t, pub, &rec, "c/1", "one")
	cancel()
	pollUntil(t, "broker to see the client go", func() bool {
		_, ok := b.srv.Clients.Get("cancel")
		return !ok
	})
	if err := conn.Publish(context.Background(), "c/1", []byte("x")); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Publish after cancel: got %v, want ErrNotConnected", err)
	}
	_ = pub.Close()
	_ = conn.Close() // idempotent after the context ended
	waitGoroutines(t, base)
	if ks := rec.kinds(); !slices.Equal(ks, []bus.EventKind{bus.Connected, bus.Subscribed}) {
		t.Fatalf("events: got %v, want no reconnect after cancel", ks)
	}
}

// TestAbort: Close says DISCONNECT; Abort sends nothing and resets the
// connection (the broker reads a reset, not a goodbye). Both end the Conn's
// goroutines, and neither reconnects.
func TestAbort(t *testing.T) {
	b := startBroker(t, brokerOpts{})
	base := runtime.NumGoroutine()
	c := newClient(t, Config{URL: "mqtt://" + b.addr, Backoff: fastBackoff})
	var politeRec, abortRec recorder
	polite := dial(t, c, context.Background(), "polite", &politeRec)
	abort := dial(t, c, context.Background(), "abort", &abortRec)
	if err := abort.Subscribe(context.Background(), []string{"a/1"}); err != nil {
		t.Fatal(err)
	}
	_ = polite.Close()
	if err := bus.Aborter(abort).Abort(); err != nil {
		t.Fatal(err)
	}
	var politeErr, abortErr error
	pollUntil(t, "broker to see both clients go", func() bool {
		var ok1, ok2 bool
		politeErr, ok1 = b.hook.disconnected("polite")
		abortErr, ok2 = b.hook.disconnected("abort")
		return ok1 && ok2
	})
	if politeErr != nil && !errors.Is(politeErr, mpackets.CodeDisconnect) {
		t.Errorf("after Close the broker saw %v; want a DISCONNECT", politeErr)
	}
	if !errors.Is(abortErr, syscall.ECONNRESET) {
		t.Errorf("after Abort the broker saw %v; want a connection reset", abortErr)
	}
	if err := abort.Publish(context.Background(), "a/1", []byte("x")); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Publish after Abort: got %v, want ErrNotConnected", err)
	}
	_ = abort.Close() // idempotent
	waitGoroutines(t, base)
	if ks := abortRec.kinds(); !slices.Equal(ks, []bus.EventKind{bus.Connected, bus.Subscribed}) {
		t.Errorf("events after Abort: got %v, want no disconnect or reconnect", ks)
	}
}

func TestNoLeakAfterReconnects(t *testing.T) {
	b := startBroker(t, brokerOpts{})
	base := runtime.NumGoroutine()
	c := newClient(t, Config{URL: "mqtt://" + b.addr, Backoff: fastBackoff})
	var rec recorder
	conn, err := c.Dial(context.Background(), "leak", &rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Subscribe(context.Background(), []string{"l"}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		b.kick(t, "leak")
		pollUntil(t, "reconnect", func() bool { return len(rec.eventsOf(bus.Subscribed)) == i+1 })
	}
	_ = conn.Close()
	waitGoroutines(t, base)
}

func TestPublishOutcomeUnknown(t *testing.T) {
	f := startFake(t, serveMuteBroker)
	c := newClient(t, Config{URL: "mqtt://" + f.addr(), QoS: 1, PublishTimeout: 100 * time.Millisecond})
	var rec recorder
	conn := dial(t, c, context.Background(), "mute", &rec)

	err := conn.Publish(context.Background(), "t", []byte("p"))
	if !errors.Is(err, bus.ErrUnknownOutcome) || bus.Classify(err) != bus.ClassTimeout {
		t.Fatalf("Publish without PUBACK: got %v, want ErrUnknownOutcome (timeout)", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := conn.Publish(ctx, "t", []byte("p")); errors.Is(err, bus.ErrUnknownOutcome) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish with a dead ctx: got %v, want context.Canceled, not sent", err)
	}
	pubs := rec.eventsOf(bus.Published)
	if len(pubs) != 2 || !errors.Is(pubs[0].Err, bus.ErrUnknownOutcome) {
		t.Fatalf("Published events: got %+v", pubs)
	}
}

func TestPublishCtxEndsWhileWaiting(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := startFake(t, func(c net.Conn) {
		serveMuteBrokerFunc(c, func(typ byte) {
			if typ == 3 { // PUBLISH arrived: the outcome is now unknown
				cancel()
			}
		})
	})
	c := newClient(t, Config{URL: "mqtt://" + f.addr(), QoS: 2, PublishTimeout: time.Hour})
	var rec recorder
	conn := dial(t, c, context.Background(), "mute2", &rec)
	err := conn.Publish(ctx, "t", []byte("p"))
	if !errors.Is(err, bus.ErrUnknownOutcome) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want ErrUnknownOutcome and context.Canceled", err)
	}
}

func TestSourceAddrs(t *testing.T) {
	b := startBroker(t, brokerOpts{})
	c := newClient(t, Config{URL: "mqtt://" + b.addr, SourceAddrs: []string{"127.0.0.2", "127.0.0.3"}})
	var rec recorder
	for i, want := range []string{"127.0.0.2:", "127.0.0.3:", "127.0.0.2:"} {
		id := fmt.Sprintf("src-%d", i)
		dial(t, c, context.Background(), id, &rec)
		cl, ok := b.srv.Clients.Get(id)
		if !ok {
			t.Fatalf("broker has no client %s", id)
		}
		if !strings.HasPrefix(cl.Net.Remote, want) {
			t.Errorf("client %s: remote %s, want %s*", id, cl.Net.Remote, want)
		}
	}
}

func TestDialErrors(t *testing.T) {
	b := startBroker(t, brokerOpts{user: "u", pass: "p"})
	garbage := startFake(t, serveGarbage)
	tests := []struct {
		name string
		cfg  Config
		want error
	}{
		{"refused port", Config{URL: "mqtt://" + bustest.DeadAddr(t)}, bus.ErrUnreachable},
		{"bad credentials", Config{URL: "mqtt://" + b.addr, Username: "u", Password: "wrong"}, bus.ErrRefused},
		{"no credentials", Config{URL: "mqtt://" + b.addr}, bus.ErrRefused},
		{"garbage", Config{URL: "mqtt://" + garbage.addr()}, bus.ErrProtocol},
		{"good credentials", Config{URL: "mqtt://" + b.addr, Username: "u", Password: "p"}, nil},
		{"credentials in URL", Config{URL: "mqtt://u:p@" + b.addr}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, tt.cfg)
			var rec recorder
			conn, err := c.Dial(context.Background(), "dial-"+strings.ReplaceAll(tt.name, " ", "-"), &rec)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				_ = conn.Close()
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Dial: got %v, want %v", err, tt.want)
			}
			if conn != nil {
				t.Fatal("Dial returned a Conn with an error")
			}
		})
	}
}

func TestDialCanceled(t *testing.T) {
	f := startFake(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }) // never answers CONNECT
	c := newClient(t, Config{URL: "mqtt://" + f.addr(), ConnectTimeout: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	var rec recorder
	go func() {
		_, err := c.Dial(ctx, "canceled", &rec)
		errc <- err
	}()
	pollUntil(t, "the fake broker to get the connection", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.conns) == 1
	})
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial: got %v, want context.Canceled", err)
	}
}
