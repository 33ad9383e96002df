package mqtt

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// Defaults for the zero fields of Config.
const (
	DefaultQoS            = 1
	DefaultConnectTimeout = 10 * time.Second
	DefaultKeepAlive      = 30 * time.Second
	DefaultPublishTimeout = verify.DefaultPublishTimeout // one definition for every transport
	// DefaultMaxPacketSize is the largest packet accepted from a broker when
	// neither MaxPacketSize nor PayloadSize says otherwise.
	DefaultMaxPacketSize = 1 << 20
	// DefaultSessionExpiry is how long an MQTT 5 broker keeps a persistent
	// session (CleanSession false) after its connection ends, unless
	// Config.SessionExpiry says otherwise: long enough for a reconnect or a
	// broker restart, short enough that a run's sessions do not pile up.
	DefaultSessionExpiry = 5 * time.Minute
)

// Protocol versions for Config.Version.
const (
	Version311 = 3 // MQTT 3.1.1 (protocol level 4)
	Version5   = 5 // MQTT 5
)

// MaxPacketFor is the packet bound for deliveries of payloads up to payload
// bytes: the payload plus the largest topic and header (64 KiB), and never
// below 64 KiB.
func MaxPacketFor(payload int) int {
	return min(max(payload, 0)+64<<10, maxRemaining)
}

// Config says where the broker is and how to talk to it. The zero value of
// every field but URL is valid and means the documented default.
type Config struct {
	// URL names the broker: mqtt://host[:port] (default port 1883) or
	// mqtts://host[:port] (TLS, default port 8883); tcp:// is an alias of
	// mqtt://, ssl:// and tls:// of mqtts://. mqtt+ws://host[:port][/path]
	// (default port 80, path /mqtt) and mqtt+wss://… (TLS, default port 443)
	// are MQTT over WebSocket. User info in the URL (mqtt://user:pass@host)
	// is used when Username is empty. mqtt5://, mqtt5s://, mqtt5+ws:// and
	// mqtt5+wss:// are the same with MQTT 5.
	URL string
	// Version is the MQTT version: Version311 or Version5; 0 means by the URL
	// scheme (mqtt5…:// is MQTT 5, every other scheme 3.1.1). An mqtt5
	// scheme with Version311 is a configuration error.
	Version int
	// SessionExpiry is MQTT 5's Session Expiry Interval, sent when
	// CleanSession is false: how long the broker keeps the session after the
	// connection ends (whole seconds, default DefaultSessionExpiry). With
	// CleanSession true the session ends with the connection, as on 3.1.1.
	SessionExpiry time.Duration
	// Headers are extra request headers of the WebSocket upgrade (mqtt+ws,
	// mqtt+wss only); their values are never shown.
	Headers []Header
	// QoS is used for every publish and subscribe: 0, 1 or 2. Zero means QoS 0
	// only when QoSSet is true; otherwise the default 1.
	QoS byte
	// QoSSet says QoS was given explicitly (so that QoS 0 can be asked for).
	// When false and QoS is 0, QoS 1 is used.
	QoSSet bool
	// Username and Password for CONNECT; empty means none.
	Username, Password string
	// CAFile is a PEM bundle of CA certificates trusted for mqtts. Empty means
	// the system pool. Verification is always on unless Insecure is set.
	CAFile string
	// Insecure skips TLS certificate verification. Off by default; it is an
	// explicit switch, never a fallback.
	Insecure bool
	// ConnectTimeout bounds one connect: TCP dial, TLS handshake and CONNACK
	// (default 10s).
	ConnectTimeout time.Duration
	// KeepAlive is the MQTT keep-alive interval, whole seconds, at least 1s
	// (default 30s).
	KeepAlive time.Duration
	// PublishTimeout bounds one publish (until PUBACK/PUBCOMP, or written for
	// QoS 0); past it the outcome is unknown and Publish returns an error
	// wrapping bus.ErrUnknownOutcome. It also bounds the wait for a SUBACK
	// (default 10s).
	PublishTimeout time.Duration
	// CleanSession is the CONNECT clean-session flag; nil means true. With
	// false the broker keeps the subscription and queues QoS 1/2 messages while
	// the client is away (SessionPresent on bus.Connected tells whether it did).
	CleanSession *bool
	// Backoff is the reconnect schedule (default backoff.Default).
	Backoff backoff.Config
	// MaxPacketSize bounds the remaining length of any packet read from the
	// broker: a packet declaring more is a protocol error (bus.ErrProtocol),
	// and nothing larger is allocated. Zero means MaxPacketFor(PayloadSize)
	// when PayloadSize is set, else DefaultMaxPacketSize.
	MaxPacketSize int
	// PayloadSize is the largest payload the caller expects to receive; it
	// derives the default MaxPacketSize.
	PayloadSize int
	// Linger lets a connection trade a little latency for fewer syscalls: a
	// write waits up to Linger for more to write with it (never past 16 KiB
	// queued), and a read that follows a short read waits Linger first so that
	// one read takes many packets. Zero (the default) writes and reads at once.
	Linger time.Duration
	// SourceAddrs are local IPs client sockets are bound to, round robin per
	// connection (e.g. 127.0.0.2…127.0.0.9 to get past the ~28k ephemeral ports
	// of one source address). On Linux the socket is bound with
	// IP_BIND_ADDRESS_NO_PORT so the port is picked at connect time.
	SourceAddrs []string
}

