// Package mqtt is eventswarm's MQTT transport (MQTT 3.1.1 and MQTT 5): a
// connection loop of its own over paho's packets package (3.1.1 control
// packets), a small MQTT 5 codec of its own (codec5.go: CONNECT, CONNACK,
// SUBSCRIBE, SUBACK, DISCONNECT with reason codes and properties) and a
// hand-written codec for the hot path (PUBLISH and its acknowledgements,
// both versions), satisfying bus.Conn. Config.Version (or an mqtt5:// URL)
// selects MQTT 5; see codec5.go for what it sends and honours.
//
// One Client holds the checked configuration (broker address, TLS, timeouts)
// and the one timer all its connections share; Dial opens one Conn per
// simulated user. A Conn owns its reconnects: a lost connection is retried
// through backoff (exponential, full jitter, capped, reset after a successful
// connect), so the reconnect numbers mean one thing. After a reconnect the
// Conn subscribes again to every topic it was granted.
//
// Events go to the bus.Handler in this order around an outage:
// Disconnected{Err}, then Retrying{Delay, Err} before each attempt and
// Dialled{Err, Latency} after it, then Connected{SessionPresent} and, if the
// Conn had subscriptions, Subscribed{Granted}. The first retry waits at least
// the backoff's floor (Config.Backoff.Initial), so a broker that goes away
// does not see every connection come back at once.
//
// # The connection loop
//
//   - One goroutine per Conn: it reads the socket through its own buffer
//     (many packets per read syscall; a small buffer while idle, a large one
//     once reads fill it), frames packets with a bound on the declared length
//     (Config.MaxPacketSize, checked before anything is allocated), and hands
//     each delivery to the handler in wire order. Between connections it runs
//     the reconnect loop.
//   - Writes go through a per-connection queue: bytes are appended under a
//     mutex and whoever finds no write under way writes the whole queue in one
//     syscall, looping while more was appended meanwhile. So under load many
//     publishes and acknowledgements leave in one write; acknowledgements of
//     deliveries are written before the reader blocks on its next read.
//   - QoS 1/2: a window of packet IDs per connection (grown on demand up to
//     32767); PUBACK / PUBCOMP completes a publish (accepted), PublishTimeout
//     without it is bus.ErrUnknownOutcome, and so is a connection lost before
//     it. An expired publish's packet ID stays taken until its late
//     acknowledgement or the end of the connection, so it is never confused
//     with a later publish.
//   - One timer per Client (a goroutine only while it has connections) expires
//     publishes, sends PINGREQ on connections silent for the keep-alive
//     interval and drops those whose PINGRESP does not come within
//     ConnectTimeout.
//   - A publish allocates nothing in steady state: the encoder writes into the
//     reusable queue, the decoder returns slices of the read buffer, the wait
//     function PublishAsync returns is a pooled object's bound method, and a
//     delivery's topic string comes from a small cache.
//
// # Deliveries
//
// The handler runs on the reader goroutine, one delivery at a time, in the
// order the broker sent them, and their acknowledgements (PUBACK/PUBREC) are
// queued after it returns. So a handler must be fast and must not block (nor
// call Publish or Subscribe on its own Conn): it holds up that connection's
// deliveries. The DUP and RETAIN flags are reported on bus.Message. Close
// waits for a handler in flight and none start after it returns. With
// CleanSession false, QoS 2 receive state does not survive a reconnect, so the
// broker's resend after a reconnect shows up as a duplicate; the verifier
// counts it.
package mqtt

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/eventswarm/eventswarm/internal/bus"
)

var (
	// ErrQoSDowngraded means the broker granted a subscription a lower QoS than
	// requested. It wraps bus.ErrRefused; the CLI maps it to a configuration
	// error (exit 2).
	ErrQoSDowngraded = fmt.Errorf("mqtt: granted QoS below the requested QoS: %w", bus.ErrRefused)
	// ErrNotConnected means the Conn has no live connection right now (it is
	// reconnecting, or closed). Nothing was sent. It wraps net.ErrClosed so that
	// bus.Classify counts it as a reset.
	ErrNotConnected error = notConnectedError{}
)

