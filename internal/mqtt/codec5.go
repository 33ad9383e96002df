package mqtt

import (
	"fmt"
	"strconv"
	"syscall"

	"github.com/eventswarm/eventswarm/internal/bus"
)

// MQTT 5 packets. paho's packets package speaks 3.1.1 only, so on MQTT 5 the
// control packets (CONNECT, CONNACK, SUBSCRIBE, SUBACK, DISCONNECT) are
// encoded and decoded here too; the hot path (PUBLISH and acknowledgements)
// shares codec.go's encoder with a version switch. Properties we send:
// Session Expiry Interval (persistent sessions only), Receive Maximum and
// Maximum Packet Size on CONNECT; none on PUBLISH (an empty property list,
// one zero byte) or SUBSCRIBE. Properties we read: the CONNACK's limits and
// reason strings on refusals; a PUBLISH's are skipped. Topic aliases are off:
// we announce no Topic Alias Maximum (0), and a PUBLISH using one is a
// protocol error.

const (
	typeConnect    = 1
	typeSubscribe  = 8
	typeDisconnect = 14
	typeAuth       = 15
)

// MQTT 5 property identifiers used here.
const (
	propSessionExpiry     = 0x11
	propAssignedClientID  = 0x12
	propServerKeepAlive   = 0x13
	propReasonString      = 0x1f
	propReceiveMaximum    = 0x21
	propTopicAliasMaximum = 0x22
	propTopicAlias        = 0x23
	propMaximumQoS        = 0x24
	propUserProperty      = 0x26
	propMaximumPacketSize = 0x27
	propSharedSubAvail    = 0x2a
)

// propKind is how a property's value is encoded.
type propKind uint8

const (
	propByte propKind = iota + 1
	propTwo
	propFour
	propVarint
	propString // UTF-8 string: 2-byte length + bytes
	propBinary // binary data: same framing
	propPair   // string pair
)

// propKinds maps every MQTT 5 property identifier to its encoding; 0 = not a property.
var propKinds = [256]propKind{
	0x01: propByte, 0x02: propFour, 0x03: propString, 0x08: propString, 0x09: propBinary,
	0x0b: propVarint, 0x11: propFour, 0x12: propString, 0x13: propTwo, 0x15: propString,
	0x16: propBinary, 0x17: propByte, 0x18: propFour, 0x19: propByte, 0x1a: propString,
	0x1c: propString, 0x1f: propString, 0x21: propTwo, 0x22: propTwo, 0x23: propTwo,
	0x24: propByte, 0x25: propByte, 0x26: propPair, 0x27: propFour, 0x28: propByte,
	0x29: propByte, 0x2a: propByte,
}

// prop is one decoded property: n for integers, s (aliasing the packet) for
// strings and binary data (the first of a pair).
type prop struct {
	id byte
	n  uint32
	s  []byte
}

// splitProps reads a property length and returns the properties and the
// bytes after them.
func splitProps(b []byte, what string) (props, rest []byte, err error) {
	n, hl, err := parseVarint(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s property length", errMalformed, what)
	}
	if hl == 0 {
		return nil, nil, fmt.Errorf("%w: %s without its property length", errMalformed, what)
	}
	if n > len(b)-hl {
		return nil, nil, fmt.Errorf("%w: %s properties of %d bytes beyond the packet's %d", errMalformed, what, n, len(b)-hl)
	}
	return b[hl : hl+n], b[hl+n:], nil
}

// walkProps calls fn for each property in b (a property list without its
// length). An unknown identifier or a value beyond b is malformed.
func walkProps(b []byte, what string, fn func(p prop) error) error {
	for len(b) > 0 {
		p := prop{id: b[0]}
		b = b[1:]
		switch propKinds[p.id] {
		case propByte:
			if len(b) < 1 {
				return &propError{what: what, id: p.id}
			}
			p.n, b = uint32(b[0]), b[1:]
		case propTwo:
			if len(b) < 2 {
				return &propError{what: what, id: p.id}
			}
			p.n, b = uint32(b[0])<<8|uint32(b[1]), b[2:]
		case propFour:
			if len(b) < 4 {
				return &propError{what: what, id: p.id}
			}
			p.n, b = uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3]), b[4:]
		case propVarint:
			n, hl, err := parseVarint(b)
			if err != nil || hl == 0 {
				return &propError{what: what, id: p.id}
			}
			p.n, b = uint32(n), b[hl:]
		case propString, propBinary, propPair:
			for i := 0; i < 1 || i < 2 && propKinds[p.id] == propPair; i++ {
				if len(b) < 2 {
					return &propError{what: what, id: p.id}
				}
				l := int(b[0])<<8 | int(b[1])
				if l > len(b)-2 {
					return &propError{what: what, id: p.id}
				}
				if i == 0 {
					p.s = b[2 : 2+l]
				}
				b = b[2+l:]
			}
		default:
			return fmt.Errorf("%w: %s with unknown property 0x%02x", errMalformed, what, p.id)
		}
		if err := fn(p); err != nil {
			return err
		}
	}
	return nil
}

