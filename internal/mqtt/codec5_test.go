package mqtt

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	mpackets "github.com/mochi-mqtt/server/v2/packets"

	"github.com/eventswarm/eventswarm/internal/bus"
)

// mochiDecode frames one packet of b and decodes it with mochi-mqtt's
// packets package (an independent MQTT 5 implementation).
func mochiDecode(t *testing.T, b []byte) mpackets.Packet {
	t.Helper()
	rd := newReader(bytes.NewReader(b), maxRemaining)
	hdr, body, err := rd.next()
	if err != nil {
		t.Fatal(err)
	}
	pk := mpackets.Packet{ProtocolVersion: 5}
	if err := pk.FixedHeader.Decode(hdr); err != nil {
		t.Fatal(err)
	}
	pk.FixedHeader.Remaining = len(body)
	var derr error
	switch hdr >> 4 {
	case typeConnect:
		derr = pk.ConnectDecode(body)
	case typePublish:
		derr = pk.PublishDecode(body)
	case typeSubscribe:
		derr = pk.SubscribeDecode(body)
	case typePuback:
		derr = pk.PubackDecode(body)
	default:
		t.Fatalf("no decoder for type %d", hdr>>4)
	}
	if derr != nil {
		t.Fatalf("mochi cannot decode % x: %v", b[:min(len(b), 32)], derr)
	}
	return pk
}

// mochiEncode encodes pk with mochi and returns its first byte and body.
func mochiEncode(t *testing.T, pk mpackets.Packet) (byte, []byte) {
	t.Helper()
	pk.ProtocolVersion = 5
	var b bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case mpackets.Connack:
		err = pk.ConnackEncode(&b)
	case mpackets.Publish:
		err = pk.PublishEncode(&b)
	case mpackets.Suback:
		err = pk.SubackEncode(&b)
	case mpackets.Puback:
		err = pk.PubackEncode(&b)
	case mpackets.Pubrec:
		err = pk.PubrecEncode(&b)
	case mpackets.Pubcomp:
		err = pk.PubcompEncode(&b)
	case mpackets.Disconnect:
		err = pk.DisconnectEncode(&b)
	}
	if err != nil {
		t.Fatal(err)
	}
	rd := newReader(bytes.NewReader(b.Bytes()), maxRemaining)
	hdr, body, err := rd.next()
	if err != nil {
		t.Fatal(err)
	}
	return hdr, append([]byte(nil), body...)
}

