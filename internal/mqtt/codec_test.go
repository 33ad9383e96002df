package mqtt

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/eventswarm/eventswarm/internal/bus"
)

// TestPublishCodecAgainstPaho: our PUBLISH and acknowledgement encodings are
// the bytes paho's packets package writes, and decode back to the fields.
func TestPublishCodecAgainstPaho(t *testing.T) {
	for _, tc := range []struct {
		topic       string
		payload     []byte
		qos         byte
		dup, retain bool
		id          uint16
	}{
		{"a", []byte("x"), 0, false, false, 0},
		{"t/1", bytes.Repeat([]byte{7}, 300), 1, true, false, 513},
		{"t/2", nil, 2, false, true, 65535},
		{strings.Repeat("long/", 40), bytes.Repeat([]byte{1}, 20000), 1, false, true, 1},
	} {
		got := appendPublish(nil, tc.topic, tc.payload, tc.qos, tc.dup, tc.retain, tc.id)
		pp := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
		pp.TopicName, pp.Payload, pp.Qos, pp.Dup, pp.Retain, pp.MessageID = tc.topic, tc.payload, tc.qos, tc.dup, tc.retain, tc.id
		var want bytes.Buffer
		if err := pp.Write(&want); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("PUBLISH %q qos %d: got % x, paho writes % x", tc.topic, tc.qos, got[:min(len(got), 16)], want.Bytes()[:min(want.Len(), 16)])
		}
		rd := newReader(bytes.NewReader(got), 1<<20)
		hdr, body, err := rd.next()
		if err != nil {
			t.Fatal(err)
		}
		p, err := decodePublish(hdr, body)
		if err != nil {
			t.Fatal(err)
		}
		if string(p.topic) != tc.topic || !bytes.Equal(p.payload, tc.payload) || p.qos != tc.qos || p.dup != tc.dup || p.retain != tc.retain || (tc.qos > 0 && p.id != tc.id) {
			t.Fatalf("decoded %+v, want %+v", p, tc)
		}
	}
	for _, typ := range []byte{packets.Puback, packets.Pubrec, packets.Pubrel, packets.Pubcomp} {
		cp := packets.NewControlPacket(typ)
		var want bytes.Buffer
		switch p := cp.(type) {
		case *packets.PubackPacket:
			p.MessageID = 258
		case *packets.PubrecPacket:
			p.MessageID = 258
		case *packets.PubrelPacket:
			p.MessageID = 258
		case *packets.PubcompPacket:
			p.MessageID = 258
		}
		if err := cp.Write(&want); err != nil {
			t.Fatal(err)
		}
		got := appendAck(nil, typ, 258)
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("ack type %d: got % x, paho writes % x", typ, got, want.Bytes())
		}
		id, err := decodeAck(got[0], got[2:])
		if err != nil || id != 258 {
			t.Fatalf("decodeAck(% x) = %d, %v", got, id, err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  byte
		body []byte
	}{
		{"qos 3", 0x36, []byte{0, 1, 'a', 0, 1}},
		{"qos 0 dup", 0x38, []byte{0, 1, 'a'}},
		{"no topic length", 0x30, []byte{0}},
		{"topic beyond body", 0x30, []byte{0, 5, 'a'}},
		{"no packet id", 0x32, []byte{0, 1, 'a', 0}},
		{"packet id 0", 0x32, []byte{0, 1, 'a', 0, 0}},
	} {
		if _, err := decodePublish(tc.hdr, tc.body); !errors.Is(err, bus.ErrProtocol) {
			t.Errorf("%s: got %v, want a protocol error", tc.name, err)
		}
	}
	for _, tc := range []struct {
		name string
		hdr  byte
		body []byte
	}{
		{"short", 0x40, []byte{1}},
		{"long", 0x40, []byte{0, 1, 2}},
		{"id 0", 0x40, []byte{0, 0}},
		{"pubrel flags", 0x60, []byte{0, 1}},
		{"puback flags", 0x42, []byte{0, 1}},
	} {
		if _, err := decodeAck(tc.hdr, tc.body); !errors.Is(err, bus.ErrProtocol) {
			t.Errorf("%s: got %v, want a protocol error", tc.name, err)
		}
	}
}

