package localbus

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func httpOnly(hold time.Duration) Config {
	return Config{MQTTAddr: Disabled, Hold: hold}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string // substrings, all must appear
	}{
		{"zero", Config{}, nil},
		{"http only", Config{MQTTAddr: Disabled}, nil},
		{"both disabled", Config{HTTPAddr: Disabled, MQTTAddr: Disabled}, []string{"both"}},
		{"bad addr", Config{HTTPAddr: "nope"}, []string{"HTTPAddr"}},
		{"negatives", Config{Hold: -1, BufferLength: -1, BufferTimeout: -1, MaxMessageSize: -1, MQTTWritesPending: -1},
			[]string{"Hold", "BufferLength", "BufferTimeout", "MaxMessageSize", "MQTTWritesPending"}},
		{"fraction range", Config{Faults: Faults{Drop: 1.5, Corrupt: -0.1}}, []string{"Drop", "Corrupt"}},
		{"sum", Config{Faults: Faults{Drop: 0.6, Duplicate: 0.6}}, []string{"sum"}},
		{"delays missing", Config{Faults: Faults{Delay: 0.1}}, []string{"Delays is required"}},
		{"delay not positive", Config{Faults: Faults{Delay: 0.1, Delays: []time.Duration{0}}}, []string{"Delays[0]"}},
		{"all faults", Config{Faults: Faults{Drop: .25, Duplicate: .25, Delay: .25, Corrupt: .25, Delays: []time.Duration{time.Second}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors mentioning %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to mention %q", err, w)
				}
			}
		})
	}
	if _, err := Start(Config{HTTPAddr: Disabled, MQTTAddr: Disabled}); err == nil {
		t.Fatal("Start with nothing to serve succeeded")
	}
}

func TestHTTPRoundTrip(t *testing.T) {
	b := startBus(t, httpOnly(10*time.Second))
	base := b.HTTPURL()
	if got := publish(t, base, "ch1", "nobody waits"); got != http.StatusAccepted {
		t.Fatalf("publish without subscriber = %d, want 202", got)
	}
	res := make(chan pollResult, 1)
	go func() { res <- poll(context.Background(), base, "ch1", "s1", ids{}) }()
	eventually(t, "subscriber waiting", func() bool { return activeSubscribers(base, "ch1") == 1 })
	if got := publish(t, base, "ch1", "hello"); got != http.StatusCreated {
		t.Fatalf("publish with a waiting subscriber = %d, want 201", got)
	}
	r := <-res
	if r.err != nil || r.status != 200 || r.body != "hello" {
		t.Fatalf("poll = %+v, want 200 hello", r)
	}
	if r.etag == "" || r.lastMod == "" {
		t.Fatalf("poll headers etag=%q last-modified=%q, want both", r.etag, r.lastMod)
	}
	if _, err := http.ParseTime(r.lastMod); err != nil {
		t.Fatalf("Last-Modified %q: %v", r.lastMod, err)
	}
	if r.ctype != "text/x-test" {
		t.Fatalf("Content-Type = %q, want the publisher's text/x-test", r.ctype)
	}
	if got := b.Requests(); got.HTTPPublishes != 2 || got.HTTPPolls != 1 {
		t.Fatalf("Requests() = %+v, want 2 publishes, 1 poll", got)
	}
}

func TestHTTPHoldTimeout(t *testing.T) {
	b := startBus(t, httpOnly(100*time.Millisecond))
	r := poll(context.Background(), b.HTTPURL(), "quiet", "", ids{})
	if r.err != nil || r.status != http.StatusRequestTimeout {
		t.Fatalf("poll = %+v, want 408", r)
	}
}

// TestHTTPIDEcho: a subscriber that echoes the last id gets every message
// published while it was between polls, in order, once.
func TestHTTPIDEcho(t *testing.T) {
	b := startBus(t, httpOnly(150*time.Millisecond))
	base := b.HTTPURL()
	res := make(chan pollResult, 1)
	go func() { res <- poll(context.Background(), base, "ch", "", ids{}) }()
	eventually(t, "subscriber waiting", func() bool { return activeSubscribers(base, "ch") == 1 })
	publish(t, base, "ch", "m0")
	r := <-res
	if r.status != 200 || r.body != "m0" {
		t.Fatalf("first poll = %+v", r)
	}
	id := r.next(ids{})
	for i := 1; i <= 5; i++ {
		publish(t, base, "ch", fmt.Sprintf("m%d", i))
	}
	var got []string
	timeouts := 0
	for timeouts < 2 {
		r := poll(context.Background(), base, "ch", "", id)
		switch r.status {
		case 200:
			got = append(got, r.body)
		case http.StatusRequestTimeout:
			timeouts++
			if timeouts == 1 {
				publish(t, base, "ch", "m6") // after a 408 the resent headers still resume in place
			}
		default:
			t.Fatalf("poll = %+v", r)
		}
		id = r.next(id)
	}
	want := "m1 m2 m3 m4 m5 m6"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %q, want %q", strings.Join(got, " "), want)
	}
}

