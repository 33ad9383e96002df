// Package target turns a --target URL into a bus.Dialer: mqtt://, mqtts://,
// mqtt+ws:// and mqtt+wss:// (MQTT over WebSocket) use the mqtt transport, http:// and https:// the long-poll transport (Nchan's
// protocol), and an empty URL starts the embedded bus (localbus) in-process on
// loopback and dials it. It is the one place both commands share this wiring.
package target

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/localbus"
	"github.com/eventswarm/eventswarm/internal/longpoll"
	"github.com/eventswarm/eventswarm/internal/mqtt"
	"github.com/eventswarm/eventswarm/internal/sse"
	"github.com/eventswarm/eventswarm/internal/wsock"
)

// Subscriber protocols of Nchan-protocol (http) targets.
const (
	LongPoll    = "longpoll"
	WebSocket   = "websocket"
	EventSource = "eventsource"
)

// Protocol of a target.
const (
	HTTP = "http"
	MQTT = "mqtt"
	// MQTTWS is not a protocol but an --embedded choice: MQTT over
	// WebSocket to the embedded broker (Protocol is MQTT).
	MQTTWS = "mqtt+ws"
)

// Config names the bus and how to talk to it.
type Config struct {
	// URL is mqtt://host:port, mqtts://host:port, http://host:port[/prefix] or
	// https://…; empty means the embedded bus.
	URL string
	// Embedded is the protocol used against the embedded bus: "http"
	// (default), "mqtt" or "mqtt+ws" (MQTT over WebSocket).
	Embedded string
	// QoS for MQTT publish and subscribe (default 1).
	QoS int
	// Username and Password for MQTT.
	Username, Password string
	// CAFile is a PEM CA bundle for mqtts/https; TLS verification is on unless Insecure.
	CAFile   string
	Insecure bool
	// PubPath and SubPath are the long-poll paths under the URL (default "pub/" and "sub/").
	PubPath, SubPath string
	// PublishTimeout bounds one publish; past it the outcome is unknown (default 5s).
	PublishTimeout time.Duration
	// Backoff is the reconnect/retry schedule (default backoff.Default).
	Backoff backoff.Config
	// SourceAddrs spreads client sockets over these local IPs (127.0.0.x).
	SourceAddrs []string
	// PayloadSize is the largest payload the run sends; MQTT packets read are
	// bounded by it (mqtt.MaxPacketFor). Zero: mqtt.DefaultMaxPacketSize.
	PayloadSize int
	// PersistentSession connects with clean-session false (MQTT): the broker
	// keeps each client ID's session across its reconnects.
	PersistentSession bool
	// MQTTVersion is mqtt.Config.Version: 3 (3.1.1) or 5; 0 = by the URL
	// scheme (mqtt5://, mqtt5s://, mqtt5+ws(s):// are MQTT 5), else 3.1.1.
	MQTTVersion int
	// SessionExpiry is MQTT 5's session expiry for a persistent session (0:
	// mqtt.DefaultSessionExpiry).
	SessionExpiry time.Duration
	// MQTTLinger is mqtt.Config.Linger (0: write and read at once).
	MQTTLinger time.Duration
	// SubscribeVia is how http targets are subscribed to: "longpoll"
	// (default), "websocket" or "eventsource". Publishing is POST either way.
	SubscribeVia string
	// Headers are sent on every HTTP request (publish, poll, stream
	// handshake); their values are secrets, never shown.
	Headers []longpoll.Header
	// Bus configures the embedded bus (faults, hold); ignored for real targets.
	Bus localbus.Config
}

// Protocol is "http" or "mqtt": the protocol this config will speak.
func (c Config) Protocol() string {
	if c.URL == "" {
		switch c.Embedded {
		case "":
			return HTTP
		case MQTTWS:
			return MQTT
		}
		return c.Embedded
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return ""
	}
	switch strings.ToLower(u.Scheme) {
	case "mqtt", "mqtts", "tcp", "ssl", "tls", "mqtt+ws", "mqtt+wss", "mqtt5", "mqtt5s", "mqtt5+ws", "mqtt5+wss":
		return MQTT
	case "http", "https":
		return HTTP
	}
	return ""
}

// WebSocket reports whether c speaks MQTT over WebSocket (mqtt+ws(s)://, or
// --embedded mqtt+ws).
func (c Config) WebSocket() bool {
	if c.URL == "" {
		return c.Embedded == MQTTWS
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return false
	}
	s := strings.ToLower(u.Scheme)
	return s == "mqtt+ws" || s == "mqtt+wss" || s == "mqtt5+ws" || s == "mqtt5+wss"
}

