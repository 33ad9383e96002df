// Package streamsub is the subscriber side shared by the streaming protocols
// of Nchan-protocol targets (WebSocket in internal/wsock, EventSource in
// internal/sse): one long-lived request per channel set, on a socket of its
// own, that the server keeps open and writes every message into. Publishing
// stays POST <url>/pub/<channel>, done by a longpoll.Conn the Conn wraps.
//
// A Conn's stream loop connects (through the longpoll.Client's dialer: TLS,
// source addresses), does the protocol's handshake on GET <url>/sub/<ch1>,<ch2>
// with the configured extra headers, and delivers each message to the Handler.
// When the stream ends (the server's hold ran out, the connection broke) it
// reconnects through backoff, sending back the id of the last message the
// server gave it (Last-Event-ID), so a server that keeps a message buffer
// (Nchan) resumes right after it: nothing lost, nothing repeated. Only ids the
// server gave are ever sent (Nchan 1.3.6 aborts a worker on an invented one);
// before the first id, a reconnect starts at the newest message, and what was
// published while disconnected is lost (the verifier counts it as lost during
// a disconnect).
//
// Events a Conn reports to its bus.Handler:
//   - Connected then Subscribed when a handshake succeeds (the server accepted
//     the subscription). Latency: since Subscribe for the first, else how long
//     the failure streak lasted. Subscribed.SessionPresent says the stream
//     resumed from an id.
//   - Disconnected(Err) when a stream ends or a connect fails, first of a
//     streak; Retrying{Delay} before every wait; Dialled{Err, Latency} for every
//     reconnect attempt after the first connect.
//   - Published for every publish (from the wrapped longpoll.Conn).
package streamsub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/longpoll"
)

// MaxMessageSize is the largest message a stream accepts (a bigger frame or
// event is a protocol error, the connection is dropped).
const MaxMessageSize = 8 << 20

// ReadBuffer is the size of a stream's read buffer, held for its life.
const ReadBuffer = 1024

// Request is what a protocol's handshake sends.
type Request struct {
	Host        string // Host header
	URI         string // request URI: escaped sub path + "ch1,ch2"
	HeaderLines string // extra headers, each "Name: value\r\n", then the subscriber's
	LastID      string // the id to resume after ("" for none); printable
}

// Protocol is one streaming subscriber protocol.
type Protocol interface {
	// Name is the protocol's name in errors ("websocket", "eventsource").
	Name() string
	// Open does the handshake on nc and returns the open stream. Its error
	// wraps a *bus.StatusError for a refusal by status, bus.ErrProtocol for a
	// peer that does not speak the protocol.
	Open(nc net.Conn, req Request) (Stream, error)
}

// Stream is an open subscription.
type Stream interface {
	// Wait blocks until the next message has begun to arrive (a byte of it
	// is buffered). The loop parks here, in a shallow frame, so the runtime
	// can shrink an idle stream's goroutine stack.
	Wait() error
	// Next blocks until the next message. payload is valid until the next
	// call; id is the message id the server gave with it ("" if none). It
	// returns ErrNoMessage when what had arrived held no message (a comment,
	// a ping) and nothing more is buffered: the loop then parks in Wait
	// again, not deep in Next.
	Next() (payload []byte, id string, err error)
	// Release gives back the stream's buffers; the caller closes the socket.
	Release()
}

// ErrClosed is returned by operations on a closed Client or Conn.
var ErrClosed = errors.New("streamsub: closed")

// ErrNoMessage is Stream.Next's "nothing to deliver yet".
var ErrNoMessage = errors.New("streamsub: no message buffered")

// ErrStreamEnded marks a stream the server ended (EOF).
var ErrStreamEnded = errors.New("stream ended by the server")

// Client is a longpoll.Client (for publishing and dialling) plus a streaming
// subscriber protocol.
type Client struct {
	lp    *longpoll.Client
	proto Protocol
	st    longpoll.SubscribeTarget

	mu     sync.Mutex
	closed bool
	conns  map[*Conn]struct{}
}

// New makes a Client subscribing with proto; it owns lp (Close closes it).
func New(lp *longpoll.Client, proto Protocol) *Client {
	return &Client{lp: lp, proto: proto, st: lp.SubscribeTarget(), conns: map[*Conn]struct{}{}}
}

// Check reaches the target as longpoll.Client.Check does.
func (c *Client) Check(ctx context.Context) error { return c.lp.Check(ctx) }

// Dialer returns c as a bus.Dialer.
func (c *Client) Dialer() bus.Dialer { return bus.DialerOf(c.Dial) }

// Close closes every Conn still open and the publisher.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	conns := make([]*Conn, 0, len(c.conns))
	for conn := range c.conns {
		conns = append(conns, conn)
	}
	c.mu.Unlock()
	for _, conn := range conns {
		_ = conn.Close()
	}
	c.lp.Close()
}

