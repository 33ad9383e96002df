package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/localbus"
)

// sframe is one server frame (unmasked).
func sframe(op ws.OpCode, fin bool, p []byte) []byte {
	var b bytes.Buffer
	_ = ws.WriteHeader(&b, ws.Header{Fin: fin, OpCode: op, Length: int64(len(p))})
	b.Write(p)
	return b.Bytes()
}

// rawHeader is a frame header byte pair with an explicit length field.
func rawHeader(b0 byte, lenField ...byte) []byte { return append([]byte{b0}, lenField...) }

type ctlRec struct {
	ops  []byte
	data [][]byte
}

func (c *ctlRec) reply(op byte, p []byte) error {
	c.ops = append(c.ops, op)
	c.data = append(c.data, bytes.Clone(p))
	return nil
}

func newFrameReader(in []byte, limit int64, rec *ctlRec, bufSize int) *wsFrameReader {
	return &wsFrameReader{br: bufio.NewReaderSize(bytes.NewReader(in), bufSize), limit: limit, pong: rec.reply}
}

// readAll reads r with chunk-sized reads until an error.
func readAll(r io.Reader, chunk int) ([]byte, error) {
	var out []byte
	p := make([]byte, chunk)
	for range 1 << 20 {
		n, err := r.Read(p)
		if n < 0 || n > len(p) {
			return out, io.ErrShortBuffer
		}
		out = append(out, p[:n]...)
		if err != nil {
			return out, err
		}
		if n == 0 {
			return out, io.ErrNoProgress
		}
	}
	return out, io.ErrNoProgress
}

func TestWSFrameReader(t *testing.T) {
	big := bytes.Repeat([]byte("y"), 70000) // 64-bit length form
	mid := bytes.Repeat([]byte("x"), 300)   // 16-bit length form
	in := bytes.Join([][]byte{
		sframe(ws.OpBinary, true, []byte("one")),
		sframe(ws.OpPing, true, []byte("p")),
		sframe(ws.OpBinary, true, nil), // empty frames carry nothing
		sframe(ws.OpBinary, false, []byte("fr")),
		sframe(ws.OpPong, true, nil), // control frames may come between fragments
		sframe(ws.OpContinuation, false, []byte("ag")),
		sframe(ws.OpContinuation, true, []byte("ments")),
		sframe(ws.OpBinary, true, mid),
		sframe(ws.OpBinary, true, big),
		sframe(ws.OpClose, true, ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye")),
		sframe(ws.OpBinary, true, []byte("after close")),
	}, nil)
	want := "one" + "fragments" + string(mid) + string(big)
	for _, chunk := range []int{1, 7, 4096, 100000} {
		var rec ctlRec
		got, err := readAll(newFrameReader(in, 1<<20, &rec, 16), chunk)
		if !errors.Is(err, io.EOF) {
			t.Fatalf("chunk %d: error %v, want io.EOF at the close frame", chunk, err)
		}
		if string(got) != want {
			t.Fatalf("chunk %d: got %d bytes, want %d", chunk, len(got), len(want))
		}
		if string(rec.ops) != string([]byte{opPong, opClose}) || string(rec.data[0]) != "p" ||
			!bytes.Equal(rec.data[1], []byte{0x03, 0xe8}) {
			t.Fatalf("chunk %d: replies %v %q, want a pong \"p\" and a close 1000", chunk, rec.ops, rec.data)
		}
	}
	// The peer closing between frames is EOF; inside one, unexpected EOF.
	var rec ctlRec
	if _, err := readAll(newFrameReader(sframe(ws.OpBinary, true, []byte("ab")), 1<<20, &rec, 16), 8); !errors.Is(err, io.EOF) {
		t.Fatalf("EOF between frames: %v", err)
	}
	if _, err := readAll(newFrameReader(sframe(ws.OpBinary, true, []byte("abcd"))[:4], 1<<20, &rec, 16), 8); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("EOF inside a frame: %v", err)
	}
}

