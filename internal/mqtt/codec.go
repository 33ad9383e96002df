package mqtt

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
)

// The hot path's packets (PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP) are
// encoded and decoded here, by hand, over caller-owned buffers: no allocation
// once the buffers have grown to the traffic's packet size. Control packets
// (CONNECT, SUBSCRIBE, SUBACK, PINGREQ, DISCONNECT, …) go through paho's
// packets package.

// MQTT 3.1.1 packet types (the high nibble of the first byte).
const (
	typeConnack  = 2
	typePublish  = 3
	typePuback   = 4
	typePubrec   = 5
	typePubrel   = 6
	typePubcomp  = 7
	typeSuback   = 9
	typeUnsuback = 11
	typePingresp = 13
)

// maxRemaining is the largest remaining length the 4-byte encoding can hold.
const maxRemaining = 268_435_455

// errMalformed is wrapped by every decoding error; it wraps bus.ErrProtocol.
var errMalformed = fmt.Errorf("mqtt: malformed packet: %w", bus.ErrProtocol)

// PacketTooLargeError is a packet whose declared remaining length exceeds the
// reader's maximum (Config.MaxPacketSize). Nothing of that size was
// allocated. It wraps bus.ErrProtocol.
type PacketTooLargeError struct {
	Type     byte // packet type, 1..15
	Declared int  // the remaining length the peer declared
	Max      int
}

func (e *PacketTooLargeError) Error() string {
	return fmt.Sprintf("mqtt: the broker sent a packet of type %d declaring %d bytes, more than the maximum %d (raise the max packet size if the broker's messages really are that large)",
		e.Type, e.Declared, e.Max)
}

func (e *PacketTooLargeError) Unwrap() error { return bus.ErrProtocol }

// appendVarint appends MQTT's variable-length remaining length (n <= maxRemaining).
func appendVarint(dst []byte, n int) []byte {
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n == 0 {
			return append(dst, b)
		}
		dst = append(dst, b|0x80)
	}
}

// varintLen is the size of n's remaining-length encoding.
func varintLen(n int) int {
	switch {
	case n < 128:
		return 1
	case n < 16384:
		return 2
	case n < 2097152:
		return 3
	}
	return 4
}

// publishLen is the remaining length of a PUBLISH (MQTT 5: one byte more,
// the empty property list).
func publishLen(topic string, payload []byte, qos byte, v5 bool) int {
	n := 2 + len(topic) + len(payload)
	if qos > 0 {
		n += 2
	}
	if v5 {
		n++
	}
	return n
}

// appendPublish appends an MQTT 3.1.1 PUBLISH packet (appendPublishV).
func appendPublish(dst []byte, topic string, payload []byte, qos byte, dup, retain bool, id uint16) []byte {
	return appendPublishV(dst, false, topic, payload, qos, dup, retain, id)
}

// appendPublishV appends a PUBLISH packet; on MQTT 5 (v5) with an empty
// property list. id is ignored at QoS 0. The caller checks that the topic
// fits in 65535 bytes and the packet in maxRemaining.
func appendPublishV(dst []byte, v5 bool, topic string, payload []byte, qos byte, dup, retain bool, id uint16) []byte {
	h := byte(typePublish<<4) | qos<<1
	if dup {
		h |= 0x08
	}
	if retain {
		h |= 0x01
	}
	dst = append(dst, h)
	dst = appendVarint(dst, publishLen(topic, payload, qos, v5))
	dst = append(dst, byte(len(topic)>>8), byte(len(topic)))
	dst = append(dst, topic...)
	if qos > 0 {
		dst = append(dst, byte(id>>8), byte(id))
	}
	if v5 {
		dst = append(dst, 0) // no properties
	}
	return append(dst, payload...)
}

// appendAck appends a PUBACK, PUBREC, PUBREL or PUBCOMP for packet id.
func appendAck(dst []byte, typ byte, id uint16) []byte {
	h := typ << 4
	if typ == typePubrel {
		h |= 0x02 // required flags of PUBREL
	}
	return append(dst, h, 2, byte(id>>8), byte(id))
}

// publish is a decoded PUBLISH. Topic and Payload alias the packet body.
type publish struct {
	topic   []byte
	payload []byte
	id      uint16
	qos     byte
	dup     bool
	retain  bool
}

// decodePublish decodes an MQTT 3.1.1 PUBLISH from its first byte and body.
func decodePublish(hdr byte, body []byte) (publish, error) { return decodePublishV(hdr, body, false) }

// decodePublishV decodes a PUBLISH from its first byte and body; on MQTT 5
// (v5) its properties are skipped (bounded by the body) and an empty topic
// (a topic alias, which we never allow) is malformed.
func decodePublishV(hdr byte, body []byte, v5 bool) (publish, error) {
	p := publish{qos: (hdr >> 1) & 3, dup: hdr&0x08 != 0, retain: hdr&0x01 != 0}
	if p.qos == 3 {
		return publish{}, fmt.Errorf("%w: PUBLISH with QoS 3", errMalformed)
	}
	if p.qos == 0 && p.dup {
		return publish{}, fmt.Errorf("%w: PUBLISH with QoS 0 and the DUP flag", errMalformed)
	}
	if len(body) < 2 {
		return publish{}, fmt.Errorf("%w: PUBLISH of %d bytes has no topic length", errMalformed, len(body))
	}
	tl := int(body[0])<<8 | int(body[1])
	rest := body[2:]
	if tl > len(rest) {
		return publish{}, fmt.Errorf("%w: PUBLISH topic length %d beyond the packet's %d bytes", errMalformed, tl, len(body))
	}
	p.topic, rest = rest[:tl], rest[tl:]
	if p.qos > 0 {
		if len(rest) < 2 {
			return publish{}, fmt.Errorf("%w: PUBLISH QoS %d without a packet ID", errMalformed, p.qos)
		}
		p.id = uint16(rest[0])<<8 | uint16(rest[1])
		rest = rest[2:]
		if p.id == 0 {
			return publish{}, fmt.Errorf("%w: PUBLISH QoS %d with packet ID 0", errMalformed, p.qos)
		}
	}
	if v5 {
		if tl == 0 {
			return publish{}, errTopicAlias
		}
		var err error
		if rest, err = skipPublishProps(rest); err != nil {
			return publish{}, err
		}
	}
	p.payload = rest
	return p, nil
}