// Dial returns a Conn for the user id; ctx is its lifetime. No network I/O.
func (c *Client) Dial(ctx context.Context, id string, h bus.Handler) (*Conn, error) {
	if h == nil {
		return nil, fmt.Errorf("%s: dial: nil handler", c.proto.Name())
	}
	pub, err := c.lp.Dial(ctx, id, h)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.proto.Name(), err)
	}
	cctx, cancel := context.WithCancel(ctx)
	conn := &Conn{c: c, pub: pub, id: id, h: h, ctx: cctx, cancel: cancel}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		cancel()
		_ = pub.Close()
		return nil, ErrClosed
	}
	c.conns[conn] = struct{}{}
	return conn, nil
}

func (c *Client) forget(conn *Conn) {
	c.mu.Lock()
	delete(c.conns, conn)
	c.mu.Unlock()
}

// Conn is one user's connection: publishes through a longpoll.Conn, and at
// most one stream loop (started by Subscribe) on a socket of its own.
type Conn struct {
	c      *Client
	pub    *longpoll.Conn
	id     string
	h      bus.Handler
	ctx    context.Context
	cancel context.CancelFunc

	subMu sync.Mutex // serialises Subscribe and Close
	chans []string

	mu     sync.Mutex
	closed bool
	loop   *loop
}

var _ bus.Conn = (*Conn)(nil)

// Publish POSTs payload to channel (see longpoll.Conn.Publish).
func (c *Conn) Publish(ctx context.Context, channel string, payload []byte) error {
	return c.pub.Publish(ctx, channel, payload)
}

// Subscribe adds channels to the Conn's set and (re)starts its stream loop on
// the whole set, as longpoll.Conn.Subscribe does: a new set starts without an
// id. It does no network I/O; bus.Subscribed follows once the server accepts.
func (c *Conn) Subscribe(ctx context.Context, channels []string) error {
	name := c.c.proto.Name()
	if len(channels) == 0 || len(channels) > longpoll.MaxChannels {
		return fmt.Errorf("%s: subscribe: want 1 to %d channels, got %d", name, longpoll.MaxChannels, len(channels))
	}
	var errs []error
	for _, ch := range channels {
		if err := longpoll.CheckChannel(ch); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: subscribe: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: subscribe: %w", name, err)
	}
	c.subMu.Lock()
	defer c.subMu.Unlock()
	set := c.chans
	for _, ch := range channels {
		if !slices.Contains(set, ch) {
			set = append(slices.Clip(set), ch)
		}
	}
	if len(set) > longpoll.MaxChannels {
		return fmt.Errorf("%s: subscribe: want at most %d channels on one Conn, got %d", name, longpoll.MaxChannels, len(set))
	}
	c.mu.Lock()
	old, closed := c.loop, c.closed
	if old != nil && len(set) == len(c.chans) && !closed {
		c.mu.Unlock()
		return nil
	}
	c.loop = nil
	c.mu.Unlock()
	if closed || c.ctx.Err() != nil {
		return fmt.Errorf("%s: subscribe: %w", name, ErrClosed)
	}
	if old != nil {
		old.stop()
	}
	c.chans = set
	l := c.newLoop(strings.Join(set, ","))
	c.mu.Lock()
	c.loop = l
	c.mu.Unlock()
	go l.run()
	return nil
}

// Close cuts the stream at once, cancels any backoff wait, waits for the loop
// to end and closes the publisher. It is idempotent.
func (c *Conn) Close() error {
	c.cancel()
	c.subMu.Lock()
	defer c.subMu.Unlock()
	c.mu.Lock()
	l := c.loop
	c.loop = nil
	c.closed = true
	c.mu.Unlock()
	if l != nil {
		l.stop()
	}
	_ = c.pub.Close()
	c.c.forget(c)
	return nil
}

// loop is one run of a Conn's stream loop over one channel set.
type loop struct {
	conn    *Conn
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	started time.Time
	req     Request

	failing   bool
	failSince time.Time
	connected bool // a handshake succeeded at least once
	bo        *backoff.Backoff
	sock      net.Conn // the loop goroutine's view of its socket

	mu  sync.Mutex
	nc  net.Conn
	cut bool
}

func (c *Conn) newLoop(channels string) *loop {
	ctx, cancel := context.WithCancel(c.ctx)
	st := c.c.st
	return &loop{
		conn: c, ctx: ctx, cancel: cancel, done: make(chan struct{}), started: time.Now(),
		req: Request{
			Host:        st.Host,
			URI:         st.SubPrefix + channels,
			HeaderLines: st.HeaderLines + longpoll.SubscriberHeader + ": " + c.id + "\r\n",
		},
	}
}

func (l *loop) stop() {
	l.cancel()
	<-l.done
}

func (l *loop) cutNow() {
	l.mu.Lock()
	l.cut = true
	if l.nc != nil {
		_ = l.nc.Close()
	}
	l.mu.Unlock()
}

func (l *loop) emit(e bus.Event) {
	if l.ctx.Err() != nil {
		return
	}
	e.At = time.Now()
	l.conn.h.HandleEvent(e)
}