// TestCodec5AgainstMochi: what we encode on MQTT 5 mochi decodes to the
// same fields, and what mochi encodes (with properties) we decode.
func TestCodec5AgainstMochi(t *testing.T) {
	// CONNECT
	b := appendConnect5(nil, connect5{id: "c-1", username: "u", password: "p", clean: false, keepAlive: 30,
		sessionExpiry: 300, receiveMax: 65535, maxPacket: 70000})
	pk := mochiDecode(t, b)
	if pk.ProtocolVersion != 5 || pk.Connect.ClientIdentifier != "c-1" || string(pk.Connect.Username) != "u" ||
		string(pk.Connect.Password) != "p" || pk.Connect.Clean || pk.Connect.Keepalive != 30 ||
		pk.Properties.SessionExpiryInterval != 300 || pk.Properties.ReceiveMaximum != 65535 || pk.Properties.MaximumPacketSize != 70000 {
		t.Fatalf("CONNECT decoded by mochi: %+v %+v", pk.Connect, pk.Properties)
	}
	pk = mochiDecode(t, appendConnect5(nil, connect5{id: "c-2", clean: true}))
	if !pk.Connect.Clean || pk.Connect.UsernameFlag || pk.Properties.SessionExpiryInterval != 0 {
		t.Fatalf("clean CONNECT decoded by mochi: %+v %+v", pk.Connect, pk.Properties)
	}
	// SUBSCRIBE
	pk = mochiDecode(t, appendSubscribe5(nil, 0xff01, []string{"a/b", "$share/g/c"}, 1))
	if pk.PacketID != 0xff01 || len(pk.Filters) != 2 || pk.Filters[0].Filter != "a/b" || pk.Filters[1].Filter != "$share/g/c" ||
		pk.Filters[0].Qos != 1 || pk.Filters[1].Qos != 1 || pk.Filters[0].NoLocal || pk.Filters[0].RetainHandling != 0 {
		t.Fatalf("SUBSCRIBE decoded by mochi: %+v", pk.Filters)
	}
	// PUBLISH, ours → mochi
	for _, qos := range []byte{0, 1, 2} {
		b := appendPublishV(nil, true, "t/1", []byte("payload"), qos, qos > 0, true, 513)
		pk := mochiDecode(t, b)
		if pk.TopicName != "t/1" || string(pk.Payload) != "payload" || pk.FixedHeader.Qos != qos || !pk.FixedHeader.Retain ||
			(qos > 0 && pk.PacketID != 513) {
			t.Fatalf("PUBLISH qos %d decoded by mochi: %+v", qos, pk)
		}
	}
	// PUBLISH, mochi (with properties) → ours
	for _, qos := range []byte{0, 1, 2} {
		hdr, body := mochiEncode(t, mpackets.Packet{
			FixedHeader: mpackets.FixedHeader{Type: mpackets.Publish, Qos: qos, Retain: true},
			TopicName:   "t/2", Payload: []byte("hello"), PacketID: 77,
			Properties: mpackets.Properties{ContentType: "text/plain", MessageExpiryInterval: 60,
				User: []mpackets.UserProperty{{Key: "k", Val: "v"}}, SubscriptionIdentifier: []int{5}},
		})
		p, err := decodePublishV(hdr, body, true)
		if err != nil || string(p.topic) != "t/2" || string(p.payload) != "hello" || p.qos != qos || !p.retain || (qos > 0 && p.id != 77) {
			t.Fatalf("mochi PUBLISH qos %d: decoded %+v, %v", qos, p, err)
		}
	}
	// A PUBLISH using a topic alias (empty topic) is refused.
	hdr, body := mochiEncode(t, mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: mpackets.Publish}, Payload: []byte("x"),
		Properties: mpackets.Properties{TopicAlias: 3, TopicAliasFlag: true}})
	if _, err := decodePublishV(hdr, body, true); !errors.Is(err, bus.ErrProtocol) {
		t.Fatalf("PUBLISH with a topic alias: %v, want a protocol error", err)
	}
	// CONNACK with properties
	_, body = mochiEncode(t, mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: mpackets.Connack}, SessionPresent: true,
		Properties: mpackets.Properties{MaximumPacketSize: 4096, ReceiveMaximum: 10, TopicAliasMaximum: 5, ServerKeepAlive: 7,
			ServerKeepAliveFlag: true, MaximumQos: 1, MaximumQosFlag: true, AssignedClientID: "x", SharedSubAvailable: 1, SharedSubAvailableFlag: true,
			User: []mpackets.UserProperty{{Key: "a", Val: "b"}}}})
	ca, err := decodeConnack5(body)
	if err != nil || !ca.sessionPresent || ca.code != 0 || ca.v3 || ca.maxPacket != 4096 || ca.receiveMax != 10 || ca.keepAlive != 7 || ca.maxQoS != 1 {
		t.Fatalf("CONNACK: %+v, %v", ca, err)
	}
	_, body = mochiEncode(t, mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: mpackets.Connack}, ReasonCode: 0x87,
		Properties: mpackets.Properties{ReasonString: "go away"}})
	ca, err = decodeConnack5(body)
	if err != nil || ca.code != 0x87 || ca.reason != `"go away"` || ca.maxQoS != 2 || ca.keepAlive != -1 {
		t.Fatalf("refusing CONNACK: %+v, %v", ca, err)
	}
	// SUBACK
	_, body = mochiEncode(t, mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: mpackets.Suback}, PacketID: 0xff02,
		ReasonCodes: []byte{1, 0x87, 0x9e}, Properties: mpackets.Properties{ReasonString: "no"}})
	id, codes, reason, err := decodeSuback5(body)
	if err != nil || id != 0xff02 || !bytes.Equal(codes, []byte{1, 0x87, 0x9e}) || reason != `"no"` {
		t.Fatalf("SUBACK: %d % x %s %v", id, codes, reason, err)
	}
	// Acknowledgements with reason codes and properties
	for _, typ := range []byte{mpackets.Puback, mpackets.Pubrec, mpackets.Pubcomp} {
		for _, rc := range []byte{0, 0x10, 0x87} {
			hdr, body := mochiEncode(t, mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: typ}, PacketID: 9, ReasonCode: rc,
				Properties: mpackets.Properties{ReasonString: "why"}})
			id, got, err := decodeAck5(hdr, body)
			if err != nil || id != 9 || got != rc {
				t.Fatalf("ack type %d reason 0x%x: %d 0x%x %v (% x)", typ, rc, id, got, err, body)
			}
			if rc != 0 && ackReasonString(body) != `"why"` {
				t.Fatalf("ack reason string %q", ackReasonString(body))
			}
		}
	}
	if id, rc, err := decodeAck5(0x40, []byte{0, 9}); err != nil || id != 9 || rc != 0 {
		t.Fatalf("2-byte PUBACK: %d %x %v", id, rc, err)
	}
	if id, rc, err := decodeAck5(0x40, []byte{0, 9, 0x97}); err != nil || id != 9 || rc != 0x97 {
		t.Fatalf("3-byte PUBACK: %d %x %v", id, rc, err)
	}
	// DISCONNECT
	hdr, body = mochiEncode(t, mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: mpackets.Disconnect}, ReasonCode: 0x8b,
		Properties: mpackets.Properties{ReasonString: "bye"}})
	de, err := decodeDisconnect5(hdr, body)
	if err != nil || de.Reason != 0x8b || de.Said != `"bye"` {
		t.Fatalf("DISCONNECT: %+v %v", de, err)
	}
	if de.Error() != `mqtt: the broker disconnected: 0x8b server shutting down (broker says "bye")` || strings.Contains(de.Error(), "\n") {
		t.Fatalf("DISCONNECT error line %q", de.Error())
	}
}

