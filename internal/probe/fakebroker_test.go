package probe_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/probe"
	"github.com/eventswarm/eventswarm/internal/target"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// misbehaviour is what the fake broker does with a connection once its
// well-behaved connections are used up.
type misbehaviour int

const (
	refuseConnack     misbehaviour = iota // CONNACK with return code 5 (not authorised)
	garbage                               // bytes that are not an MQTT packet
	silence                               // reads CONNECT, never answers
	closeAfterAccept                      // closes before reading anything
	closeAfterConnack                     // CONNACK accepted, then closes
	stallAfterConnack                     // CONNACK accepted, then never answers (no SUBACK)
	noRouting                             // a working broker that delivers nothing
)

func (m misbehaviour) String() string {
	return [...]string{"refused-connack", "garbage", "silence", "close-after-accept", "close-after-connack", "stall-after-connack", "no-routing"}[m]
}

// fakeBroker is a hostile MQTT server on loopback: its first good
// connections get a minimal working broker (CONNACK, SUBACK, PUBACK,
// PINGRESP; nothing is routed), every later one the misbehaviour.
type fakeBroker struct {
	ln   net.Listener
	mode misbehaviour
	good int // connections served properly (the target check is one)

	mu    sync.Mutex
	n     int
	conns []net.Conn
	wg    sync.WaitGroup
}

func startFakeBroker(t *testing.T, mode misbehaviour, good int) *fakeBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeBroker{ln: ln, mode: mode, good: good}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

func (f *fakeBroker) addr() string { return f.ln.Addr().String() }

func (f *fakeBroker) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.n++
		good := f.n <= f.good
		f.conns = append(f.conns, c)
		f.wg.Add(1)
		f.mu.Unlock()
		go func() {
			defer f.wg.Done()
			defer c.Close()
			if good {
				serveMinimal(c)
			} else {
				f.misbehave(c)
			}
		}()
	}
}

func (f *fakeBroker) close() {
	f.ln.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// serveMinimal answers what a client waits for, until the connection ends.
func serveMinimal(c net.Conn) {
	for {
		p, err := packets.ReadPacket(c)
		if err != nil {
			return
		}
		var reply packets.ControlPacket
		switch p := p.(type) {
		case *packets.ConnectPacket:
			reply = packets.NewControlPacket(packets.Connack)
		case *packets.SubscribePacket:
			sa := packets.NewControlPacket(packets.Suback).(*packets.SubackPacket)
			sa.MessageID = p.MessageID
			sa.ReturnCodes = append([]byte(nil), p.Qoss...)
			reply = sa
		case *packets.PublishPacket:
			if p.Qos == 1 {
				pa := packets.NewControlPacket(packets.Puback).(*packets.PubackPacket)
				pa.MessageID = p.MessageID
				reply = pa
			}
		case *packets.PingreqPacket:
			reply = packets.NewControlPacket(packets.Pingresp)
		case *packets.DisconnectPacket:
			return
		}
		if reply != nil && reply.Write(c) != nil {
			return
		}
	}
}

func (f *fakeBroker) misbehave(c net.Conn) {
	if f.mode == closeAfterAccept {
		return
	}
	if _, err := packets.ReadPacket(c); err != nil {
		return
	}
	switch f.mode {
	case refuseConnack:
		ca := packets.NewControlPacket(packets.Connack).(*packets.ConnackPacket)
		ca.ReturnCode = packets.ErrRefusedNotAuthorised
		_ = ca.Write(c)
	case garbage:
		_, _ = c.Write([]byte("\xf0\x07garbage!HTTP/1.1 400 Bad Request\r\n\r\n"))
	case closeAfterConnack:
		_ = packets.NewControlPacket(packets.Connack).Write(c)
		return
	case stallAfterConnack:
		_ = packets.NewControlPacket(packets.Connack).Write(c)
	case noRouting:
		_ = packets.NewControlPacket(packets.Connack).Write(c)
		serveMinimal(c)
		return
	}
	// Hold the connection open, silent, until the client or the test ends it.
	_, _ = io.Copy(io.Discard, c)
}

// TestHostileBrokerAfterCheck: the target check passes, then the probe's own
// connections meet a broker that refuses, answers garbage, stays silent,
// closes, never confirms a subscription or never delivers. Run must return a classified error and a usable inconclusive
// outcome, never panic, and give up in bounded time.
func TestHostileBrokerAfterCheck(t *testing.T) {
	for _, mode := range []misbehaviour{refuseConnack, garbage, silence, closeAfterAccept, closeAfterConnack, stallAfterConnack, noRouting} {
		// good=1: only the check is served; good=2: one probe connection
		// works too, so a partly connected probe must be cleaned up.
		for _, good := range []int{1, 2} {
			name := mode.String() + "/good=" + string(rune('0'+good))
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				f := startFakeBroker(t, mode, good)
				tgt, err := target.Open(target.Config{URL: "mqtt://" + f.addr(), QoS: 1, PublishTimeout: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(tgt.Close)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if err := tgt.Check(ctx); err != nil {
					t.Fatalf("check: %v", err)
				}
				cfg := fastConfig()
				cfg.ResubscribeOnConnect = true
				cfg.BarrierTimeout, cfg.PublishTimeout = time.Second, time.Second
				type result struct {
					out probe.Outcome
					err error
				}
				done := make(chan result, 1)
				go func() {
					out, err := probe.Run(ctx, ctx, cfg, verify.NewRunID(), tgt.Dialer(), probe.Hooks{})
					done <- result{out, err}
				}()
				var r result
				select {
				case r = <-done:
				case <-time.After(45 * time.Second):
					t.Fatal("probe.Run did not give up")
				}
				t.Logf("err: %v; verdict %s (%s)", r.err, r.out.Verdict, r.out.Reason)
				if r.err == nil {
					t.Fatalf("Run: nil error against a %s broker; outcome %+v", mode, r.out)
				}
				if mode == noRouting {
					if !errors.Is(r.err, probe.ErrBarrier) {
						t.Errorf("Run error %v: want it to wrap probe.ErrBarrier", r.err)
					}
				} else if !errors.Is(r.err, probe.ErrConnect) {
					t.Errorf("Run error %v: want it to wrap probe.ErrConnect", r.err)
				}
				// What each misbehaviour is classified as (a close right after
				// accept may surface as EOF or a reset: not checked).
				want := map[misbehaviour]bus.ErrorClass{
					refuseConnack:     bus.ClassRefused,
					garbage:           bus.ClassProtocol,
					silence:           bus.ClassTimeout,
					stallAfterConnack: bus.ClassTimeout,
					closeAfterConnack: bus.ClassReset,
				}
				if w, ok := want[mode]; ok && bus.Classify(r.err) != w {
					t.Errorf("Run error %v classified %s, want %s", r.err, bus.Classify(r.err), w)
				}
				if mode == refuseConnack && !errors.Is(r.err, bus.ErrRefused) {
					t.Errorf("Run error %v: want it to wrap bus.ErrRefused for a refused CONNACK", r.err)
				}
				if r.out.Verdict != verify.Inconclusive {
					t.Errorf("verdict %s (%s), want inconclusive", r.out.Verdict, r.out.Reason)
				}
				if r.out.RunID == "" || r.out.Gates == nil || r.out.Windows == nil {
					t.Errorf("outcome %+v: want a run id, gates and windows for the report", r.out)
				}
			})
		}
	}
}
