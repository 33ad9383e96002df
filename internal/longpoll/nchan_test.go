package longpoll

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
)

// nchanURL returns the real Nchan to test against, or skips.
func nchanURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("EVENTSWARM_NCHAN")
	if u == "" {
		t.Skip("set EVENTSWARM_NCHAN=http://127.0.0.1:18080 (see .ci/run; `bash .ci/services start`) to run against Nchan")
	}
	return u
}

func TestNchanCheck(t *testing.T) {
	u := nchanURL(t)
	if err := newClient(t, Config{URL: u}).Check(context.Background()); err != nil {
		t.Fatalf("Check() = %v", err)
	}
	err := newClient(t, Config{URL: u, SubPath: "subscribe/"}).Check(context.Background())
	if !errors.Is(err, bus.ErrRefused) || !strings.Contains(err.Error(), "--sub-path") {
		t.Fatalf("Check() with a wrong sub path = %v, want ErrRefused naming --sub-path", err)
	}
}

func TestNchanRoundTrip(t *testing.T) {
	u := nchanURL(t)
	c := newClient(t, Config{URL: u})
	run := fmt.Sprint(time.Now().UnixNano())
	chA, chB := "lp-a-"+run, "lp-b-"+run
	sub, rec := dial(t, c, "sub-"+run)
	pub, pubRec := dial(t, c, "pub-"+run)

	// A channel nobody listens on queues: 202.
	if err := pub.Publish(context.Background(), "lp-none-"+run, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if e := pubRec.eventsOf(bus.Published); e[0].Status != http.StatusAccepted {
		t.Errorf("publish without subscriber: status %d, want 202", e[0].Status)
	}

	if err := sub.Subscribe(context.Background(), []string{chA, chB}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "Subscribed", func() bool { return rec.count(bus.Subscribed) == 1 })
	// Nchan sends a new subscriber only newer messages, and Subscribed means the
	// request was written, not yet registered: warm up until one arrives.
	waitUntil(t, "a warm-up message", func() bool {
		if err := pub.Publish(context.Background(), chA, []byte("warm")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		return len(rec.messages()) > 0
	})

	const n = 300
	for i := range n {
		ch := chA
		if i%3 == 0 {
			ch = chB
		}
		if err := pub.Publish(context.Background(), ch, fmt.Appendf(nil, "m%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int {
		k := 0
		for _, m := range rec.messages() {
			if strings.HasPrefix(m, "m") {
				k++
			}
		}
		return k
	}
	waitUntil(t, fmt.Sprint(n, " messages"), func() bool { return count() >= n })
	if err := pub.Publish(context.Background(), chB, []byte("end")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the end marker", func() bool {
		m := rec.messages()
		return m[len(m)-1] == "end"
	})
	// Nchan orders a multiplexed poll per channel, not across channels.
	seen := make(map[string]bool)
	last := map[bool]int{false: -1, true: -1} // by "is channel B"
	for _, m := range rec.messages() {
		var i int
		if _, err := fmt.Sscanf(m, "m%03d", &i); err != nil {
			continue
		}
		if seen[m] {
			t.Errorf("duplicate %q", m)
		}
		seen[m] = true
		if onB := i%3 == 0; i < last[onB] {
			t.Errorf("%q after m%03d on the same channel", m, last[onB])
		} else {
			last[onB] = i
		}
	}
	if len(seen) != n {
		t.Errorf("got %d distinct messages, want %d", len(seen), n)
	}
	var created int
	for _, e := range pubRec.eventsOf(bus.Published) {
		if e.Status == http.StatusCreated {
			created++
		}
	}
	if created == 0 {
		t.Error("no publish saw 201 (a waiting subscriber)")
	}
	if d := rec.count(bus.Disconnected); d != 0 {
		t.Errorf("got %d Disconnected events: %v", d, rec.eventsOf(bus.Disconnected))
	}
}

func TestNchanCloseCutsHeldPoll(t *testing.T) {
	u := nchanURL(t)
	c := newClient(t, Config{URL: u})
	conn, rec := dial(t, c, "cut")
	if err := conn.Subscribe(context.Background(), []string{fmt.Sprint("lp-cut-", time.Now().UnixNano())}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "Subscribed", func() bool { return rec.count(bus.Subscribed) == 1 })
	done := make(chan struct{})
	go func() { _ = conn.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second): // hang guard; Nchan holds for 25s
		t.Fatal("Close did not return while a poll was held")
	}
}
