package longpoll

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/bustest"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none means valid
	}{
		{"http", Config{URL: "http://127.0.0.1:8080"}, nil},
		{"https with prefix", Config{URL: "https://bus.example/nchan/", Insecure: true}, nil},
		{"paths", Config{URL: "http://h:1", PubPath: "/p", SubPath: "s/x/"}, nil},
		{"source addrs", Config{URL: "http://h:1", SourceAddrs: []string{"127.0.0.2", "::1"}}, nil},
		{"empty", Config{}, []string{"longpoll: --target: URL is empty"}},
		{"scheme", Config{URL: "mqtt://h:1883"}, []string{"scheme must be http or https"}},
		{"no host", Config{URL: "http:///x"}, []string{"no host"}},
		{"query", Config{URL: "http://h/?a=1"}, []string{"query and fragment"}},
		{"bad url", Config{URL: "http://h:port"}, []string{"longpoll: --target"}},
		{"all at once", Config{URL: "ftp://h", PubPath: "a b", SubPath: "x?y", MaxConns: -1, PollTimeout: -1,
			Backoff: backoff.Config{Initial: -1}, SourceAddrs: []string{"nope"}},
			[]string{"scheme", "--pub-path", "--sub-path", "max conns", "poll timeout", "backoff", `"nope"`}},
		{"slash only path", Config{URL: "http://h", PubPath: "/"}, []string{"--pub-path", "empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if _, err := New(tt.cfg); err != nil {
					t.Fatalf("New() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
			if _, err := New(tt.cfg); err == nil {
				t.Error("New() = nil error for an invalid config")
			}
		})
	}
}

func TestPaths(t *testing.T) {
	tests := []struct {
		url, pub, sub      string
		wantPub, wantSub   string
		wantHost, wantAddr string
	}{
		{"http://127.0.0.1:1", "", "", "/pub/", "/sub/", "127.0.0.1:1", "127.0.0.1:1"},
		{"http://h/nchan", "p", "/s/", "/nchan/p/", "/nchan/s/", "h", "h:80"},
		{"https://h/a/", "x/y", "z", "/a/x/y/", "/a/z/", "h", "h:443"},
	}
	for _, tt := range tests {
		c, err := New(Config{URL: tt.url, PubPath: tt.pub, SubPath: tt.sub})
		if err != nil {
			t.Fatal(err)
		}
		if c.pubPrefix != tt.wantPub || c.subPrefix != tt.wantSub || c.t.host != tt.wantHost || c.t.addr != tt.wantAddr {
			t.Errorf("%s: got pub %q sub %q host %q addr %q, want %q %q %q %q", tt.url,
				c.pubPrefix, c.subPrefix, c.t.host, c.t.addr, tt.wantPub, tt.wantSub, tt.wantHost, tt.wantAddr)
		}
	}
}

func newClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func dial(t testing.TB, c *Client, id string) (*Conn, *recorder) {
	t.Helper()
	rec := &recorder{}
	conn, err := c.Dial(context.Background(), id, rec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn, rec
}

// subscribed subscribes conn and waits until the server holds its poll on every channel.
func subscribed(t testing.TB, f *fakeNchan, conn *Conn, chs ...string) {
	t.Helper()
	if err := conn.Subscribe(context.Background(), chs); err != nil {
		t.Fatal(err)
	}
	for _, ch := range chs {
		waitUntil(t, "poll held on "+ch, func() bool { return f.waitingOn(ch) > 0 })
	}
}

func TestRoundTrip(t *testing.T) {
	f := newFakeNchan(t, time.Minute)
	c := newClient(t, Config{URL: f.URL()})
	sub, rec := dial(t, c, "sub-1")
	pub, pubRec := dial(t, c, "pub-1")
	subscribed(t, f, sub, "room")

	big := strings.Repeat("x", 4096)
	tests := []struct {
		name, ch, payload string
		wantStatus        int
	}{
		{"status=201 waiting subscriber", "room", "hello", http.StatusCreated},
		{"status=202 queued", "empty-room", "nobody", http.StatusAccepted},
		{"status=201 payload=4KB", "room", big, http.StatusCreated},
	}
	want := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.ch == "room" {
				waitUntil(t, "poll held", func() bool { return f.waitingOn("room") > 0 })
			}
			if err := pub.Publish(context.Background(), tt.ch, []byte(tt.payload)); err != nil {
				t.Fatalf("Publish() = %v", err)
			}
			evs := pubRec.eventsOf(bus.Published)
			if e := evs[len(evs)-1]; e.Status != tt.wantStatus || e.Err != nil || e.Latency <= 0 {
				t.Errorf("Published event = %+v, want status %d, no error, latency > 0", e, tt.wantStatus)
			}
			if tt.ch == "room" {
				want++
				waitUntil(t, "delivery", func() bool { return len(rec.messages()) == want })
				if got := rec.messages()[want-1]; got != tt.payload {
					t.Errorf("got payload of %d bytes, want %d", len(got), len(tt.payload))
				}
			}
		})
	}
	if n := rec.count(bus.Subscribed); n != 1 {
		t.Errorf("got %d Subscribed events, want 1", n)
	}
	if n := rec.count(bus.Connected); n != 1 {
		t.Errorf("got %d Connected events, want 1", n)
	}
	for _, e := range rec.eventsOf(bus.Polled) {
		if e.Status != http.StatusOK || e.Err != nil {
			t.Errorf("Polled event %+v, want 200 without error", e)
		}
	}
	for _, cur := range f.cursorLog() {
		if cur.subscriber != "sub-1" {
			t.Errorf("poll carried X-Eventswarm-Subscriber %q, want sub-1", cur.subscriber)
		}
	}
}

func TestPublishErrors(t *testing.T) {
	f := newFakeNchan(t, time.Minute)
	c := newClient(t, Config{URL: f.URL(), PublishTimeout: 300 * time.Millisecond})
	conn, rec := dial(t, c, "p")

	for _, st := range []int{403, 404, 500, 503} {
		t.Run(fmt.Sprintf("status=%d", st), func(t *testing.T) {
			f.pubStatus.Store(int32(st))
			err := conn.Publish(context.Background(), "ch", []byte("x"))
			var se *bus.StatusError
			if !errors.As(err, &se) || se.Status != st {
				t.Fatalf("Publish() = %v, want a StatusError %d", err, st)
			}
			if errors.Is(err, bus.ErrUnknownOutcome) {
				t.Errorf("Publish() = %v: a status is a known outcome", err)
			}
		})
	}
	f.pubStatus.Store(0)

	t.Run("bad channel", func(t *testing.T) {
		for _, ch := range []string{"", "a/b", "a,b", "a b", "a?b", "a\nb"} {
			if err := conn.Publish(context.Background(), ch, nil); !errors.Is(err, ErrChannel) {
				t.Errorf("Publish(%q) = %v, want ErrChannel", ch, err)
			}
		}
	})

	t.Run("no answer is unknown outcome", func(t *testing.T) {
		ln := silentListener(t)
		c := newClient(t, Config{URL: "http://" + ln, PublishTimeout: 200 * time.Millisecond})
		conn, _ := dial(t, c, "p")
		err := conn.Publish(context.Background(), "ch", []byte("x"))
		if !errors.Is(err, bus.ErrUnknownOutcome) || bus.Classify(err) != bus.ClassTimeout {
			t.Fatalf("Publish() = %v (class %v), want ErrUnknownOutcome, class timeout", err, bus.Classify(err))
		}
	})

	t.Run("refused is not unknown", func(t *testing.T) {
		c := newClient(t, Config{URL: "http://" + bustest.DeadAddr(t)})
		conn, _ := dial(t, c, "p")
		err := conn.Publish(context.Background(), "ch", []byte("x"))
		if err == nil || errors.Is(err, bus.ErrUnknownOutcome) || bus.Classify(err) != bus.ClassRefused {
			t.Fatalf("Publish() = %v (class %v), want a refused error, not unknown outcome", err, bus.Classify(err))
		}
	})

	t.Run("closed", func(t *testing.T) {
		conn, _ := dial(t, c, "p2")
		_ = conn.Close()
		if err := conn.Publish(context.Background(), "ch", nil); !errors.Is(err, ErrClosed) {
			t.Fatalf("Publish() after Close = %v, want ErrClosed", err)
		}
	})
	if n := rec.count(bus.Published); n != 4 {
		t.Errorf("got %d Published events, want 4", n)
	}
}

