package longpoll

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// Defaults for the zero fields of Config.
const (
	DefaultPubPath        = "pub/"
	DefaultSubPath        = "sub/"
	DefaultMaxConns       = 4096
	DefaultPublishTimeout = verify.DefaultPublishTimeout // one definition for every transport
	DefaultPollTimeout    = 60 * time.Second
	DefaultMinHold        = time.Second
)

// DefaultBackoff is the poll loop's retry schedule: a poll normally follows
// the previous one at once, so its floor is short (100ms, ×3, capped at 10s:
// [100ms, 200ms), [300ms, 600ms), [900ms, 1.8s), … [10s, 20s)); it still never
// retries at once, and it falls to the same cap as backoff.Default.
var DefaultBackoff = backoff.Config{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Multiplier: 3}

// MaxChannels is the most channels one poll may multiplex (Nchan's limit).
const MaxChannels = 255

// Config configures a Client. The zero value of every field but URL means its default.
type Config struct {
	// URL is the target: http://host:port[/prefix] or https://…. Required.
	URL string
	// PubPath and SubPath are the publisher and subscriber locations under the
	// URL's path (defaults "pub/" and "sub/"): POST <url>/pub/<channel>,
	// GET <url>/sub/<ch1>,<ch2>.
	PubPath, SubPath string
	// CAFile is a PEM bundle of CA certificates trusted for https targets;
	// empty means the system pool. Verification is on unless Insecure is set.
	CAFile string
	// Insecure skips TLS certificate verification (https targets only).
	Insecure bool
	// MaxConns caps the connections of the shared publish client (default 4096;
	// fasthttp's own default of 512 fails at scale). Each Conn's poll uses its own
	// socket besides these.
	MaxConns int
	// PublishTimeout bounds one publish, and the connect (TCP + TLS) of a poll
	// socket (default 5s). A publish that times out after its request was written
	// returns an error wrapping bus.ErrUnknownOutcome.
	PublishTimeout time.Duration
	// PollTimeout bounds one poll cycle; it must exceed the server's hold time
	// (Nchan's nchan_subscriber_timeout) so a quiet channel ends in 408, not in a
	// client timeout (default 60s).
	PollTimeout time.Duration
	// MinHold is the least time a server holds an empty poll: a 304 or 408
	// answered sooner means the server did not hold it, and the loop treats it
	// as a failure (a bus.ErrProtocol error, followed by backoff) rather than
	// polling again at once (default 1s; it must be below PollTimeout).
	MinHold time.Duration
	// Backoff is the retry schedule of the poll loop (default DefaultBackoff).
	// A failed cycle (an error, a 200 without a usable cursor, or an empty
	// answer sooner than MinHold) waits at least its floor.
	Backoff backoff.Config
	// SourceAddrs optionally lists local IPs (e.g. 127.0.0.2, 127.0.0.3) that
	// outgoing sockets are spread over, round robin, to get past the ~28k
	// ephemeral ports of one source address. Sockets are bound with
	// IP_BIND_ADDRESS_NO_PORT (Linux) so the kernel picks the port at connect.
	SourceAddrs []string
	// Headers are sent on every request (publish, poll, check): auth for a
	// bus behind a gateway. Values are never shown in errors or output.
	Headers []Header
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.PubPath == "" {
		c.PubPath = DefaultPubPath
	}
	if c.SubPath == "" {
		c.SubPath = DefaultSubPath
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.PollTimeout == 0 {
		c.PollTimeout = DefaultPollTimeout
	}
	if c.MinHold == 0 {
		c.MinHold = DefaultMinHold
	}
	if c.Backoff == (backoff.Config{}) {
		c.Backoff = DefaultBackoff
	}
	return c
}

// Validate reports every problem with c (after defaults) at once.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if _, err := parseTarget(c.URL); err != nil {
		errs = append(errs, err)
	}
	if c.CAFile != "" {
		if _, err := bus.LoadCAFile(c.CAFile); err != nil {
			errs = append(errs, fmt.Errorf("longpoll: %w", err))
		}
	}
	if err := checkPath(c.PubPath); err != nil {
		errs = append(errs, fmt.Errorf("longpoll: --pub-path: %w", err))
	}
	if err := checkPath(c.SubPath); err != nil {
		errs = append(errs, fmt.Errorf("longpoll: --sub-path: %w", err))
	}
	if c.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("longpoll: max conns must be > 0, got %d", c.MaxConns))
	}
	if c.PublishTimeout < 0 {
		errs = append(errs, fmt.Errorf("longpoll: publish timeout must be > 0, got %v", c.PublishTimeout))
	}
	if c.PollTimeout < 0 {
		errs = append(errs, fmt.Errorf("longpoll: poll timeout must be > 0 and exceed the server's hold, got %v", c.PollTimeout))
	}
	if c.MinHold < 0 || c.MinHold >= c.PollTimeout {
		errs = append(errs, fmt.Errorf("longpoll: min hold must be > 0 and below the poll timeout %v, got %v", c.PollTimeout, c.MinHold))
	}
	if err := c.Backoff.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("longpoll: %w", err))
	}
	for _, h := range c.Headers {
		if err := CheckHeader(h); err != nil {
			errs = append(errs, fmt.Errorf("longpoll: --header: %w", err))
		}
	}
	for _, a := range c.SourceAddrs {
		if net.ParseIP(a) == nil {
			errs = append(errs, fmt.Errorf("longpoll: source address %q is not an IP address", a))
		}
	}
	return errors.Join(errs...)
}

