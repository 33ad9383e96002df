// Package longpoll is an HTTP long-poll client speaking Nchan's protocol, over
// fasthttp.
//
// Publish is POST <url>/<pub>/<channel> (201 or 202 = accepted). A Conn's poll
// loop does GET <url>/<sub>/<ch1>,<ch2>,…; the server holds it until a message
// arrives (200, message id in Last-Modified + Etag) or its hold ends (408). The
// loop re-polls at once, sending the last id back as If-Modified-Since +
// If-None-Match; only ids the server gave are ever sent (Nchan 1.3.6 aborts a
// worker on an invented one), so a new channel set starts without a cursor.
//
// Sockets: publishes share one fasthttp.HostClient per Client. Each Conn's poll
// has its own socket, which Close (or the end of the Conn's context) closes, so
// a held poll is cut at once — fasthttp has no per-request cancel.
//
// Events a Conn reports to its bus.Handler:
//   - Polled after every poll cycle (Status 0 and Err on a transport error).
//   - Connected when the first poll request of a loop is written (Latency: time
//     from Subscribe to written, including the connect), and again on the first
//     good poll after a failure streak (Latency: how long the streak lasted).
//   - Subscribed right after that first Connected (Latency as Connected).
//   - Disconnected(Err) on the first failure of a streak; then Retrying{Delay}
//     before every backoff wait. The loop never retries without a wait.
//   - Published after every publish (Err nil on success, Status, Latency).
package longpoll

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/eventswarm/eventswarm/internal/bus"
)

// ErrClosed is returned by operations on a closed Client or Conn.
var ErrClosed = errors.New("longpoll: closed")

// ErrNotHeld marks a poll that the server answered empty (304, 408) sooner
// than Config.MinHold: it did not hold the poll. It wraps bus.ErrProtocol, so
// bus.Classify counts it as a protocol error; the loop backs off.
var ErrNotHeld = fmt.Errorf("longpoll: empty poll answer not held: %w", bus.ErrProtocol)

// Buffer sizes. Polls start with a small read buffer held for the socket's
// life; it grows (up to maxReadBuffer) only for a server whose response
// headers do not fit.
const (
	pollReadBuffer   = 1024
	maxReadBuffer    = 64 << 10
	maxMessageSize   = 8 << 20 // largest poll response body accepted
	pubReadBuffer    = 4096
	pubWriteBuffer   = 4096
	checkChannelName = "eventswarm-check"
	userAgent        = "eventswarm"
	subscriberHdr    = "X-Eventswarm-Subscriber"
)

// Client is one long-poll target. It is safe for concurrent use.
type Client struct {
	cfg       Config
	t         target
	pubPrefix string // escaped path, ends in '/'
	subPrefix string
	tlsConf   *tls.Config
	dialers   []net.Dialer
	next      atomic.Uint32
	pub       *fasthttp.HostClient
	pool      *pubPool // publisher goroutines (see runPublish)
	hdrLines  string   // cfg.Headers as request lines

	closing atomic.Bool // set by Close; read on every Publish without a lock

	mu     sync.Mutex
	closed bool
	conns  map[*Conn]struct{}
}

// New validates cfg and returns a Client. It does no network I/O.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	t, _ := parseTarget(cfg.URL)
	c := &Client{
		cfg:       cfg,
		t:         t,
		pubPrefix: joinPath(t.base, cfg.PubPath),
		subPrefix: joinPath(t.base, cfg.SubPath),
		conns:     make(map[*Conn]struct{}),
		pool:      newPubPool(cfg.MaxConns),
		hdrLines:  headerLines(cfg.Headers),
	}
	if t.tls {
		var pool *x509.CertPool // nil: the system pool
		if cfg.CAFile != "" {
			p, err := bus.LoadCAFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("longpoll: %w", err)
			}
			pool = p
		}
		c.tlsConf = &tls.Config{RootCAs: pool, ServerName: t.name, InsecureSkipVerify: cfg.Insecure, MinVersion: tls.VersionTLS12} //nolint:gosec // Insecure is the user's explicit switch
	}
	if len(cfg.SourceAddrs) == 0 {
		c.dialers = []net.Dialer{{Timeout: cfg.PublishTimeout}}
	}
	for _, a := range cfg.SourceAddrs {
		c.dialers = append(c.dialers, net.Dialer{
			Timeout:   cfg.PublishTimeout,
			LocalAddr: &net.TCPAddr{IP: net.ParseIP(a)},
			Control:   bindNoPort,
		})
	}
	c.pub = &fasthttp.HostClient{
		Addr:                      t.addr,
		IsTLS:                     t.tls,
		DialTimeout:               c.dialTimeout,
		MaxConns:                  cfg.MaxConns,
		MaxConnWaitTimeout:        cfg.PublishTimeout,
		MaxIdemponentCallAttempts: 1,
		ReadTimeout:               cfg.PollTimeout,
		WriteTimeout:              cfg.PublishTimeout,
		ReadBufferSize:            pubReadBuffer,
		WriteBufferSize:           pubWriteBuffer,
		MaxResponseBodySize:       1 << 20,
		NoDefaultUserAgentHeader:  true,
		DisablePathNormalizing:    true,
	}
	return c, nil
}

