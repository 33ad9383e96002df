package mqtt

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	mpackets "github.com/mochi-mqtt/server/v2/packets"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/bustest"
)

// brokerOpts configures the in-process test broker (mochi-mqtt).
type brokerOpts struct {
	addr    string // default 127.0.0.1:0
	maxQoS  *byte
	user    string // when set, CONNECT must carry user/pass
	pass    string
	tls     *tls.Config
	denySub string // subscriptions to filters with this prefix are refused
}

type broker struct {
	hook *testHook
	srv  *mochi.Server
	addr string
	ln   *countingListener
	once sync.Once
}

// testHook authenticates and authorises for the test broker.
type testHook struct {
	mochi.HookBase
	o brokerOpts

	mu   sync.Mutex
	gone map[string]error // client ID → why its connection ended
}

// OnDisconnect records why each client's connection ended.
func (h *testHook) OnDisconnect(cl *mochi.Client, err error, _ bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gone == nil {
		h.gone = map[string]error{}
	}
	h.gone[cl.ID] = err
}

// disconnected reports whether client id's connection ended, and why.
func (h *testHook) disconnected(id string) (error, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	err, ok := h.gone[id]
	return err, ok
}

func (h *testHook) ID() string { return "eventswarm-test" }

func (h *testHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck || b == mochi.OnSessionEstablished || b == mochi.OnDisconnect
}

// OnSessionEstablished turns off mochi's outbound flow control, which
// deadlocks in v2.7.9 (see localbus's faultHook.OnSessionEstablished).
func (h *testHook) OnSessionEstablished(cl *mochi.Client, _ mpackets.Packet) {
	cl.State.Inflight.ResetSendQuota(0)
}

func (h *testHook) OnConnectAuthenticate(_ *mochi.Client, pk mpackets.Packet) bool {
	if h.o.user == "" {
		return true
	}
	return string(pk.Connect.Username) == h.o.user && string(pk.Connect.Password) == h.o.pass
}

func (h *testHook) OnACLCheck(_ *mochi.Client, topic string, write bool) bool {
	return write || h.o.denySub == "" || !strings.HasPrefix(topic, h.o.denySub)
}

// startBroker starts mochi on loopback; it is closed at the end of the test.
func startBroker(t testing.TB, o brokerOpts) *broker {
	t.Helper()
	caps := mochi.NewDefaultServerCapabilities()
	if o.maxQoS != nil {
		caps.MaximumQos = *o.maxQoS
	}
	srv := mochi.New(&mochi.Options{
		Capabilities: caps,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	hook := &testHook{o: o}
	if err := srv.AddHook(hook, nil); err != nil {
		t.Fatal(err)
	}
	addr := o.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	var served net.Listener = cl
	if o.tls != nil {
		served = tls.NewListener(cl, o.tls)
	}
	if err := srv.AddListener(listeners.NewNet("t", served)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	b := &broker{hook: hook, srv: srv, addr: ln.Addr().String(), ln: cl}
	t.Cleanup(b.close)
	return b
}

// close stops the broker. mochi's Server.Close waits on a WaitGroup that each
// connection's goroutine adds to on its own, which the race detector reports
// when Close comes first. So: stop accepting, let every accepted connection
// reach its first read (after that Add; the read takes ln.mu, which orders it
// before us), then close.
func (b *broker) close() {
	b.once.Do(func() {
		_ = b.ln.Close()
		// Bounded: a connection whose client went away before mochi's first
		// read may never get there (this loop once hung a test run for 10 min).
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			b.ln.mu.Lock()
			done := b.ln.reading == b.ln.accepted
			b.ln.mu.Unlock()
			if done {
				break
			}
			time.Sleep(time.Millisecond)
		}
		_ = b.srv.Close()
	})
}

// countingListener counts accepted connections and those that began reading.
type countingListener struct {
	net.Listener
	mu       sync.Mutex
	accepted int
	reading  int
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.accepted++
	l.mu.Unlock()
	return &countingConn{Conn: c, l: l}, nil
}

type countingConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.reading++
		c.l.mu.Unlock()
	})
	return c.Conn.Read(p)
}

// kick closes a client's connection from the broker side.
func (b *broker) kick(t testing.TB, id string) {
	t.Helper()
	cl, ok := b.srv.Clients.Get(id)
	if !ok {
		t.Fatalf("broker has no client %q", id)
	}
	cl.Stop(io.ErrClosedPipe)
}

// recorder is a bus.Handler that keeps everything (bustest.Recorder).
type recorder struct{ bustest.Recorder }

func (r *recorder) messages() []bus.Message              { return r.Messages() }
func (r *recorder) numMessages() int                     { return len(r.Messages()) }
func (r *recorder) eventsOf(k bus.EventKind) []bus.Event { return r.Events(k) }

// kinds lists the connection events (Published left out), in order.
func (r *recorder) kinds() []bus.EventKind {
	var ks []bus.EventKind
	for _, e := range r.All() {
		if e.Kind != bus.Published {
			ks = append(ks, e.Kind)
		}
	}
	return ks
}

// pollUntil polls cond until it holds; it fails the test after a long bound.
func pollUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	bustest.Eventually(t, what, cond)
}

// waitGoroutines polls until the goroutine count is back to at most base.
func waitGoroutines(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutines: got %d, want <= %d\n%s", n, base, buf)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fastBackoff keeps reconnect tests quick.
var fastBackoff = backoff.Config{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, Multiplier: 2}

func newClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// fakeServer is a TCP listener whose connections are served by serve; it is
// closed, and its goroutines waited for, at the end of the test.
type fakeServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func startFake(t testing.TB, serve func(net.Conn)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{ln: ln}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns = append(f.conns, c)
			f.mu.Unlock()
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			_ = c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *fakeServer) addr() string { return f.ln.Addr().String() }

// serveMuteBroker accepts CONNECT with a CONNACK and answers PINGREQ, and
// otherwise reads and ignores everything: it never acknowledges a publish.
func serveMuteBroker(c net.Conn) { serveMuteBrokerFunc(c, nil) }

// serveMuteBrokerFunc is serveMuteBroker calling onPacket with the type of
// every packet read.
func serveMuteBrokerFunc(c net.Conn, onPacket func(typ byte)) {
	var hdr [1]byte
	buf := make([]byte, 256)
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n, shift := 0, 0
		for {
			if _, err := io.ReadFull(c, buf[:1]); err != nil {
				return
			}
			n |= int(buf[0]&0x7f) << shift
			if buf[0]&0x80 == 0 {
				break
			}
			shift += 7
		}
		for n > 0 {
			k := min(n, len(buf))
			if _, err := io.ReadFull(c, buf[:k]); err != nil {
				return
			}
			n -= k
		}
		if onPacket != nil {
			onPacket(hdr[0] >> 4)
		}
		switch hdr[0] >> 4 {
		case 1: // CONNECT
			if _, err := c.Write([]byte{0x20, 2, 0, 0}); err != nil {
				return
			}
		case 12: // PINGREQ
			if _, err := c.Write([]byte{0xd0, 0}); err != nil {
				return
			}
		}
	}
}

// serveGarbage reads the client's first packet and answers with bytes that
// are not MQTT.
func serveGarbage(c net.Conn) {
	buf := make([]byte, 512)
	if _, err := c.Read(buf); err != nil {
		return
	}
	_, _ = c.Write([]byte("garbage!!"))
}

// serveHTTP400 answers like nginx does to bytes that are not HTTP.
func serveHTTP400(c net.Conn) {
	buf := make([]byte, 512)
	if _, err := c.Read(buf); err != nil {
		return
	}
	_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
}
