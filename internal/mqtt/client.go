// Package mqtt is eventswarm's MQTT transport: a thin wrapper over the Eclipse
// paho client (MQTT 3.1.1) that satisfies bus.Conn.
//
// One Client holds the checked configuration (broker address, TLS, timeouts);
// Dial opens one Conn per simulated user. A Conn owns its reconnects: paho's
// own auto-reconnect and connect-retry are off, and a lost connection is
// retried through backoff (exponential, full jitter, capped, reset after a
// successful connect), so the reconnect numbers mean one thing. After a
// reconnect the Conn subscribes again to every topic it was granted.
//
// Events go to the bus.Handler in this order around an outage:
// Disconnected{Err}, then Retrying{Delay, Err} before each attempt and
// Dialled{Err, Latency} after it, then Connected{SessionPresent} and, if the
// Conn had subscriptions, Subscribed{Granted}. The first retry waits at least
// the backoff's floor (Config.Backoff.Initial), so a broker that goes away
// does not see every connection come back at once.
//
// # Memory
//
// A load generator keeps many thousands of connections open, so a Conn is kept
// small (BenchmarkConnMemory measures it: about 31 KB per idle connection, heap
// and goroutine stacks, at 1,000 and 5,000 connections; the target is 48 KB):
//   - no goroutine of ours while connected: the reconnect loop is started by
//     paho's connection-lost callback and ends once connected again; the
//     lifetime context is watched with context.AfterFunc;
//   - each connection epoch gets a fresh paho client with a fresh in-memory
//     store (paho.NewMemoryStore): in-flight QoS 1/2 state lives only as long
//     as the TCP connection it belongs to and is freed with it; nothing is
//     written to disk and nothing is re-sent by us (a publish cut by a
//     disconnect reports an unknown outcome instead);
//   - ResumeSubs is off (subscribe packets are not stored): we resubscribe
//     ourselves from the list of granted topics;
//   - the websocket options and HTTP header map paho allocates by default
//     are dropped, and one net.Dialer and one tls.Config (with a small shared
//     session cache) serve every connection of a Client;
//   - paho reads packets straight from the socket (no read buffer) and has no
//     message channel any more (SetMessageChannelDepth has no effect in
//     v1.5), so there is nothing else to shrink without losing messages.
//
// The cost that remains is paho's ~10 goroutines per connection (reader,
// writer, router, keep-alive and plumbing).
//
// # Deliveries
//
// With SetOrderMatters(true) paho runs the handler for every delivery of a
// connection on one goroutine, in the order the deliveries arrived (with
// false it would start a goroutine per delivery and a verifier would see the
// scheduler's reordering as the bus's), and acknowledges (PUBACK/PUBREC)
// after it returns. So a handler must be fast and must not block (nor call
// Publish or Subscribe on its own Conn): it holds up that connection's
// deliveries. Close waits for a handler in flight and none start after it
// returns. Subscriptions are renewed by the reconnect
// loop after the CONNACK rather than in paho's OnConnect callback: one owner.
// With CleanSession false, QoS 2 receive state does not survive a reconnect
// (fresh store per connection), so the broker's resend after a reconnect can
// show up as a duplicate; the verifier counts it.
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
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
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

// quiesce is how long Close lets paho flush the DISCONNECT packet.
const quiesce = 250 // ms

// Client dials connections to one broker. It is safe for concurrent use.
type Client struct {
	cfg     Config
	ep      endpoint
	broker  string // tcp://host:port for paho (the socket is ours, see open)
	tls     *tls.Config
	dialers []*net.Dialer // one per source address (or one with none)
	next    atomic.Uint32 // round robin over dialers
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
	c := &Client{cfg: cfg, ep: ep, broker: "tcp://" + ep.addr}
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
		return conn, stop, nil
	}
	tc := tls.Client(conn, c.tls)
	_ = tc.SetDeadline(time.Now().Add(c.cfg.ConnectTimeout))
	if err := tc.Handshake(); err != nil {
		stop()
		_ = conn.Close()
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("mqtt: TLS handshake with %s: %w", c.ep.addr, ctx.Err())
		}
		return nil, nil, classifyTLS(c.ep.addr, err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, stop, nil
}