// MQTT5 reports whether c speaks MQTT 5: --mqtt-version 5, or an mqtt5
// scheme without --mqtt-version.
func (c Config) MQTT5() bool {
	if c.Protocol() != MQTT {
		return false
	}
	if c.MQTTVersion != 0 {
		return c.MQTTVersion == mqtt.Version5
	}
	u, err := url.Parse(c.URL)
	return err == nil && strings.HasPrefix(strings.ToLower(u.Scheme), "mqtt5")
}

// Streams reports whether c subscribes by a stream (WebSocket, EventSource):
// a reconnect then resubscribes, resuming from the last message id when the
// stream had one (bus.Event.SessionPresent on Subscribed says which).
func (c Config) Streams() bool { return c.SubscribeVia == WebSocket || c.SubscribeVia == EventSource }

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("target: --target %q is not a URL: %v", c.URL, unwrapURL(err)))
		case u.Host == "":
			errs = append(errs, fmt.Errorf("target: --target %q has no host; use mqtt://host:1883 or http://host:port/", c.URL))
		case strings.EqualFold(u.Scheme, "ws") || strings.EqualFold(u.Scheme, "wss"):
			// Ambiguous: Nchan's WebSocket subscribers are ws:// too.
			errs = append(errs, fmt.Errorf("target: --target scheme %q is ambiguous; use mqtt+%s:// for MQTT over WebSocket, or http(s):// with --subscribe-via websocket for Nchan", u.Scheme, strings.ToLower(u.Scheme)))
		case c.Protocol() == "":
			errs = append(errs, fmt.Errorf("target: --target scheme %q is not supported; use mqtt://, mqtts://, mqtt+ws://, mqtt+wss:// (mqtt5…:// for MQTT 5), http:// or https://", u.Scheme))
		case c.MQTTVersion == mqtt.Version311 && strings.HasPrefix(strings.ToLower(u.Scheme), "mqtt5"):
			errs = append(errs, fmt.Errorf("target: --target %s:// asks for MQTT 5 but --mqtt-version is 3; drop one of them", strings.ToLower(u.Scheme)))
		}
	} else if c.Embedded != "" && c.Embedded != HTTP && c.Embedded != MQTT && c.Embedded != MQTTWS {
		errs = append(errs, fmt.Errorf("target: --embedded must be http, mqtt or mqtt+ws, got %q", c.Embedded))
	}
	switch c.SubscribeVia {
	case "", LongPoll, WebSocket, EventSource:
		if c.SubscribeVia != "" && c.SubscribeVia != LongPoll && c.Protocol() == MQTT {
			errs = append(errs, fmt.Errorf("target: --subscribe-via %s applies to http(s) (Nchan-protocol) targets, not MQTT", c.SubscribeVia))
		}
	default:
		errs = append(errs, fmt.Errorf("target: --subscribe-via must be longpoll, websocket or eventsource, got %q", c.SubscribeVia))
	}
	if len(c.Headers) > 0 && c.Protocol() == MQTT && !c.WebSocket() {
		errs = append(errs, errors.New("target: --header applies to http(s) (Nchan-protocol) targets and the upgrade of mqtt+ws(s) targets, not to mqtt(s)://"))
	}
	for _, h := range c.Headers {
		if err := longpoll.CheckHeader(h); err != nil {
			errs = append(errs, fmt.Errorf("target: --header: %w", err))
		}
	}
	switch {
	case c.MQTTVersion != 0 && c.MQTTVersion != mqtt.Version311 && c.MQTTVersion != mqtt.Version5:
		errs = append(errs, fmt.Errorf("target: --mqtt-version must be 3 (3.1.1) or 5, got %d", c.MQTTVersion))
	case c.MQTTVersion != 0 && c.Protocol() != MQTT:
		errs = append(errs, errors.New("target: --mqtt-version applies to MQTT targets (mqtt://…, --embedded mqtt), not http(s)"))
	}
	if c.SessionExpiry < 0 || c.SessionExpiry > 0xffffffff*time.Second {
		errs = append(errs, fmt.Errorf("target: --session-expiry must be in [1s, %ds], got %v", uint32(0xffffffff), c.SessionExpiry))
	}
	if c.QoS < 0 || c.QoS > 2 {
		errs = append(errs, fmt.Errorf("target: --qos must be 0, 1 or 2, got %d", c.QoS))
	}
	return errors.Join(errs...)
}

// configError marks a transport constructor's error as bus.ErrConfig while
// keeping its own message and chain.
type configError struct{ err error }

func (e configError) Error() string   { return e.err.Error() }
func (e configError) Unwrap() []error { return []error{e.err, bus.ErrConfig} }

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Target is an opened bus: a Dialer plus what is needed to check and close it.
type Target struct {
	dialer   bus.Dialer
	check    func(context.Context) error
	closers  []func()
	embedded *localbus.Bus
	desc     string
	protocol string
	url      string
}

