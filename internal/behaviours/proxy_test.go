package behaviours

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/localbus"
	"github.com/eventswarm/eventswarm/internal/mqtt"
)

// faultProxy is a counting TCP proxy on 127.0.0.1 in front of one backend.
// Up, it pipes every connection through; down, it cuts every piped
// connection and answers each new one by closing it at once (RST). It counts
// the connections it accepts, up and down.
type faultProxy struct {
	ln      net.Listener
	backend string
	down    atomic.Bool
	upN     atomic.Int64
	downN   atomic.Int64
	wg      sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startProxy(t *testing.T, backend string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, backend: backend, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		p.cutAll()
		p.wg.Wait()
	})
	return p
}

func (p *faultProxy) addr() string { return p.ln.Addr().String() }

func (p *faultProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.down.Load() {
			p.downN.Add(1)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
			continue
		}
		p.upN.Add(1)
		p.wg.Go(func() { p.pipe(c) })
	}
}

func (p *faultProxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *faultProxy) pipe(c net.Conn) {
	b, err := net.DialTimeout("tcp", p.backend, 2*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	p.track(c, true)
	p.track(b, true)
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = io.Copy(b, c); _ = b.Close(); _ = c.Close() })
	wg.Go(func() { _, _ = io.Copy(c, b); _ = c.Close(); _ = b.Close() })
	wg.Wait()
	p.track(c, false)
	p.track(b, false)
}

func (p *faultProxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

// setDown starts (true) or ends (false) the outage.
func (p *faultProxy) setDown(down bool) {
	p.down.Store(down)
	if down {
		p.cutAll()
	}
}

// TestMQTTOutageThroughProxy: swarm users on MQTT through a proxy that refuses
// every connect for an outage. The transport's reconnects go through its
// backoff: none in the first second of the outage (the floor is 1s), and at
// most backoff.Config.MaxAttempts per connection over the outage, bounds that
// follow from the schedule's floors (a slow machine can only make fewer).
// Every connect attempt is counted in the connect op by outcome, the
// transport's reconnects included: the op's count equals the connections the
// proxy saw, and its failures are at least the ones it refused. After the
// outage every user publishes again within 15s.
func TestMQTTOutageThroughProxy(t *testing.T) {
	b := startBus(t, localbus.Config{HTTPAddr: localbus.Disabled})
	p := startProxy(t, b.MQTTAddr())
	transport := backoff.Default // a 1s floor: [1s,2s), [3s,6s), …
	c, err := mqtt.New(mqtt.Config{URL: "mqtt://" + p.addr(), Backoff: transport,
		PublishTimeout: 2 * time.Second, ConnectTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	d := bus.DialFunc(func(ctx context.Context, id string, h bus.Handler) (bus.Conn, error) {
		conn, err := c.Dial(ctx, id, h)
		if err != nil {
			return nil, err
		}
		return conn, nil
	})

	cfg := smallConfig("mqtt")
	cfg.Users = 12
	cfg.Duration = time.Hour
	// Sessions outlast the test: each user holds one connection throughout,
	// so every connect during the outage is a transport reconnect.
	cfg.Items = 1 << 20
	cfg.ProctorTimeout = time.Hour
	cfg.LearnerInterval = Range{100 * time.Millisecond, 200 * time.Millisecond}
	cfg.Backoff = backoff.Config{Initial: 200 * time.Millisecond, Max: 800 * time.Millisecond, Multiplier: 2}
	r, err := New(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	var sum Summary
	go func() {
		defer close(done)
		var err error
		if sum, err = r.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	defer stop()
	published := func() uint64 {
		o, _ := r.Progress().Ops.Op("publish")
		return o.Count - o.Failures
	}
	connects := func() (ok, failed uint64) {
		o, _ := r.Progress().Ops.Op("connect")
		return o.Count - o.Failures, o.Failures
	}
	eventually(t, "every user connected", func() bool { ok, _ := connects(); return ok == uint64(cfg.Users) })
	eventually(t, "users publishing", func() bool { return published() > 50 })
	if n := p.upN.Load(); n != int64(cfg.Users) {
		t.Fatalf("proxy saw %d connections before the outage, want one per user (%d)", n, cfg.Users)
	}

	const outage = 4 * time.Second
	p.setDown(true)
	onset := time.Now()
	time.Sleep(time.Second - 50*time.Millisecond) // measurement window, not synchronisation
	if n := p.downN.Load(); n != 0 {
		t.Errorf("%d connects in the first second of the outage; the reconnect floor is %v, want 0", n, transport.Initial)
	}
	time.Sleep(outage - time.Since(onset))
	p.setDown(false)
	outageLen := time.Since(onset)
	refused := p.downN.Load()
	limit := int64(cfg.Users * transport.MaxAttempts(outageLen))
	t.Logf("outage %v: %d connects refused (schedule allows at most %d)", outageLen.Round(time.Millisecond), refused, limit)
	if refused > limit {
		t.Errorf("%d connects during a %v outage, want <= %d (%d connections x %d attempts)",
			refused, outageLen, limit, cfg.Users, transport.MaxAttempts(outageLen))
	}
	if refused == 0 {
		t.Errorf("no reconnect attempt during a %v outage", outageLen)
	}

	// Recovery: every connection back (a delay is below 2 x its floor, 6s
	// here) and publishing again within 15s.
	back := time.Now().Add(15 * time.Second)
	before := published()
	for {
		ok, _ := connects()
		if ok >= 2*uint64(cfg.Users) && published() > before+uint64(cfg.Users) {
			break
		}
		if time.Now().After(back) {
			t.Fatalf("not recovered 15s after the outage: %d successful connects (want %d), %d publishes since",
				ok, 2*cfg.Users, published()-before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("recovered %v after the outage", time.Since(onset.Add(outageLen)).Round(time.Millisecond))

	stop()
	o, _ := sum.Ops.Op("connect")
	total := p.upN.Load() + p.downN.Load()
	t.Logf("connect op: %d attempts, failures %v; proxy: %d up, %d refused", o.Count, o.FailuresByClass, p.upN.Load(), p.downN.Load())
	if int64(o.Count) != total {
		t.Errorf("connect op counted %d attempts, the proxy saw %d connections", o.Count, total)
	}
	if int64(o.Failures) < refused || o.Failures == 0 {
		t.Errorf("connect op counted %d failures (%v), the proxy refused %d", o.Failures, o.FailuresByClass, refused)
	}
	var classified uint64
	for _, n := range o.FailuresByClass {
		classified += n
	}
	if classified != o.Failures {
		t.Errorf("connect failures %d, by class %v", o.Failures, o.FailuresByClass)
	}
}