// classifyTLS tells an untrusted certificate (ErrRefused: fix the CA or pass
// --insecure) from a peer that does not speak TLS (ErrProtocol).
func classifyTLS(addr string, err error) error {
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
		return fmt.Errorf("mqtt: TLS with %s: certificate not trusted (give --ca-file, or --insecure to skip verification): %w: %w", addr, bus.ErrRefused, err)
	case errors.As(err, &rh):
		return fmt.Errorf("mqtt: TLS with %s: the peer does not speak TLS (use mqtt:// for plain MQTT?): %w: %w", addr, bus.ErrProtocol, err)
	case errors.As(err, &alt):
		return fmt.Errorf("mqtt: TLS with %s: handshake refused by the peer: %w: %w", addr, bus.ErrProtocol, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("mqtt: TLS with %s: the peer closed the connection during the handshake: %w: %w", addr, bus.ErrProtocol, err)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("mqtt: TLS with %s: no handshake answer: %w: %w", addr, bus.ErrProtocol, err)
	}
	return fmt.Errorf("mqtt: TLS with %s: %w", addr, err)
}

// classifyConnect wraps a failed paho connect in the bus sentinel that says
// what went wrong. Socket and TLS errors are classified by open already.
func classifyConnect(err error) error {
	switch {
	case errors.Is(err, bus.ErrUnreachable), errors.Is(err, bus.ErrProtocol), errors.Is(err, bus.ErrRefused),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("mqtt: connect: %w", err)
	case errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword), errors.Is(err, packets.ErrorRefusedNotAuthorised),
		errors.Is(err, packets.ErrorRefusedIDRejected):
		return fmt.Errorf("mqtt: connect refused by the broker: %w: %w", bus.ErrRefused, err)
	case errors.Is(err, packets.ErrorRefusedServerUnavailable):
		return fmt.Errorf("mqtt: connect: %w: %w", bus.ErrUnreachable, err)
	case errors.Is(err, packets.ErrorRefusedBadProtocolVersion), errors.Is(err, packets.ErrorProtocolViolation):
		return fmt.Errorf("mqtt: connect: %w: %w", bus.ErrProtocol, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		// Part of a packet, then EOF: the peer answered CONNECT with something
		// else (a plain EOF is left alone: a broker at its connection limit
		// closes at once).
		return fmt.Errorf("mqtt: connect: not an MQTT broker? %w: %w", bus.ErrProtocol, err)
	}
	// paho's handshake errors carry no sentinel; these mean the peer answered
	// CONNECT with something that is not a CONNACK.
	if s := err.Error(); strings.Contains(s, "non-CONNACK") || strings.Contains(s, "unsupported packet type") ||
		strings.Contains(s, "nil CONNACK") || strings.Contains(s, "failed to read expected data") {
		return fmt.Errorf("mqtt: connect: not an MQTT broker? %w: %w", bus.ErrProtocol, err)
	}
	return fmt.Errorf("mqtt: connect: %w", err)
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

	cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion = "MQTT", 4
	cp.CleanSession = true
	cp.ClientIdentifier = "eventswarm-check-" + strconv.FormatUint(rand.Uint64(), 36)
	cp.Keepalive = uint16(c.cfg.KeepAlive / time.Second)
	if c.cfg.Username != "" {
		cp.UsernameFlag, cp.Username = true, c.cfg.Username
		if c.cfg.Password != "" {
			cp.PasswordFlag, cp.Password = true, []byte(c.cfg.Password)
		}
	}
	if err := cp.Write(conn); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("mqtt: check: %w", ctx.Err())
		}
		return fmt.Errorf("mqtt: check: sending CONNECT to %s: %w: %w", c.ep.addr, bus.ErrProtocol, err)
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
	var b [4]byte
	n, err := io.ReadFull(r, b[:])
	if err != nil {
		var ne net.Error
		switch {
		case n == 0 && errors.As(err, &ne) && ne.Timeout():
			return false, 0, fmt.Errorf("no CONNACK before the connect timeout (not an MQTT broker?): %w: %w", bus.ErrProtocol, err)
		case n == 0 && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)):
			return false, 0, fmt.Errorf("connection closed without a CONNACK (not an MQTT broker?): %w: %w", bus.ErrProtocol, err)
		case n == 0:
			return false, 0, fmt.Errorf("reading CONNACK: %w", err)
		}
		if b[0] == 0x20 {
			return false, 0, fmt.Errorf("truncated CONNACK (%d bytes): %w: %w", n, bus.ErrProtocol, err)
		}
		// a short answer that is not a CONNACK: say what it looks like below
	}
	if b[0] != 0x20 || b[1] != 2 {
		return false, 0, fmt.Errorf("the peer answered CONNECT with %s: %w", describeBytes(b[:n]), bus.ErrProtocol)
	}
	if b[2]&^1 != 0 {
		return false, 0, fmt.Errorf("malformed CONNACK flags 0x%02x: %w", b[2], bus.ErrProtocol)
	}
	return b[2]&1 == 1, b[3], nil
}