type notConnectedError struct{}

func (notConnectedError) Error() string { return "mqtt: not connected" }
func (notConnectedError) Unwrap() error { return net.ErrClosed }

// Client dials connections to one broker. It is safe for concurrent use.
type Client struct {
	cfg     Config
	ep      endpoint
	v5      bool // MQTT 5
	tls     *tls.Config
	dialers []*net.Dialer // one per source address (or one with none)
	next    atomic.Uint32 // round robin over dialers

	wsHeader string // extra upgrade request header lines (ws)

	keeper *keeper       // the one timer of all connections
	tick   time.Duration // its period
	pubs   sync.Pool     // *pub

	errTimeout, errLost, errPingTimeout error
}

// New checks cfg and prepares a Client (it loads the CA file). It does no
// network I/O; call Check for a preflight.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ep, _ := parseURL(cfg.URL) // validated above
	if cfg.Username == "" && ep.userSet {
		cfg.Username, cfg.Password = ep.user, ep.password
	}
	c := &Client{cfg: cfg, ep: ep, v5: cfg.Version == Version5}
	if ep.ws {
		var b strings.Builder
		b.WriteString("User-Agent: eventswarm\r\n")
		for _, h := range cfg.Headers {
			b.WriteString(h.Name + ": " + h.Value + "\r\n")
		}
		c.wsHeader = b.String()
	}
	c.tick = min(cfg.PublishTimeout, cfg.KeepAlive) / 10
	c.tick = min(max(c.tick, 5*time.Millisecond), time.Second)
	c.keeper = newKeeper(c.tick)
	c.pubs.New = newPub
	c.errTimeout = fmt.Errorf("mqtt: publish: no acknowledgement within %v: %w", cfg.PublishTimeout, bus.ErrUnknownOutcome)
	c.errLost = fmt.Errorf("mqtt: publish: connection lost before the acknowledgement: %w", bus.ErrUnknownOutcome)
	c.errPingTimeout = fmt.Errorf("mqtt: no PINGRESP within %v: %w", cfg.ConnectTimeout, os.ErrDeadlineExceeded)
	if ep.tls {
		var pool *x509.CertPool
		if cfg.CAFile != "" {
			p, err := loadCAFile(cfg.CAFile)
			if err != nil {
				return nil, err
			}
			pool = p
		}
		c.tls = &tls.Config{
			RootCAs:            pool, // nil: the system pool
			ServerName:         ep.host,
			InsecureSkipVerify: cfg.Insecure, //nolint:gosec // explicit --insecure only
			MinVersion:         tls.VersionTLS12,
			ClientSessionCache: tls.NewLRUClientSessionCache(64),
		}
	}
	if len(cfg.SourceAddrs) == 0 {
		c.dialers = []*net.Dialer{{Timeout: cfg.ConnectTimeout}}
	}
	for _, s := range cfg.SourceAddrs {
		c.dialers = append(c.dialers, &net.Dialer{
			Timeout:   cfg.ConnectTimeout,
			LocalAddr: &net.TCPAddr{IP: net.ParseIP(s)},
			Control:   bindNoPort,
		})
	}
	return c, nil
}

// Close releases what the Client holds. Conns are closed by their owners.
func (c *Client) Close() {}

// QoS is the QoS used for publishes and subscriptions.
func (c *Client) QoS() byte { return c.cfg.QoS }