func TestRepollResendsPreviousHeaders(t *testing.T) {
	f := newFakeNchan(t, 20*time.Millisecond)
	c := newClient(t, Config{URL: f.URL(), MinHold: 5 * time.Millisecond})
	conn, rec := dial(t, c, "s")
	subscribed(t, f, conn, "ch")
	if err := conn.Publish(context.Background(), "ch", []byte("one")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "first delivery", func() bool { return len(rec.messages()) == 1 })
	n := f.subReqs.Load()
	waitUntil(t, "three 408 cycles", func() bool { return f.subReqs.Load() >= n+4 })
	waitUntil(t, "a held poll", func() bool { return f.waitingOn("ch") > 0 })
	before := len(f.cursorLog()) // polls that carried the cursor of "one"
	if err := conn.Publish(context.Background(), "ch", []byte("two")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "second delivery", func() bool { return len(rec.messages()) == 2 })

	log := f.cursorLog()
	if log[0].etag != "" || log[0].lm != "" {
		t.Errorf("first poll sent cursor %+v, want none", log[0])
	}
	first := log[1]
	if first.etag == "" {
		t.Fatal("second poll sent no cursor")
	}
	for _, cur := range log[1:before] {
		if cur != first {
			t.Errorf("poll after 408 sent %+v, want the previous %+v", cur, first)
		}
	}
	if got := rec.messages(); got[0] != "one" || got[1] != "two" {
		t.Errorf("got %q, want [one two]", got)
	}
	if n408 := countStatus(rec, http.StatusRequestTimeout); n408 < 3 {
		t.Errorf("got %d Polled(408), want >= 3", n408)
	}
	if n := rec.count(bus.Disconnected); n != 0 {
		t.Errorf("got %d Disconnected events on 408s, want 0", n)
	}
	if inv := f.inventedIDs(); len(inv) > 0 {
		t.Errorf("server saw ids it never issued: %q", inv)
	}
}

func countStatus(rec *recorder, st int) int {
	n := 0
	for _, e := range rec.eventsOf(bus.Polled) {
		if e.Status == st {
			n++
		}
	}
	return n
}

