// Package localbus is the embedded event bus: a long-poll server speaking the
// Nchan protocol (fasthttp) and an MQTT broker (mochi-mqtt), both in-process on
// loopback, so swarm and probe run against something real on a fresh machine.
//
// It can inject faults deterministically (drop, duplicate, delay, corrupt a
// chosen fraction of deliveries, decided per (subscriber, message) from a seed)
// and reports exactly what it injected (Injected), which is how the verifier is
// proven to count right. It can also simulate an outage (SetOutage) and counts
// the requests it receives (Requests).
//
// Long-poll (Nchan's protocol): POST /pub/<channel> answers 201 when a poll was
// waiting on the channel, else 202. GET /sub/<ch1>,<ch2>,… is held until a
// message is available (200, Etag = message id, Last-Modified = publish time,
// Content-Type of the publish) or Hold passes (408). Message ids are one
// bus-wide sequence; a poll echoing an id (If-None-Match) gets the first
// message after it on any of its channels, so nothing published between polls
// is lost; without an id it gets only messages published after it arrived. Ids
// never issued and malformed ids or dates are answered 400.
//
// Long-poll faults are decided when a poll first reaches a message (per
// subscriber and channel; a re-poll from an older id does not decide again).
// A dropped or delayed message is skipped; a delayed one is queued and answered
// on the subscriber's first poll after it is due (waking a held poll), a
// duplicate's second copy on its next poll. Queued copies carry the poll's own id
// as Etag so the subscriber resumes where it was. At most 4096 copies are queued
// per subscriber (past that, delay and duplicate decisions are not injected), and
// a subscriber's state is forgotten after it has not polled for
// max(2·Hold, 30 s) + the longest delay.
//
// WebSocket and EventSource subscribers on the same location: see stream.go.
//
// MQTT faults: see faultHook.
package localbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/valyala/fasthttp"
)

// Config configures the embedded bus. Zero fields take their defaults.
type Config struct {
	// HTTPAddr is the long-poll server's listen address. Default "127.0.0.1:0";
	// "-" disables the long-poll server.
	HTTPAddr string
	// MQTTAddr is the MQTT broker's listen address. Default "127.0.0.1:0"; "-"
	// disables the broker.
	MQTTAddr string
	// MQTTWSAddr is the listen address of the broker's MQTT over WebSocket
	// listener (GET /mqtt, subprotocol "mqtt"). Empty or "-" disables it (the
	// default); "127.0.0.1:0" picks a port.
	MQTTWSAddr string
	// Hold is how long a long-poll request is held before 408. Default 25s.
	Hold time.Duration
	// BufferLength is the number of messages kept per long-poll channel. Default 1000.
	BufferLength int
	// BufferTimeout is how long a long-poll message is kept. Default 5m.
	BufferTimeout time.Duration
	// MaxMessageSize is the largest long-poll message accepted (413 above it).
	// Default 1 MiB.
	MaxMessageSize int
	// MQTTWritesPending is the broker's per-client queue of pending writes
	// (mochi's MaximumClientWritesPending); a client further behind loses
	// messages. Each client allocates 8 bytes per slot up front (mochi's default
	// of 8192 costs 64 KiB per connection); at 1,000 msg/s to one subscriber the
	// default absorbs a 2 s stall. Default 2048.
	MQTTWritesPending int
	// Logger receives the servers' own logs (fasthttp, mochi). Default: discarded.
	Logger *slog.Logger
	// Faults configures fault injection; the zero value injects nothing.
	Faults Faults
}

// Defaults.
const (
	DefaultAddr              = "127.0.0.1:0"
	DefaultHold              = 25 * time.Second
	DefaultBufferLength      = 1000
	DefaultBufferTimeout     = 5 * time.Minute
	DefaultMaxMessageSize    = 1 << 20
	DefaultMQTTWritesPending = 2048

	// Disabled as an address disables that server.
	Disabled = "-"

	// maxPending bounds a long-poll subscriber's queue of delayed and duplicate
	// deliveries; past it, a delay or duplicate decision is not injected (the
	// message is delivered normally and counted as such).
	maxPending = 4096
	// httpConcurrency is the fasthttp server's connection limit: every held
	// poll occupies one.
	httpConcurrency = 200_000
	// shutdownGrace bounds how long Close waits for HTTP connections to finish.
	shutdownGrace = 5 * time.Second
)

