package localbus

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// MQTT broker limits, raised from mochi's defaults so that 1,000 msg/s to 10
// subscribers and 10k connections do not drop.
const (
	mqttMaxInflight      = 65535     // QoS>0 messages held per client
	mqttReceiveMaximum   = 65535     // concurrent inbound QoS>0 publishes per client
	mqttWriteBufferSize  = 32 << 10  // bytes coalesced per client write
	mqttReadBufferSize   = 4 << 10   // bytes buffered per client read
	mqttSysTopicInterval = int64(10) // seconds between $SYS updates
)

// How MQTT faults are injected.
//
// mochi calls OnPacketEncode(client, packet) just before it encodes any packet
// for a client, on whichever goroutine writes it (normally the client's write
// loop). The hook decides the fault for the first transmission of each PUBLISH
// to a subscriber (not for redeliveries, which carry the DUP flag, not for $SYS
// topics and not for copies the hook writes itself, which it marks with
// packets.Packet.Ignore — a field mochi never encodes):
//
//   - drop: the packet's Mods.MaxSize is set to 1, so mochi refuses to write it
//     (ErrPacketTooLarge, its path for packets above a client's maximum packet
//     size); for QoS 1/2 the hook also removes the packet from the client's
//     inflight store and returns its send quota, as mochi does when it drops a
//     packet, so broker and client stay consistent.
//   - delay: the write is suppressed the same way but the packet stays inflight
//     under its packet ID; a timer owned by the bus writes it after the delay
//     (the client then acknowledges it normally). Close cancels pending timers.
//   - duplicate: before the original is written, a copy is written to the
//     client; for QoS 1/2 the copy gets a fresh packet ID and its own inflight
//     entry, so the client delivers (and acknowledges) both.
//   - corrupt: the packet is written with a copy of the payload that has one
//     byte altered.
//
// Each first transmission counts as one delivery in Injected, including
// retained messages sent on subscribe. Caveat (MQTT 5 clients only): a
// duplicate is written even when the client's receive maximum is used up.
type faultHook struct {
	mqtt.HookBase
	b      *Bus
	srv    *mqtt.Server
	addr   string
	wsAddr string  // the WebSocket listener's, "" if none
	faults *Faults // nil: no faults configured

	mu      sync.Mutex
	stopped bool
	timers  map[*time.Timer]struct{}
	wg      sync.WaitGroup // delayed writes
}

func (b *Bus) startMQTT() error {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumInflight = mqttMaxInflight
	caps.ReceiveMaximum = mqttReceiveMaximum
	caps.MaximumClientWritesPending = int32(b.cfg.MQTTWritesPending)
	srv := mqtt.New(&mqtt.Options{
		Capabilities:             caps,
		ClientNetWriteBufferSize: mqttWriteBufferSize,
		ClientNetReadBufferSize:  mqttReadBufferSize,
		SysTopicResendInterval:   mqttSysTopicInterval,
		Logger:                   b.cfg.Logger,
	})
	h := &faultHook{b: b, srv: srv, timers: map[*time.Timer]struct{}{}}
	if b.faults {
		f := b.cfg.Faults
		h.faults = &f
	}
	if err := srv.AddHook(h, nil); err != nil {
		return fmt.Errorf("localbus: mqtt hook: %w", err)
	}
	ln := &tcpListener{address: b.cfg.MQTTAddr}
	if err := srv.AddListener(ln); err != nil {
		return fmt.Errorf("localbus: mqtt listen: %w", err)
	}
	h.addr = ln.Address()
	if a := b.cfg.MQTTWSAddr; a != "" && a != Disabled {
		wl := newWSListener(a)
		if err := srv.AddListener(wl); err != nil {
			ln.Close(func(string) {})
			return fmt.Errorf("localbus: mqtt websocket listen: %w", err)
		}
		h.wsAddr = wl.Address()
	}
	b.hook = h
	if err := srv.Serve(); err != nil {
		ln.Close(func(string) {})
		return fmt.Errorf("localbus: mqtt serve: %w", err)
	}
	b.broker = srv
	return nil
}