// TestReaderFraming: packets split at every byte boundary and packed many per
// read frame the same; a stream ending inside a packet is ErrUnexpectedEOF,
// between packets EOF; a 5-byte length is malformed.
func TestReaderFraming(t *testing.T) {
	var stream []byte
	for i := range 50 {
		stream = appendPublish(stream, "t", bytes.Repeat([]byte{byte(i)}, i*37), 1, false, false, uint16(i+1))
		stream = appendAck(stream, typePuback, uint16(i+1))
	}
	stream = append(stream, 0xd0, 0) // PINGRESP
	for _, chunk := range []int{1, 3, 7, 512, len(stream)} {
		rd := newReader(&chunkReader{b: stream, n: chunk}, 1<<20)
		n := 0
		for {
			_, _, err := rd.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("chunk %d: packet %d: %v", chunk, n, err)
			}
			n++
		}
		if n != 101 {
			t.Fatalf("chunk %d: framed %d packets, want 101", chunk, n)
		}
	}
	rd := newReader(bytes.NewReader(stream[:len(stream)-1]), 1<<20)
	var err error
	for err == nil {
		_, _, err = rd.next()
	}
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated stream: got %v, want ErrUnexpectedEOF", err)
	}
	rd = newReader(bytes.NewReader([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}), 1<<20)
	if _, _, err := rd.next(); !errors.Is(err, bus.ErrProtocol) {
		t.Fatalf("5-byte length: got %v, want a protocol error", err)
	}
}

// TestReaderBound: a declared length above the maximum is a
// *PacketTooLargeError before anything that large is allocated.
func TestReaderBound(t *testing.T) {
	hostile := []byte{0x30, 0xff, 0xff, 0xff, 0x7f} // PUBLISH declaring 256 MB
	rd := newReader(bytes.NewReader(hostile), 64<<10)
	_, _, err := rd.next()
	var tl *PacketTooLargeError
	if !errors.As(err, &tl) || !errors.Is(err, bus.ErrProtocol) || tl.Declared != maxRemaining || tl.Max != 64<<10 || tl.Type != typePublish {
		t.Fatalf("got %v, want a PacketTooLargeError for %d bytes", err, maxRemaining)
	}
	if cap(rd.buf) > 64<<10+5 {
		t.Fatalf("reader buffer grew to %d", cap(rd.buf))
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error is not one line: %q", err)
	}
	// Exactly the maximum is fine.
	ok := appendPublish(nil, "t", make([]byte, 100-2-1), 0, false, false, 0)
	rd = newReader(bytes.NewReader(ok), 100)
	if _, body, err := rd.next(); err != nil || len(body) != 100 {
		t.Fatalf("packet at the maximum: %d bytes, %v", len(body), err)
	}
}

// TestHotPathAllocs pins the hot path's codec at 0 allocations: encoding a
// PUBLISH and an acknowledgement into a reused buffer, framing and decoding
// it from a buffered stream, and the delivery's topic string.
func TestHotPathAllocs(t *testing.T) {
	payload := make([]byte, 128)
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(1000, func() {
		buf = appendPublish(buf[:0], "eventswarm/probe/stream/1", payload, 1, false, false, 77)
		buf = appendAck(buf, typePuback, 77)
	}); n != 0 {
		t.Errorf("encode: %v allocs/op, want 0", n)
	}
	one := appendPublish(nil, "eventswarm/probe/stream/1", payload, 2, true, true, 9)
	src := &loopReader{b: bytes.Repeat(one, 64)}
	rd := newReader(src, 1<<20)
	e := &epoch{}
	if n := testing.AllocsPerRun(1000, func() {
		hdr, body, err := rd.next()
		if err != nil {
			t.Fatal(err)
		}
		p, err := decodePublish(hdr, body)
		if err != nil || !p.dup || !p.retain || p.id != 9 {
			t.Fatalf("decode: %+v %v", p, err)
		}
		if e.topicString(p.topic) != "eventswarm/probe/stream/1" {
			t.Fatal("topic")
		}
		if _, err := decodeAck(0x40, []byte{0, 9}); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("decode: %v allocs/op, want 0", n)
	}
	// A subscriber to many streams (probe: one per stream) gets each topic's
	// string from the cache, whatever order the topics come in.
	var topics [][]byte
	for i := range 40 {
		topics = append(topics, []byte("eventswarm.probe.run."+strconv.Itoa(i)))
	}
	for _, b := range topics {
		e.topicString(b)
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		b := topics[i%len(topics)]
		if e.topicString(b) != string(b) {
			t.Fatal("topic")
		}
		i += 7
	}); n != 0 {
		t.Errorf("topicString over %d topics: %v allocs/op, want 0", len(topics), n)
	}
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	b []byte
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), r.n)], r.b)
	r.b = r.b[k:]
	return k, nil
}