// dialError marks a failure to connect: nothing was sent.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// dial connects a new socket to the target (TCP, then TLS for https), spread
// over the source addresses. Errors are *dialError.
func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	d := &c.dialers[0]
	if n := uint32(len(c.dialers)); n > 1 {
		d = &c.dialers[c.next.Add(1)%n]
	}
	nc, err := d.DialContext(ctx, "tcp", c.t.addr)
	if err != nil {
		return nil, &dialError{err}
	}
	if c.tlsConf == nil {
		return nc, nil
	}
	tc := tls.Client(nc, c.tlsConf)
	hctx, cancel := context.WithTimeout(ctx, c.cfg.PublishTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = nc.Close()
		return nil, &dialError{err}
	}
	return tc, nil
}

// dialTimeout is the publish HostClient's dialer.
func (c *Client) dialTimeout(_ string, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 || timeout > c.cfg.PublishTimeout {
		timeout = c.cfg.PublishTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.dial(ctx)
}

// Dial returns a Conn for the user id; ctx is the Conn's lifetime: when it
// ends, the Conn's poll is cut and its loop stops. Dial does no network I/O.
func (c *Client) Dial(ctx context.Context, id string, h bus.Handler) (*Conn, error) {
	if h == nil {
		return nil, errors.New("longpoll: dial: nil handler")
	}
	if !checkHeaderValue(id) {
		return nil, fmt.Errorf("longpoll: dial: id %q contains a control character", id)
	}
	cctx, cancel := context.WithCancel(ctx)
	conn := &Conn{c: c, id: id, h: h, ctx: cctx, cancel: cancel}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		cancel()
		return nil, ErrClosed
	}
	c.conns[conn] = struct{}{}
	return conn, nil
}

// Dialer returns c as a bus.Dialer.
func (c *Client) Dialer() bus.Dialer { return bus.DialerOf(c.Dial) }

func (c *Client) forget(conn *Conn) {
	c.mu.Lock()
	delete(c.conns, conn)
	c.mu.Unlock()
}

// Close closes every Conn still open (cutting their polls and waiting for their
// loops) and the idle publish connections. Later Dials and Publishes fail with
// ErrClosed.
func (c *Client) Close() {
	c.closing.Store(true)
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
	c.pool.close()
	c.pub.CloseIdleConnections()
}

func (c *Client) isClosed() bool { return c.closing.Load() }