// Open prepares the target. For the embedded bus it starts localbus; for real
// targets it does no network I/O (call Check for that).
func Open(cfg Config) (*Target, error) {
	if err := cfg.Validate(); err != nil {
		return nil, configError{err}
	}
	t := &Target{protocol: cfg.Protocol()}
	url := cfg.URL
	if url == "" {
		if cfg.Embedded == MQTTWS && cfg.Bus.MQTTWSAddr == "" {
			cfg.Bus.MQTTWSAddr = localbus.DefaultAddr
		}
		lb, err := localbus.Start(cfg.Bus)
		if err != nil {
			return nil, fmt.Errorf("target: starting the embedded bus: %w", err)
		}
		t.embedded = lb
		t.closers = append(t.closers, func() { lb.Close() })
		switch {
		case cfg.Embedded == MQTTWS:
			url = "mqtt+ws://" + lb.MQTTWSAddr() + localbus.WSPath
		case t.protocol == MQTT:
			url = "mqtt://" + lb.MQTTAddr()
		default:
			url = lb.HTTPURL()
		}
		t.desc = "embedded " + t.protocol + " bus at " + url
	} else {
		t.desc = redact(url)
	}
	if cfg.MQTTVersion == mqtt.Version5 {
		t.desc += " (MQTT 5)"
	}
	t.url = url
	qos := byte(1)
	if cfg.QoS >= 0 && cfg.QoS <= 2 {
		qos = byte(cfg.QoS)
	}
	var err error
	switch t.protocol {
	case MQTT:
		var c *mqtt.Client
		clean := !cfg.PersistentSession
		var hs []mqtt.Header
		for _, h := range cfg.Headers {
			hs = append(hs, mqtt.Header{Name: h.Name, Value: h.Value})
		}
		c, err = mqtt.New(mqtt.Config{
			URL: url, QoS: qos, QoSSet: true, Username: cfg.Username, Password: cfg.Password,
			CAFile: cfg.CAFile, Insecure: cfg.Insecure, PublishTimeout: cfg.PublishTimeout,
			Backoff: cfg.Backoff, SourceAddrs: cfg.SourceAddrs, PayloadSize: cfg.PayloadSize,
			Linger: cfg.MQTTLinger, CleanSession: &clean, Headers: hs,
			Version: cfg.MQTTVersion, SessionExpiry: cfg.SessionExpiry,
		})
		if err == nil {
			t.closers, t.check, t.dialer = append(t.closers, c.Close), c.Check, bus.DialerOf(c.Dial)
		}
	default:
		lc := longpoll.Config{
			URL: url, PubPath: cfg.PubPath, SubPath: cfg.SubPath, CAFile: cfg.CAFile, Insecure: cfg.Insecure,
			PublishTimeout: cfg.PublishTimeout, Backoff: cfg.Backoff, SourceAddrs: cfg.SourceAddrs,
			Headers: cfg.Headers,
		}
		switch cfg.SubscribeVia {
		case WebSocket, EventSource:
			newc := wsock.New
			if cfg.SubscribeVia == EventSource {
				newc = sse.New
			}
			if c, e := newc(lc); e == nil {
				t.closers, t.check, t.dialer = append(t.closers, c.Close), c.Check, bus.DialerOf(c.Dial)
			} else {
				err = e
			}
			t.desc += " (subscribed by " + cfg.SubscribeVia + ")"
		default:
			var c *longpoll.Client
			c, err = longpoll.New(lc)
			if err == nil {
				t.closers, t.check, t.dialer = append(t.closers, c.Close), c.Check, bus.DialerOf(c.Dial)
			}
		}
	}
	if err != nil {
		// The transports' constructors do no network I/O: whatever they
		// reject is the configuration.
		t.Close()
		return nil, configError{err}
	}
	return t, nil
}

// Dialer opens connections to the target.
func (t *Target) Dialer() bus.Dialer { return t.dialer }

// Check reaches the target once; its error wraps bus.ErrUnreachable,
// bus.ErrProtocol or bus.ErrRefused when it can tell which.
func (t *Target) Check(ctx context.Context) error { return t.check(ctx) }

// Protocol is "http" or "mqtt" (http whatever the subscriber protocol).
func (t *Target) Protocol() string { return t.protocol }

// Embedded is the embedded bus, or nil for a real target.
func (t *Target) Embedded() *localbus.Bus { return t.embedded }

// URL is the URL dialled: --target, or the embedded bus's own.
func (t *Target) URL() string { return t.url }

// Describe names the target for humans, with any password removed.
func (t *Target) Describe() string { return t.desc }

// Close releases the transport and stops the embedded bus, in reverse order of opening.
func (t *Target) Close() {
	for i := len(t.closers) - 1; i >= 0; i-- {
		t.closers[i]()
	}
	t.closers = nil
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Redacted()
}