// endpoint is a parsed Config.URL.
type endpoint struct {
	addr     string // host:port
	host     string // for TLS ServerName
	tls      bool
	v5       bool   // an mqtt5 scheme
	ws       bool   // MQTT over WebSocket (mqtt+ws, mqtt+wss)
	path     string // the WebSocket request path (ws only)
	rawPath  string // its encoding, when not the default one
	query    string // and its query, raw
	hostHdr  string // the Host header (ws only): host[:port] as in the URL
	shown    string // the URL without its password, for messages
	user     string
	password string
	userSet  bool
}

func boolPtr(b bool) *bool { return &b }

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if !c.QoSSet && c.QoS == 0 {
		c.QoS = DefaultQoS
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.CleanSession == nil {
		c.CleanSession = boolPtr(true)
	}
	if c.Backoff == (backoff.Config{}) {
		c.Backoff = backoff.Default
	}
	if c.Version == 0 {
		c.Version = Version311
		if ep, err := parseURL(c.URL); err == nil && ep.v5 {
			c.Version = Version5
		}
	}
	if c.SessionExpiry == 0 {
		c.SessionExpiry = DefaultSessionExpiry
	}
	if c.MaxPacketSize == 0 {
		c.MaxPacketSize = DefaultMaxPacketSize
		if c.PayloadSize > 0 {
			c.MaxPacketSize = MaxPacketFor(c.PayloadSize)
		}
	}
	return c
}

// Validate reports every problem with c at once. It reads CAFile to check that
// it holds at least one certificate.
func (c Config) Validate() error {
	var errs []error
	if _, err := parseURL(c.URL); err != nil {
		errs = append(errs, err)
	}
	switch c.Version {
	case 0, Version311, Version5:
	default:
		errs = append(errs, fmt.Errorf("mqtt: --mqtt-version must be 3 (3.1.1) or 5, got %d", c.Version))
	}
	if ep, err := parseURL(c.URL); err == nil && ep.v5 && c.Version == Version311 {
		errs = append(errs, fmt.Errorf("mqtt: --target %s asks for MQTT 5 but --mqtt-version is 3; drop one (or use mqtt://)", ep.shown))
	}
	if c.SessionExpiry < 0 || c.SessionExpiry > 0xffffffff*time.Second || c.SessionExpiry > 0 && c.SessionExpiry < time.Second {
		errs = append(errs, fmt.Errorf("mqtt: --session-expiry must be 0 (default) or 1s..%ds, got %v", uint32(0xffffffff), c.SessionExpiry))
	}
	if c.QoS > 2 {
		errs = append(errs, fmt.Errorf("mqtt: --qos must be 0, 1 or 2, got %d", c.QoS))
	}
	if c.CAFile != "" {
		if _, err := loadCAFile(c.CAFile); err != nil {
			errs = append(errs, err)
		}
	}
	if c.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("mqtt: connect timeout must be >= 0, got %v", c.ConnectTimeout))
	}
	if c.KeepAlive < 0 || (c.KeepAlive > 0 && c.KeepAlive < time.Second) {
		errs = append(errs, fmt.Errorf("mqtt: keep-alive must be 0 (default) or at least 1s, got %v", c.KeepAlive))
	}
	if c.KeepAlive > 65535*time.Second {
		errs = append(errs, fmt.Errorf("mqtt: keep-alive must be at most 65535s, got %v", c.KeepAlive))
	}
	if c.PublishTimeout < 0 {
		errs = append(errs, fmt.Errorf("mqtt: publish timeout must be >= 0, got %v", c.PublishTimeout))
	}
	if c.MaxPacketSize < 0 || c.MaxPacketSize > maxRemaining {
		errs = append(errs, fmt.Errorf("mqtt: max packet size must be 0 (default) or 1..%d, got %d", maxRemaining, c.MaxPacketSize))
	}
	if c.Linger < 0 || c.Linger > time.Second {
		errs = append(errs, fmt.Errorf("mqtt: linger must be in [0, 1s], got %v", c.Linger))
	}
	if c.PayloadSize < 0 {
		errs = append(errs, fmt.Errorf("mqtt: payload size must be >= 0, got %d", c.PayloadSize))
	}
	if c.Backoff != (backoff.Config{}) {
		if err := c.Backoff.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("mqtt: %w", err))
		}
	}
	if ep, err := parseURL(c.URL); err == nil && !ep.ws && len(c.Headers) > 0 {
		errs = append(errs, errors.New("mqtt: --header applies to HTTP requests: http(s) targets and the upgrade of mqtt+ws(s) targets, not mqtt://"))
	}
	for _, h := range c.Headers {
		if h.Name == "" || strings.ContainsAny(h.Name, " \t\r\n:") || strings.ContainsAny(h.Value, "\r\n") {
			errs = append(errs, fmt.Errorf("mqtt: header %q: a name without spaces or ':', and a value on one line", clipString(h.Name, 32)))
		}
	}
	for _, s := range c.SourceAddrs {
		if net.ParseIP(s) == nil {
			errs = append(errs, fmt.Errorf("mqtt: source address %q is not an IP address", s))
		}
	}
	return errors.Join(errs...)
}