// TestDecode5Errors: malformed MQTT 5 packets are protocol errors.
func TestDecode5Errors(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func() error
	}{
		{"connack flags", func() error { _, err := decodeConnack5([]byte{2, 0, 0}); return err }},
		{"connack props beyond", func() error { _, err := decodeConnack5([]byte{0, 0, 5, 0x21}); return err }},
		{"connack unknown prop", func() error { _, err := decodeConnack5([]byte{0, 0, 2, 0x7f, 0}); return err }},
		{"connack truncated prop", func() error { _, err := decodeConnack5([]byte{0, 0, 2, 0x27, 0}); return err }},
		{"connack trailing", func() error { _, err := decodeConnack5([]byte{0, 0, 0, 1}); return err }},
		{"connack max packet 0", func() error { _, err := decodeConnack5([]byte{0, 0, 5, 0x27, 0, 0, 0, 0}); return err }},
		{"connack string beyond", func() error { _, err := decodeConnack5([]byte{0, 0, 4, 0x1f, 0, 9, 'a'}); return err }},
		{"suback no codes", func() error { _, _, _, err := decodeSuback5([]byte{0, 1, 0}); return err }},
		{"ack props beyond", func() error { _, _, err := decodeAck5(0x40, []byte{0, 1, 0, 9}); return err }},
		{"ack trailing", func() error { _, _, err := decodeAck5(0x40, []byte{0, 1, 0, 0, 1}); return err }},
		{"disconnect flags", func() error { _, err := decodeDisconnect5(0xe1, nil); return err }},
		{"publish no prop length", func() error { _, err := decodePublishV(0x30, []byte{0, 1, 'a'}, true); return err }},
		{"publish props beyond", func() error { _, err := decodePublishV(0x30, []byte{0, 1, 'a', 4, 1}, true); return err }},
	} {
		if err := tc.f(); !errors.Is(err, bus.ErrProtocol) {
			t.Errorf("%s: got %v, want a protocol error", tc.name, err)
		}
	}
}