func (h *faultHook) ID() string { return "localbus" }

func (h *faultHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnConnect, mqtt.OnSessionEstablished, mqtt.OnPacketRead:
		return true
	case mqtt.OnPacketEncode:
		return h.faults != nil
	}
	return false
}

// OnConnectAuthenticate allows everyone.
func (h *faultHook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

// OnACLCheck allows everything.
func (h *faultHook) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

// OnPacketRead counts CONNECTs and PUBLISHes.
func (h *faultHook) OnPacketRead(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	switch pk.FixedHeader.Type {
	case packets.Connect:
		h.b.mqttConnects.Add(1)
	case packets.Publish:
		h.b.mqttPubs.Add(1)
	}
	return pk, nil
}

// OnConnect refuses connections during an outage with CONNACK "server
// unavailable". With faults on, it also turns off outbound topic aliases for the
// client (an MQTT 5 option for the server), since a dropped or delayed packet
// may be the one that sets an alias.
func (h *faultHook) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	if h.faults != nil {
		cl.Properties.Props.TopicAliasMaximum = 0
	}
	if h.b.outage.Load() == 0 {
		return nil
	}
	_ = h.srv.SendConnack(cl, packets.ErrServerUnavailable, false, nil)
	return packets.ErrServerUnavailable
}

// OnSessionEstablished turns off the broker's outbound flow control for the
// client and closes a client that got in while an outage began.
//
// Flow control: mochi-mqtt v2.7.9 deadlocks a client's session when it is on
// (an MQTT 5 client's Receive Maximum; 3.1.1 clients have none): after each
// packet it reads, it calls Inflight.NextImmediate, which read-locks the
// in-flight map and then read-locks it again in GetAll; a writer waiting in
// between (an acknowledgement being handled) blocks both for ever, and the
// broker's Close with them. With the send quota 0 the broker sends as it does
// to a 3.1.1 client, never waiting for a quota, and never takes that path.
// eventswarm's client announces Receive Maximum 65535, far above what it
// ever has in flight, so nothing it would see changes.
func (h *faultHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	cl.State.Inflight.ResetSendQuota(0)
	if h.b.outage.Load() != 0 {
		h.disconnect(cl)
	}
}

func (h *faultHook) disconnectAll() {
	for _, cl := range h.srv.Clients.GetAll() {
		if !cl.Net.Inline && !cl.Closed() {
			h.disconnect(cl)
		}
	}
}

// disconnect ends a client's connection: MQTT 5 clients get a DISCONNECT
// (server unavailable) first; MQTT 3 has no server DISCONNECT, so the
// connection is just closed.
func (h *faultHook) disconnect(cl *mqtt.Client) {
	if cl.Properties.ProtocolVersion >= 5 {
		_ = h.srv.DisconnectClient(cl, packets.ErrServerUnavailable)
		return
	}
	cl.Stop(packets.ErrServerUnavailable)
}

// OnPacketEncode injects faults into PUBLISH packets on their way to subscribers.
func (h *faultHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Publish || pk.Ignore || pk.FixedHeader.Dup || cl.Net.Inline ||
		strings.HasPrefix(pk.TopicName, "$") {
		return pk
	}
	f := h.faults
	if f.Skip != nil && f.Skip(pk.Payload) {
		return pk
	}
	fault, hh := f.decide(hashString(cl.ID), hashBytes(pk.Payload))
	di := 0
	switch fault {
	case Corrupt:
		if len(pk.Payload) == 0 {
			fault = NoFault
		}
	case Delay:
		di = int(hh % uint64(len(f.Delays)))
	case Duplicate:
		if !h.writeDuplicate(cl, pk) {
			fault = NoFault // no packet ID free: not injected
		}
	}
	h.b.injected.count(fault, di)
	switch fault {
	case Drop:
		h.release(cl, pk)
		pk.Mods.MaxSize = 1
	case Delay:
		later := pk
		later.Ignore = true
		h.after(f.Delays[di], func() { _ = cl.WritePacket(later) })
		pk.Mods.MaxSize = 1
	case Corrupt:
		pk.Payload = corrupt(pk.Payload, hh)
	}
	return pk
}