// open dials the broker for one connect attempt: TCP (bound to a source address
// if configured) and TLS. Failures come back classified (bus.ErrUnreachable,
// bus.ErrProtocol or bus.ErrRefused). ctx ending aborts the attempt, including
// the MQTT handshake that follows on the returned conn, until stop is called.
func (c *Client) open(ctx context.Context, d *net.Dialer) (conn net.Conn, stop func() bool, err error) {
	conn, err = d.DialContext(ctx, "tcp", c.ep.addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("mqtt: dial %s: %w", c.ep.addr, ctx.Err())
		}
		return nil, nil, fmt.Errorf("mqtt: dial %s: %w: %w", c.ep.addr, bus.ErrUnreachable, err)
	}
	raw := conn
	stop = context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })
	if c.tls == nil {
		return c.upgrade(ctx, conn, stop)
	}
	tc := tls.Client(conn, c.tls)
	_ = tc.SetDeadline(time.Now().Add(c.cfg.ConnectTimeout))
	if err := tc.Handshake(); err != nil {
		stop()
		_ = conn.Close()
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("mqtt: TLS handshake with %s: %w", c.ep.addr, ctx.Err())
		}
		return nil, nil, classifyTLS(c.ep.addr, c.ep.ws, err)
	}
	_ = tc.SetDeadline(time.Time{})
	return c.upgrade(ctx, tc, stop)
}

// upgrade is open's last step for mqtt+ws(s): the WebSocket handshake.
func (c *Client) upgrade(ctx context.Context, conn net.Conn, stop func() bool) (net.Conn, func() bool, error) {
	if !c.ep.ws {
		return conn, stop, nil
	}
	_ = conn.SetDeadline(time.Now().Add(c.cfg.ConnectTimeout))
	wc, err := c.wsUpgrade(conn)
	if err != nil {
		stop()
		_ = conn.Close()
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("mqtt: WebSocket upgrade at %s: %w", c.ep.shown, ctx.Err())
		}
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return wc, stop, nil
}

// classifyTLS tells an untrusted certificate (ErrRefused: fix the CA or pass
// --insecure) from a peer that does not speak TLS (ErrProtocol).
func classifyTLS(addr string, ws bool, err error) error {
	plain := "mqtt://"
	if ws {
		plain = "mqtt+ws://"
	}
	var (
		cv  *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		rh  tls.RecordHeaderError
		ne  net.Error
		alt tls.AlertError
	)
	switch {
	case errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &he), errors.As(err, &ci):
		return fmt.Errorf("mqtt: TLS with %s: certificate not trusted: %w: %w", addr, bus.ErrRefused, err)
	case errors.As(err, &rh):
		return fmt.Errorf("mqtt: TLS with %s: the peer does not speak TLS (use %s without TLS?): %w: %w", addr, plain, bus.ErrProtocol, err)
	case errors.As(err, &alt):
		return fmt.Errorf("mqtt: TLS with %s: handshake refused by the peer: %w: %w", addr, bus.ErrProtocol, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("mqtt: TLS with %s: the peer closed the connection during the handshake: %w: %w", addr, bus.ErrProtocol, err)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("mqtt: TLS with %s: no handshake answer: %w: %w", addr, bus.ErrProtocol, err)
	}
	return fmt.Errorf("mqtt: TLS with %s: %w", addr, err)
}

// Check is a preflight: it connects once with a throw-away client ID, waits for
// the CONNACK and disconnects. A refused or unroutable address wraps
// bus.ErrUnreachable; a peer that does not answer CONNECT with a CONNACK
// (garbage, an HTTP server, TLS on a plain port, silence past ConnectTimeout)
// wraps bus.ErrProtocol; a CONNACK refusing the credentials, or an untrusted
// TLS certificate, wraps bus.ErrRefused.
func (c *Client) Check(ctx context.Context) error {
	conn, stop, err := c.open(ctx, c.dialers[0])
	if err != nil {
		return err
	}
	defer conn.Close()
	defer stop()
	_ = conn.SetDeadline(time.Now().Add(c.cfg.ConnectTimeout))

	id := "eventswarm-check-" + strconv.FormatUint(rand.Uint64(), 36)
	if err := c.writeConnect(conn, id, true); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("mqtt: check: %w", ctx.Err())
		}
		return fmt.Errorf("mqtt: check: sending CONNECT to %s: %w: %w", c.ep.addr, bus.ErrProtocol, err)
	}
	if c.v5 {
		ca, err := readConnack5(conn, c.cfg.MaxPacketSize)
		if err == nil {
			err = c.checkConnack5(ca)
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("mqtt: check: %w", ctx.Err())
			}
			return fmt.Errorf("mqtt: check %s: %w", c.ep.addr, err)
		}
		_, _ = conn.Write([]byte{0xe0, 0})
		return nil
	}
	_, rc, err := readConnack(bufio.NewReaderSize(conn, 64))
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("mqtt: check: %w", ctx.Err())
		}
		return fmt.Errorf("mqtt: check %s: %w", c.ep.addr, err)
	}
	if rc != packets.Accepted {
		return fmt.Errorf("mqtt: check %s: %w", c.ep.addr, classifyReturnCode(rc))
	}
	_ = packets.NewControlPacket(packets.Disconnect).Write(conn)
	return nil
}