// loopReader repeats b forever.
type loopReader struct {
	b   []byte
	off int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], r.b[r.off:])
		n += k
		r.off = (r.off + k) % len(r.b)
	}
	return n, nil
}

func FuzzDecodePublish(f *testing.F) {
	f.Add(byte(0x30), []byte{0, 1, 'a', 'x'})
	f.Add(byte(0x3b), []byte{0, 1, 'a', 1, 2, 'p'})
	f.Add(byte(0x34), []byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, hdr byte, body []byte) {
		hdr = 0x30 | hdr&0x0f
		p, err := decodePublish(hdr, body)
		if err != nil {
			if !errors.Is(err, bus.ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		// What decodes re-encodes to the same bytes.
		again := appendPublish(nil, string(p.topic), p.payload, p.qos, p.dup, p.retain, p.id)
		rd := newReader(bytes.NewReader(again), maxRemaining)
		h2, b2, err := rd.next()
		if err != nil || h2 != hdr || !bytes.Equal(b2, body) {
			t.Fatalf("re-encoded % x / %v, want %x % x", again, err, hdr, body)
		}
	})
}

func FuzzDecodeAck(f *testing.F) {
	f.Add(byte(0x40), []byte{0, 1})
	f.Add(byte(0x62), []byte{1, 0})
	f.Fuzz(func(t *testing.T, hdr byte, body []byte) {
		typ := []byte{typePuback, typePubrec, typePubrel, typePubcomp}[int(hdr>>4)%4]
		hdr = typ<<4 | hdr&0x0f
		id, err := decodeAck(hdr, body)
		if err != nil {
			if !errors.Is(err, bus.ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		if got := appendAck(nil, typ, id); !bytes.Equal(got[2:], body) || got[0] != hdr {
			t.Fatalf("re-encoded % x, want %x % x", got, hdr, body)
		}
	})
}

// FuzzReader frames arbitrary bytes with a small maximum: it never panics,
// never returns a body above the maximum and never grows its buffer past it.
func FuzzReader(f *testing.F) {
	f.Add(appendPublish(nil, "t", []byte("p"), 1, false, false, 1), 3)
	f.Add([]byte{0x20, 2, 0, 0, 0xd0, 0}, 1)
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0x7f}, 2)
	f.Add([]byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}, 7)
	f.Fuzz(func(t *testing.T, data []byte, chunk int) {
		const max = 1000
		chunk = 1 + int(uint(chunk)%64)
		rd := newReader(&chunkReader{b: data, n: chunk}, max)
		for range len(data) + 1 {
			hdr, body, err := rd.next()
			if err != nil {
				var tl *PacketTooLargeError
				if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.Is(err, bus.ErrProtocol) && !errors.As(err, &tl) {
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			if len(body) > max {
				t.Fatalf("body of %d bytes above the maximum", len(body))
			}
			if hdr>>4 == typePublish {
				_, _ = decodePublish(hdr, body)
			}
		}
		if cap(rd.buf) > max+5 && cap(rd.buf) > smallRead {
			t.Fatalf("buffer grew to %d", cap(rd.buf))
		}
	})
}

// TestAppendUnsubscribe: the UNSUBSCRIBE encoder matches paho's packet for
// MQTT 3.1.1, and carries an empty property list on MQTT 5.
func TestAppendUnsubscribe(t *testing.T) {
	topics := []string{"a/b", "learner-1.ctl", ""}
	up := packets.NewControlPacket(packets.Unsubscribe).(*packets.UnsubscribePacket)
	up.MessageID, up.Topics = 0xff07, topics
	var want bytes.Buffer
	if err := up.Write(&want); err != nil {
		t.Fatal(err)
	}
	if got := appendUnsubscribe(nil, 0xff07, topics, false); !bytes.Equal(got, want.Bytes()) {
		t.Errorf("3.1.1: % x, paho writes % x", got, want.Bytes())
	}
	got5 := appendUnsubscribe(nil, 0xff07, []string{"t"}, true)
	if want5 := []byte{0xa2, 6, 0xff, 0x07, 0, 0, 1, 't'}; !bytes.Equal(got5, want5) {
		t.Errorf("5: % x, want % x", got5, want5)
	}
}
