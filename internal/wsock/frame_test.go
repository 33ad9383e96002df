package wsock

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/gobwas/ws"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/httphead"
	"github.com/eventswarm/eventswarm/internal/streamsub"
)

// frame is one server frame (unmasked).
func frame(op ws.OpCode, fin bool, p []byte) []byte {
	var b bytes.Buffer
	_ = ws.WriteHeader(&b, ws.Header{Fin: fin, OpCode: op, Length: int64(len(p))})
	b.Write(p)
	return b.Bytes()
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func TestFrameReader(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 70000) // 64-bit length form
	in := cat(
		frame(ws.OpText, true, []byte("one")),
		frame(ws.OpPing, true, []byte("p")),
		frame(ws.OpBinary, false, []byte("fr")),
		frame(ws.OpPong, true, nil), // control frames may come between fragments
		frame(ws.OpContinuation, false, []byte("ag")),
		frame(ws.OpContinuation, true, []byte("ments")),
		frame(ws.OpBinary, true, big),
		frame(ws.OpClose, true, ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye")),
	)
	br := bufio.NewReaderSize(bytes.NewReader(in), 16)
	var fr frameReader
	var buf []byte
	var got []string
	for range 20 {
		m, ctl, err := fr.next(br, &buf)
		if err != nil {
			t.Fatalf("error %v after %q", err, got)
		}
		switch ctl.op {
		case ws.OpPing:
			got = append(got, "ping:"+string(ctl.payload))
			continue
		case ws.OpPong:
			got = append(got, "pong")
			continue
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(ctl.payload)
			got = append(got, fmt.Sprintf("close:%d:%s", code, reason))
		}
		if ctl.op == ws.OpClose {
			break
		}
		if bytes.Equal(m, big) {
			got = append(got, "big")
			continue
		}
		got = append(got, string(m))
	}
	if s, want := strings.Join(got, "|"), "one|ping:p|pong|fragments|big|close:1000:bye"; s != want {
		t.Fatalf("got %s, want %s", s, want)
	}
	if _, _, err := fr.next(br, &buf); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestFrameReaderRejects(t *testing.T) {
	masked := ws.MaskFrameInPlace(ws.NewTextFrame([]byte("m")))
	var mb bytes.Buffer
	_ = ws.WriteFrame(&mb, masked)
	for name, in := range map[string][]byte{
		"masked frame from the server":  mb.Bytes(),
		"continuation outside":          frame(ws.OpContinuation, true, []byte("x")),
		"new message inside a fragment": cat(frame(ws.OpText, false, []byte("a")), frame(ws.OpText, true, []byte("b"))),
		"fragmented control frame":      frame(ws.OpPing, false, nil),
		"long control frame":            frame(ws.OpPing, true, bytes.Repeat([]byte("x"), 126)),
		"unknown opcode":                frame(ws.OpCode(3), true, nil),
		"over the size bound":           frame(ws.OpBinary, true, bytes.Repeat([]byte("x"), 2000)),
	} {
		br := bufio.NewReaderSize(bytes.NewReader(in), 16)
		fr := frameReader{max: 1000}
		var buf []byte
		_, _, err := fr.next(br, &buf)
		if err == nil {
			_, _, err = fr.next(br, &buf)
		}
		if !errors.Is(err, bus.ErrProtocol) {
			t.Errorf("%s: %v, want bus.ErrProtocol", name, err)
		}
	}
}

func TestParseMeta(t *testing.T) {
	id, data, err := parseMeta([]byte("id: 1796219391:[0],-\ncontent-type: text/plain\n\nhello\n\nworld"))
	if err != nil || id != "1796219391:[0],-" || string(data) != "hello\n\nworld" {
		t.Fatalf("parseMeta = %q %q %v", id, data, err)
	}
	if _, _, err := parseMeta([]byte("no header end")); !errors.Is(err, bus.ErrProtocol) {
		t.Fatalf("parseMeta without an empty line: %v, want bus.ErrProtocol", err)
	}
}

// FuzzFrames: server bytes never panic the frame reader or exceed its bound;
// a message framed by gobwas/ws (split at any point into fragments) comes
// back whole after a clean end of whatever came before.
func FuzzFrames(f *testing.F) {
	f.Add(cat(frame(ws.OpText, true, []byte("id: 1\n\nx")), frame(ws.OpPing, true, nil)), []byte("payload"), uint8(3))
	f.Add([]byte{0x81, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, []byte(""), uint8(0))
	f.Fuzz(func(t *testing.T, junk, payload []byte, split uint8) {
		if len(junk) > 8192 || len(payload) > 4096 {
			t.Skip()
		}
		br := bufio.NewReaderSize(bytes.NewReader(junk), 16)
		fr := frameReader{max: 1024}
		var buf []byte
		for range len(junk) + 1 {
			m, _, err := fr.next(br, &buf)
			if err != nil {
				break
			}
			if len(m) > 1024 {
				t.Fatalf("message of %d bytes over the bound", len(m))
			}
			_, _, _ = parseMeta(m)
		}
		msg := append([]byte("id: 9\ncontent-type: text/plain\n\n"), payload...)
		k := int(split) % (len(msg) + 1)
		in := cat(frame(ws.OpText, k == len(msg), msg[:k]))
		if k < len(msg) {
			in = cat(in, frame(ws.OpContinuation, true, msg[k:]))
		}
		fr = frameReader{max: 1 << 20}
		m, ctl, err := fr.next(bufio.NewReaderSize(bytes.NewReader(in), 16), &buf)
		if err != nil || ctl.op != 0 {
			t.Fatalf("round trip: %v %v", err, ctl.op)
		}
		id, data, err := parseMeta(m)
		if err != nil || id != "9" || !bytes.Equal(data, payload) {
			t.Fatalf("round trip of %q: %q %q %v", payload, id, data, err)
		}
	})
}

// byteConn is a net.Conn reading fixed bytes and dropping writes.
type byteConn struct {
	net.Conn
	r io.Reader
}

func (c byteConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c byteConn) Write(p []byte) (int, error) { return len(p), nil }

// FuzzHandshake: any answer to the upgrade request never panics, and what
// it reads is bounded (an endless header line ends in an error).
func FuzzHandshake(f *testing.F) {
	f.Add([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 403 Forbidden\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 101 OK\r\nX: " + strings.Repeat("a", 100)))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 64<<10 {
			t.Skip()
		}
		r := &countReader{r: bytes.NewReader(in)}
		s, err := Protocol{}.Open(byteConn{r: r}, streamsub.Request{Host: "127.0.0.1:1", URI: "/sub/a"})
		if err == nil {
			s.Release()
		}
		if r.n > httphead.MaxHead+streamsub.ReadBuffer {
			t.Fatalf("the handshake read %d bytes, over its bound", r.n)
		}
	})
}

type countReader struct {
	r io.Reader
	n int
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestHandshakeBounded(t *testing.T) {
	in := "HTTP/1.1 101 Switching Protocols\r\nX-Long: " + strings.Repeat("a", 1<<20)
	_, err := Protocol{}.Open(byteConn{r: strings.NewReader(in)}, streamsub.Request{Host: "127.0.0.1:1", URI: "/sub/a"})
	if !errors.Is(err, bus.ErrProtocol) {
		t.Fatalf("an endless header line: %v, want bus.ErrProtocol", err)
	}
}
