package mqtt

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"

	"github.com/gobwas/ws"

	"github.com/eventswarm/eventswarm/internal/bus"
)

// MQTT over WebSocket (mqtt+ws://, mqtt+wss://): the socket (bound to a
// source address, TLS for wss) is upgraded with an HTTP/1.1 GET asking for the
// "mqtt" subprotocol, which the server must choose; then the MQTT byte stream
// travels in binary frames. wsConn is that stream as a net.Conn: each Write is
// one masked binary frame, Read returns the payloads of successive binary and
// continuation frames (a frame may hold part of a packet or several packets),
// pings are answered, a close frame is EOF. A frame declaring more than
// wsFrameLimit bytes is bus.ErrProtocol; nothing is allocated per frame.

// WSSubprotocol is the WebSocket subprotocol of MQTT 3.1.1 and 5.
const WSSubprotocol = "mqtt"

// DefaultWSPath is the request path of an mqtt+ws URL without one.
const DefaultWSPath = "/mqtt"

// maxHandshake bounds the upgrade response (status line and headers).
const maxHandshake = 16 << 10

// wsReadBuffer is the frame reader's buffer; reads of at least this much
// bypass it.
const wsReadBuffer = 4 << 10

// Header is an extra request header of the WebSocket upgrade.
type Header struct{ Name, Value string }

// wsFrameLimit is the largest data frame accepted: one packet of maxPacket
// with its fixed header, or 1 MiB (a server may put several packets in one
// frame), whichever is larger.
func wsFrameLimit(maxPacket int) int64 {
	return int64(max(maxPacket+5, 1<<20))
}

// ErrWebSocketUpgrade marks a WebSocket upgrade the server did not grant
// (an HTTP status other than 101, the mqtt subprotocol not chosen, not an
// HTTP server); errors wrapping it also wrap the bus class (bus.ErrProtocol,
// or bus.ErrRefused for 401 and 403).
var ErrWebSocketUpgrade = errors.New("mqtt: WebSocket upgrade failed")

// upgradeError is a wsUpgrade error: its own message, and ErrWebSocketUpgrade.
type upgradeError struct{ err error }

func (e upgradeError) Error() string   { return e.err.Error() }
func (e upgradeError) Unwrap() []error { return []error{e.err, ErrWebSocketUpgrade} }

// wsUpgrade does the WebSocket handshake on nc and returns the MQTT stream.
func (c *Client) wsUpgrade(nc net.Conn) (net.Conn, error) {
	wc, err := c.wsHandshake(nc)
	if err != nil {
		return nil, upgradeError{err}
	}
	return wc, nil
}

func (c *Client) wsHandshake(nc net.Conn) (net.Conn, error) {
	u := &url.URL{Scheme: "ws", Host: c.ep.hostHdr, Path: c.ep.path, RawPath: c.ep.rawPath, RawQuery: c.ep.query}
	if c.ep.tls {
		u.Scheme = "wss"
	}
	var status int
	var reason string
	d := ws.Dialer{
		Protocols:     []string{WSSubprotocol},
		Header:        ws.HandshakeHeaderString(c.wsHeader),
		Host:          c.ep.hostHdr,
		OnStatusError: func(st int, r []byte, _ io.Reader) { status, reason = st, clipString(string(r), 64) },
	}
	lr := &io.LimitedReader{R: nc, N: maxHandshake}
	hbr, hs, err := d.Upgrade(wsLimited{lr, nc}, u)
	where := c.ep.shown
	switch {
	case err != nil && status != 0:
		hint := ""
		switch status {
		case 404:
			hint = fmt.Sprintf(" (is %q the broker's WebSocket path? Mosquitto accepts any, most brokers serve %s)", c.ep.path, DefaultWSPath)
		case 400, 426:
			hint = " (does the broker serve MQTT over WebSocket at this port?)"
		}
		code := bus.ErrProtocol
		if status == 401 || status == 403 {
			code = bus.ErrRefused
		}
		return nil, fmt.Errorf("mqtt: WebSocket upgrade at %s: HTTP %d %s%s: %w%w", where, status, reason, hint, code, silent{&bus.StatusError{Status: status}})
	case err != nil && lr.N <= 0:
		return nil, fmt.Errorf("mqtt: WebSocket upgrade at %s: response longer than %d bytes: %w", where, maxHandshake, bus.ErrProtocol)
	case err != nil && errors.Is(err, ws.ErrHandshakeBadSubProtocol):
		return nil, fmt.Errorf("mqtt: WebSocket upgrade at %s: the server chose a subprotocol other than %q: %w", where, WSSubprotocol, bus.ErrProtocol)
	case err != nil && isWSProtocol(err):
		return nil, fmt.Errorf("mqtt: WebSocket upgrade at %s: %w: %w", where, bus.ErrProtocol, err)
	case err != nil:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("mqtt: WebSocket upgrade at %s: no answer before the connect timeout: %w: %w", where, bus.ErrProtocol, err)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("mqtt: WebSocket upgrade at %s: the peer closed the connection (not an HTTP server?): %w: %w", where, bus.ErrProtocol, err)
		}
		return nil, fmt.Errorf("mqtt: WebSocket upgrade at %s: %w", where, err)
	case hs.Protocol != WSSubprotocol:
		if hbr != nil {
			ws.PutReader(hbr)
		}
		return nil, fmt.Errorf("mqtt: WebSocket upgrade at %s: the server did not accept subprotocol %q (not an MQTT WebSocket endpoint?): %w", where, WSSubprotocol, bus.ErrProtocol)
	}
	var src io.Reader = nc
	if hbr != nil {
		// Bytes the server sent right after its answer.
		pre, _ := hbr.Peek(hbr.Buffered())
		src = io.MultiReader(bytes.NewReader(bytes.Clone(pre)), nc)
		ws.PutReader(hbr)
	}
	return newWSConn(nc, src, wsFrameLimit(c.cfg.MaxPacketSize)), nil
}