// run is the loop. An open stream waits for its next message in small
// frames (read, wait): a parked stream holds a shallow stack, so the runtime
// can shrink the goroutine's stack to its minimum (as longpoll's poll loop).
func (l *loop) run() {
	defer close(l.done)
	stopCut := context.AfterFunc(l.ctx, l.cutNow)
	defer stopCut()
	l.bo = backoff.New(l.conn.c.st.Config.Backoff, nil)
	for l.ctx.Err() == nil {
		start := time.Now()
		s, err := l.connect()
		var held time.Duration
		if err == nil {
			opened := time.Now()
			err = l.read(s)
			held = time.Since(opened)
			l.disconnect(s)
		}
		if !l.after(start, held, err) {
			return
		}
	}
}

// after handles the end of a stream (or a failed connect) that began at
// start and stayed open for held: events, then the backoff wait. It reports
// whether the loop goes on.
//
//go:noinline
func (l *loop) after(start time.Time, held time.Duration, err error) bool {
	if l.ctx.Err() != nil {
		return false
	}
	if held >= l.conn.c.st.Config.MinHold {
		l.bo.Reset() // a stream that stayed up is not part of a failure streak
	}
	if !l.failing {
		l.failing = true
		l.failSince = start.Add(held)
		l.emit(bus.Event{Kind: bus.Disconnected, Err: err})
	}
	d := l.bo.Next()
	l.emit(bus.Event{Kind: bus.Retrying, Delay: d, Err: err})
	return backoff.Sleep(l.ctx, d) == nil
}

// connect dials and does the handshake; on success the stream is open and
// Connected and Subscribed are reported.
//
//go:noinline
func (l *loop) connect() (Stream, error) {
	cfg := &l.conn.c.st.Config
	name := l.conn.c.proto.Name()
	start := time.Now()
	dctx, cancel := context.WithTimeout(l.ctx, cfg.PublishTimeout)
	nc, err := l.conn.c.lp.DialSocket(dctx)
	cancel()
	if err == nil {
		l.mu.Lock()
		if l.cut {
			l.mu.Unlock()
			_ = nc.Close()
			return nil, fmt.Errorf("%s: subscribe: %w", name, ErrClosed)
		}
		l.nc = nc
		l.mu.Unlock()
		l.sock = nc
	}
	var s Stream
	if err == nil {
		_ = nc.SetDeadline(time.Now().Add(cfg.PublishTimeout))
		s, err = l.conn.c.proto.Open(nc, l.req)
	}
	if l.connected {
		l.emit(bus.Event{Kind: bus.Dialled, Err: err, Latency: time.Since(start)})
	}
	if err != nil {
		l.disconnect(nil)
		return nil, fmt.Errorf("%s: subscribe: %w", name, err)
	}
	opened := time.Now()
	lat := opened.Sub(l.started)
	if l.failing {
		lat = opened.Sub(l.failSince)
	}
	resumed := l.req.LastID != ""
	l.connected, l.failing = true, false
	l.emit(bus.Event{Kind: bus.Connected, Latency: lat})
	l.emit(bus.Event{Kind: bus.Subscribed, Latency: lat, SessionPresent: resumed})
	return s, nil
}

// disconnect releases s (if any) and closes the socket.
//
//go:noinline
func (l *loop) disconnect(s Stream) {
	if s != nil {
		s.Release()
	}
	if l.sock == nil {
		return
	}
	l.mu.Lock()
	_ = l.nc.Close()
	l.nc = nil
	l.mu.Unlock()
	l.sock = nil
}

// read delivers the stream's messages until it ends.
//
//go:noinline
func (l *loop) read(s Stream) error {
	for {
		if err := l.wait(s); err != nil {
			return l.ended(err)
		}
		if err := l.deliver(s); err != nil {
			return l.ended(err)
		}
	}
}

// wait parks until the next message begins, bounded by the idle timeout.
//
//go:noinline
func (l *loop) wait(s Stream) error {
	_ = l.sock.SetReadDeadline(time.Now().Add(l.conn.c.st.Config.PollTimeout))
	return s.Wait()
}

// deliver reads one message and hands it to the Handler, keeping its id.
//
//go:noinline
func (l *loop) deliver(s Stream) error {
	p, id, err := s.Next()
	if err != nil {
		if errors.Is(err, ErrNoMessage) {
			return nil
		}
		return err
	}
	if id != "" && len(id) <= maxIDLen && longpoll.CheckID(id) {
		l.req.LastID = id
	}
	if l.ctx.Err() != nil {
		return ErrClosed
	}
	l.conn.h.HandleMessage(bus.Message{Payload: p})
	return nil
}

// ended wraps the error that ended a stream.
//
//go:noinline
func (l *loop) ended(err error) error {
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w (%w)", ErrStreamEnded, err)
	}
	return fmt.Errorf("%s: stream: %w", l.conn.c.proto.Name(), err)
}

// maxIDLen bounds an id kept to be sent back (Nchan's multiplexed ids grow
// with the number of channels: about 4 bytes each).
const maxIDLen = 4096