// decodeAck decodes PUBACK, PUBREC, PUBREL or PUBCOMP (MQTT 3.1.1: exactly a
// packet ID; PUBREL with flags 0010, the others with 0000).
func decodeAck(hdr byte, body []byte) (uint16, error) {
	want := byte(0)
	if hdr>>4 == typePubrel {
		want = 0x02
	}
	if hdr&0x0f != want {
		return 0, fmt.Errorf("%w: type %d with flags 0x%x", errMalformed, hdr>>4, hdr&0x0f)
	}
	if len(body) != 2 {
		return 0, fmt.Errorf("%w: type %d of %d bytes, want 2", errMalformed, hdr>>4, len(body))
	}
	id := uint16(body[0])<<8 | uint16(body[1])
	if id == 0 {
		return 0, fmt.Errorf("%w: type %d with packet ID 0", errMalformed, hdr>>4)
	}
	return id, nil
}

// Read buffer sizes: an idle connection holds a small buffer; one whose reads
// fill it switches to the large one, so a busy connection reads many packets
// per syscall.
const (
	smallRead = 512
	largeRead = 32 << 10
)

// reader frames MQTT packets from a byte stream with its own buffer: many
// packets per read syscall, the packet body returned as a slice of the buffer
// (valid until the next call), and a bound on the declared length checked
// before anything is allocated.
type reader struct {
	rd   io.Reader
	buf  []byte
	r, w int // unread bytes are buf[r:w]
	max  int // largest accepted remaining length
	// beforeRead, if set, runs before each read from the stream (the
	// connection flushes its queued acknowledgements there).
	beforeRead func()
	// linger, if set, is slept before a read that follows a short one (one
	// that did not fill half the buffer): traffic is flowing but thin, so
	// waiting a little lets one read take many packets.
	linger time.Duration
	short  bool
}

func newReader(rd io.Reader, max int) *reader {
	return &reader{rd: rd, buf: make([]byte, smallRead), max: max}
}

// buffered is the number of bytes read from the socket and not yet framed.
func (r *reader) buffered() int { return r.w - r.r }

// fill reads once more from the stream, making room first.
func (r *reader) fill(need int) error {
	if r.r > 0 {
		r.w = copy(r.buf, r.buf[r.r:r.w])
		r.r = 0
	}
	if need > len(r.buf) {
		nb := make([]byte, max(need, min(largeRead, r.max+5)))
		r.w = copy(nb, r.buf[:r.w])
		r.buf = nb
	}
	if r.short && r.linger > 0 {
		time.Sleep(r.linger)
	}
	if r.beforeRead != nil {
		r.beforeRead()
	}
	n, err := r.rd.Read(r.buf[r.w:])
	r.short = n > 0 && n < (len(r.buf)-r.w)/2
	if n < 0 || n > len(r.buf)-r.w {
		return io.ErrNoProgress
	}
	r.w += n
	if n > 0 && r.w == len(r.buf) && len(r.buf) < largeRead && r.max+5 > len(r.buf) {
		// The read filled the buffer: more is waiting. Read larger from now on.
		nb := make([]byte, min(largeRead, r.max+5))
		r.w = copy(nb, r.buf[r.r:r.w])
		r.r = 0
		r.buf = nb
	}
	if n > 0 {
		return nil
	}
	if err == nil {
		return io.ErrNoProgress
	}
	return err
}

// next returns the next packet's first byte and body. The body is only valid
// until the next call. A declared length beyond max is a
// *PacketTooLargeError; a stream that ends inside a packet is
// io.ErrUnexpectedEOF, and one that ends between packets io.EOF.
func (r *reader) next() (hdr byte, body []byte, err error) {
	// Fixed header: 1 byte + 1..4 bytes of remaining length.
	var n, hl int
	for {
		if r.w-r.r >= 2 {
			n, hl, err = parseVarint(r.buf[r.r+1 : r.w])
			if err != nil {
				return 0, nil, err
			}
			if hl > 0 {
				break
			}
		}
		if err := r.fill(0); err != nil {
			if errors.Is(err, io.EOF) && r.w > r.r {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, err
		}
	}
	hdr = r.buf[r.r]
	if n > r.max {
		return 0, nil, &PacketTooLargeError{Type: hdr >> 4, Declared: n, Max: r.max}
	}
	total := 1 + hl + n
	for r.w-r.r < total {
		if err := r.fill(total); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, err
		}
	}
	body = r.buf[r.r+1+hl : r.r+total : r.r+total]
	r.r += total
	return hdr, body, nil
}

// parseVarint decodes a remaining length from b. hl is the number of bytes it
// took, or 0 if b ends before it does.
func parseVarint(b []byte) (n, hl int, err error) {
	shift := 0
	for i := 0; i < len(b) && i < 4; i++ {
		n |= int(b[i]&0x7f) << shift
		if b[i]&0x80 == 0 {
			return n, i + 1, nil
		}
		shift += 7
	}
	if len(b) >= 4 {
		return 0, 0, fmt.Errorf("%w: remaining length longer than 4 bytes", errMalformed)
	}
	return 0, 0, nil
}