// silent wraps an error without adding to the message.
type silent struct{ err error }

func (s silent) Error() string { return "" }
func (s silent) Unwrap() error { return s.err }

// wsLimited bounds the handshake's reads (gobwas/ws does not bound the length
// of a response line itself).
type wsLimited struct {
	r io.Reader
	w io.Writer
}

func (c wsLimited) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c wsLimited) Write(p []byte) (int, error) { return c.w.Write(p) }

// isWSProtocol reports whether a handshake error is the peer not speaking WebSocket.
func isWSProtocol(err error) bool {
	for _, e := range []error{ws.ErrHandshakeBadProtocol, ws.ErrHandshakeBadUpgrade, ws.ErrHandshakeBadConnection,
		ws.ErrHandshakeBadSecAccept, ws.ErrHandshakeBadSecKey, ws.ErrHandshakeBadSecVersion,
		ws.ErrHandshakeBadExtensions, ws.ErrMalformedResponse} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func clipString(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	if len(s) > n {
		return s[:n]
	}
	return s
}

// WebSocket opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// wsConn carries an MQTT byte stream over a WebSocket (client side).
type wsConn struct {
	net.Conn // the socket (TCP or TLS): deadlines, addresses, Close
	fr       wsFrameReader

	wmu  sync.Mutex
	wbuf []byte // a frame being written, reused
}

func newWSConn(nc net.Conn, src io.Reader, limit int64) *wsConn {
	c := &wsConn{Conn: nc}
	c.fr = wsFrameReader{br: bufio.NewReaderSize(src, wsReadBuffer), limit: limit, pong: c.control}
	return c
}

// Read returns bytes of the MQTT stream: the payloads of data frames.
func (c *wsConn) Read(p []byte) (int, error) { return c.fr.Read(p) }

// Write sends p as one masked binary frame.
func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writeFrameLocked(opBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// control writes a control frame (pong, close) in reply to the server.
func (c *wsConn) control(op byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeFrameLocked(op, payload)
}

func (c *wsConn) writeFrameLocked(op byte, p []byte) error {
	b := appendFrameHeader(c.wbuf[:0], op, len(p))
	var mask [4]byte
	m := rand.Uint32()
	mask[0], mask[1], mask[2], mask[3] = byte(m>>24), byte(m>>16), byte(m>>8), byte(m)
	b = append(b, mask[:]...)
	n := len(b)
	b = append(b, p...)
	ws.Cipher(b[n:], mask, 0)
	_, err := c.Conn.Write(b)
	if cap(b) <= keepWriteBuf+16 {
		c.wbuf = b[:0]
	} else {
		c.wbuf = nil
	}
	return err
}

// appendFrameHeader appends a final, masked frame header of opcode op and
// length n, without the mask key.
func appendFrameHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		return append(b, 0x80|byte(n))
	case n <= 0xffff:
		return append(b, 0x80|126, byte(n>>8), byte(n))
	}
	u := uint64(n)
	return append(b, 0x80|127, byte(u>>56), byte(u>>48), byte(u>>40), byte(u>>32), byte(u>>24), byte(u>>16), byte(u>>8), byte(u))
}