func TestHTTPNewest(t *testing.T) {
	b := startBus(t, httpOnly(10*time.Second))
	base := b.HTTPURL()
	publish(t, base, "ch", "old")
	res := make(chan pollResult, 1)
	go func() { res <- poll(context.Background(), base, "ch", "", ids{}) }()
	eventually(t, "subscriber waiting", func() bool { return activeSubscribers(base, "ch") == 1 })
	publish(t, base, "ch", "new")
	if r := <-res; r.status != 200 || r.body != "new" {
		t.Fatalf("poll without id = %+v, want only the new message", r)
	}
}

func TestHTTPMultiplexed(t *testing.T) {
	b := startBus(t, httpOnly(100*time.Millisecond))
	base := b.HTTPURL()
	res := make(chan pollResult, 1)
	go func() { res <- poll(context.Background(), base, "a,b,c", "", ids{}) }()
	eventually(t, "subscriber waiting", func() bool { return activeSubscribers(base, "c") == 1 })
	if st := publish(t, base, "c", "c0"); st != http.StatusCreated {
		t.Fatalf("publish = %d, want 201", st)
	}
	r := <-res
	if r.body != "c0" {
		t.Fatalf("poll = %+v, want c0", r)
	}
	id := r.next(ids{})
	order := []string{"a", "b", "x", "c", "a", "b"}
	var want []string
	for i, ch := range order {
		body := fmt.Sprintf("%s%d", ch, i+1)
		publish(t, base, ch, body)
		if ch != "x" {
			want = append(want, body)
		}
	}
	var got []string
	for {
		r := poll(context.Background(), base, "a,b,c", "", id)
		if r.status != 200 {
			break
		}
		got = append(got, r.body)
		id = r.next(id)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestHTTPBufferAndTimeResume(t *testing.T) {
	b := startBus(t, Config{MQTTAddr: Disabled, Hold: 100 * time.Millisecond, BufferLength: 3})
	base := b.HTTPURL()
	for i := 1; i <= 5; i++ {
		publish(t, base, "ch", fmt.Sprintf("m%d", i))
	}
	// An id older than the buffer starts from the oldest buffered message.
	if r := poll(context.Background(), base, "ch", "", ids{etag: "0"}); r.status != 200 || r.body != "m3" {
		t.Fatalf("poll from id 0 = %+v, want m3 (oldest buffered)", r)
	}
	// If-Modified-Since alone, long ago: the oldest buffered message too.
	if r := poll(context.Background(), base, "ch", "", ids{lastMod: "Mon, 02 Jan 2006 15:04:05 GMT"}); r.status != 200 || r.body != "m3" {
		t.Fatalf("poll from an old date = %+v, want m3", r)
	}
	// A date in the future: wait for new messages.
	if r := poll(context.Background(), base, "ch", "", ids{lastMod: time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}); r.status != http.StatusRequestTimeout {
		t.Fatalf("poll from a future date = %+v, want 408", r)
	}
}

func TestHTTPBadRequests(t *testing.T) {
	b := startBus(t, Config{MQTTAddr: Disabled, Hold: 50 * time.Millisecond, MaxMessageSize: 16})
	base := b.HTTPURL()
	publish(t, base, "ch", "one") // id 1 exists
	many := strings.TrimSuffix(strings.Repeat("c,", 256), ",")
	var distinct []string
	for i := range 256 {
		distinct = append(distinct, fmt.Sprintf("c%d", i))
	}
	tests := []struct {
		name, method, path, inm, ims, body string
		want                               int
	}{
		{"unknown path", "GET", "/nope", "", "", "", 404},
		{"no channel", "GET", "/sub/", "", "", "", 400},
		{"empty element", "GET", "/sub/a,,b", "", "", "", 400},
		{"bad char", "GET", "/sub/a%21b", "", "", "", 400},
		{"long id", "GET", "/sub/" + strings.Repeat("x", 256), "", "", "", 400},
		{"256 channels", "GET", "/sub/" + strings.Join(distinct, ","), "", "", "", 400},
		{"duplicates collapse", "GET", "/sub/" + many, "", "", "", 408},
		{"255 channels", "GET", "/sub/" + strings.Join(distinct[:255], ","), "", "", "", 408},
		{"etag not a number", "GET", "/sub/ch", "abc", "", "", 400},
		{"etag overflow", "GET", "/sub/ch", "99999999999999999999999", "", "", 400},
		{"etag never issued", "GET", "/sub/ch", "12345", "", "", 400},
		{"etag negative", "GET", "/sub/ch", "-1", "", "", 400},
		{"etag quoted", "GET", "/sub/ch", `"0"`, "", "", 200},
		{"etag ok, bad date", "GET", "/sub/ch", "0", "yesterday", "", 400},
		{"bad date alone", "GET", "/sub/ch", "", "yesterday", "", 400},
		{"sub wrong method", "POST", "/sub/ch", "", "", "x", 405},
		{"pub empty body", "POST", "/pub/ch", "", "", "", 400},
		{"pub multiplexed", "POST", "/pub/a,b", "", "", "x", 400},
		{"pub bad channel", "POST", "/pub/a%20b", "", "", "x", 400},
		{"pub too large", "POST", "/pub/ch", "", "", strings.Repeat("x", 17), 413},
		{"pub wrong method", "PUT", "/pub/ch", "", "", "x", 405},
		{"channel info", "GET", "/pub/ch", "", "", "", 200},
		{"channel info missing", "GET", "/pub/none", "", "", "", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, base+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.inm != "" {
				req.Header.Set("If-None-Match", tt.inm)
			}
			if tt.ims != "" {
				req.Header.Set("If-Modified-Since", tt.ims)
			}
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.want)
			}
		})
	}
	// The server is still fine.
	if st := publish(t, base, "ch", "two"); st != http.StatusAccepted {
		t.Fatalf("publish after bad requests = %d", st)
	}
}