// parseURL checks and splits Config.URL. Errors name the flag (--target) and
// never show a password.
func parseURL(raw string) (endpoint, error) {
	if raw == "" {
		return endpoint{}, errors.New("mqtt: --target is empty; use mqtt://host:1883 or mqtts://host:8883")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return endpoint{}, fmt.Errorf("mqtt: --target is not a URL: %v", err)
	}
	shown := u.Redacted()
	var ep endpoint
	var port string
	scheme := strings.ToLower(u.Scheme)
	if rest, ok := strings.CutPrefix(scheme, "mqtt5"); ok {
		ep.v5, scheme = true, "mqtt"+rest
	}
	switch scheme {
	case "mqtt", "tcp":
		port = "1883"
	case "mqtts", "ssl", "tls":
		port, ep.tls = "8883", true
	case "mqtt+ws":
		port, ep.ws = "80", true
	case "mqtt+wss":
		port, ep.ws, ep.tls = "443", true, true
	default:
		return endpoint{}, fmt.Errorf("mqtt: --target %q: scheme %q is not supported; use mqtt://host:1883, mqtts://host:8883, mqtt+ws://host:port/mqtt or mqtt+wss://host:port/mqtt (mqtt5://… for MQTT 5)", shown, u.Scheme)
	}
	ep.shown = shown
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return endpoint{}, fmt.Errorf("mqtt: --target %q has no host; use %s://host:%s", shown, strings.ToLower(u.Scheme), port)
	}
	switch {
	case ep.ws:
		ep.path, ep.rawPath, ep.query = u.Path, u.RawPath, u.RawQuery
		if ep.path == "" {
			ep.path = DefaultWSPath
		}
		if u.Fragment != "" {
			return endpoint{}, fmt.Errorf("mqtt: --target %q: a WebSocket URL has no #fragment", shown)
		}
	case u.Path != "" && u.Path != "/":
		return endpoint{}, fmt.Errorf("mqtt: --target %q: MQTT URLs have no path (got %q; for MQTT over WebSocket use mqtt+ws://)", shown, u.Path)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return endpoint{}, fmt.Errorf("mqtt: --target %q: port %q is not in 1..65535", shown, p)
		}
		port = p
	} else if strings.HasSuffix(u.Host, ":") {
		return endpoint{}, fmt.Errorf("mqtt: --target %q: empty port", shown)
	}
	ep.host = u.Hostname()
	ep.addr = net.JoinHostPort(ep.host, port)
	ep.hostHdr = u.Host
	if u.User != nil {
		ep.user = u.User.Username()
		ep.password, _ = u.User.Password()
		ep.userSet = true
	}
	return ep, nil
}

// loadCAFile reads a PEM bundle into a pool; it fails when no certificate is found.
func loadCAFile(path string) (*x509.CertPool, error) {
	pool, err := bus.LoadCAFile(path)
	if err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	return pool, nil
}