// TestHotPathAllocs5 is TestHotPathAllocs on MQTT 5: the empty property list
// is encoded and the properties skipped without allocating.
func TestHotPathAllocs5(t *testing.T) {
	payload := make([]byte, 128)
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(1000, func() {
		buf = appendPublishV(buf[:0], true, "eventswarm/probe/stream/1", payload, 1, false, false, 77)
		buf = appendAck(buf, typePuback, 77)
	}); n != 0 {
		t.Errorf("encode: %v allocs/op, want 0", n)
	}
	one := appendPublishV(nil, true, "eventswarm/probe/stream/1", payload, 2, true, true, 9)
	rd := newReader(&loopReader{b: bytes.Repeat(one, 64)}, 1<<20)
	e := &epoch{}
	ack := []byte{0, 9, 0x10, 0} // a PUBACK "no matching subscribers", empty properties
	if n := testing.AllocsPerRun(1000, func() {
		hdr, body, err := rd.next()
		if err != nil {
			t.Fatal(err)
		}
		p, err := decodePublishV(hdr, body, true)
		if err != nil || !p.dup || p.id != 9 || len(p.payload) != 128 {
			t.Fatalf("decode: %+v %v", p, err)
		}
		if e.topicString(p.topic) != "eventswarm/probe/stream/1" {
			t.Fatal("topic")
		}
		if _, _, err := decodeAck5(0x40, ack); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("decode: %v allocs/op, want 0", n)
	}
}

// TestReadConnack5 frames CONNACKs off a stream without reading past them,
// bounded by the maximum.
func TestReadConnack5(t *testing.T) {
	_, body := mochiEncode(t, mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: mpackets.Connack},
		Properties: mpackets.Properties{ReasonString: strings.Repeat("r", 300)}}) // a 2-byte remaining length
	pkt := append([]byte{0x20}, appendVarint(nil, len(body))...)
	pkt = append(pkt, body...)
	next := []byte{0xd0, 0}
	r := bytes.NewReader(append(pkt, next...))
	ca, err := readConnack5(r, 1<<20)
	if err != nil || ca.code != 0 || !strings.HasSuffix(ca.reason, "…") {
		t.Fatalf("readConnack5: %+v %v", ca, err)
	}
	if rest, _ := io.ReadAll(r); !bytes.Equal(rest, next) {
		t.Fatalf("read past the CONNACK: left % x", rest)
	}
	if _, err := readConnack5(bytes.NewReader(pkt), 100); !errors.As(err, new(*PacketTooLargeError)) {
		t.Fatalf("bounded: %v", err)
	}
	ca, err = readConnack5(bytes.NewReader([]byte{0x20, 2, 0, 1}), 1<<20)
	if err != nil || !ca.v3 || ca.code != 1 {
		t.Fatalf("3.1.1 CONNACK: %+v %v", ca, err)
	}
	c := &Client{cfg: Config{QoS: 1}}
	if err := c.checkConnack5(ca); !errors.Is(err, bus.ErrProtocol) || !strings.Contains(err.Error(), "--mqtt-version 3") {
		t.Fatalf("3.1.1 refusal: %v", err)
	}
	if _, err := readConnack5(bytes.NewReader([]byte("HTTP/1.1 400 Bad Request\r\n")), 1<<20); !errors.Is(err, bus.ErrProtocol) || !strings.Contains(err.Error(), "HTTP") {
		t.Fatalf("HTTP answer: %v", err)
	}
}

func FuzzDecode5(f *testing.F) {
	f.Add(byte(0), []byte{0, 0, 0})
	f.Add(byte(1), []byte{0, 1, 3, 0x1f, 0, 0, 1, 0x87})
	f.Add(byte(2), []byte{0, 1, 0x87, 0})
	f.Add(byte(3), []byte{0x8b, 4, 0x1f, 0, 1, 'x'})
	f.Add(byte(4), []byte{0, 1, 'a', 0, 1, 2, 0x23, 0, 1, 'p'})
	f.Add(byte(0), []byte{0, 0, 8, 0x27, 0, 0, 1, 0, 0x21, 0, 5})
	f.Add(byte(0), []byte{0, 0, 9, 0x26, 0, 1, 'k', 0, 2, 'v', 'w', 0x0b})
	f.Fuzz(func(t *testing.T, which byte, body []byte) {
		var err error
		switch which % 5 {
		case 0:
			_, err = decodeConnack5(body)
		case 1:
			var codes []byte
			_, codes, _, err = decodeSuback5(body)
			if err == nil && (len(codes) == 0 || len(codes) > len(body)) {
				t.Fatalf("codes % x of body % x", codes, body)
			}
		case 2:
			typ := []byte{typePuback, typePubrec, typePubrel, typePubcomp}[int(which>>4)%4]
			hdr := typ << 4
			if typ == typePubrel {
				hdr |= 2
			}
			_, _, err = decodeAck5(hdr, body)
			_ = ackReasonString(body)
		case 3:
			var de *DisconnectError
			de, err = decodeDisconnect5(0xe0, body)
			if err == nil && strings.Contains(de.Error(), "\n") {
				t.Fatalf("DISCONNECT line %q", de.Error())
			}
		case 4:
			var p publish
			hdr := 0x30 | which&0x0f>>1<<1
			p, err = decodePublishV(hdr, body, true)
			if err == nil && len(p.payload)+len(p.topic) > len(body) {
				t.Fatalf("decoded beyond the body")
			}
		}
		if err != nil && !errors.Is(err, bus.ErrProtocol) {
			t.Fatalf("error %v does not wrap ErrProtocol", err)
		}
	})
}

// FuzzReadConnack5 reads arbitrary bytes as the answer to an MQTT 5 CONNECT:
// no panic, nothing allocated beyond the bound, errors classified.
func FuzzReadConnack5(f *testing.F) {
	f.Add([]byte{0x20, 3, 0, 0, 0})
	f.Add([]byte{0x20, 2, 0, 5})
	f.Add([]byte{0x20, 0xff, 0xff, 0xff, 0x7f})
	f.Add([]byte{0x20, 0x80, 0x01, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := readConnack5(bytes.NewReader(data), 1000)
		var tl *PacketTooLargeError
		if err != nil && !errors.Is(err, bus.ErrProtocol) && !errors.As(err, &tl) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}