// classifyReturnCode maps a CONNACK return code (MQTT 3.1.1) to a bus sentinel.
func classifyReturnCode(rc byte) error {
	var sentinel error
	switch rc {
	case packets.ErrRefusedBadUsernameOrPassword, packets.ErrRefusedNotAuthorised, packets.ErrRefusedIDRejected:
		sentinel = bus.ErrRefused
	case packets.ErrRefusedServerUnavailable:
		sentinel = bus.ErrUnreachable
	default:
		sentinel = bus.ErrProtocol
	}
	msg, ok := packets.ConnackReturnCodes[rc]
	if !ok {
		msg = "unknown return code"
	}
	return fmt.Errorf("CONNACK return code %d (%s): %w", rc, msg, sentinel)
}

// readConnack reads the first packet from a broker and requires a 3.1.1
// CONNACK (0x20, length 2). Anything else, including EOF or silence, is
// bus.ErrProtocol with a hint at what the peer looks like.
func readConnack(r io.Reader) (sessionPresent bool, rc byte, err error) {
	b, n, err := readConnackHead(r)
	if err != nil {
		return false, 0, err
	}
	if b[0] != 0x20 || b[1] != 2 {
		return false, 0, fmt.Errorf("the peer answered CONNECT with %s: %w", describeBytes(b[:n]), bus.ErrProtocol)
	}
	if b[2]&^1 != 0 {
		return false, 0, fmt.Errorf("malformed CONNACK flags 0x%02x: %w", b[2], bus.ErrProtocol)
	}
	return b[2]&1 == 1, b[3], nil
}

// readConnackHead reads the first 4 bytes a broker answers CONNECT with
// (every CONNACK has at least 4, so nothing after it is read). A short
// answer that is not a CONNACK comes back with n < 4 and no error, for the
// caller to describe.
func readConnackHead(r io.Reader) (b [4]byte, n int, err error) {
	n, err = io.ReadFull(r, b[:])
	if err != nil {
		var ne net.Error
		switch {
		case n == 0 && errors.As(err, &ne) && ne.Timeout():
			return b, n, fmt.Errorf("no CONNACK before the connect timeout (not an MQTT broker?): %w: %w", bus.ErrProtocol, err)
		case n == 0 && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)):
			return b, n, &closedError{err}
		case n == 0:
			return b, n, fmt.Errorf("reading CONNACK: %w", err)
		}
		if b[0] == 0x20 {
			return b, n, fmt.Errorf("truncated CONNACK (%d bytes): %w: %w", n, bus.ErrProtocol, err)
		}
		// a short answer that is not a CONNACK: the caller says what it looks like
	}
	return b, n, nil
}