// writeDuplicate writes a copy of pk to cl, with its own packet ID and inflight
// entry for QoS 1/2. It reports whether the copy could be made.
func (h *faultHook) writeDuplicate(cl *mqtt.Client, pk packets.Packet) bool {
	dup := pk
	dup.Ignore = true
	if pk.FixedHeader.Qos > 0 {
		id, err := cl.NextPacketID()
		if err != nil {
			return false
		}
		dup.PacketID = uint16(id)
		if cl.State.Inflight.Set(dup) {
			atomic.AddInt64(&h.srv.Info.Inflight, 1)
			cl.State.Inflight.DecreaseSendQuota()
		}
	}
	if err := cl.WritePacket(dup); err != nil && pk.FixedHeader.Qos > 0 {
		h.release(cl, dup)
	}
	return true
}

// release removes a QoS 1/2 packet that will never be written from the
// client's inflight store and returns its send quota.
func (h *faultHook) release(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Qos == 0 {
		return
	}
	if cl.State.Inflight.Delete(pk.PacketID) {
		atomic.AddInt64(&h.srv.Info.Inflight, -1)
		cl.State.Inflight.IncreaseSendQuota()
	}
}

// after runs f after d on a timer the bus owns; stop cancels it.
func (h *faultHook) after(d time.Duration, f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return
	}
	h.wg.Add(1)
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		defer h.wg.Done()
		h.mu.Lock()
		_, live := h.timers[t]
		delete(h.timers, t)
		h.mu.Unlock()
		if live {
			f()
		}
	})
	h.timers[t] = struct{}{}
}

// stop cancels pending delayed writes and waits for running ones.
func (h *faultHook) stop() {
	h.mu.Lock()
	h.stopped = true
	for t := range h.timers {
		if t.Stop() {
			h.wg.Done()
		}
		delete(h.timers, t)
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// connectTimeout bounds the wait for a new connection's CONNECT packet; after
// it mochi applies the client's keepalive.
const connectTimeout = 10 * time.Second

// tcpListener is mochi's listener interface over TCP, like listeners.TCP but
// owning its connections: Close closes every connection it accepted (so no
// client, not even one that never sent CONNECT, can hold the broker's Close)
// and waits for their goroutines.
type tcpListener struct {
	address string
	ln      net.Listener
	log     *slog.Logger
	set     connSet
}

func (l *tcpListener) ID() string       { return "localbus-tcp" }
func (l *tcpListener) Protocol() string { return "tcp" }

func (l *tcpListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.address
}

func (l *tcpListener) Init(log *slog.Logger) error {
	l.log = log
	ln, err := net.Listen("tcp", l.address)
	if err != nil {
		return err
	}
	l.ln = ln
	return nil
}

// Serve accepts connections until Close. mochi runs it in its own goroutine.
func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	if !l.set.enter() {
		return
	}
	defer l.set.leave()
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return
		}
		if !l.set.add(conn) {
			return
		}
		_ = conn.SetReadDeadline(time.Now().Add(connectTimeout))
		go func() {
			defer l.set.remove(conn)
			if err := establish(l.ID(), conn); err != nil {
				l.log.Debug("mqtt connection ended", "error", err, "remote", conn.RemoteAddr())
			}
		}()
	}
}

// Close disconnects the listener's clients (closeClients, mochi's graceful
// path), stops accepting, closes every remaining connection and waits for the
// listener's goroutines.
func (l *tcpListener) Close(closeClients listeners.CloseFn) {
	if !l.set.shut() {
		return
	}
	closeClients(l.ID())
	if l.ln != nil {
		_ = l.ln.Close()
	}
	l.set.closeAll()
}