// target is a parsed, validated Config.URL.
type target struct {
	tls  bool
	host string // Host header: as given in the URL
	addr string // host:port to dial
	name string // host name for TLS SNI and verification
	base string // escaped path prefix, always ending in '/'
}

func parseTarget(raw string) (target, error) {
	var t target
	if raw == "" {
		return t, errors.New("longpoll: --target: URL is empty (want http://host:port[/prefix])")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return t, fmt.Errorf("longpoll: --target: %w", err)
	}
	switch u.Scheme {
	case "http":
	case "https":
		t.tls = true
	default:
		return t, fmt.Errorf("longpoll: --target %q: scheme must be http or https, got %q", raw, u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return t, fmt.Errorf("longpoll: --target %q: no host (want http://host:port[/prefix])", raw)
	}
	if u.User != nil {
		return t, fmt.Errorf("longpoll: --target %q: user info is not supported", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return t, fmt.Errorf("longpoll: --target %q: query and fragment are not supported", raw)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if t.tls {
			port = "443"
		}
	}
	t.host = u.Host
	t.name = u.Hostname()
	t.addr = net.JoinHostPort(t.name, port)
	t.base = u.EscapedPath()
	if !strings.HasSuffix(t.base, "/") {
		t.base += "/"
	}
	if !strings.HasPrefix(t.base, "/") {
		t.base = "/" + t.base
	}
	return t, nil
}

// checkPath validates a pub/sub location relative to the target's path.
func checkPath(p string) error {
	for i := 0; i < len(p); i++ {
		switch b := p[i]; {
		case b <= ' ' || b == 0x7f:
			return fmt.Errorf("path %q contains a space or control character", p)
		case b == '?' || b == '#' || b == ',':
			return fmt.Errorf("path %q contains %q", p, b)
		}
	}
	if strings.Trim(p, "/") == "" {
		return fmt.Errorf("path %q is empty", p)
	}
	return nil
}

// joinPath puts a pub/sub location under base; the result ends in '/'.
func joinPath(base, p string) string {
	p = strings.TrimLeft(p, "/")
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return base + p
}

// ErrChannel marks a channel name the protocol cannot carry.
var ErrChannel = errors.New("longpoll: bad channel name")

// checkChannel reports whether ch can be put in a pub/sub URL as one channel.
func checkChannel(ch string) error {
	if ch == "" {
		return fmt.Errorf("%w: empty", ErrChannel)
	}
	for i := 0; i < len(ch); i++ {
		switch b := ch[i]; {
		case b <= ' ' || b == 0x7f:
			return fmt.Errorf("%w %q: contains a space or control character", ErrChannel, ch)
		case b == '/' || b == ',' || b == '?' || b == '#' || b == '%':
			return fmt.Errorf("%w %q: contains %q", ErrChannel, ch, b)
		}
	}
	return nil
}

// checkHeaderValue reports whether v can be sent as an HTTP header value.
func checkHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b < ' ' || b == 0x7f {
			return false
		}
	}
	return true
}
