// Package wsock is a WebSocket subscriber for Nchan-protocol targets, on
// github.com/gobwas/ws: GET <url>/sub/<ch1>,<ch2> upgraded to a WebSocket on a
// raw socket, frames read with a 1 KiB buffer and bounded in size
// (streamsub.MaxMessageSize). It asks for Nchan's "ws+meta.nchan" subprotocol,
// whose messages start with "id: <message id>" and "content-type: …" lines and
// an empty line before the data, so a reconnect sends the last id back
// (Last-Event-ID) and Nchan resumes right after it; a server that does not
// choose it sends bare messages, and a reconnect then starts at the newest.
// Pings are answered; a close frame ends the stream. Publishing is the
// long-poll client's POST; the loop, reconnects and events are
// internal/streamsub's.
package wsock

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"

	"github.com/gobwas/ws"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/httphead"
	"github.com/eventswarm/eventswarm/internal/longpoll"
	"github.com/eventswarm/eventswarm/internal/streamsub"
)

// MetaProtocol is Nchan's WebSocket subprotocol carrying message ids.
const MetaProtocol = "ws+meta.nchan"

// New makes a Client subscribing by WebSocket to cfg's target.
func New(cfg longpoll.Config) (*streamsub.Client, error) {
	lp, err := longpoll.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("websocket: %w", err)
	}
	return streamsub.New(lp, Protocol{}), nil
}

// Protocol is WebSocket as a streamsub.Protocol.
type Protocol struct{}

// Name is "websocket".
func (Protocol) Name() string { return "websocket" }

// limitedConn reads at most n bytes of the handshake (gobwas/ws does not
// bound the length of a response line itself).
type limitedConn struct {
	r io.Reader
	w io.Writer
}

func (c limitedConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c limitedConn) Write(p []byte) (int, error) { return c.w.Write(p) }

// Open does the WebSocket handshake for req on nc.
func (Protocol) Open(nc net.Conn, req streamsub.Request) (streamsub.Stream, error) {
	u, err := url.Parse("ws://" + req.Host + req.URI)
	if err != nil {
		return nil, fmt.Errorf("%w: request URI: %w", bus.ErrConfig, err)
	}
	hdr := req.HeaderLines
	if req.LastID != "" {
		hdr += "Last-Event-ID: " + req.LastID + "\r\n"
	}
	var status int
	d := ws.Dialer{
		ReadBufferSize:  streamsub.ReadBuffer,
		WriteBufferSize: streamsub.ReadBuffer,
		Protocols:       []string{MetaProtocol},
		Header:          ws.HandshakeHeaderString("User-Agent: " + longpoll.UserAgent + "\r\n" + hdr),
		Host:            req.Host,
		OnStatusError:   func(st int, _ []byte, _ io.Reader) { status = st },
	}
	lr := &io.LimitedReader{R: nc, N: httphead.MaxHead}
	hbr, hs, err := d.Upgrade(limitedConn{lr, nc}, u)
	if err != nil {
		if status != 0 {
			return nil, &bus.StatusError{Status: status}
		}
		if lr.N <= 0 {
			return nil, fmt.Errorf("%w: handshake response longer than %d bytes", bus.ErrProtocol, httphead.MaxHead)
		}
		if isProtocol(err) {
			return nil, fmt.Errorf("%w: handshake: %w", bus.ErrProtocol, err)
		}
		return nil, fmt.Errorf("handshake: %w", err)
	}
	s := &stream{nc: nc, meta: hs.Protocol == MetaProtocol}
	var src io.Reader = nc
	if hbr != nil {
		// Bytes the server sent right after its answer.
		pre, _ := hbr.Peek(hbr.Buffered())
		src = io.MultiReader(bytes.NewReader(bytes.Clone(pre)), nc)
		ws.PutReader(hbr)
	}
	s.pr = streamsub.NewParkedReader(src)
	return s, nil
}

// isProtocol reports whether a handshake error is the peer not speaking WebSocket.
func isProtocol(err error) bool {
	for _, e := range []error{ws.ErrHandshakeBadProtocol, ws.ErrHandshakeBadUpgrade, ws.ErrHandshakeBadConnection,
		ws.ErrHandshakeBadSecAccept, ws.ErrHandshakeBadSecKey, ws.ErrHandshakeBadSecVersion,
		ws.ErrHandshakeBadSubProtocol, ws.ErrHandshakeBadExtensions, ws.ErrMalformedResponse} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// stream is an open WebSocket subscription.
type stream struct {
	nc   net.Conn
	pr   *streamsub.ParkedReader
	meta bool
	msg  []byte // the message being assembled
	fr   frameReader
}

// Wait blocks until a byte of the next frame is buffered. The last
// message's buffer goes back to a pool first: an idle stream holds none.
func (s *stream) Wait() error {
	streamsub.PutBuf(s.msg)
	s.msg = nil
	return s.pr.Wait()
}

// Next returns the next message's data and its id.
func (s *stream) Next() ([]byte, string, error) {
	for {
		if s.pr.Br == nil {
			if err := s.pr.Wait(); err != nil {
				return nil, "", err
			}
		}
		if s.msg == nil {
			s.msg = streamsub.GetBuf()
		}
		m, ctl, err := s.fr.next(s.pr.Br, &s.msg)
		if err != nil {
			return nil, "", err
		}
		switch ctl.op {
		case ws.OpPing:
			f := ws.MaskFrameInPlace(ws.NewPongFrame(ctl.payload))
			if err := ws.WriteFrame(s.nc, f); err != nil {
				return nil, "", fmt.Errorf("pong: %w", err)
			}
			if s.pr.Br.Buffered() == 0 {
				return nil, "", streamsub.ErrNoMessage
			}
			continue
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(ctl.payload)
			f := ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(code, "")))
			_ = ws.WriteFrame(s.nc, f)
			return nil, "", fmt.Errorf("%w: close frame %d %q", io.EOF, code, clip(reason))
		case ws.OpPong:
			if s.pr.Br.Buffered() == 0 {
				return nil, "", streamsub.ErrNoMessage
			}
			continue
		}
		if !s.meta {
			return m, "", nil
		}
		id, data, err := parseMeta(m)
		if err != nil {
			return nil, "", err
		}
		return data, id, nil
	}
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}