func TestHTTPCloseCutsHeldPoll(t *testing.T) {
	b, err := Start(httpOnly(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	base := b.HTTPURL()
	res := make(chan pollResult, 1)
	go func() { res <- poll(context.Background(), base, "ch", "", ids{}) }()
	eventually(t, "subscriber waiting", func() bool { return activeSubscribers(base, "ch") == 1 })
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	var r pollResult
	eventually(t, "held poll cut by Close", func() bool {
		select {
		case r = <-res:
			return true
		default:
			return false
		}
	})
	if r.err == nil && r.status != http.StatusServiceUnavailable {
		t.Fatalf("cut poll = %+v, want 503 or a connection error", r)
	}
	eventually(t, "Close to return", func() bool {
		select {
		case err := <-closed:
			if err != nil {
				t.Errorf("Close: %v", err)
			}
			return true
		default:
			return false
		}
	})
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestHTTPOutage(t *testing.T) {
	b := startBus(t, httpOnly(time.Minute))
	base := b.HTTPURL()
	res := make(chan pollResult, 1)
	go func() { res <- poll(context.Background(), base, "ch", "", ids{}) }()
	eventually(t, "subscriber waiting", func() bool { return activeSubscribers(base, "ch") == 1 })
	before := b.Requests()
	b.SetOutage(http.StatusServiceUnavailable)
	if r := <-res; r.status != http.StatusServiceUnavailable {
		t.Fatalf("held poll during outage = %+v, want 503", r)
	}
	if st := publish(t, base, "ch", "x"); st != http.StatusServiceUnavailable {
		t.Fatalf("publish during outage = %d, want 503", st)
	}
	if r := poll(context.Background(), base, "ch", "", ids{}); r.status != http.StatusServiceUnavailable {
		t.Fatalf("poll during outage = %+v, want 503", r)
	}
	after := b.Requests()
	if after.HTTPPublishes != before.HTTPPublishes+1 || after.HTTPPolls != before.HTTPPolls+1 {
		t.Fatalf("Requests() before %+v after %+v: want one more publish and poll", before, after)
	}
	b.SetOutage(0)
	if st := publish(t, base, "ch", "x"); st != http.StatusAccepted {
		t.Fatalf("publish after outage = %d, want 202", st)
	}
}

// TestHTTPManyHeldPolls holds many polls at once and wakes them all with one
// message. LOCALBUS_POLLS raises the count (mind the fd limit: two per poll).
func TestHTTPManyHeldPolls(t *testing.T) {
	n := envInt("LOCALBUS_POLLS", 500)
	if testing.Short() {
		n = 100
	}
	b := startBus(t, httpOnly(time.Minute))
	base := b.HTTPURL()
	tr := &http.Transport{MaxIdleConnsPerHost: n, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", fmt.Sprintf("%s/sub/all,own%d", base, i), nil)
			resp, err := client.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- resp.Status
			}
		}()
	}
	eventually(t, "all polls held", func() bool { return activeSubscribers(base, "all") == n })
	publish(t, base, "all", "wake")
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatalf("poll: %s", e)
	}
}