// Check reaches the target once per location: OPTIONS on a channel under the
// pub path and under the sub path (no message is published, no poll is held).
// A refused or failed connect wraps bus.ErrUnreachable; a peer that does not
// answer HTTP wraps bus.ErrProtocol; a 4xx (404: wrong --pub-path/--sub-path)
// or a failed certificate check wraps bus.ErrRefused. 2xx, 405 and 501 (the
// location exists but does not do OPTIONS) pass.
func (c *Client) Check(ctx context.Context) error {
	deadline := time.Now().Add(c.cfg.PublishTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if err := c.checkOne(ctx, deadline, "--pub-path", c.pubPrefix); err != nil {
		return err
	}
	return c.checkOne(ctx, deadline, "--sub-path", c.subPrefix)
}

func (c *Client) checkOne(ctx context.Context, deadline time.Time, flag, prefix string) error {
	url := c.scheme() + "://" + c.t.host + prefix + checkChannelName
	nc, err := c.dial(ctx)
	if err != nil {
		if pe := context.Cause(ctx); pe != nil && !errors.Is(pe, context.DeadlineExceeded) {
			return fmt.Errorf("longpoll: check %s: %w", url, pe)
		}
		var cv *tls.CertificateVerificationError
		if errors.As(err, &cv) {
			return fmt.Errorf("longpoll: check %s: %w: %w (use --insecure to skip verification)", url, bus.ErrRefused, err)
		}
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) || errors.Is(err, io.EOF) {
			return fmt.Errorf("longpoll: check %s: %w: TLS handshake: %w", url, bus.ErrProtocol, err)
		}
		return fmt.Errorf("longpoll: check %s: %w: %w", url, bus.ErrUnreachable, err)
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	defer stop()
	_ = nc.SetDeadline(deadline)

	req := "OPTIONS " + prefix + checkChannelName + " HTTP/1.1\r\nHost: " + c.t.host +
		"\r\nUser-Agent: " + userAgent + "\r\n" + c.hdrLines + "Connection: close\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		return fmt.Errorf("longpoll: check %s: %w: %w", url, bus.ErrUnreachable, err)
	}
	br := bufio.NewReaderSize(nc, pubReadBuffer)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	if _, err := br.Peek(1); err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.DeadlineExceeded) {
			return fmt.Errorf("longpoll: check %s: %w", url, cause)
		}
		if ctx.Err() != nil || isTimeout(err) {
			return fmt.Errorf("longpoll: check %s: %w: no HTTP response within %v", url, bus.ErrProtocol, c.cfg.PublishTimeout)
		}
		return fmt.Errorf("longpoll: check %s: %w: connection closed without an HTTP response: %w", url, bus.ErrProtocol, err)
	}
	if err := readResponse(&br, nc, resp, 1<<20); err != nil {
		return fmt.Errorf("longpoll: check %s: %w: not an HTTP response: %w", url, bus.ErrProtocol, err)
	}
	st := resp.StatusCode()
	serr := &bus.StatusError{Status: st}
	switch {
	case st >= 200 && st < 300, st == fasthttp.StatusMethodNotAllowed, st == fasthttp.StatusNotImplemented:
		return nil
	case st == fasthttp.StatusNotFound:
		return fmt.Errorf("longpoll: check %s: %w: %w: nothing at %s; is the target's location there? set %s", url, bus.ErrRefused, serr, prefix, flag)
	case st >= 400 && st < 500:
		return fmt.Errorf("longpoll: check %s: %w: %w", url, bus.ErrRefused, serr)
	case st >= 500:
		return fmt.Errorf("longpoll: check %s: %w: %w", url, bus.ErrUnreachable, serr)
	case st >= 300 && st < 400:
		return fmt.Errorf("longpoll: check %s: %w: %w: redirect to %q; point --target at it", url, bus.ErrRefused, serr, resp.Header.Peek("Location"))
	}
	return fmt.Errorf("longpoll: check %s: %w: %w", url, bus.ErrProtocol, serr)
}

func (c *Client) scheme() string {
	if c.t.tls {
		return "https"
	}
	return "http"
}

// readResponse reads one response from *br into resp. If the headers do not fit
// the reader's buffer it swaps *br for a bigger reader holding the same bytes
// and tries again, up to maxReadBuffer.
func readResponse(br **bufio.Reader, nc io.Reader, resp *fasthttp.Response, maxBody int) error {
	for {
		err := resp.ReadLimitBody(*br, maxBody)
		if err == nil {
			return nil
		}
		var small *fasthttp.ErrSmallBuffer
		if !errors.As(err, &small) || (*br).Size() >= maxReadBuffer {
			return err
		}
		// Header parsing only peeks, so every byte read so far is still buffered.
		buffered, _ := (*br).Peek((*br).Buffered())
		held := append([]byte(nil), buffered...)
		*br = bufio.NewReaderSize(io.MultiReader(bytesReader(held), nc), (*br).Size()*4)
		resp.Reset()
	}
}

// bytesReader reads b once.
func bytesReader(b []byte) io.Reader { return &sliceReader{b} }

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func isTimeout(err error) bool {
	if errors.Is(err, fasthttp.ErrTimeout) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