func TestWSFrameReaderRejects(t *testing.T) {
	masked := ws.MaskFrameInPlace(ws.NewBinaryFrame([]byte("m")))
	var mb bytes.Buffer
	_ = ws.WriteFrame(&mb, masked)
	cases := map[string][]byte{
		"masked":                mb.Bytes(),
		"reserved bits":         rawHeader(0x80|0x40|opBinary, 0),
		"text frame":            sframe(ws.OpText, true, []byte("t")),
		"continuation first":    sframe(ws.OpContinuation, true, []byte("c")),
		"binary inside message": append(sframe(ws.OpBinary, false, []byte("a")), sframe(ws.OpBinary, true, []byte("b"))...),
		"long control":          sframe(ws.OpPing, true, bytes.Repeat([]byte("p"), 126)),
		"fragmented control":    sframe(ws.OpPing, false, nil),
		"unknown control":       rawHeader(0x80|0xb, 0),
		"unknown data opcode":   rawHeader(0x80|0x3, 0),
		"over the limit 16-bit": rawHeader(0x80|opBinary, 126, 0x10, 0x01),
		"over the limit 64-bit": rawHeader(0x80|opBinary, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
		"length MSB set":        rawHeader(0x80|opBinary, 127, 0x80, 0, 0, 0, 0, 0, 0, 1),
	}
	for name, in := range cases {
		var rec ctlRec
		got, err := readAll(newFrameReader(in, 4096, &rec, 16), 64)
		if !errors.Is(err, bus.ErrProtocol) {
			t.Errorf("%s: error %v, want bus.ErrProtocol", name, err)
		}
		if name != "binary inside message" && len(got) != 0 {
			t.Errorf("%s: read %q before the error", name, got)
		}
	}
}

// TestWSFrameReaderNoAllocs: reading data frames allocates nothing.
func TestWSFrameReaderNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	one := sframe(ws.OpBinary, true, bytes.Repeat([]byte("z"), 200))
	in := bytes.Repeat(one, 64)
	src := bytes.NewReader(in)
	fr := &wsFrameReader{br: bufio.NewReaderSize(src, 4096), limit: 1 << 20}
	p := make([]byte, 512)
	allocs := testing.AllocsPerRun(100, func() {
		src.Reset(in)
		fr.br.Reset(src)
		for {
			if _, err := fr.Read(p); err != nil {
				fr.err = nil
				return
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per 64 frames, want 0", allocs)
	}
}

// TestWSWrite: each Write is one final, masked binary frame whose unmasked
// payload is the bytes written.
func TestWSWrite(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := newWSConn(a, a, 1<<20)
	sizes := []int{0, 1, 125, 126, 65535, 65536, 70000}
	go func() {
		for _, n := range sizes {
			if _, err := c.Write(bytes.Repeat([]byte{byte(n)}, n)); err != nil {
				return
			}
		}
	}()
	br := bufio.NewReader(b)
	for _, n := range sizes {
		f, err := ws.ReadFrame(br)
		if err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		if !f.Header.Fin || f.Header.OpCode != ws.OpBinary || !f.Header.Masked || f.Header.Length != int64(n) {
			t.Fatalf("size %d: header %+v", n, f.Header)
		}
		f = ws.UnmaskFrameInPlace(f)
		if !bytes.Equal(f.Payload, bytes.Repeat([]byte{byte(n)}, n)) {
			t.Fatalf("size %d: payload differs", n)
		}
	}
}

// FuzzWSFrameReader reads arbitrary server bytes with a small frame limit: it
// never panics, never returns more than it was given or was asked for, ends
// in an error, and allocates nothing near a frame's declared length.
func FuzzWSFrameReader(f *testing.F) {
	f.Add(sframe(ws.OpBinary, true, []byte("hello")), 3)
	f.Add(append(sframe(ws.OpBinary, false, []byte("a")), sframe(ws.OpContinuation, true, []byte("b"))...), 1)
	f.Add(sframe(ws.OpPing, true, []byte("x")), 8)
	f.Add(rawHeader(0x80|opBinary, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), 8)
	f.Add(rawHeader(0x80|opBinary, 126, 0x10, 0x00), 100)
	f.Add(sframe(ws.OpClose, true, ws.NewCloseFrameBody(1000, "")), 4)
	const limit = 4096
	f.Fuzz(func(t *testing.T, in []byte, chunk int) {
		chunk = 1 + abs(chunk)%5000
		var rec ctlRec
		fr := newFrameReader(in, limit, &rec, 64)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc
		got, err := readAll(fr, chunk)
		runtime.ReadMemStats(&ms)
		if err == nil || errors.Is(err, io.ErrNoProgress) || errors.Is(err, io.ErrShortBuffer) {
			t.Fatalf("read ended with %v", err)
		}
		if len(got) > len(in) {
			t.Fatalf("read %d bytes from %d", len(got), len(in))
		}
		// readAll's own buffers are chunk and what it appends; the reader adds
		// errors and the recorded control frames, never a frame's length.
		if grew := ms.TotalAlloc - before; grew > uint64(8*chunk+4*len(in)+64<<10) {
			t.Fatalf("allocated %d bytes reading %d", grew, len(in))
		}
		if int64(len(got)) > int64(len(in)) {
			t.Fatal("more out than in")
		}
	})
}

func abs(n int) int {
	if n < 0 {
		if n == -n {
			return 0
		}
		return -n
	}
	return n
}

// TestWSBadInput: a wrong path and a server that does not choose the mqtt
// subprotocol fail Check with one clear line, as protocol errors.
func TestWSBadInput(t *testing.T) {
	lb, err := localbus.Start(localbus.Config{MQTTWSAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cases := []struct{ url, want string }{
		{"mqtt+ws://" + lb.MQTTWSAddr() + "/nope", "HTTP 404"},
		// The embedded bus's Nchan-protocol WebSocket endpoint upgrades, but not to mqtt.
		{"mqtt+ws://" + strings.TrimSuffix(strings.TrimPrefix(lb.HTTPURL(), "http://"), "/") + "/sub/x", `did not accept subprotocol "mqtt"`},
		// Plain MQTT at a WebSocket URL: not HTTP.
		{"mqtt+ws://" + lb.MQTTAddr() + "/mqtt", "WebSocket upgrade at"},
	}
	for _, tc := range cases {
		c := newClient(t, Config{URL: tc.url, ConnectTimeout: 2 * time.Second})
		err := c.Check(ctx)
		t.Logf("%s: %v", tc.url, err)
		if err == nil || !errors.Is(err, bus.ErrProtocol) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: Check = %v, want one line with %q, bus.ErrProtocol", tc.url, err, tc.want)
		}
	}
	// And the working URL checks.
	if err := newClient(t, Config{URL: "mqtt+ws://" + lb.MQTTWSAddr() + "/mqtt"}).Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

func TestWSParseURL(t *testing.T) {
	for raw, want := range map[string]endpoint{
		"mqtt+ws://h":                {addr: "h:80", host: "h", ws: true, path: "/mqtt", hostHdr: "h"},
		"mqtt+ws://h:9001/ws?x=1":    {addr: "h:9001", host: "h", ws: true, path: "/ws", query: "x=1", hostHdr: "h:9001"},
		"mqtt+wss://u:p@h:8443/mqtt": {addr: "h:8443", host: "h", ws: true, tls: true, path: "/mqtt", hostHdr: "h:8443", user: "u", password: "p", userSet: true},
		"MQTT+WSS://h":               {addr: "h:443", host: "h", ws: true, tls: true, path: "/mqtt", hostHdr: "h"},
	} {
		ep, err := parseURL(raw)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		ep.shown = ""
		if ep != want {
			t.Errorf("%s: %+v, want %+v", raw, ep, want)
		}
	}
	if _, err := parseURL("mqtt://h/mqtt"); err == nil || !strings.Contains(err.Error(), "mqtt+ws://") {
		t.Errorf("mqtt:// with a path: %v, want a pointer to mqtt+ws://", err)
	}
	if err := (Config{URL: "mqtt://h", Headers: []Header{{"A", "b"}}}).Validate(); err == nil {
		t.Error("headers on mqtt://: want an error")
	}
	if err := (Config{URL: "mqtt+ws://h", Headers: []Header{{"A", "b\r\nEvil: 1"}}}).Validate(); err == nil || strings.Contains(err.Error(), "Evil") {
		t.Errorf("header with CRLF: %v, want an error not showing the value", err)
	}
}

// TestWSUpgradeHeaders: the upgrade request carries the path, query,
// subprotocol and the extra headers; a server that then closes the
// WebSocket gives a Check error (no CONNACK), not a hang.
func TestWSUpgradeHeaders(t *testing.T) {
	got := make(chan *http.Request, 1)
	up := websocket.Upgrader{Subprotocols: []string{"mqtt"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		c.Close()
	}))
	defer srv.Close()
	c := newClient(t, Config{URL: "mqtt+ws://" + strings.TrimPrefix(srv.URL, "http://") + "/a/b?k=v", Headers: []Header{{"X-Token", "s3cret"}}, ConnectTimeout: 5 * time.Second})
	err := c.Check(context.Background())
	if err == nil || !errors.Is(err, bus.ErrProtocol) {
		t.Fatalf("Check = %v, want a protocol error (closed without a CONNACK)", err)
	}
	r := <-got
	if r.URL.Path != "/a/b" || r.URL.RawQuery != "k=v" || r.Header.Get("X-Token") != "s3cret" || r.Header.Get("Sec-WebSocket-Protocol") != "mqtt" {
		t.Fatalf("upgrade request %s %v, want /a/b?k=v with X-Token and subprotocol mqtt", r.URL, r.Header)
	}
}