// wsFrameReader reads the data of server frames (unmasked, no extensions)
// as one byte stream.
type wsFrameReader struct {
	br    *bufio.Reader
	limit int64                         // the largest data frame accepted
	pong  func(op byte, p []byte) error // writes a reply control frame; nil: none
	left  int64                         // payload bytes left in the current data frame
	frag  bool                          // inside a fragmented message
	err   error                         // sticky: the stream has ended
	hdr   [8]byte
	ctl   [125]byte
}

// Read reads up to len(p) bytes of frame payload, reading frame headers (and
// handling control frames) as needed. It never returns 0, nil for len(p) > 0.
func (r *wsFrameReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.err != nil {
		return 0, r.err
	}
	for r.left == 0 {
		if err := r.header(); err != nil {
			if r.err == nil {
				r.err = err
			}
			return 0, err
		}
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.br.Read(p)
	r.left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF // inside a frame
	}
	if err != nil {
		r.err = err
		if n > 0 {
			return n, nil // the error comes with the next Read
		}
	}
	return n, err
}

// header reads one frame header; a data frame sets left, a control frame is
// handled whole.
func (r *wsFrameReader) header() error {
	h := r.hdr[:2]
	if _, err := io.ReadFull(r.br, h); err != nil {
		return err // io.EOF between frames: the peer closed without a close frame
	}
	fin, rsv, op := h[0]&0x80 != 0, h[0]&0x70, h[0]&0x0f
	masked, n := h[1]&0x80 != 0, int64(h[1]&0x7f)
	if masked || rsv != 0 {
		return fmt.Errorf("mqtt: WebSocket frame masked or with reserved bits from the server: %w", bus.ErrProtocol)
	}
	switch n {
	case 126:
		if _, err := io.ReadFull(r.br, r.hdr[:2]); err != nil {
			return unexpected(err)
		}
		n = int64(r.hdr[0])<<8 | int64(r.hdr[1])
	case 127:
		if _, err := io.ReadFull(r.br, r.hdr[:8]); err != nil {
			return unexpected(err)
		}
		if r.hdr[0]&0x80 != 0 {
			return fmt.Errorf("mqtt: WebSocket frame length with its top bit set: %w", bus.ErrProtocol)
		}
		n = 0
		for _, b := range r.hdr[:8] {
			n = n<<8 | int64(b)
		}
	}
	if op >= 0x8 {
		if !fin || n > int64(len(r.ctl)) {
			return fmt.Errorf("mqtt: WebSocket control frame fragmented or over 125 bytes: %w", bus.ErrProtocol)
		}
		p := r.ctl[:n]
		if _, err := io.ReadFull(r.br, p); err != nil {
			return unexpected(err)
		}
		switch op {
		case opPing:
			if r.pong != nil {
				if err := r.pong(opPong, p); err != nil {
					return fmt.Errorf("mqtt: WebSocket pong: %w", err)
				}
			}
			return nil
		case opPong:
			return nil
		case opClose:
			if r.pong != nil {
				var body [2]byte
				k := copy(body[:], p) // echo the status code
				_ = r.pong(opClose, body[:k])
			}
			return io.EOF
		}
		return fmt.Errorf("mqtt: WebSocket control opcode %d unknown: %w", op, bus.ErrProtocol)
	}
	switch op {
	case opBinary:
		if r.frag {
			return fmt.Errorf("mqtt: WebSocket message begun inside a fragmented one: %w", bus.ErrProtocol)
		}
	case opContinuation:
		if !r.frag {
			return fmt.Errorf("mqtt: WebSocket continuation frame outside a message: %w", bus.ErrProtocol)
		}
	case opText:
		return fmt.Errorf("mqtt: WebSocket text frame (MQTT travels in binary frames): %w", bus.ErrProtocol)
	default:
		return fmt.Errorf("mqtt: WebSocket opcode %d unknown: %w", op, bus.ErrProtocol)
	}
	if n > r.limit {
		return fmt.Errorf("mqtt: WebSocket frame of %d bytes, over the %d accepted: %w", n, r.limit, bus.ErrProtocol)
	}
	r.frag = !fin
	r.left = n
	return nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