// TestHTTPScale holds LOCALBUS_SCALE polls (raw connections, no client
// goroutines), wakes them all with one message, and logs the memory they cost.
// Skipped unless LOCALBUS_SCALE is set (mind the fd limit: two per poll).
func TestHTTPScale(t *testing.T) {
	n := envInt("LOCALBUS_SCALE", 0)
	if n == 0 {
		t.Skip("set LOCALBUS_SCALE=10000 to hold that many polls")
	}
	b := startBus(t, httpOnly(time.Minute))
	base := b.HTTPURL()
	addr := strings.TrimPrefix(base, "http://")
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /sub/all,own%d HTTP/1.1\r\nHost: x\r\n%s: s%d\r\n\r\n", i, SubscriberHeader, i)
	}
	eventually(t, "all polls held", func() bool { return activeSubscribers(base, "all") == n })
	runtime.GC()
	var held runtime.MemStats
	runtime.ReadMemStats(&held)
	t.Logf("%d held polls: %d goroutines, heap in use +%.1f MiB, stacks +%.1f MiB (%.1f KiB/poll, client side included)",
		n, runtime.NumGoroutine(), float64(held.HeapInuse-before.HeapInuse)/(1<<20),
		float64(held.StackInuse-before.StackInuse)/(1<<20),
		float64(held.HeapInuse-before.HeapInuse+held.StackInuse-before.StackInuse)/1024/float64(n))
	start := time.Now()
	if st := publish(t, base, "all", "wake"); st != http.StatusCreated {
		t.Fatalf("publish = %d", st)
	}
	buf := make([]byte, 4096)
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		k, err := c.Read(buf)
		if err != nil || !bytes.HasPrefix(buf[:k], []byte("HTTP/1.1 200")) {
			t.Fatalf("poll %d: %v %q", i, err, buf[:k])
		}
	}
	t.Logf("all %d woken and answered in %v", n, time.Since(start))
}

func TestStoreSweep(t *testing.T) {
	s := &store{
		bufLen: 10, bufTimeout: time.Minute, subIdle: time.Minute,
		start: time.Now(), channels: map[string]*channel{}, subs: map[string]*subscriber{},
	}
	s.publish("old", []byte("a"), "", nil)
	s.publish("kept", []byte("b"), "", nil)
	s.channels["old"].msgs()[0].at = s.clock().Add(-2 * time.Minute)
	s.channel("waited").waiters[&waiter{ch: make(chan struct{}, 1)}] = struct{}{}
	now := time.Now()
	s.subs["idle"] = &subscriber{lastSeen: now.Add(-2 * time.Minute)}
	s.subs["active"] = &subscriber{lastSeen: now}
	s.subs["holding"] = &subscriber{lastSeen: now.Add(-2 * time.Minute), held: &waiter{}}
	s.sweep(now)
	var chans, subs []string
	for n := range s.channels {
		chans = append(chans, n)
	}
	for n := range s.subs {
		subs = append(subs, n)
	}
	sort.Strings(chans)
	sort.Strings(subs)
	if got := strings.Join(chans, ","); got != "kept,waited" {
		t.Errorf("channels after sweep: %s, want kept,waited", got)
	}
	if got := strings.Join(subs, ","); got != "active,holding" {
		t.Errorf("subscribers after sweep: %s, want active,holding", got)
	}
}

func TestChannelRing(t *testing.T) {
	c := &channel{}
	for i := uint64(1); i <= 200; i++ {
		c.buf = append(c.buf, &message{seq: i})
		if len(c.msgs()) > 50 {
			c.popFront()
		}
		ms := c.msgs()
		wantFirst := uint64(1)
		if i > 50 {
			wantFirst = i - 49
		}
		if ms[len(ms)-1].seq != i || ms[0].seq != wantFirst {
			t.Fatalf("after %d: first %d last %d", i, ms[0].seq, ms[len(ms)-1].seq)
		}
		if got := c.firstAfter(i - 1); got != len(ms)-1 {
			t.Fatalf("firstAfter(%d) = %d, want %d", i-1, got, len(ms)-1)
		}
	}
}