// describeBytes names what a non-MQTT answer looks like.
func describeBytes(b []byte) string {
	switch {
	case len(b) >= 4 && string(b[:4]) == "HTTP":
		return "an HTTP response (is this an HTTP server? MQTT over websockets is not supported)"
	case len(b) >= 1 && b[0] == 0x15:
		return "a TLS alert (is this a TLS port? use mqtts://)"
	}
	q := strconv.QuoteToASCII(string(b))
	return "bytes " + q + " that are not a CONNACK (not an MQTT 3.1.1 broker?)"
}

// pahoOptions builds the paho options of one connection epoch. See the package
// doc for why each memory-related choice is made. The socket is opened by
// open; abort receives the function that ends its ctx watch, for the caller
// to call once paho's handshake is over (read it after the connect token
// completed).
func (c *Client) pahoOptions(id string, d *net.Dialer, ctx context.Context, abort *func() bool,
	onMsg paho.MessageHandler, onLost paho.ConnectionLostHandler) *paho.ClientOptions {
	o := paho.NewClientOptions()
	o.AddBroker(c.broker)
	o.SetClientID(id)
	o.SetUsername(c.cfg.Username)
	o.SetPassword(c.cfg.Password)
	o.SetCleanSession(*c.cfg.CleanSession)
	o.SetProtocolVersion(4)   // 3.1.1 only: no silent second connect attempt at 3.1
	o.SetOrderMatters(true)   // deliveries reach the handler in arrival order, on one goroutine
	o.SetAutoReconnect(false) // we own reconnects (backoff)
	o.SetConnectRetry(false)
	o.SetResumeSubs(false)
	o.SetKeepAlive(c.cfg.KeepAlive)
	o.SetConnectTimeout(c.cfg.ConnectTimeout)
	o.SetWriteTimeout(c.cfg.PublishTimeout) // bounds paho's hand-off and socket writes
	o.SetStore(paho.NewMemoryStore())
	o.SetDefaultPublishHandler(onMsg)
	o.SetConnectionLostHandler(onLost)
	o.SetCustomOpenConnectionFn(func(_ *url.URL, _ paho.ClientOptions) (net.Conn, error) {
		conn, stop, err := c.open(ctx, d)
		if err == nil {
			if *abort != nil {
				(*abort)()
			}
			*abort = stop
		}
		return conn, err
	})
	o.Dialer = d
	o.HTTPHeaders = nil
	o.WebsocketOptions = nil
	return o
}
