package longpoll

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/bus"
)

// Conn is one user's connection: publishes over the Client's shared publish
// connections, and at most one poll loop (started by Subscribe) on a socket of
// its own. It satisfies bus.Conn; Client.Dialer gives a bus.Dialer. Publish is safe for concurrent use; Subscribe and Close may be called
// from any goroutine, but not from inside the Conn's Handler.
type Conn struct {
	c      *Client
	id     string
	h      bus.Handler
	ctx    context.Context // the Conn's lifetime, from Dial
	cancel context.CancelFunc

	subMu sync.Mutex // serialises Subscribe and Close
	chans []string   // the channel set, every Subscribe's channels (guarded by subMu)

	mu     sync.Mutex
	closed bool
	loop   *pollLoop
}

var _ bus.Conn = (*Conn)(nil)

// Publish POSTs payload to channel. It returns nil on a 2xx (201: a subscriber
// was waiting, 202: queued); a wrapped *bus.StatusError on any other status; an
// error wrapping bus.ErrUnknownOutcome when the request was written but no
// answer came (timeout, connection lost); any other error means nothing was
// published. ctx's deadline (if earlier than PublishTimeout) bounds the request;
// a cancellation of ctx is only seen before the request starts, since fasthttp
// has no per-request cancel, but Close (or the end of the Conn's context) cuts
// a request in flight at once. Publish never retries. Every publish not refused up front
// (bad channel, closed Conn, ended ctx) is reported as a bus.Published event.
func (c *Conn) Publish(ctx context.Context, channel string, payload []byte) error {
	if err := checkChannel(channel); err != nil {
		return fmt.Errorf("longpoll: publish: %w", err)
	}
	if c.ctx.Err() != nil || c.c.isClosed() {
		return fmt.Errorf("longpoll: publish %q: %w", channel, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("longpoll: publish %q: %w", channel, err)
	}
	start := time.Now()
	deadline := start.Add(c.c.cfg.PublishTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	status, err := c.c.runPublish(c.ctx, deadline, channel, payload)
	end := time.Now()
	c.h.HandleEvent(bus.Event{Kind: bus.Published, At: end, Err: err, Status: status, Latency: end.Sub(start)})
	return err
}

var pathPool = sync.Pool{New: func() any { b := make([]byte, 0, 128); return &b }}

// publish does one POST on the shared HostClient. It drives the connection
// itself (AcquireConn, write, read) rather than HostClient.Do so it knows
// whether the request was written: that is the line between "not published"
// and "outcome unknown".
func (c *Client) publish(ctx context.Context, deadline time.Time, channel string, payload []byte) (int, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)

	pb := pathPool.Get().(*[]byte)
	path := append(append((*pb)[:0], c.pubPrefix...), channel...)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetHost(c.t.host)
	req.Header.SetRequestURIBytes(path)
	req.Header.SetUserAgent(userAgent)
	req.Header.SetContentType("application/octet-stream")
	for _, h := range c.cfg.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	req.SetBodyRaw(payload)
	*pb = path
	pathPool.Put(pb)

	hc := c.pub
	cc, err := hc.AcquireConn(time.Until(deadline), false)
	if err != nil {
		return 0, fmt.Errorf("longpoll: publish %q: %w", channel, err)
	}
	nc := cc.Conn()
	_ = nc.SetDeadline(deadline)
	// The Conn closing cuts the request: a deadline in the past ends the write
	// or read at once. The connection is not reused after a cut.
	cut := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	closed := func(err error) error {
		if !cut() {
			return fmt.Errorf("%w (%w)", err, ErrClosed)
		}
		return err
	}
	bw := hc.AcquireWriter(nc)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if err != nil {
		// Some bytes never left: the server cannot have a whole request.
		hc.CloseConn(cc)
		return 0, closed(fmt.Errorf("longpoll: publish %q: write: %w", channel, err))
	}
	br := hc.AcquireReader(nc)
	err = resp.ReadLimitBody(br, 1<<20)
	hc.ReleaseReader(br)
	if err != nil {
		hc.CloseConn(cc)
		if errors.Is(err, io.EOF) {
			err = fasthttp.ErrConnectionClosed
		}
		return 0, closed(fmt.Errorf("longpoll: publish %q: %w: %w", channel, bus.ErrUnknownOutcome, err))
	}
	if !cut() {
		resp.SetConnectionClose() // cut after the answer: the deadline is spoiled
	}
	if resp.ConnectionClose() {
		hc.CloseConn(cc)
	} else {
		hc.ReleaseConn(cc)
	}
	st := resp.StatusCode()
	if st < 200 || st > 299 {
		return st, fmt.Errorf("longpoll: publish %q: %w", channel, &bus.StatusError{Status: st})
	}
	return st, nil
}

// Subscribe adds channels (names without '/', ',', '?', '#', '%', spaces or
// control characters) to this Conn's channel set, as bus.Conn says, and
// starts its poll loop on the whole set, or restarts it if one runs: the open
// poll is cut and the new set starts without a cursor (ids are per set). A
// call that adds nothing new leaves the running loop alone. The set holds at
// most MaxChannels names (one poll multiplexes them all). It does no network
// I/O itself; the loop reports bus.Subscribed once its first poll request is
// written.
func (c *Conn) Subscribe(ctx context.Context, channels []string) error {
	if len(channels) == 0 || len(channels) > MaxChannels {
		return fmt.Errorf("longpoll: subscribe: want 1 to %d channels, got %d", MaxChannels, len(channels))
	}
	var errs []error
	for _, ch := range channels {
		if err := checkChannel(ch); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("longpoll: subscribe: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("longpoll: subscribe: %w", err)
	}
	c.subMu.Lock()
	defer c.subMu.Unlock()
	set := c.chans
	for _, ch := range channels {
		if !slices.Contains(set, ch) {
			set = append(slices.Clip(set), ch)
		}
	}
	if len(set) > MaxChannels {
		return fmt.Errorf("longpoll: subscribe: want at most %d channels on one Conn, got %d", MaxChannels, len(set))
	}
	c.mu.Lock()
	old, closed := c.loop, c.closed
	if old != nil && len(set) == len(c.chans) && !closed {
		c.mu.Unlock()
		return nil // nothing new: the running loop already polls every channel
	}
	c.loop = nil
	c.mu.Unlock()
	if closed || c.ctx.Err() != nil {
		return fmt.Errorf("longpoll: subscribe: %w", ErrClosed)
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

// Close cuts the open poll at once (its socket is closed), cancels any backoff
// wait, and waits for the poll loop to end. It is idempotent.
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
	c.c.forget(c)
	return nil
}

// cursor is the last message id the server gave this loop.
type cursor struct {
	lastModified []byte
	etag         []byte
}

// pollLoop is one run of a Conn's poll loop over one channel set.
type pollLoop struct {
	conn    *Conn
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	started time.Time
	head    string // request line and fixed headers, up to the cursor headers
	buf     []byte // the request being written

	sock      net.Conn // the loop goroutine's view of its socket
	br        *bufio.Reader
	cur       cursor
	written   bool      // the first request of this loop was written
	failing   bool      // in a failure streak
	failSince time.Time // when the failure streak began
	bo        *backoff.Backoff

	mu  sync.Mutex // guards nc and cut against the canceller
	nc  net.Conn
	cut bool
}

func (c *Conn) newLoop(channels string) *pollLoop {
	ctx, cancel := context.WithCancel(c.ctx)
	cl := c.c
	return &pollLoop{
		conn:    c,
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),
		started: time.Now(),
		head: "GET " + cl.subPrefix + channels + " HTTP/1.1\r\nHost: " + cl.t.host +
			"\r\nUser-Agent: " + userAgent + "\r\n" + subscriberHdr + ": " + c.id + "\r\n" + cl.hdrLines,
	}
}

// stop cancels the loop (cutting its poll) and waits for it to end.
func (l *pollLoop) stop() {
	l.cancel()
	<-l.done
}

// cutNow runs when the loop's context ends: it closes the socket under a held poll.
func (l *pollLoop) cutNow() {
	l.mu.Lock()
	l.cut = true
	if l.nc != nil {
		_ = l.nc.Close()
	}
	l.mu.Unlock()
}

var readerPool sync.Pool

func (l *pollLoop) connect() error {
	nc, err := l.conn.c.dial(l.ctx)
	if err != nil {
		return fmt.Errorf("longpoll: poll: %w", err)
	}
	l.mu.Lock()
	if l.cut {
		l.mu.Unlock()
		_ = nc.Close()
		return fmt.Errorf("longpoll: poll: %w", ErrClosed)
	}
	l.nc = nc
	l.mu.Unlock()
	l.sock = nc
	if br, _ := readerPool.Get().(*bufio.Reader); br != nil {
		br.Reset(nc)
		l.br = br
	} else {
		l.br = bufio.NewReaderSize(nc, pollReadBuffer)
	}
	return nil
}

func (l *pollLoop) disconnect() {
	if l.sock == nil {
		return
	}
	l.mu.Lock()
	_ = l.nc.Close()
	l.nc = nil
	l.mu.Unlock()
	l.sock = nil
	if l.br.Size() == pollReadBuffer {
		l.br.Reset(nil)
		readerPool.Put(l.br)
	}
	l.br = nil
}

func (l *pollLoop) emit(e bus.Event) {
	if l.ctx.Err() != nil {
		return
	}
	e.At = time.Now()
	l.conn.h.HandleEvent(e)
}

// run is the loop. It waits for each response in its own small frame (the
// rest is in send, receive and after): a held poll is parked with a shallow
// stack, so the runtime can shrink the goroutine's stack to its minimum.
func (l *pollLoop) run() {
	defer close(l.done)
	stopCut := context.AfterFunc(l.ctx, l.cutNow)
	defer stopCut()
	defer l.disconnect()

	l.bo = backoff.New(l.conn.c.cfg.Backoff, nil)
	for l.ctx.Err() == nil {
		start := time.Now()
		err := l.send()
		if err == nil {
			// Wait for the first byte before taking a Response from the pool, so a
			// held poll holds nothing but its socket and read buffer.
			if _, perr := l.br.Peek(1); perr != nil {
				err = l.peekFailed(perr)
			}
		}
		status := 0
		if err == nil {
			status, err = l.receive()
		}
		if !l.after(start, status, err) {
			return
		}
	}
}

// after reports one poll cycle that began at start and, on failure, waits out
// the backoff. An empty answer (304, 408) sooner than Config.MinHold is a
// failure too (ErrNotHeld): a server that answers at once must not make the
// loop spin. It reports whether the loop goes on.
//
//go:noinline
func (l *pollLoop) after(start time.Time, status int, err error) bool {
	if l.ctx.Err() != nil {
		return false
	}
	end := time.Now()
	if err == nil && (status == fasthttp.StatusRequestTimeout || status == fasthttp.StatusNotModified) {
		if held := end.Sub(start); held < l.conn.c.cfg.MinHold {
			err = fmt.Errorf("longpoll: poll: %w: %d after %v, sooner than the least hold %v (the server did not hold the poll)",
				ErrNotHeld, status, held.Round(time.Microsecond), l.conn.c.cfg.MinHold)
		}
	}
	l.emit(bus.Event{Kind: bus.Polled, Status: status, Latency: end.Sub(start), Err: err})
	if err == nil {
		if l.failing {
			l.failing = false
			l.emit(bus.Event{Kind: bus.Connected, Latency: end.Sub(l.failSince)})
		}
		l.bo.Reset()
		return true
	}
	if !l.failing {
		l.failing = true
		l.failSince = start
		l.emit(bus.Event{Kind: bus.Disconnected, Err: err})
	}
	d := l.bo.Next()
	l.emit(bus.Event{Kind: bus.Retrying, Delay: d})
	return backoff.Sleep(l.ctx, d) == nil
}

// send starts one poll cycle: connect if needed and write the request. Its
// error means no response will come (the socket is gone).
//
//go:noinline
func (l *pollLoop) send() error {
	if l.sock == nil {
		if err := l.connect(); err != nil {
			return err
		}
	}
	_ = l.sock.SetDeadline(time.Now().Add(l.conn.c.cfg.PollTimeout))
	l.buf = append(l.buf[:0], l.head...)
	if len(l.cur.etag) > 0 {
		l.buf = append(l.buf, "If-Modified-Since: "...)
		l.buf = append(l.buf, l.cur.lastModified...)
		l.buf = append(l.buf, "\r\nIf-None-Match: "...)
		l.buf = append(l.buf, l.cur.etag...)
		l.buf = append(l.buf, "\r\n"...)
	}
	l.buf = append(l.buf, "\r\n"...)
	if _, err := l.sock.Write(l.buf); err != nil {
		l.disconnect()
		return fmt.Errorf("longpoll: poll: write: %w", err)
	}
	if !l.written {
		l.written = true
		lat := time.Since(l.started)
		if !l.failing {
			l.emit(bus.Event{Kind: bus.Connected, Latency: lat})
		}
		l.emit(bus.Event{Kind: bus.Subscribed, Latency: lat})
	}
	return nil
}

// peekFailed handles a failure while waiting for the response.
//
//go:noinline
func (l *pollLoop) peekFailed(err error) error {
	l.disconnect()
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("longpoll: poll: server closed the connection: %w", err)
	}
	return fmt.Errorf("longpoll: poll: %w", err)
}

// receive reads and acts on the response whose first byte has arrived. It
// returns the HTTP status (0 if none) and an error for anything but a 200 with
// a message id, a 304 or a 408.
//
//go:noinline
func (l *pollLoop) receive() (int, error) {
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	status, closeConn, err := handleResponse(&l.br, l.sock, resp, &l.cur, l.conn.h)
	if closeConn {
		l.disconnect()
	}
	return status, err
}

// handleResponse reads one poll response from *br and acts on it: a 200 with a
// message id delivers the body to h and moves cur (a 200 without a usable id
// is a bus.ErrProtocol error, so the loop backs off); 304 and 408 keep cur. It
// reports whether the socket must be closed. Bytes from the network end here
// (see FuzzHandleResponse).
func handleResponse(br **bufio.Reader, nc io.Reader, resp *fasthttp.Response, cur *cursor, h bus.Handler) (status int, closeConn bool, err error) {
	if err := readResponse(br, nc, resp, maxMessageSize); err != nil {
		if isTransport(err) {
			return 0, true, fmt.Errorf("longpoll: poll: %w", err)
		}
		return 0, true, fmt.Errorf("longpoll: poll: %w: %w", bus.ErrProtocol, err)
	}
	status = resp.StatusCode()
	closeConn = resp.ConnectionClose()
	switch status {
	case fasthttp.StatusOK:
		lm := resp.Header.Peek(fasthttp.HeaderLastModified)
		etag := resp.Header.Peek(fasthttp.HeaderETag)
		if len(etag) == 0 || len(lm) == 0 || !printable(lm) || !printable(etag) {
			return status, closeConn, fmt.Errorf("longpoll: poll: %w: 200 without a usable Etag and Last-Modified", bus.ErrProtocol)
		}
		cur.lastModified = append(cur.lastModified[:0], lm...)
		cur.etag = append(cur.etag[:0], etag...)
		h.HandleMessage(bus.Message{Payload: resp.Body()})
		return status, closeConn, nil
	case fasthttp.StatusNotModified, fasthttp.StatusRequestTimeout:
		return status, closeConn, nil
	}
	return status, closeConn, fmt.Errorf("longpoll: poll: %w", &bus.StatusError{Status: status})
}

// printable reports whether b can be echoed back in a header value.
func printable(b []byte) bool {
	for _, c := range b {
		if c < ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// isTransport reports whether err is the connection failing rather than the
// peer sending something that is not HTTP.
func isTransport(err error) bool {
	if isTimeout(err) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}