// readConnack5 reads the CONNACK answering an MQTT 5 CONNECT, bounded by max
// (the remaining length), reading nothing after it.
func readConnack5(r io.Reader, max int) (connack, error) {
	b, n, err := readConnackHead(r)
	if err != nil {
		return connack{}, err
	}
	if b[0] != 0x20 || n < 4 {
		return connack{}, fmt.Errorf("the peer answered CONNECT with %s: %w", describeBytes(b[:n]), bus.ErrProtocol)
	}
	head := b[:]
	rem, hl, err := parseVarint(head[1:])
	if err == nil && hl == 0 { // a 4-byte remaining length: one more byte
		var one [1]byte
		if _, err := io.ReadFull(r, one[:]); err != nil {
			return connack{}, fmt.Errorf("truncated CONNACK: %w: %w", bus.ErrProtocol, err)
		}
		head = append(head, one[0])
		rem, hl, err = parseVarint(head[1:])
	}
	if err != nil || hl == 0 {
		return connack{}, fmt.Errorf("%w: CONNACK remaining length", errMalformed)
	}
	if rem > max {
		return connack{}, &PacketTooLargeError{Type: typeConnack, Declared: rem, Max: max}
	}
	have := head[1+hl:]
	if rem < len(have) {
		return connack{}, fmt.Errorf("%w: CONNACK of %d bytes", errMalformed, rem)
	}
	body := make([]byte, rem)
	copy(body, have)
	if _, err := io.ReadFull(r, body[len(have):]); err != nil {
		return connack{}, fmt.Errorf("truncated CONNACK: %w: %w", bus.ErrProtocol, err)
	}
	return decodeConnack5(body)
}

// checkConnack5 turns a CONNACK that does not let us go on into its error:
// a 3.1.1 answer (no MQTT 5), a refusal (reason >= 0x80) or a Maximum QoS
// below ours.
func (c *Client) checkConnack5(ca connack) error {
	switch {
	case ca.v3 && ca.code != 0:
		msg, ok := packets.ConnackReturnCodes[ca.code]
		if !ok {
			msg = "unknown return code"
		}
		return fmt.Errorf("the broker answered with an MQTT 3.1.1 CONNACK, return code %d (%s): it does not speak MQTT 5 (use --mqtt-version 3): %w", ca.code, msg, bus.ErrProtocol)
	case ca.v3:
		return fmt.Errorf("the broker accepted an MQTT 5 CONNECT with an MQTT 3.1.1 CONNACK: %w", bus.ErrProtocol)
	case ca.code >= 0x80:
		return classifyReason5(ca.code, ca.reason)
	case ca.code != 0:
		return fmt.Errorf("%w: CONNACK reason %s", errMalformed, reasonCode(ca.code))
	case ca.maxQoS < c.cfg.QoS:
		return fmt.Errorf("the broker's Maximum QoS is %d, below --qos %d: %w", ca.maxQoS, c.cfg.QoS, ErrQoSDowngraded)
	}
	return nil
}

// writeConnect sends the CONNECT of client id in the Client's version.
func (c *Client) writeConnect(w io.Writer, id string, clean bool) error {
	if !c.v5 {
		return c.connectPacket(id, clean).Write(w)
	}
	cp := connect5{
		id: id, username: c.cfg.Username, password: c.cfg.Password, clean: clean,
		keepAlive:  uint16(c.cfg.KeepAlive / time.Second),
		receiveMax: 65535,
		maxPacket:  uint32(min(1+4+c.cfg.MaxPacketSize, 0xffffffff)),
	}
	if !clean {
		cp.sessionExpiry = uint32(c.cfg.SessionExpiry / time.Second)
	}
	_, err := w.Write(appendConnect5(nil, cp))
	return err
}

// closedError is a connection closed before the first byte of a CONNACK.
// Check reports it as a protocol error (not an MQTT broker?); Dial's
// reconnects as a reset (a broker at its connection limit closes at once).
type closedError struct{ err error }

func (e *closedError) Error() string {
	return "connection closed without a CONNACK (not an MQTT broker?): " + e.err.Error()
}

func (e *closedError) Unwrap() []error { return []error{bus.ErrProtocol, e.err} }

// describeBytes names what a non-MQTT answer looks like.
func describeBytes(b []byte) string {
	switch {
	case len(b) >= 4 && string(b[:4]) == "HTTP":
		return "an HTTP response (is this an HTTP server? for MQTT over WebSocket use mqtt+ws://host:port/mqtt)"
	case len(b) >= 1 && b[0] == 0x15:
		return "a TLS alert (is this a TLS port? use mqtts://)"
	}
	q := strconv.QuoteToASCII(string(b))
	return "bytes " + q + " that are not a CONNACK (not an MQTT 3.1.1 broker?)"
}