func TestIDEchoNoLossNoDup(t *testing.T) {
	f := newFakeNchan(t, 50*time.Millisecond)
	c := newClient(t, Config{URL: f.URL(), MinHold: 10 * time.Millisecond})
	conn, rec := dial(t, c, "s")
	pub, _ := dial(t, c, "p")
	subscribed(t, f, conn, "a", "b")
	const n = 300
	for i := range n {
		ch := "a"
		if i%2 == 1 {
			ch = "b"
		}
		if err := pub.Publish(context.Background(), ch, fmt.Appendf(nil, "m%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "all deliveries", func() bool { return len(rec.messages()) >= n })
	got := rec.messages()
	if len(got) != n {
		t.Fatalf("got %d messages, want %d", len(got), n)
	}
	for i, m := range got {
		if want := fmt.Sprintf("m%03d", i); m != want {
			t.Fatalf("message %d = %q, want %q (loss, dup or reorder)", i, m, want)
		}
	}
	if inv := f.inventedIDs(); len(inv) > 0 {
		t.Errorf("server saw ids it never issued: %q", inv)
	}
}

func TestMultiplexed(t *testing.T) {
	f := newFakeNchan(t, time.Minute)
	c := newClient(t, Config{URL: f.URL()})
	conn, rec := dial(t, c, "s")
	pub, _ := dial(t, c, "p")
	chs := []string{"c1", "c2", "c3"}
	subscribed(t, f, conn, chs...)
	for _, ch := range append(chs, "other") {
		if err := pub.Publish(context.Background(), ch, []byte(ch)); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "three deliveries", func() bool { return len(rec.messages()) >= 3 })
	if err := pub.Publish(context.Background(), "c1", []byte("end")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "marker", func() bool { return len(rec.messages()) >= 4 })
	if got := strings.Join(rec.messages(), " "); got != "c1 c2 c3 end" {
		t.Errorf("got %q, want %q", got, "c1 c2 c3 end")
	}
}

func TestSubscribeValidation(t *testing.T) {
	c := newClient(t, Config{URL: "http://127.0.0.1:1"})
	conn, _ := dial(t, c, "s")
	many := make([]string, MaxChannels+1)
	for i := range many {
		many[i] = fmt.Sprint("c", i)
	}
	for _, chs := range [][]string{nil, many, {"ok", "a/b"}, {"a,b"}, {" "}} {
		if err := conn.Subscribe(context.Background(), chs); err == nil {
			t.Errorf("Subscribe(%d channels %.20q) = nil, want an error", len(chs), chs)
		}
	}
}

// TestSecondSubscribeAdds: a second Subscribe adds its channels (bus.Conn's
// contract): the poll restarts on the whole set, without a cursor (ids are per
// set), and both channels deliver.
func TestSecondSubscribeAdds(t *testing.T) {
	f := newFakeNchan(t, time.Minute)
	c := newClient(t, Config{URL: f.URL()})
	conn, rec := dial(t, c, "s")
	pub, _ := dial(t, c, "p")
	subscribed(t, f, conn, "a")
	if err := pub.Publish(context.Background(), "a", []byte("a1")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a1", func() bool { return len(rec.messages()) == 1 })
	waitUntil(t, "poll with cursor", func() bool { return f.waitingOn("a") > 0 })
	n := len(f.cursorLog())
	subscribed(t, f, conn, "b") // waits for a poll held on b: the new set's
	if err := pub.Publish(context.Background(), "a", []byte("a2")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a2", func() bool { return len(rec.messages()) == 2 })
	if err := pub.Publish(context.Background(), "b", []byte("b1")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "b1", func() bool { return len(rec.messages()) == 3 })
	if got := strings.Join(rec.messages(), " "); got != "a1 a2 b1" {
		t.Errorf("got %q, want %q", got, "a1 a2 b1")
	}
	if cur := f.cursorLog()[n]; cur.etag != "" || cur.lm != "" {
		t.Errorf("first poll of the new set sent cursor %+v, want none", cur)
	}
	if n := rec.count(bus.Subscribed); n != 2 {
		t.Errorf("got %d Subscribed events, want 2", n)
	}
	// Nothing new: the loop is left alone (no new poll set, no Subscribed).
	if err := conn.Subscribe(context.Background(), []string{"b", "a"}); err != nil {
		t.Fatal(err)
	}
	if n := rec.count(bus.Subscribed); n != 2 {
		t.Errorf("after a Subscribe adding nothing: %d Subscribed events, want 2", n)
	}
}

func TestCloseCutsHeldPoll(t *testing.T) {
	f := newFakeNchan(t, time.Hour)
	c := newClient(t, Config{URL: f.URL(), PollTimeout: time.Hour})
	conn, rec := dial(t, c, "s")
	subscribed(t, f, conn, "ch")
	done := make(chan struct{})
	go func() { _ = conn.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second): // hang guard only; the poll timeout is an hour
		t.Fatal("Close did not return while a poll was held")
	}
	waitUntil(t, "server sees the poll go", func() bool { return f.waitingOn("ch") == 0 })
	if n := rec.count(bus.Disconnected); n != 0 {
		t.Errorf("got %d Disconnected events on Close, want 0", n)
	}
	if err := conn.Subscribe(context.Background(), []string{"ch"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
	}
	_ = conn.Close() // idempotent
}

func TestContextEndStopsLoop(t *testing.T) {
	f := newFakeNchan(t, time.Hour)
	c := newClient(t, Config{URL: f.URL(), PollTimeout: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	rec := &recorder{}
	conn, err := c.Dial(ctx, "s", rec)
	if err != nil {
		t.Fatal(err)
	}
	subscribed(t, f, conn, "ch")
	cancel()
	waitUntil(t, "server sees the poll cut", func() bool { return f.waitingOn("ch") == 0 })
	_ = conn.Close()
	n := f.subReqs.Load()
	if n != 1 {
		t.Errorf("server got %d polls, want 1 (no re-poll after the context ended)", n)
	}
}

func TestClientCloseClosesConns(t *testing.T) {
	f := newFakeNchan(t, time.Hour)
	c, err := New(Config{URL: f.URL(), PollTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		conn, err := c.Dial(context.Background(), fmt.Sprint("s", i), &recorder{})
		if err != nil {
			t.Fatal(err)
		}
		subscribed(t, f, conn, fmt.Sprint("ch", i))
	}
	c.Close()
	for i := range 3 {
		if n := f.waitingOn(fmt.Sprint("ch", i)); n != 0 {
			waitUntil(t, "polls cut", func() bool { return f.waitingOn(fmt.Sprint("ch", i)) == 0 })
		}
	}
	if _, err := c.Dial(context.Background(), "x", &recorder{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Dial after Close = %v, want ErrClosed", err)
	}
}

func TestBackoffOn503AndRecovery(t *testing.T) {
	f := newFakeNchan(t, time.Minute)
	f.failStatus.Store(http.StatusServiceUnavailable)
	c := newClient(t, Config{URL: f.URL(), Backoff: backoff.Config{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond, Multiplier: 2}})
	conn, rec := dial(t, c, "s")
	if err := conn.Subscribe(context.Background(), []string{"ch"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the outage to be seen", func() bool { return rec.count(bus.Retrying) >= 2 })

	// Count attempts over a window. Backoff (mean delay tends to 50ms) allows
	// ~20 in a second; a loop retrying at once does thousands on loopback.
	const window = time.Second
	before := f.subReqs.Load()
	time.Sleep(window) // a measurement window, not synchronisation
	attempts := f.subReqs.Load() - before
	immediate := immediateRetries(t, f.URL()+"/sub/ch", window)
	t.Logf("attempts in %v: %d with backoff, %d retrying at once", window, attempts, immediate)
	if attempts > 100 || attempts*3 > immediate {
		t.Errorf("%d attempts in %v during the outage; an immediate-retry loop made %d", attempts, window, immediate)
	}
	if n := rec.count(bus.Disconnected); n != 1 {
		t.Errorf("got %d Disconnected events in one outage, want 1", n)
	}
	for _, e := range rec.eventsOf(bus.Polled) {
		if e.Status != http.StatusServiceUnavailable || bus.Classify(e.Err) != bus.Class5xx {
			t.Errorf("Polled %+v during the outage, want 503 class 5xx", e)
		}
	}
	for _, e := range rec.eventsOf(bus.Retrying) {
		if e.Delay < 10*time.Millisecond || e.Delay >= 200*time.Millisecond {
			t.Errorf("Retrying delay %v outside [Initial, 2·Max)", e.Delay)
		}
	}

	// Recovery shows at the first good poll response: a held poll says nothing
	// until a message (or the hold's end) comes.
	connected := rec.count(bus.Connected)
	f.failStatus.Store(0)
	waitUntil(t, "a held poll", func() bool { return f.waitingOn("ch") > 0 })
	if err := conn.Publish(context.Background(), "ch", []byte("back")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "delivery after recovery", func() bool { return len(rec.messages()) == 1 })
	waitUntil(t, "Connected after recovery", func() bool { return rec.count(bus.Connected) > connected })
	if e := rec.eventsOf(bus.Connected); e[len(e)-1].Latency <= 0 {
		t.Errorf("recovery Connected latency %v, want the outage length", e[len(e)-1].Latency)
	}
}

// immediateRetries counts the requests a loop without backoff makes in d.
func immediateRetries(t *testing.T, url string, d time.Duration) int64 {
	t.Helper()
	hc := &http.Client{}
	defer hc.CloseIdleConnections()
	var n int64
	for end := time.Now().Add(d); time.Now().Before(end); n++ {
		resp, err := hc.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	return n
}

// TestInstantAnswersBackOff: a hostile server on loopback answers every poll
// at once, with an empty 408 or 304 (not held), or with a 200 whose cursor
// cannot be used (no Etag). The loop must treat each as a failure and back off:
// over a bounded run the requests are at most what the backoff schedule
// allows (backoff.Config.MaxAttempts), where a loop without backoff makes
// thousands. The bound follows from the delays' floors, so a slow machine can
// only make fewer requests.
func TestInstantAnswersBackOff(t *testing.T) {
	bo := backoff.Config{Initial: 100 * time.Millisecond, Max: 400 * time.Millisecond, Multiplier: 2}
	const run = 2 * time.Second
	for _, mode := range []string{"408", "304", "200-no-cursor"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var reqs atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				reqs.Add(1)
				switch mode {
				case "408":
					w.WriteHeader(http.StatusRequestTimeout)
				case "304":
					w.WriteHeader(http.StatusNotModified)
				default:
					w.Header().Set("Last-Modified", "Thu, 01 Jan 2026 00:00:00 GMT")
					_, _ = w.Write([]byte("no cursor"))
				}
			}))
			t.Cleanup(srv.Close)
			c := newClient(t, Config{URL: srv.URL, Backoff: bo})
			conn, rec := dial(t, c, "s")
			start := time.Now()
			if err := conn.Subscribe(context.Background(), []string{"ch"}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(run) // the bounded run; the assertion is an upper bound
			_ = conn.Close()
			elapsed := time.Since(start)
			n := reqs.Load()
			limit := int64(bo.MaxAttempts(elapsed))
			t.Logf("%d poll requests in %v (schedule allows %d)", n, elapsed.Round(time.Millisecond), limit)
			if n > limit || n < 2 {
				t.Errorf("%d poll requests in %v, want 2..%d (backoff after each instant answer)", n, elapsed, limit)
			}
			var failed int
			for _, e := range rec.eventsOf(bus.Polled) {
				if e.Err != nil {
					failed++
					if bus.Classify(e.Err) != bus.ClassProtocol {
						t.Errorf("instant answer %d classified %v (%v), want protocol", e.Status, bus.Classify(e.Err), e.Err)
					}
					if mode != "200-no-cursor" && !errors.Is(e.Err, ErrNotHeld) {
						t.Errorf("instant %d: error %v, want ErrNotHeld", e.Status, e.Err)
					}
				}
			}
			if failed == 0 {
				t.Errorf("no Polled event carried an error; want each instant answer reported as a failure")
			}
		})
	}
}

func TestMalformedResponses(t *testing.T) {
	tests := []struct {
		name  string
		setup func(f *fakeNchan)
		want  error
	}{
		{"200 without Etag", func(f *fakeNchan) { f.noEtag.Store(true) }, bus.ErrProtocol},
		{"404 on sub", func(f *fakeNchan) { f.failStatus.Store(404) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeNchan(t, time.Minute)
			c := newClient(t, Config{URL: f.URL(), Backoff: backoff.Config{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, Multiplier: 2}})
			conn, rec := dial(t, c, "s")
			pub, _ := dial(t, c, "p")
			tt.setup(f)
			if err := conn.Subscribe(context.Background(), []string{"ch"}); err != nil {
				t.Fatal(err)
			}
			if tt.want != nil {
				waitUntil(t, "a held poll", func() bool { return f.waitingOn("ch") > 0 })
				if err := pub.Publish(context.Background(), "ch", []byte("m")); err != nil {
					t.Fatal(err)
				}
			}
			waitUntil(t, "a retry", func() bool { return rec.count(bus.Retrying) >= 1 })
			d := rec.eventsOf(bus.Disconnected)
			if len(d) != 1 {
				t.Fatalf("got %d Disconnected, want 1", len(d))
			}
			if tt.want != nil && !errors.Is(d[0].Err, tt.want) {
				t.Errorf("Disconnected error %v, want %v", d[0].Err, tt.want)
			}
			if tt.want == nil && bus.Classify(d[0].Err) != bus.Class4xx {
				t.Errorf("Disconnected error %v, want class 4xx", d[0].Err)
			}
			if n := len(rec.messages()); n != 0 {
				t.Errorf("got %d messages from malformed responses, want 0", n)
			}
		})
	}
}

func TestBigResponseHeaders(t *testing.T) {
	f := newFakeNchan(t, time.Minute)
	f.bigHeader.Store(12 << 10) // past the poll read buffer: it must grow
	c := newClient(t, Config{URL: f.URL()})
	conn, rec := dial(t, c, "s")
	subscribed(t, f, conn, "ch")
	payload := strings.Repeat("y", 4096)
	for i := range 3 {
		waitUntil(t, "a held poll", func() bool { return f.waitingOn("ch") > 0 })
		if err := conn.Publish(context.Background(), "ch", []byte(payload)); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "delivery", func() bool {
			if len(rec.messages()) == i+1 {
				return true
			}
			for _, e := range rec.eventsOf(bus.Polled) {
				if e.Err != nil {
					t.Fatalf("poll failed: %v", e.Err)
				}
			}
			return false
		})
	}
	if n := rec.count(bus.Disconnected); n != 0 {
		t.Errorf("got %d Disconnected events, want 0: %v", n, rec.eventsOf(bus.Disconnected))
	}
}

func TestSourceAddrs(t *testing.T) {
	f := newFakeNchan(t, time.Minute)
	c := newClient(t, Config{URL: f.URL(), SourceAddrs: []string{"127.0.0.2", "127.0.0.3"}})
	for i := range 2 {
		conn, _ := dial(t, c, fmt.Sprint("s", i))
		subscribed(t, f, conn, fmt.Sprint("ch", i))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.remotes["127.0.0.2"] || !f.remotes["127.0.0.3"] || f.remotes["127.0.0.1"] {
		t.Errorf("server saw peers %v, want 127.0.0.2 and 127.0.0.3 only", f.remotes)
	}
}

// rawListener serves every connection with fn on loopback until the test ends.
func rawListener(t testing.TB, fn func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			fn(nc)
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String()
}

// silentListener accepts and reads but never answers; connections close with the test.
func silentListener(t testing.TB) string {
	var conns []net.Conn
	t.Cleanup(func() {
		for _, nc := range conns {
			_ = nc.Close()
		}
	})
	return rawListener(t, func(nc net.Conn) { conns = append(conns, nc) })
}

func TestCheck(t *testing.T) {
	f := newFakeNchan(t, time.Minute)
	garbage := rawListener(t, func(nc net.Conn) {
		_, _ = nc.Write([]byte("SSH-2.0-OpenSSH_9.2\r\nnot http at all\r\n\r\n"))
		_ = nc.Close()
	})
	closing := rawListener(t, func(nc net.Conn) { _ = nc.Close() })
	tests := []struct {
		name string
		cfg  Config
		want error
		hint string
	}{
		{"ok", Config{URL: f.URL()}, nil, ""},
		{"refused port", Config{URL: "http://" + bustest.DeadAddr(t)}, bus.ErrUnreachable, "refused"},
		{"garbage", Config{URL: "http://" + garbage}, bus.ErrProtocol, "not an HTTP response"},
		{"closed at once", Config{URL: "http://" + closing}, bus.ErrProtocol, "without an HTTP response"},
		{"silent", Config{URL: "http://" + silentListener(t), PublishTimeout: 200 * time.Millisecond}, bus.ErrProtocol, "no HTTP response"},
		{"404 pub path", Config{URL: f.URL(), PubPath: "nope/"}, bus.ErrRefused, "--pub-path"},
		{"404 sub path", Config{URL: f.URL(), SubPath: "nope/"}, bus.ErrRefused, "--sub-path"},
		{"404 prefix", Config{URL: f.URL() + "/prefix"}, bus.ErrRefused, "--pub-path"},
		{"tls to plain http", Config{URL: strings.Replace(f.URL(), "http:", "https:", 1)}, bus.ErrProtocol, "TLS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, tt.cfg)
			err := c.Check(context.Background())
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Check() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.hint) {
				t.Fatalf("Check() = %v, want %v with %q", err, tt.want, tt.hint)
			}
		})
	}
}

func TestTLS(t *testing.T) {
	f := newFakeNchanTLS(t, time.Minute)
	if err := newClient(t, Config{URL: f.URL()}).Check(context.Background()); !errors.Is(err, bus.ErrRefused) || !strings.Contains(err.Error(), "--insecure") {
		t.Errorf("Check() against a self-signed certificate = %v, want ErrRefused naming --insecure", err)
	}
	c := newClient(t, Config{URL: f.URL(), Insecure: true})
	if err := c.Check(context.Background()); err != nil {
		t.Fatalf("Check() with Insecure = %v", err)
	}
	conn, rec := dial(t, c, "s")
	subscribed(t, f, conn, "ch")
	if err := conn.Publish(context.Background(), "ch", []byte("secret")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "delivery over TLS", func() bool { return len(rec.messages()) == 1 })
}
