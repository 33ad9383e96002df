// Package bus is the small vocabulary shared by the transports (longpoll, mqtt)
// and their users (probe, behaviours): a delivered Message, connection Events,
// the Handler that receives both, and the Conn/Dialer a user session talks to.
//
// It imports only the standard library, so a transport can depend on it without
// depending on verify, stats or behaviours.
package bus

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// Message is one delivery from a bus. Payload is only valid for the duration of
// the Handler call; a handler that keeps it must copy it.
type Message struct {
	Topic      string // MQTT topic; empty for long-poll (Nchan does not say which channel)
	Payload    []byte
	Retained   bool // MQTT RETAIN flag set on the delivery
	Redelivery bool // MQTT DUP flag set on the delivery
}

// EventKind says what happened to a connection.
type EventKind uint8

const (
	// Connected: the transport (re)established its connection. SessionPresent is set for MQTT.
	Connected EventKind = iota + 1
	// Subscribed: a subscription was confirmed (MQTT SUBACK; long-poll: the first poll was accepted).
	// Granted holds the granted QoS per topic for MQTT.
	Subscribed
	// Disconnected: the connection was lost; Err says why. The transport retries through backoff.
	Disconnected
	// Polled: one long-poll cycle ended. Status is the HTTP status (200, 304, 408, …) or 0 on a
	// transport error; Latency is the time the request was outstanding.
	Polled
	// Published: one publish ended (Err nil on success). Latency is the publish round trip.
	Published
	// Retrying: an operation failed and the transport waits Delay before retrying.
	Retrying
	// Dialled: one connect attempt of the transport's own reconnect loop ended
	// (not the first connect, which Dial reports by its result). Err is nil on
	// success; Latency is the attempt's duration. Every attempt is reported,
	// so a consumer can count reconnects by outcome.
	Dialled
)

func (k EventKind) String() string {
	switch k {
	case Connected:
		return "connected"
	case Subscribed:
		return "subscribed"
	case Disconnected:
		return "disconnected"
	case Polled:
		return "polled"
	case Published:
		return "published"
	case Retrying:
		return "retrying"
	case Dialled:
		return "dialled"
	}
	return "unknown"
}

// Event reports a change or an operation outcome on a connection.
type Event struct {
	Kind           EventKind
	At             time.Time
	Err            error
	Status         int           // HTTP status for Polled/Published on long-poll
	Latency        time.Duration // for Polled, Published, Connected, Subscribed, Dialled
	Delay          time.Duration // for Retrying
	SessionPresent bool          // for Connected (MQTT)
	Granted        []byte        // for Subscribed (MQTT): granted QoS per topic, in order
}

// Handler receives a connection's messages and events. Both methods are called
// from the transport's goroutines and must not block for long.
type Handler interface {
	HandleMessage(m Message)
	HandleEvent(e Event)
}

// Conn is one simulated user's (or probe subscriber's) connection to a bus.
// Pending is a publish handed to a Batcher, waiting for its outcome.
type Pending interface {
	// Done reports, without blocking, whether the outcome is known.
	Done() bool
	// Wait returns the outcome, as Conn.Publish would; call it exactly once,
	// and use the Pending no more after it.
	Wait() error
}

// Batcher is a Conn that can queue publishes and write every queued one at
// once (MQTT): a paced sender hands over all that is due in a tick and
// flushes once, one write per tick instead of one per message.
type Batcher interface {
	Enqueue(ctx context.Context, topic string, payload []byte) Pending
	Flush()
}

type Conn interface {
	// Publish sends payload to topic. It returns nil only when the bus accepted it
	// (QoS 1: PUBACK, QoS 2: PUBCOMP, QoS 0: written; HTTP: 2xx). An error wrapping
	// ErrUnknownOutcome means the outcome is unknown (timeout).
	Publish(ctx context.Context, topic string, payload []byte) error
	// Subscribe adds topics to this connection's subscription: the topics of every
	// earlier Subscribe stay subscribed (a second call never replaces the first), and
	// a topic given again is still delivered once. It returns once the subscription
	// is confirmed (MQTT SUBACK) or started (long-poll: the poll on the whole set is
	// under way; bus.Subscribed follows once its request is written). Later
	// deliveries go to the Handler. Reconnects re-subscribe to every topic by
	// themselves. internal/bustest checks all of this on every transport.
	Subscribe(ctx context.Context, topics []string) error
	// Close stops everything at once: open polls are cut, pending retries cancelled.
	// It waits for the connection's goroutines to end.
	Close() error
}

// Unsubscriber is a Conn that can end part of its subscription and keep the
// rest (MQTT): once Unsubscribe returns nil, nothing published later to those
// topics is delivered on the Conn, and a reconnect does not subscribe to them
// again. swarm keeps such a Conn across a user's sessions; on other
// transports it opens a Conn per session. internal/bustest checks it.
type Unsubscriber interface {
	Unsubscribe(ctx context.Context, topics []string) error
}

// Aborter is a Conn that can be dropped at once, without the protocol's
// goodbye (MQTT DISCONNECT) and with a TCP reset rather than an orderly close:
// what swarm does with its connections when a run is interrupted, so that
// thousands of them stop in time. Afterwards it is closed, as after Close.
type Aborter interface {
	Abort() error
}

// Dialer opens a Conn for one user. id must be unique per connection.
type Dialer interface {
	Dial(ctx context.Context, id string, h Handler) (Conn, error)
}

// DialFunc adapts a function to Dialer.
type DialFunc func(ctx context.Context, id string, h Handler) (Conn, error)

// Dial calls f.
func (f DialFunc) Dial(ctx context.Context, id string, h Handler) (Conn, error) { return f(ctx, id, h) }

// DialerOf adapts a transport's Dial, which returns its concrete connection
// type, to Dialer (without turning a nil *Conn into a non-nil Conn).
func DialerOf[C Conn](dial func(context.Context, string, Handler) (C, error)) Dialer {
	return DialFunc(func(ctx context.Context, id string, h Handler) (Conn, error) {
		c, err := dial(ctx, id, h)
		if err != nil {
			return nil, err
		}
		return c, nil
	})
}

var (
	// ErrUnknownOutcome marks a publish whose outcome is unknown (timed out after sending).
	ErrUnknownOutcome = errors.New("bus: publish outcome unknown")
	// ErrRefused marks a refusal by the bus that retrying will not fix (auth, 403/404, granted QoS too low).
	ErrRefused = errors.New("bus: refused")
	// ErrUnreachable marks a target that could not be reached at all.
	ErrUnreachable = errors.New("bus: target unreachable")
	// ErrProtocol marks a peer that does not speak the expected protocol.
	ErrProtocol = errors.New("bus: protocol error")
	// ErrConfig marks a configuration a transport cannot use (a URL it does
	// not accept, an unreadable CA file): the user's to fix, not the bus's.
	ErrConfig = errors.New("invalid configuration")
)

// ErrorClass is the small fixed set errors are counted under on hot paths.
type ErrorClass uint8

const (
	ClassNone ErrorClass = iota
	ClassTimeout
	ClassRefused
	ClassReset
	Class4xx
	Class5xx
	ClassProtocol
	ClassOther
	NumClasses
)

var classNames = [...]string{"none", "timeout", "refused", "reset", "4xx", "5xx", "protocol", "other"}

func (c ErrorClass) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "other"
}

// StatusError is an HTTP status a transport did not expect.
type StatusError struct{ Status int }

func (e *StatusError) Error() string { return "unexpected HTTP status " + strconv.Itoa(e.Status) }
