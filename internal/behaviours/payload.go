package behaviours

import (
	"github.com/eventswarm/eventswarm/internal/verify"
)

// Payload layout: the verify stamp (verify.StampSize bytes), then in the
// padding area a kind byte and the learner ID it concerns, then verify's
// filler up to Config.PayloadSize. Every byte is printable ASCII, so the
// payload is safe in an HTTP body and an MQTT payload alike.
//
//	[0, StampSize)            stamp (run, publisher, stream, seq, times, checksum)
//	StampSize                 kind: 'E' event, 'F' finished, 'C' control, 'M' marker
//	StampSize+1 ...           learner ID ([A-Za-z0-9._-]), ended by the filler or the payload end
const (
	kindEvent    = 'E'
	kindFinished = 'F'
	kindControl  = 'C'
	kindMarker   = 'M'
)

// encodePayload writes st, kind and id into buf (len(buf) >= MinPayloadSize).
func encodePayload(buf []byte, st *verify.Stamp, kind byte, id string) error {
	var body [1 + MaxIDLen]byte
	body[0] = kind
	n := copy(body[1:], id)
	return st.EncodeWith(buf, body[:1+n])
}

// payloadKind returns the kind byte and learner ID of a payload whose stamp
// decoded; id aliases p. Short payloads give 0 and nil.
func payloadKind(p []byte) (kind byte, id []byte) {
	if len(p) <= verify.StampSize {
		return 0, nil
	}
	kind = p[verify.StampSize]
	rest := p[verify.StampSize+1:]
	n := 0
	for n < len(rest) && rest[n] != verify.Filler && n < MaxIDLen {
		n++
	}
	return kind, rest[:n]
}
