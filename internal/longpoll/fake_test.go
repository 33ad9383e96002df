package longpoll

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/bustest"
)

// fakeNchan is a small server speaking Nchan's long-poll protocol on loopback,
// for the client's unit tests: POST <prefix>pub/<ch> → 201/202, GET
// <prefix>sub/<ch1>,<ch2> held until a message (200 + Last-Modified + Etag) or
// the hold ends (408). It only accepts ids it issued and records any other.
type fakeNchan struct {
	srv    *httptest.Server
	prefix string
	hold   time.Duration
	quit   chan struct{}

	subReqs    atomic.Int64
	pubReqs    atomic.Int64
	failStatus atomic.Int32 // sub requests answer this at once when non-zero
	pubStatus  atomic.Int32 // publishes answer this when non-zero
	noEtag     atomic.Bool  // 200s come without Etag
	bigHeader  atomic.Int32 // bytes of an extra header on 200s
	noStore    atomic.Bool  // publishes are answered but not kept (benchmarks)

	mu       sync.Mutex
	seq      int
	msgs     []fakeMsg
	issued   map[string]int // "lm|etag" → seq
	invented []string       // cursors it never issued
	waiting  map[string]int // channel → held polls
	notify   chan struct{}
	cursors  []fakeCursor // every sub request's cursor, in arrival order
	remotes  map[string]bool
}

type fakeMsg struct {
	seq      int
	ch       string
	body     []byte
	lm, etag string
}

type fakeCursor struct{ subscriber, lm, etag string }

func newFakeNchan(t testing.TB, hold time.Duration) *fakeNchan {
	t.Helper()
	f := startFakeNchan(hold)
	t.Cleanup(f.close)
	return f
}

func (f *fakeNchan) close() {
	close(f.quit)
	f.srv.CloseClientConnections()
	f.srv.Close()
}

// newFakeNchanTLS is newFakeNchan over https with a self-signed certificate.
func newFakeNchanTLS(t testing.TB, hold time.Duration) *fakeNchan {
	t.Helper()
	f := startFakeNchan(hold)
	f.srv.Close()
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	f.srv.StartTLS()
	t.Cleanup(f.close)
	return f
}

func startFakeNchan(hold time.Duration) *fakeNchan {
	f := &fakeNchan{
		prefix:  "/",
		hold:    hold,
		quit:    make(chan struct{}),
		issued:  make(map[string]int),
		waiting: make(map[string]int),
		notify:  make(chan struct{}),
		remotes: make(map[string]bool),
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	return f
}

func (f *fakeNchan) URL() string { return f.srv.URL }

func (f *fakeNchan) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	f.remotes[host] = true
	f.mu.Unlock()
	pub, sub := f.prefix+"pub/", f.prefix+"sub/"
	switch {
	case r.Method == http.MethodOptions && (strings.HasPrefix(r.URL.Path, pub) || strings.HasPrefix(r.URL.Path, sub)):
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, pub):
		f.publish(w, r, strings.TrimPrefix(r.URL.Path, pub))
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, sub):
		f.subscribe(w, r, strings.Split(strings.TrimPrefix(r.URL.Path, sub), ","))
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeNchan) publish(w http.ResponseWriter, r *http.Request, ch string) {
	f.pubReqs.Add(1)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if st := f.pubStatus.Load(); st != 0 {
		w.WriteHeader(int(st))
		return
	}
	if f.noStore.Load() {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	f.mu.Lock()
	f.seq++
	m := fakeMsg{seq: f.seq, ch: ch, body: body,
		lm:   time.Unix(1_700_000_000+int64(f.seq/3), 0).UTC().Format(http.TimeFormat),
		etag: strconv.Itoa(f.seq%3) + ":" + strconv.Itoa(f.seq)}
	f.msgs = append(f.msgs, m)
	f.issued[m.lm+"|"+m.etag] = m.seq
	status := http.StatusAccepted
	if f.waiting[ch] > 0 {
		status = http.StatusCreated
	}
	close(f.notify)
	f.notify = make(chan struct{})
	f.mu.Unlock()
	w.WriteHeader(status)
	fmt.Fprintf(w, "queued messages: 1\n")
}

func (f *fakeNchan) subscribe(w http.ResponseWriter, r *http.Request, chs []string) {
	f.subReqs.Add(1)
	lm, etag := r.Header.Get("If-Modified-Since"), r.Header.Get("If-None-Match")
	f.mu.Lock()
	f.cursors = append(f.cursors, fakeCursor{r.Header.Get("X-Eventswarm-Subscriber"), lm, etag})
	after := f.seq // no cursor: newest, only later messages
	if lm != "" || etag != "" {
		seq, ok := f.issued[lm+"|"+etag]
		if !ok {
			f.invented = append(f.invented, lm+"|"+etag)
			f.mu.Unlock()
			http.Error(w, "invented message id", http.StatusBadRequest)
			return
		}
		after = seq
	}
	f.mu.Unlock()
	if st := f.failStatus.Load(); st != 0 {
		w.WriteHeader(int(st))
		return
	}
	want := make(map[string]bool, len(chs))
	f.mu.Lock()
	for _, ch := range chs {
		want[ch] = true
		f.waiting[ch]++
	}
	defer func() {
		f.mu.Lock()
		for _, ch := range chs {
			f.waiting[ch]--
		}
		f.mu.Unlock()
	}()
	timer := time.NewTimer(f.hold)
	defer timer.Stop()
	for {
		for _, m := range f.msgs {
			if m.seq > after && want[m.ch] {
				f.mu.Unlock()
				h := w.Header()
				h.Set("Last-Modified", m.lm)
				if !f.noEtag.Load() {
					h.Set("Etag", m.etag)
				}
				if n := f.bigHeader.Load(); n > 0 {
					h.Set("X-Padding", strings.Repeat("p", int(n)))
				}
				h.Set("Vary", "If-None-Match, If-Modified-Since")
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write(m.body)
				return
			}
		}
		notify := f.notify
		f.mu.Unlock()
		select {
		case <-notify:
		case <-timer.C:
			if etag != "" {
				w.Header().Set("Etag", etag)
			}
			w.WriteHeader(http.StatusRequestTimeout)
			return
		case <-r.Context().Done():
			return
		case <-f.quit:
			return
		}
		f.mu.Lock()
	}
}

func (f *fakeNchan) waitingOn(ch string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waiting[ch]
}

func (f *fakeNchan) inventedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.invented...)
}

func (f *fakeNchan) cursorLog() []fakeCursor {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeCursor(nil), f.cursors...)
}

// recorder is a bus.Handler that keeps copies of everything it gets (bustest.Recorder).
type recorder struct{ bustest.Recorder }

func (r *recorder) messages() []string                   { return r.Payloads() }
func (r *recorder) count(k bus.EventKind) int            { return r.NumEvents(k) }
func (r *recorder) eventsOf(k bus.EventKind) []bus.Event { return r.Events(k) }

// waitUntil polls cond until it holds; the bound only turns a hang into a failure.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	bustest.Eventually(t, what, cond)
}