func (c Config) withDefaults() Config {
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultAddr
	}
	if c.MQTTAddr == "" {
		c.MQTTAddr = DefaultAddr
	}
	if c.Hold == 0 {
		c.Hold = DefaultHold
	}
	if c.BufferLength == 0 {
		c.BufferLength = DefaultBufferLength
	}
	if c.BufferTimeout == 0 {
		c.BufferTimeout = DefaultBufferTimeout
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.MQTTWritesPending == 0 {
		c.MQTTWritesPending = DefaultMQTTWritesPending
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem with the configuration at once.
func (c Config) Validate() error {
	var errs []error
	c = c.withDefaults()
	if c.HTTPAddr == Disabled && c.MQTTAddr == Disabled {
		errs = append(errs, errors.New("localbus: both HTTPAddr and MQTTAddr are disabled"))
	}
	if c.MQTTAddr == Disabled && c.MQTTWSAddr != "" && c.MQTTWSAddr != Disabled {
		errs = append(errs, errors.New("localbus: MQTTWSAddr needs the broker (MQTTAddr is disabled)"))
	}
	for _, a := range []struct{ name, v string }{{"HTTPAddr", c.HTTPAddr}, {"MQTTAddr", c.MQTTAddr}, {"MQTTWSAddr", c.MQTTWSAddr}} {
		if a.v == Disabled || a.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			errs = append(errs, fmt.Errorf("localbus: %s %q: %w", a.name, a.v, err))
		}
	}
	if c.Hold < 0 {
		errs = append(errs, fmt.Errorf("localbus: Hold = %v, want > 0", c.Hold))
	}
	if c.BufferLength < 0 {
		errs = append(errs, fmt.Errorf("localbus: BufferLength = %d, want > 0", c.BufferLength))
	}
	if c.BufferTimeout < 0 {
		errs = append(errs, fmt.Errorf("localbus: BufferTimeout = %v, want > 0", c.BufferTimeout))
	}
	if c.MaxMessageSize < 0 {
		errs = append(errs, fmt.Errorf("localbus: MaxMessageSize = %d, want > 0", c.MaxMessageSize))
	}
	if c.MQTTWritesPending < 0 {
		errs = append(errs, fmt.Errorf("localbus: MQTTWritesPending = %d, want > 0", c.MQTTWritesPending))
	}
	if err := c.Faults.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Requests counts the requests the bus received, whatever their outcome
// (including those refused during an outage).
type Requests struct {
	HTTPPublishes uint64 // POST /pub/… requests
	HTTPPolls     uint64 // GET /sub/… requests
	MQTTConnects  uint64 // CONNECT packets
	MQTTPublishes uint64 // PUBLISH packets received from clients
}

// Bus is a running embedded bus. Close it.
type Bus struct {
	cfg    Config
	faults bool // cfg.Faults.Enabled()

	injected injectedCounters
	outage   atomic.Int32
	done     chan struct{} // closed by Close
	closed   atomic.Bool
	wg       sync.WaitGroup // serve loops and the janitor

	httpPubs, httpPolls, mqttConnects, mqttPubs atomic.Uint64

	// long-poll
	httpLn  *trackingListener
	httpSrv *fasthttp.Server
	store   *store

	// MQTT
	broker *mqtt.Server
	hook   *faultHook
}

// Start validates cfg, listens on its addresses and serves in goroutines the Bus
// owns until Close.
func Start(cfg Config) (*Bus, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	b := &Bus{
		cfg:    cfg,
		faults: cfg.Faults.Enabled(),
		done:   make(chan struct{}),
	}
	b.injected.delayed = make([]atomic.Uint64, len(cfg.Faults.Delays))
	if cfg.HTTPAddr != Disabled {
		if err := b.startHTTP(); err != nil {
			b.Close()
			return nil, err
		}
	}
	if cfg.MQTTAddr != Disabled {
		if err := b.startMQTT(); err != nil {
			b.Close()
			return nil, err
		}
	}
	return b, nil
}

// HTTPURL is the long-poll server's base URL, "http://127.0.0.1:port", or ""
// when it is disabled.
func (b *Bus) HTTPURL() string {
	if b.httpLn == nil {
		return ""
	}
	return "http://" + b.httpLn.Addr().String()
}

// MQTTWSAddr is the broker's WebSocket listener's address, "127.0.0.1:port",
// or "" when it is disabled; its URL is mqtt+ws://<addr>/mqtt.
func (b *Bus) MQTTWSAddr() string {
	if b.hook == nil {
		return ""
	}
	return b.hook.wsAddr
}

// MQTTAddr is the broker's address, "127.0.0.1:port", or "" when it is disabled.
func (b *Bus) MQTTAddr() string {
	if b.hook == nil || b.hook.addr == "" {
		return ""
	}
	return b.hook.addr
}

// Injected reports exactly what was injected so far (see Injected).
func (b *Bus) Injected() Injected { return b.injected.snapshot() }

// Requests reports the request counters.
func (b *Bus) Requests() Requests {
	return Requests{
		HTTPPublishes: b.httpPubs.Load(),
		HTTPPolls:     b.httpPolls.Load(),
		MQTTConnects:  b.mqttConnects.Load(),
		MQTTPublishes: b.mqttPubs.Load(),
	}
}

// SetOutage simulates an outage while status is non-zero: every long-poll
// request (publish and subscribe, including polls already held) is answered
// with status at once, every MQTT CONNECT is refused (CONNACK "server
// unavailable") and the connected MQTT clients are disconnected. 0 ends it.
func (b *Bus) SetOutage(status int) {
	if status != 0 && (status < 100 || status > 999) {
		status = 503
	}
	prev := b.outage.Swap(int32(status))
	if status == 0 || prev != 0 {
		return
	}
	if b.store != nil {
		b.store.wakeAll()
	}
	if b.hook != nil {
		b.hook.disconnectAll()
	}
}

// Close stops everything at once: held polls are cut (503, connection closed),
// the broker is closed, pending delayed MQTT deliveries are cancelled, and Close
// waits for the goroutines the bus started. It is safe to call more than once.
func (b *Bus) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(b.done)
	var errs []error
	if b.httpSrv != nil {
		// Stop accepting, then end the connections that never sent a byte:
		// they carry no request, and fasthttp would wait 5 s before it
		// counted them idle (see trackingListener). Held polls end on b.done.
		_ = b.httpLn.Close()
		b.httpLn.closeConns(false)
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		if err := b.httpSrv.ShutdownWithContext(ctx); err != nil {
			// A request still running after the grace: cut it off rather
			// than leave its goroutine behind, and say so.
			n := b.httpLn.closeConns(true)
			errs = append(errs, fmt.Errorf("localbus: http shutdown: %w (%d connections still busy after %s were closed)", err, n, shutdownGrace))
		}
		cancel()
	}
	if b.broker != nil {
		if err := b.broker.Close(); err != nil {
			errs = append(errs, fmt.Errorf("localbus: mqtt close: %w", err))
		}
		b.hook.stop()
	}
	b.wg.Wait()
	return errors.Join(errs...)
}

// Stats is the embedded bus's own health at this moment, for --bus-stats:
// the broker's counters (mochi-mqtt's $SYS numbers: clients, messages
// received/sent/dropped, in flight, subscriptions, bytes), the long-poll
// server's request counters, and what the fault injector did so far. Keys
// are stable snake_case names; a part that is disabled has no keys.
func (b *Bus) Stats() map[string]float64 {
	v := map[string]float64{}
	inj := b.Injected()
	v["injected_deliveries"] = float64(inj.Deliveries)
	v["injected_dropped"] = float64(inj.Dropped)
	v["injected_duplicated"] = float64(inj.Duplicated)
	v["injected_corrupted"] = float64(inj.Corrupted)
	var delayed uint64
	for _, d := range inj.Delayed {
		delayed += d
	}
	v["injected_delayed"] = float64(delayed)
	if b.httpLn != nil {
		v["http_publishes"] = float64(b.httpPubs.Load())
		v["http_polls"] = float64(b.httpPolls.Load())
	}
	if b.broker != nil {
		i := b.broker.Info.Clone()
		v["mqtt_connects"] = float64(b.mqttConnects.Load())
		v["clients_connected"] = float64(i.ClientsConnected)
		v["clients_maximum"] = float64(i.ClientsMaximum)
		v["messages_received"] = float64(i.MessagesReceived)
		v["messages_sent"] = float64(i.MessagesSent)
		// The broker's own drops (a subscriber too slow for its write
		// queue), never the injected ones: a real loss inside the bus.
		v[StatsDroppedKey] = float64(i.MessagesDropped + i.InflightDropped)
		v["inflight"] = float64(i.Inflight)
		v["subscriptions"] = float64(i.Subscriptions)
		v["retained"] = float64(i.Retained)
		v["bytes_received"] = float64(i.BytesReceived)
		v["bytes_sent"] = float64(i.BytesSent)
	}
	return v
}

// StatsDroppedKey is the Stats key of the messages the broker itself dropped.
const StatsDroppedKey = "messages_dropped"