func (s *stream) Release() {
	s.pr.Release()
	streamsub.PutBuf(s.msg)
	s.msg = nil
}

// control is a control frame read by frameReader.
type control struct {
	op      ws.OpCode
	payload []byte // valid until the next read
}

// frameReader assembles messages from server frames (unmasked, no
// extensions), bounded by max (default streamsub.MaxMessageSize).
type frameReader struct {
	max  int
	hdr  [ws.MaxHeaderSize]byte
	ctl  [125]byte
	frag bool // inside a fragmented message
}

// maxFrame bounds the message size.
func (fr *frameReader) limit() int {
	if fr.max > 0 {
		return fr.max
	}
	return streamsub.MaxMessageSize
}

// next reads frames until a whole data message (returned, in *buf) or a
// control frame (returned in ctl, op set).
func (fr *frameReader) next(br *bufio.Reader, buf *[]byte) ([]byte, control, error) {
	if !fr.frag {
		*buf = (*buf)[:0]
	}
	for {
		h, err := ws.ReadHeaderBuffer(br, fr.hdr[:2:len(fr.hdr)])
		if err != nil {
			if errors.Is(err, ws.ErrHeaderLengthMSB) || errors.Is(err, ws.ErrHeaderLengthUnexpected) {
				return nil, control{}, fmt.Errorf("%w: frame: %w", bus.ErrProtocol, err)
			}
			return nil, control{}, err
		}
		if h.Masked || h.Rsv != 0 {
			return nil, control{}, fmt.Errorf("%w: frame masked or with reserved bits from the server", bus.ErrProtocol)
		}
		if h.OpCode.IsControl() {
			if !h.Fin || h.Length > int64(len(fr.ctl)) {
				return nil, control{}, fmt.Errorf("%w: control frame fragmented or over 125 bytes", bus.ErrProtocol)
			}
			p := fr.ctl[:h.Length]
			if _, err := io.ReadFull(br, p); err != nil {
				return nil, control{}, err
			}
			switch h.OpCode {
			case ws.OpPing, ws.OpPong, ws.OpClose:
				return nil, control{op: h.OpCode, payload: p}, nil
			}
			return nil, control{}, fmt.Errorf("%w: unknown control opcode %d", bus.ErrProtocol, h.OpCode)
		}
		switch h.OpCode {
		case ws.OpText, ws.OpBinary:
			if fr.frag {
				return nil, control{}, fmt.Errorf("%w: new message inside a fragmented one", bus.ErrProtocol)
			}
		case ws.OpContinuation:
			if !fr.frag {
				return nil, control{}, fmt.Errorf("%w: continuation frame outside a message", bus.ErrProtocol)
			}
		default:
			return nil, control{}, fmt.Errorf("%w: unknown opcode %d", bus.ErrProtocol, h.OpCode)
		}
		if h.Length > int64(fr.limit()-len(*buf)) {
			return nil, control{}, fmt.Errorf("%w: message over %d bytes", bus.ErrProtocol, fr.limit())
		}
		n := len(*buf)
		*buf = growTo(*buf, n+int(h.Length))
		if _, err := io.ReadFull(br, (*buf)[n:]); err != nil {
			*buf = (*buf)[:n]
			return nil, control{}, err
		}
		fr.frag = !h.Fin
		if h.Fin {
			return *buf, control{}, nil
		}
	}
}

func growTo(b []byte, n int) []byte {
	if n <= cap(b) {
		return b[:n]
	}
	nb := make([]byte, n, max(n, 2*cap(b), 512))
	copy(nb, b)
	return nb
}

// parseMeta splits a ws+meta.nchan message: header lines ("id: …",
// "content-type: …", others ignored) up to an empty line, then the data.
func parseMeta(m []byte) (id string, data []byte, err error) {
	rest := m
	for n := 0; ; n++ {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 || n >= 16 {
			return "", nil, fmt.Errorf("%w: %s message without its header end", bus.ErrProtocol, MetaProtocol)
		}
		line := bytes.TrimSuffix(rest[:i], []byte{'\r'})
		rest = rest[i+1:]
		if len(line) == 0 {
			return id, rest, nil
		}
		if v, ok := bytes.CutPrefix(line, []byte("id: ")); ok {
			id = string(v)
		}
	}
}