// propError is a property whose value runs past the property list.
type propError struct {
	what string
	id   byte
}

func (e *propError) Error() string {
	return fmt.Sprintf("%s: %s property 0x%02x truncated", errMalformed, e.what, e.id)
}

func (e *propError) Unwrap() error { return errMalformed }

// appendString appends an MQTT UTF-8 string or binary data (len <= 65535).
func appendString(dst []byte, s string) []byte {
	dst = append(dst, byte(len(s)>>8), byte(len(s)))
	return append(dst, s...)
}

func appendPropFour(dst []byte, id byte, v uint32) []byte {
	return append(dst, id, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// connect5 is what an MQTT 5 CONNECT says.
type connect5 struct {
	id                 string
	username, password string
	clean              bool
	keepAlive          uint16
	sessionExpiry      uint32 // seconds; 0: the session ends with the connection
	receiveMax         uint16 // 0: not sent (65535)
	maxPacket          uint32 // 0: not sent (no limit)
}

// appendConnect5 appends an MQTT 5 CONNECT.
func appendConnect5(dst []byte, c connect5) []byte {
	var props []byte
	if c.sessionExpiry > 0 {
		props = appendPropFour(props, propSessionExpiry, c.sessionExpiry)
	}
	if c.receiveMax > 0 {
		props = append(props, propReceiveMaximum, byte(c.receiveMax>>8), byte(c.receiveMax))
	}
	if c.maxPacket > 0 {
		props = appendPropFour(props, propMaximumPacketSize, c.maxPacket)
	}
	flags := byte(0)
	if c.clean {
		flags |= 0x02
	}
	if c.username != "" {
		flags |= 0x80
		if c.password != "" {
			flags |= 0x40
		}
	}
	var body []byte
	body = appendString(body, "MQTT")
	body = append(body, 5, flags, byte(c.keepAlive>>8), byte(c.keepAlive))
	body = appendVarint(body, len(props))
	body = append(body, props...)
	body = appendString(body, c.id)
	if flags&0x80 != 0 {
		body = appendString(body, c.username)
	}
	if flags&0x40 != 0 {
		body = appendString(body, c.password)
	}
	dst = append(dst, typeConnect<<4)
	dst = appendVarint(dst, len(body))
	return append(dst, body...)
}

// appendSubscribe5 appends an MQTT 5 SUBSCRIBE of topics at qos: no
// properties; options = the QoS (No Local and Retain As Published off,
// retained messages sent at subscribe, as on MQTT 3.1.1).
func appendSubscribe5(dst []byte, id uint16, topics []string, qos byte) []byte {
	n := 2 + 1
	for _, t := range topics {
		n += 2 + len(t) + 1
	}
	dst = append(dst, typeSubscribe<<4|0x02)
	dst = appendVarint(dst, n)
	dst = append(dst, byte(id>>8), byte(id), 0)
	for _, t := range topics {
		dst = appendString(dst, t)
		dst = append(dst, qos)
	}
	return dst
}

// connack is a decoded CONNACK (either version) with the MQTT 5 properties we use.
type connack struct {
	sessionPresent bool
	code           byte   // 3.1.1 return code or MQTT 5 reason code
	v3             bool   // an MQTT 3.1.1 CONNACK (remaining length 2)
	maxPacket      uint32 // the broker's Maximum Packet Size; 0 = none
	receiveMax     uint16 // the broker's Receive Maximum; 0 = none (65535)
	maxQoS         byte   // the broker's Maximum QoS (2 when absent)
	keepAlive      int    // Server Keep Alive in seconds; -1 = none
	reason         string // Reason String, quoted for messages ("" if none)
}

// decodeConnack5 decodes the body of a CONNACK sent to an MQTT 5 client. A
// body of 2 bytes is a 3.1.1 CONNACK (a broker that does not speak MQTT 5
// answers so) and is returned with v3 set.
func decodeConnack5(body []byte) (connack, error) {
	ca := connack{maxQoS: 2, keepAlive: -1}
	if len(body) < 2 {
		return ca, fmt.Errorf("%w: CONNACK of %d bytes", errMalformed, len(body))
	}
	if body[0]&^1 != 0 {
		return ca, fmt.Errorf("%w: CONNACK flags 0x%02x", errMalformed, body[0])
	}
	ca.sessionPresent, ca.code = body[0]&1 == 1, body[1]
	if len(body) == 2 {
		ca.v3 = true
		return ca, nil
	}
	props, rest, err := splitProps(body[2:], "CONNACK")
	if err != nil {
		return ca, err
	}
	if len(rest) != 0 {
		return ca, fmt.Errorf("%w: CONNACK with %d bytes after its properties", errMalformed, len(rest))
	}
	err = walkProps(props, "CONNACK", func(p prop) error {
		switch p.id {
		case propMaximumPacketSize:
			if p.n == 0 {
				return fmt.Errorf("%w: CONNACK Maximum Packet Size 0", errMalformed)
			}
			ca.maxPacket = p.n
		case propReceiveMaximum:
			if p.n == 0 {
				return fmt.Errorf("%w: CONNACK Receive Maximum 0", errMalformed)
			}
			ca.receiveMax = uint16(p.n)
		case propMaximumQoS:
			if p.n > 1 {
				return fmt.Errorf("%w: CONNACK Maximum QoS %d", errMalformed, p.n)
			}
			ca.maxQoS = byte(p.n)
		case propServerKeepAlive:
			ca.keepAlive = int(p.n)
		case propReasonString:
			ca.reason = quoteReason(p.s)
		}
		return nil
	})
	return ca, err
}

// quoteReason shows a broker's reason string safely: quoted, at most 120 bytes.
func quoteReason(s []byte) string {
	if len(s) > 120 {
		return strconv.QuoteToASCII(string(s[:120])) + "…"
	}
	return strconv.QuoteToASCII(string(s))
}

// decodeSuback5 decodes an MQTT 5 SUBACK body: packet ID, properties, one
// reason code per topic filter. codes aliases body.
func decodeSuback5(body []byte) (id uint16, codes []byte, reason string, err error) {
	if len(body) < 3 {
		return 0, nil, "", fmt.Errorf("%w: SUBACK of %d bytes", errMalformed, len(body))
	}
	id = uint16(body[0])<<8 | uint16(body[1])
	props, rest, err := splitProps(body[2:], "SUBACK")
	if err != nil {
		return 0, nil, "", err
	}
	err = walkProps(props, "SUBACK", func(p prop) error {
		if p.id == propReasonString {
			reason = quoteReason(p.s)
		}
		return nil
	})
	if err != nil {
		return 0, nil, "", err
	}
	if len(rest) == 0 {
		return 0, nil, "", fmt.Errorf("%w: SUBACK without reason codes", errMalformed)
	}
	return id, rest, reason, nil
}

// decodeAck5 decodes an MQTT 5 PUBACK, PUBREC, PUBREL or PUBCOMP: a packet
// ID, then optionally a reason code (0 when absent) and properties.
func decodeAck5(hdr byte, body []byte) (id uint16, reason byte, err error) {
	if len(body) <= 2 {
		id, err = decodeAck(hdr, body)
		return id, 0, err
	}
	id, err = decodeAck(hdr, body[:2])
	if err != nil {
		return 0, 0, err
	}
	reason = body[2]
	if len(body) > 3 {
		props, rest, err := splitProps(body[3:], "acknowledgement")
		if err != nil {
			return 0, 0, err
		}
		if len(rest) != 0 {
			return 0, 0, fmt.Errorf("%w: type %d with %d bytes after its properties", errMalformed, hdr>>4, len(rest))
		}
		if err := walkProps(props, "acknowledgement", func(prop) error { return nil }); err != nil {
			return 0, 0, err
		}
	}
	return id, reason, nil
}

// reasonString is the Reason String of an acknowledgement's properties, if any.
func ackReasonString(body []byte) string {
	if len(body) <= 3 {
		return ""
	}
	props, _, err := splitProps(body[3:], "acknowledgement")
	if err != nil {
		return ""
	}
	var s string
	_ = walkProps(props, "acknowledgement", func(p prop) error {
		if p.id == propReasonString {
			s = quoteReason(p.s)
		}
		return nil
	})
	return s
}

// DisconnectError is an MQTT 5 DISCONNECT from the broker: the connection
// ends with the broker's reason. It wraps bus.ErrProtocol for reasons that
// say we broke the protocol, bus.ErrRefused for "not authorized", and a reset
// (syscall.ECONNRESET) otherwise (server shutting down, session taken over, …).
type DisconnectError struct {
	Reason byte
	Said   string // the broker's Reason String, quoted; "" if none
}

func (e *DisconnectError) Error() string {
	s := "mqtt: the broker disconnected: " + reasonCode(e.Reason)
	if e.Said != "" {
		s += " (broker says " + e.Said + ")"
	}
	return s
}

func (e *DisconnectError) Unwrap() error {
	switch e.Reason {
	case 0x81, 0x82, 0x90, 0x93, 0x94, 0x95, 0x99, 0x9a, 0x9b, 0x9e, 0xa1, 0xa2:
		return bus.ErrProtocol
	case 0x87, 0x8a:
		return bus.ErrRefused
	}
	return syscall.ECONNRESET
}

// decodeDisconnect5 decodes a DISCONNECT from the broker.
func decodeDisconnect5(hdr byte, body []byte) (*DisconnectError, error) {
	if hdr&0x0f != 0 {
		return nil, fmt.Errorf("%w: DISCONNECT with flags 0x%x", errMalformed, hdr&0x0f)
	}
	e := &DisconnectError{}
	if len(body) == 0 {
		return e, nil
	}
	e.Reason = body[0]
	if len(body) > 1 {
		props, rest, err := splitProps(body[1:], "DISCONNECT")
		if err != nil {
			return nil, err
		}
		if len(rest) != 0 {
			return nil, fmt.Errorf("%w: DISCONNECT with %d bytes after its properties", errMalformed, len(rest))
		}
		err = walkProps(props, "DISCONNECT", func(p prop) error {
			if p.id == propReasonString {
				e.Said = quoteReason(p.s)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return e, nil
}

// reasonTexts names the MQTT 5 reason codes (section 2.4).
var reasonTexts = map[byte]string{
	0x00: "success", 0x04: "disconnect with will message", 0x10: "no matching subscribers",
	0x11: "no subscription existed", 0x18: "continue authentication", 0x19: "re-authenticate",
	0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
	0x83: "implementation specific error", 0x84: "unsupported protocol version",
	0x85: "client identifier not valid", 0x86: "bad user name or password", 0x87: "not authorized",
	0x88: "server unavailable", 0x89: "server busy", 0x8a: "banned", 0x8b: "server shutting down",
	0x8c: "bad authentication method", 0x8d: "keep alive timeout", 0x8e: "session taken over",
	0x8f: "topic filter invalid", 0x90: "topic name invalid", 0x91: "packet identifier in use",
	0x92: "packet identifier not found", 0x93: "receive maximum exceeded", 0x94: "topic alias invalid",
	0x95: "packet too large", 0x96: "message rate too high", 0x97: "quota exceeded",
	0x98: "administrative action", 0x99: "payload format invalid", 0x9a: "retain not supported",
	0x9b: "QoS not supported", 0x9c: "use another server", 0x9d: "server moved",
	0x9e: "shared subscriptions not supported", 0x9f: "connection rate exceeded",
	0xa0: "maximum connect time", 0xa1: "subscription identifiers not supported",
	0xa2: "wildcard subscriptions not supported",
}

// reasonCode is "0x87 not authorized".
func reasonCode(c byte) string {
	t, ok := reasonTexts[c]
	if !ok {
		t = "unknown reason code"
	}
	return fmt.Sprintf("0x%02x %s", c, t)
}

// classifyReason5 maps a CONNACK reason code (MQTT 5) to the class of the
// MQTT 3.1.1 return code of the same meaning.
func classifyReason5(rc byte, said string) error {
	var sentinel error
	switch rc {
	case 0x85, 0x86, 0x87, 0x8a, 0x8c: // client ID, credentials, authorization
		sentinel = bus.ErrRefused
	case 0x88, 0x89, 0x97, 0x9c, 0x9d, 0x9f: // server unavailable (3.1.1 code 3) and its kin
		sentinel = bus.ErrUnreachable
	default:
		sentinel = bus.ErrProtocol
	}
	s := "the broker refused the connection: " + reasonCode(rc)
	if said != "" {
		s += " (broker says " + said + ")"
	}
	if rc == 0x84 {
		s += "; it does not speak MQTT 5 (use --mqtt-version 3)"
	}
	return fmt.Errorf("%s: %w", s, sentinel)
}

// errTopicAlias is a PUBLISH using a topic alias, which we never allow.
var errTopicAlias = fmt.Errorf("%w: PUBLISH with a topic alias (none was allowed: Topic Alias Maximum 0)", errMalformed)

// skipPublishProps splits a v5 PUBLISH's payload from its properties (the
// bytes after the topic and packet ID); a Topic Alias is a protocol error.
func skipPublishProps(rest []byte) ([]byte, error) {
	n, hl, err := parseVarint(rest)
	if err != nil || hl == 0 {
		return nil, fmt.Errorf("%w: PUBLISH without its property length", errMalformed)
	}
	if n > len(rest)-hl {
		return nil, fmt.Errorf("%w: PUBLISH properties of %d bytes beyond the packet", errMalformed, n)
	}
	return rest[hl+n:], nil
}
